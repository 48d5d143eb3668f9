//! Policies: which promises a contract makes, when each clock starts, pauses, stops, and how
//! long it runs.
//!
//! A policy is data: a list of clock definitions (one per metric), each with targets that
//! say for which plans, priorities and request types which duration applies. It is checked
//! once, when it is defined: no two targets of a metric may apply to the same ticket, chains
//! between clocks cannot loop, every priority a target names is declared.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::business_time::BusinessDayMode;
use super::limits;
use super::names::{
    CustomEventName, MetricName, PlanName, PriorityLabel, RequestType, RoleName, ShortText,
    SlotName,
};
use super::status::Status;

/// The most targets one clock may have, and clocks one policy may have: far above any
/// contract, low enough that checking pairs stays instant.
/// Rules may nest (an estimate bucket whose duration depends on open hours), this deep.
const MAX_RULE_DEPTH: usize = 3;
/// Durations are capped at 10 years of minutes: anything longer is a typo, not a promise.
pub const MAX_MINUTES: u32 = 10 * 366 * 24 * 60;
pub const MAX_DAYS: u32 = 10 * 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusinessDays {
    SameTime,
    EndOfDay,
}

impl From<BusinessDays> for BusinessDayMode {
    fn from(m: BusinessDays) -> Self {
        match m {
            BusinessDays::SameTime => BusinessDayMode::SameTime,
            BusinessDays::EndOfDay => BusinessDayMode::EndOfDay,
        }
    }
}

/// How long a clock runs: one kind per target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DurationRule {
    /// Real elapsed minutes (a 24x7 promise).
    WallClock { minutes: u32 },
    /// The same local wall time `days` dates later in the organisation's zone.
    CalendarDays { days: u32 },
    /// Minutes of open time on a calendar.
    BusinessMinutes { calendar: SlotName, minutes: u32 },
    /// Business days on a calendar.
    BusinessDays {
        calendar: SlotName,
        days: u32,
        mode: BusinessDays,
    },
    /// The ticket's scheduled time ("user scheduled").
    ScheduledTime,
    /// The first opening of the first business day of the ISO week after the clock
    /// starts ("the following week").
    NextWeek { calendar: SlotName },
    /// One duration if the clock starts inside the calendar's open hours, another
    /// otherwise ("2 hours during office hours, 12 hours otherwise").
    ByOpenHours {
        calendar: SlotName,
        inside: Box<DurationRule>,
        outside: Box<DurationRule>,
    },
    /// By the ticket's effort estimate: the first bucket whose `up_to_minutes` is at least
    /// the estimate; above the last bucket the clock needs a quote.
    ByEstimate { buckets: Vec<EstimateBucket> },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EstimateBucket {
    /// The largest estimate, in minutes, this bucket covers (the bucket starts above the
    /// previous one's).
    pub up_to_minutes: u32,
    pub duration: DurationRule,
}

/// A named event a clock can start, stop or cancel on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event", content = "name")]
pub enum EventSignal {
    AgentResponded,
    CustomerReplied,
    WorkAuthorised,
    Approved,
    TriageCompleted,
    Reopened,
    Custom(CustomEventName),
}

/// What starts, stops or cancels a clock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "on", content = "value")]
pub enum Trigger {
    /// The ticket was received (first cycle only).
    Received,
    /// A cycle began: the ticket was received or reopened.
    CycleStarted,
    EnteredStatus(Status),
    LeftStatus(Status),
    Event(EventSignal),
    /// Another clock of the ticket fell due while still running.
    TargetDue(MetricName),
    /// Another clock stopped without the ticket being resolved.
    TargetStoppedUnresolved(MetricName),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Received => write!(f, "received"),
            Trigger::CycleStarted => write!(f, "cycle started"),
            Trigger::EnteredStatus(s) => write!(f, "entered {s}"),
            Trigger::LeftStatus(s) => write!(f, "left {s}"),
            Trigger::Event(e) => write!(f, "event {e:?}"),
            Trigger::TargetDue(m) => write!(f, "{m} fell due"),
            Trigger::TargetStoppedUnresolved(m) => write!(f, "{m} stopped unresolved"),
        }
    }
}

/// A promise counts in attainment (met or breached); a timer drives an action and ends
/// fired or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    Promise,
    Timer,
}

/// What happens when a clock falls due (carried out by the due-time runner).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum DueAction {
    None,
    Escalate { level: u32 },
    MoveTo { status: Status, reason: ShortText },
}

/// For which tickets a target applies; an empty list matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Applicability {
    #[serde(default)]
    pub plans: Vec<PlanName>,
    #[serde(default)]
    pub priorities: Vec<PriorityLabel>,
    #[serde(default)]
    pub request_types: Vec<RequestType>,
}

fn matches<T: PartialEq>(list: &[T], value: Option<&T>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.contains(v))
}

fn overlap<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

impl Applicability {
    pub fn applies(
        &self,
        plan: Option<&PlanName>,
        priority: Option<&PriorityLabel>,
        request_type: &RequestType,
    ) -> bool {
        matches(&self.plans, plan)
            && matches(&self.priorities, priority)
            && matches(&self.request_types, Some(request_type))
    }

    /// Whether it applies to some priority: the clock is relevant for the ticket and
    /// waits for a priority that has a target.
    pub fn applies_to_some_priority(
        &self,
        plan: Option<&PlanName>,
        request_type: &RequestType,
    ) -> bool {
        matches(&self.plans, plan) && matches(&self.request_types, Some(request_type))
    }

    fn overlaps(&self, other: &Applicability) -> bool {
        overlap(&self.plans, &other.plans)
            && overlap(&self.priorities, &other.priorities)
            && overlap(&self.request_types, &other.request_types)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    #[serde(default)]
    pub applies: Applicability,
    pub duration: DurationRule,
    /// Warning thresholds as percentages of the budget, ascending, each in 1..=99.
    #[serde(default)]
    pub warnings: Vec<u8>,
    pub on_due: DueAction,
    /// The contract sentence this target enforces, quoted.
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClockDefinition {
    pub metric: MetricName,
    pub kind: ClockKind,
    pub start: Vec<Trigger>,
    #[serde(default)]
    pub stop: Vec<Trigger>,
    #[serde(default)]
    pub cancel: Vec<Trigger>,
    /// Statuses in which the clock does not run.
    pub pause_statuses: Vec<Status>,
    pub targets: Vec<Target>,
}

impl ClockDefinition {
    /// The target for a ticket's plan, priority and request type; checking the policy
    /// made sure there is at most one.
    pub fn target_for(
        &self,
        plan: Option<&PlanName>,
        priority: Option<&PriorityLabel>,
        request_type: &RequestType,
    ) -> Option<(usize, &Target)> {
        self.targets
            .iter()
            .enumerate()
            .find(|(_, t)| t.applies.applies(plan, priority, request_type))
    }

    /// Whether any target could apply to this ticket once it has the right priority.
    pub fn relevant_for(&self, plan: Option<&PlanName>, request_type: &RequestType) -> bool {
        self.targets
            .iter()
            .any(|t| t.applies.applies_to_some_priority(plan, request_type))
    }
}

/// A transition that needs an approval first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApprovalGuard {
    /// The status the guard protects (24social: CLOSED, "published live").
    pub to: Status,
    /// Who must have approved in the current cycle: a contact holding this role when
    /// approving.
    pub role: RoleName,
    /// No approval needed when the ticket was requested by a contact holding the role
    /// ("changes requested by the main stakeholder ... will not require to be checked").
    #[serde(default)]
    pub waived_when_requested_by_role: bool,
}

/// A versioned policy definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    /// The priority labels tickets under this policy may carry; empty: tickets carry none.
    pub priorities: Vec<PriorityLabel>,
    pub clocks: Vec<ClockDefinition>,
    #[serde(default)]
    pub approval_guards: Vec<ApprovalGuard>,
    /// When set, a work authorisation must come from a contact holding this role at the
    /// time (24social: only the main stakeholder may set contracted work going).
    #[serde(default)]
    pub work_authorisation_role: Option<RoleName>,
}

/// What is wrong with a policy, and where: `path` names the field as the API spells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PolicyError {
    pub path: String,
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        reason: reason.into(),
    }
}

impl Policy {
    /// Every list longer than its limit (see `limits`): checked first, so no pairwise
    /// work runs on an oversized policy.
    fn oversized(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        let mut at_most = |path: String, count: usize, max: usize| {
            if count > max {
                errors.push(err(path, limits::too_many(count, max)));
            }
        };
        at_most(
            "priorities".into(),
            self.priorities.len(),
            limits::PRIORITIES,
        );
        at_most("clocks".into(), self.clocks.len(), limits::CLOCKS);
        at_most(
            "approval_guards".into(),
            self.approval_guards.len(),
            limits::APPROVAL_GUARDS,
        );
        for (i, c) in self.clocks.iter().enumerate().take(limits::CLOCKS) {
            let p = format!("clocks[{i}]");
            at_most(format!("{p}.start"), c.start.len(), limits::TRIGGERS);
            at_most(format!("{p}.stop"), c.stop.len(), limits::TRIGGERS);
            at_most(format!("{p}.cancel"), c.cancel.len(), limits::TRIGGERS);
            at_most(
                format!("{p}.pause_statuses"),
                c.pause_statuses.len(),
                limits::PAUSE_STATUSES,
            );
            at_most(format!("{p}.targets"), c.targets.len(), limits::TARGETS);
            for (j, t) in c.targets.iter().enumerate().take(limits::TARGETS) {
                let q = format!("{p}.targets[{j}]");
                let a = &t.applies;
                for (field, n) in [
                    ("plans", a.plans.len()),
                    ("priorities", a.priorities.len()),
                    ("request_types", a.request_types.len()),
                ] {
                    at_most(format!("{q}.applies.{field}"), n, limits::APPLICABILITY);
                }
                at_most(format!("{q}.warnings"), t.warnings.len(), limits::WARNINGS);
            }
        }
        errors
    }

    /// Checks a policy as a whole. Every problem is reported, each with its path.
    pub fn check(&self) -> Result<(), Vec<PolicyError>> {
        let oversized = self.oversized();
        if !oversized.is_empty() {
            return Err(oversized);
        }
        let mut errors = Vec::new();
        let declared: BTreeSet<&PriorityLabel> = self.priorities.iter().collect();
        if declared.len() != self.priorities.len() {
            errors.push(err("priorities", "a priority label is declared twice"));
        }
        let metrics: BTreeSet<&MetricName> = self.clocks.iter().map(|c| &c.metric).collect();
        if metrics.len() != self.clocks.len() {
            errors.push(err("clocks", "two clocks share a metric name"));
        }
        for (i, clock) in self.clocks.iter().enumerate() {
            check_clock(
                &format!("clocks[{i}]"),
                clock,
                &declared,
                &metrics,
                &mut errors,
            );
        }
        if let Some(cycle) = chain_cycle(&self.clocks) {
            errors.push(err(
                "clocks",
                format!("clocks start each other in a loop: {}", cycle.join(" -> ")),
            ));
        }
        for (i, g) in self.approval_guards.iter().enumerate() {
            if !g.to.is_open() && !g.to.is_resolution() {
                errors.push(err(
                    format!("approval_guards[{i}].to"),
                    "CANCELLED cannot be guarded",
                ));
            }
            if g.to == Status::New {
                errors.push(err(
                    format!("approval_guards[{i}].to"),
                    "NEW is never entered",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The calendar slots this policy's rules count on, for checking an organisation
    /// binds them all.
    pub fn calendar_slots(&self) -> BTreeSet<SlotName> {
        let mut slots = BTreeSet::new();
        for c in &self.clocks {
            for t in &c.targets {
                collect_slots(&t.duration, &mut slots);
            }
        }
        slots
    }

    pub fn clock(&self, metric: &MetricName) -> Option<&ClockDefinition> {
        self.clocks.iter().find(|c| &c.metric == metric)
    }
}

fn collect_slots(rule: &DurationRule, out: &mut BTreeSet<SlotName>) {
    match rule {
        DurationRule::BusinessMinutes { calendar, .. }
        | DurationRule::BusinessDays { calendar, .. }
        | DurationRule::NextWeek { calendar } => {
            out.insert(calendar.clone());
        }
        DurationRule::ByOpenHours {
            calendar,
            inside,
            outside,
        } => {
            out.insert(calendar.clone());
            collect_slots(inside, out);
            collect_slots(outside, out);
        }
        DurationRule::ByEstimate { buckets } => {
            for b in buckets {
                collect_slots(&b.duration, out);
            }
        }
        DurationRule::WallClock { .. }
        | DurationRule::CalendarDays { .. }
        | DurationRule::ScheduledTime => {}
    }
}

fn check_clock(
    path: &str,
    clock: &ClockDefinition,
    declared: &BTreeSet<&PriorityLabel>,
    metrics: &BTreeSet<&MetricName>,
    errors: &mut Vec<PolicyError>,
) {
    if clock.start.is_empty() {
        errors.push(err(
            format!("{path}.start"),
            "a clock needs at least one start trigger",
        ));
    }
    for (field, triggers) in [
        ("start", &clock.start),
        ("stop", &clock.stop),
        ("cancel", &clock.cancel),
    ] {
        for (j, t) in triggers.iter().enumerate() {
            match t {
                Trigger::TargetDue(m) | Trigger::TargetStoppedUnresolved(m) => {
                    if m == &clock.metric {
                        errors.push(err(
                            format!("{path}.{field}[{j}]"),
                            "a clock cannot trigger on itself",
                        ));
                    } else if !metrics.contains(m) {
                        errors.push(err(
                            format!("{path}.{field}[{j}]"),
                            format!("no clock has the metric {m}"),
                        ));
                    }
                }
                Trigger::EnteredStatus(Status::New) => {
                    errors.push(err(
                        format!("{path}.{field}[{j}]"),
                        "no ticket ever enters NEW",
                    ));
                }
                _ => {}
            }
        }
    }
    for (j, s) in clock.pause_statuses.iter().enumerate() {
        if !s.is_open() {
            errors.push(err(
                format!("{path}.pause_statuses[{j}]"),
                format!("{s} is not an open status; clocks end there, they do not pause"),
            ));
        }
    }
    if clock.targets.is_empty() {
        errors.push(err(
            format!("{path}.targets"),
            "a clock needs at least one target",
        ));
    }
    for (j, target) in clock.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{j}]");
        for (k, p) in target.applies.priorities.iter().enumerate() {
            if !declared.contains(p) {
                errors.push(err(
                    format!("{tpath}.applies.priorities[{k}]"),
                    format!(
                        "unknown priority label {p}: the policy declares {}",
                        list(declared)
                    ),
                ));
            }
        }
        check_rule(&format!("{tpath}.duration"), &target.duration, 0, errors);
        let mut prev = 0u8;
        for (k, w) in target.warnings.iter().enumerate() {
            if !(1..=99).contains(w) || *w <= prev {
                errors.push(err(
                    format!("{tpath}.warnings[{k}]"),
                    "warnings are ascending percentages between 1 and 99",
                ));
            }
            prev = *w;
        }
        if let DueAction::MoveTo { status, .. } = &target.on_due
            && *status == Status::New
        {
            errors.push(err(
                format!("{tpath}.on_due.status"),
                "no ticket can move to NEW",
            ));
        }
        if clock.kind == ClockKind::Promise && target.on_due != DueAction::None {
            errors.push(err(
                format!("{tpath}.on_due"),
                "a promise is met or breached; an action on due needs a timer clock",
            ));
        }
        for (k, other) in clock.targets.iter().enumerate().skip(j + 1) {
            if target.applies.overlaps(&other.applies) {
                errors.push(err(
                    format!("{path}.targets[{k}].applies"),
                    format!("overlaps targets[{j}]: a ticket could match both, which would make the deadline depend on their order"),
                ));
            }
        }
    }
}

fn list(labels: &BTreeSet<&PriorityLabel>) -> String {
    if labels.is_empty() {
        "none".into()
    } else {
        labels
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_rule(path: &str, rule: &DurationRule, depth: usize, errors: &mut Vec<PolicyError>) {
    if depth >= MAX_RULE_DEPTH {
        errors.push(err(
            path,
            format!("rules nest at most {MAX_RULE_DEPTH} deep"),
        ));
        return;
    }
    let minutes = |m: u32, field: &str, errors: &mut Vec<PolicyError>| {
        if m == 0 || m > MAX_MINUTES {
            errors.push(err(
                format!("{path}.{field}"),
                format!("must be between 1 and {MAX_MINUTES} minutes"),
            ));
        }
    };
    let days = |d: u32, errors: &mut Vec<PolicyError>| {
        if d == 0 || d > MAX_DAYS {
            errors.push(err(
                format!("{path}.days"),
                format!("must be between 1 and {MAX_DAYS} days"),
            ));
        }
    };
    match rule {
        DurationRule::WallClock { minutes: m }
        | DurationRule::BusinessMinutes { minutes: m, .. } => minutes(*m, "minutes", errors),
        DurationRule::CalendarDays { days: d } | DurationRule::BusinessDays { days: d, .. } => {
            days(*d, errors)
        }
        DurationRule::ScheduledTime | DurationRule::NextWeek { .. } => {}
        DurationRule::ByOpenHours {
            inside, outside, ..
        } => {
            check_rule(&format!("{path}.inside"), inside, depth + 1, errors);
            check_rule(&format!("{path}.outside"), outside, depth + 1, errors);
        }
        DurationRule::ByEstimate { buckets } => {
            if buckets.is_empty() {
                errors.push(err(
                    format!("{path}.buckets"),
                    "at least one estimate bucket is needed",
                ));
            }
            let mut prev = 0u32;
            for (k, b) in buckets.iter().enumerate() {
                if b.up_to_minutes <= prev {
                    errors.push(err(
                        format!("{path}.buckets[{k}].up_to_minutes"),
                        "buckets are ascending and positive",
                    ));
                }
                prev = b.up_to_minutes;
                check_rule(
                    &format!("{path}.buckets[{k}].duration"),
                    &b.duration,
                    depth + 1,
                    errors,
                );
            }
        }
    }
}

/// A loop of clocks starting each other (`a` starts when `b` is due, `b` when `a` is due)
/// would never settle; found by depth-first search over start triggers.
fn chain_cycle(clocks: &[ClockDefinition]) -> Option<Vec<String>> {
    let edges: BTreeMap<&MetricName, Vec<&MetricName>> = clocks
        .iter()
        .map(|c| {
            let deps = c
                .start
                .iter()
                .filter_map(|t| match t {
                    Trigger::TargetDue(m) | Trigger::TargetStoppedUnresolved(m) => Some(m),
                    _ => None,
                })
                .collect();
            (&c.metric, deps)
        })
        .collect();
    fn visit<'a>(
        m: &'a MetricName,
        edges: &BTreeMap<&'a MetricName, Vec<&'a MetricName>>,
        stack: &mut Vec<&'a MetricName>,
        done: &mut BTreeSet<&'a MetricName>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == m) {
            let mut cycle: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(c) = visit(m, &edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(s: &str) -> MetricName {
        MetricName::parse(s).expect("valid")
    }

    fn label(s: &str) -> PriorityLabel {
        PriorityLabel::parse(s).expect("valid")
    }

    fn target(priorities: &[&str], minutes: u32) -> Target {
        Target {
            applies: Applicability {
                priorities: priorities.iter().map(|p| label(p)).collect(),
                ..Applicability::default()
            },
            duration: DurationRule::WallClock { minutes },
            warnings: vec![],
            on_due: DueAction::None,
            source: String::new(),
        }
    }

    fn clock(name: &str, start: Vec<Trigger>, targets: Vec<Target>) -> ClockDefinition {
        ClockDefinition {
            metric: metric(name),
            kind: ClockKind::Promise,
            start,
            stop: vec![Trigger::Event(EventSignal::AgentResponded)],
            cancel: vec![],
            pause_statuses: vec![Status::RequiresDeliverables],
            targets,
        }
    }

    fn policy(clocks: Vec<ClockDefinition>) -> Policy {
        Policy {
            priorities: vec![label("P1"), label("P2")],
            clocks,
            approval_guards: vec![],
            work_authorisation_role: None,
        }
    }

    fn paths(p: &Policy) -> Vec<String> {
        p.check()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn a_sound_policy_passes() {
        let p = policy(vec![clock(
            "first_response",
            vec![Trigger::Received],
            vec![target(&["P1"], 15), target(&["P2"], 30)],
        )]);
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn overlapping_targets_are_ambiguous() {
        let p = policy(vec![clock(
            "first_response",
            vec![Trigger::Received],
            vec![target(&["P1"], 15), target(&[], 30)],
        )]);
        assert_eq!(paths(&p), vec!["clocks[0].targets[1].applies"]);
    }

    #[test]
    fn unknown_priorities_and_bad_durations_are_named() {
        let p = policy(vec![clock(
            "first_response",
            vec![Trigger::Received],
            vec![target(&["P9"], 0)],
        )]);
        assert_eq!(
            paths(&p),
            vec![
                "clocks[0].targets[0].applies.priorities[0]",
                "clocks[0].targets[0].duration.minutes"
            ]
        );
    }

    #[test]
    fn chains_must_not_loop() {
        let p = policy(vec![
            clock(
                "a",
                vec![Trigger::TargetDue(metric("b"))],
                vec![target(&[], 10)],
            ),
            clock(
                "b",
                vec![Trigger::TargetDue(metric("a"))],
                vec![target(&[], 10)],
            ),
        ]);
        assert_eq!(paths(&p), vec!["clocks"]);
        let p = policy(vec![clock(
            "a",
            vec![Trigger::TargetDue(metric("zzz"))],
            vec![target(&[], 10)],
        )]);
        assert_eq!(paths(&p), vec!["clocks[0].start[0]"]);
    }

    #[test]
    fn promises_do_not_act_and_pauses_need_open_statuses() {
        let mut c = clock("a", vec![Trigger::Received], vec![target(&[], 10)]);
        c.targets[0].on_due = DueAction::Escalate { level: 1 };
        c.pause_statuses.push(Status::Closed);
        assert_eq!(
            paths(&policy(vec![c])),
            vec!["clocks[0].pause_statuses[1]", "clocks[0].targets[0].on_due"]
        );
    }

    #[test]
    fn estimate_buckets_ascend() {
        let mut c = clock("lead_time", vec![Trigger::Received], vec![target(&[], 10)]);
        c.targets[0].duration = DurationRule::ByEstimate {
            buckets: vec![
                EstimateBucket {
                    up_to_minutes: 480,
                    duration: DurationRule::WallClock { minutes: 4320 },
                },
                EstimateBucket {
                    up_to_minutes: 180,
                    duration: DurationRule::WallClock { minutes: 1440 },
                },
            ],
        };
        assert_eq!(
            paths(&policy(vec![c])),
            vec!["clocks[0].targets[0].duration.buckets[1].up_to_minutes"]
        );
    }

    #[test]
    fn stored_policies_round_trip_through_json() {
        let p = policy(vec![clock(
            "first_response",
            vec![Trigger::Received],
            vec![target(&["P1"], 15)],
        )]);
        let json = serde_json::to_string(&p).expect("serialises");
        let back: Policy = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, p);
    }
}
