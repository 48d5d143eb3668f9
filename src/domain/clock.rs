//! SLA clocks as a pure fold of a ticket's event log.
//!
//! A ticket's clocks are a function of its events (ordered by when they happened, ties by
//! arrival), its policy version and its calendars: recomputing them from scratch gives the
//! same answer every time, which is what makes late events, re-targeting and calendar
//! changes safe.
//!
//! One rule for every kind of duration: when a clock starts, its rule is resolved into a
//! nominal deadline; its **budget** is the open time from the start to that deadline on
//! the clock's calendar (wall-clock and calendar-day rules count real time). Paused open
//! time does not count: the deadline is the earliest instant at which the running open
//! time equals the budget. A scheduled-time deadline is a fixed instant pauses do not move.
//!
//! One refinement keeps the deadline where the contract puts it: when the nominal deadline
//! is an opening ("Tuesday 08:00", "the first opening of next week"), the budget is used up
//! at the previous close already, and the deadline is the next opening after the budget is
//! used up, not that close. Without pauses that is exactly the nominal deadline.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Days, TimeDelta, Utc};

use super::business_time::{BusinessCalendar, TimeError};
use super::clock_calendar::{ClockCalendar, VersionedCalendar};
use super::names::{ExternalId, MetricName, PriorityLabel, RoleName, SlotName};
use super::organization::Organization;
use super::policy::{
    ClockDefinition, ClockKind, DueAction, DurationRule, EventSignal, Policy, Target, Trigger,
};
use super::status::{Status, TransitionError};
use super::ticket::{ActionKind, Event, EventKind, SystemAction, Ticket, sort_events};

/// The calendars a ticket's clocks may count on.
#[derive(Debug, Clone)]
pub struct ClockCalendars {
    /// Always open, in the organisation's zone: where calendar-day promises count dates.
    pub zone: Arc<BusinessCalendar>,
    /// The organisation's calendars by slot, with their versions.
    pub slots: BTreeMap<SlotName, Arc<VersionedCalendar>>,
}

/// Everything besides the events that a ticket's clocks depend on.
#[derive(Debug, Clone, Copy)]
pub struct FoldContext<'a> {
    pub ticket: &'a Ticket,
    pub policy: &'a Policy,
    pub organization: &'a Organization,
    pub calendars: &'a ClockCalendars,
}

/// Why an event cannot stand where it is in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("illegal transition {from} -> {to}: {error}")]
    Transition {
        from: Status,
        to: Status,
        error: TransitionError,
    },
    #[error("cannot reopen: {0}")]
    Reopen(TransitionError),
    #[error("it happened before the ticket was received")]
    BeforeReceived,
    #[error("moving to {to} needs an approval in this cycle by a contact holding the role {role}")]
    ApprovalMissing { to: Status, role: RoleName },
    #[error("work can only be authorised by a contact holding the role {role} at the time; {}", who(.contact))]
    NotAuthorised {
        role: RoleName,
        contact: Option<ExternalId>,
    },
    #[error("the policy declares no priority {0}")]
    UnknownPriority(PriorityLabel),
    #[error("an effort estimate must be positive")]
    ZeroEstimate,
}

fn who(contact: &Option<ExternalId>) -> String {
    match contact {
        Some(c) => format!("contact {c} does not"),
        None => "no contact was given".to_string(),
    }
}

/// The event that cannot stand, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event #{seq} at {occurred_at}: {violation}")]
pub struct Rejected {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub violation: Violation,
}

/// Where a clock is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClockState {
    /// Its start trigger fired, but no deadline can be set yet (see the reason).
    NotStarted,
    Running,
    Paused,
    /// A promise stopped at or before its deadline.
    Met,
    /// A promise past its deadline, still running or stopped after it.
    Breached,
    Cancelled,
    /// A timer that reached its deadline while running: its action is due.
    Fired,
    /// A timer stopped before its deadline.
    Stopped,
}

/// Why a clock has no deadline yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStartedReason {
    NoTargetForPriority(Option<PriorityLabel>),
    NoEstimate,
    NeedsQuote { estimate_minutes: u32 },
    NoScheduledTime,
    CalendarNotBound(SlotName),
    OutOfRange,
}

impl std::fmt::Display for NotStartedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStartedReason::NoTargetForPriority(Some(p)) => {
                write!(f, "no target applies to priority {p}")
            }
            NotStartedReason::NoTargetForPriority(None) => {
                write!(f, "no target applies until the ticket has a priority")
            }
            NotStartedReason::NoEstimate => write!(f, "no effort estimate yet"),
            NotStartedReason::NeedsQuote { estimate_minutes } => write!(
                f,
                "needs a quote: an estimate of {estimate_minutes} minutes is above every lead-time bucket"
            ),
            NotStartedReason::NoScheduledTime => write!(f, "no scheduled time yet"),
            NotStartedReason::CalendarNotBound(s) => {
                write!(f, "the organisation binds no calendar to the slot {s}")
            }
            NotStartedReason::OutOfRange => write!(f, "the deadline would fall outside 1970-2099"),
        }
    }
}

/// How a clock ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Stopped { by: String, resolution: bool },
    Cancelled { by: String },
    Fired,
}

/// One clock of a ticket as of an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockView {
    pub metric: MetricName,
    pub kind: ClockKind,
    /// 0 for the first cycle, +1 per reopen.
    pub cycle: u32,
    /// Counts restarts of this metric within the ticket (a second review, say).
    pub instance: u32,
    /// Index of the target in the policy's clock definition, when one applies.
    pub target_index: Option<usize>,
    /// The duration rule that set the deadline: the target's, with a choice (by open
    /// hours, by estimate) resolved to the branch taken.
    pub rule: Option<DurationRule>,
    pub state: ClockState,
    /// Still counting: running or paused, including a promise already breached.
    pub active: bool,
    pub paused: bool,
    pub not_started: Option<NotStartedReason>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<EndReason>,
    /// `None` while paused (before a breach) or not started.
    pub deadline: Option<DateTime<Utc>>,
    /// For a paused clock: its deadline if it resumed at `as_of`.
    pub deadline_if_resumed: Option<DateTime<Utc>>,
    pub budget: Option<TimeDelta>,
    /// Running open time used so far (pauses excluded).
    pub elapsed: TimeDelta,
    /// Budget minus elapsed; negative past the deadline.
    pub remaining: Option<TimeDelta>,
    /// Open time that passed while paused.
    pub paused_time: TimeDelta,
    pub pauses: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// The instant each warning threshold is (or would be) crossed, with its percentage.
    pub warnings: Vec<(u8, Option<DateTime<Utc>>)>,
    /// The highest threshold crossed so far, 0 for none.
    pub warning_level: u8,
    pub breached_at: Option<DateTime<Utc>>,
}

/// A ticket's state as of an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketState {
    pub status: Status,
    pub cycle: u32,
    pub priority: Option<PriorityLabel>,
    pub estimate_minutes: Option<u32>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub clocks: Vec<ClockView>,
    /// The next instant after `as_of` at which the clocks change without any new event
    /// (a deadline or warning is reached): when the due-time runner must look again.
    pub next_change_at: Option<DateTime<Utc>>,
    /// What the clocks reached by themselves up to `as_of` (warnings crossed, promises
    /// breached, timers fired with an action), in time order: what servicelevel records
    /// as its own events.
    pub reached: Vec<SystemAction>,
    /// What of `reached` no recorded system event stands for yet: to record.
    pub missing: Vec<SystemAction>,
    /// Recorded system events the fold no longer reaches (a later-arriving event showed
    /// them wrong), by sequence number: to retract.
    pub wrong: Vec<i64>,
}

/// The ticket's attributes a clock's target and duration rule are resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attrs {
    priority: Option<PriorityLabel>,
    estimate: Option<u32>,
    scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Instance {
    def: usize,
    cycle: u32,
    seq: u32,
    start: DateTime<Utc>,
    pauses: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    end: Option<(DateTime<Utc>, EndReason)>,
    /// The nominal deadline, once reached while running: from then on the outcome and the
    /// deadline are fixed, whatever re-targeting comes later.
    due_at: Option<DateTime<Utc>>,
    /// The warning thresholds crossed, with the instant each threshold had.
    warned: Vec<(u8, DateTime<Utc>)>,
    /// The attributes in force when the clock's outcome became final (it ended, or a
    /// promise breached): changes after that never re-target it.
    frozen: Option<Attrs>,
    /// What [`after_running`] counted over the closed pauses so far.
    running: RefCell<RunningPrefix>,
    /// The rule last resolved, with the attributes it was resolved with: it depends on
    /// nothing else that changes during a fold, and a fold asks for it many times an
    /// event.
    resolved: RefCell<Option<(Attrs, Result<Resolved, NotStartedReason>)>>,
}

impl Instance {
    /// A clock started at `start`, not ended, nothing counted or resolved yet.
    fn new(
        def: usize,
        cycle: u32,
        seq: u32,
        start: DateTime<Utc>,
        pauses: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    ) -> Self {
        Instance {
            def,
            cycle,
            seq,
            start,
            pauses,
            end: None,
            due_at: None,
            warned: Vec::new(),
            frozen: None,
            running: RefCell::default(),
            resolved: RefCell::default(),
        }
    }
}

/// The running time a clock used before each of its closed pauses, kept across calls: a
/// fold asks for every running clock's deadline and warnings after each event, and
/// counting all the pauses again each time made a long ticket's fold quadratic in its
/// events (a ticket's 40th event cost 40 times its first). Closed pauses never change,
/// so what was counted stays true while the calendar and the start are the same.
#[derive(Debug, Clone, Default)]
struct RunningPrefix {
    /// The calendar and start counted with; `None` before the first count.
    basis: Option<(ClockCalendar, DateTime<Utc>)>,
    /// Per counted pause: the cursor before it, the running time used before that cursor,
    /// and the running time used once the pause began.
    steps: Vec<(DateTime<Utc>, TimeDelta, TimeDelta)>,
    /// The cursor after the counted pauses, and the running time used by then.
    cursor: Option<DateTime<Utc>>,
    used: TimeDelta,
    /// Recent answers (a clock's budget and its warning shares), each with the pauses it
    /// was given: how many, and the last one.
    answers: Vec<(TimeDelta, Pauses, Running)>,
}

type Pauses = (usize, Option<(DateTime<Utc>, Option<DateTime<Utc>>)>);

/// When an amount of running time is used up, `None` when an open pause comes first.
type Running = Result<Option<DateTime<Utc>>, TimeError>;

/// Most answers kept per clock: a budget and its warning thresholds.
const KEPT_ANSWERS: usize = 8;

impl Instance {
    fn active(&self) -> bool {
        self.end.is_none()
    }

    fn paused(&self) -> bool {
        self.pauses.last().is_some_and(|(_, to)| to.is_none())
    }

    /// `at`, unless the clock is paused and `at` is not before the pause began: a paused
    /// clock reaches nothing, but what it reached while running (a shorter target
    /// applied to it while paused) stays reached.
    fn reached_before_pause(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.pauses.last() {
            Some((from, None)) if at >= *from => None,
            _ => Some(at),
        }
    }

    fn crossed(&self, percent: u8) -> Option<DateTime<Utc>> {
        self.warned
            .iter()
            .find(|(p, _)| *p == percent)
            .map(|(_, at)| *at)
    }
}

/// The duration rule of a clock resolved for its start: how much open time it has, on
/// which calendar.
#[derive(Debug, Clone)]
struct Resolved {
    target: usize,
    calendar: ClockCalendar,
    budget: TimeDelta,
    /// A scheduled time: the deadline whatever the pauses.
    fixed: Option<DateTime<Utc>>,
    /// The nominal deadline is an opening: deadlines go to the next opening once the
    /// budget is used up.
    at_opening: bool,
}

impl Resolved {
    /// The deadline once `amount` of running open time, counted from `from`, is used up.
    fn due_after(&self, from: DateTime<Utc>, amount: TimeDelta) -> Option<DateTime<Utc>> {
        let used_up = self.calendar.add(from, amount).ok()?;
        self.anchor(used_up)
    }

    fn anchor(&self, used_up: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.at_opening {
            self.calendar.next_open(used_up).ok()
        } else {
            Some(used_up)
        }
    }
}

/// A rule resolved at a start: the calendar the clock counts on, the nominal deadline,
/// and the fixed deadline of a scheduled time.
type Nominal = (ClockCalendar, DateTime<Utc>, Option<DateTime<Utc>>);

struct Fold<'a> {
    ctx: FoldContext<'a>,
    status: Status,
    cycle: u32,
    attrs: Attrs,
    /// The instant of the caller's event folded last. What an event makes already past
    /// (a deadline, a warning, a timer) takes effect here: never before its cause.
    now: DateTime<Utc>,
    /// Approvals: (cycle, contact, when).
    approvals: Vec<(u32, Option<ExternalId>, DateTime<Utc>)>,
    instances: Vec<Instance>,
    relevant: Vec<bool>,
    /// What the clocks reached, in the order reached.
    reached: Vec<SystemAction>,
}

#[cfg(test)]
thread_local! {
    /// Folds run on this thread: the property tests count them per write.
    pub(crate) static FOLDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Folds `events` (in any order: they are sorted here) into the ticket's state as of
/// `as_of`. The first event that cannot stand where it is is rejected.
///
/// Only callers' events are folded. Servicelevel's own events (warnings, breaches, due
/// actions) are outputs: the fold reaches them itself, in its single pass, and compares
/// them with the recorded ones at the end (`missing`, `wrong`). So a change that puts a
/// deadline in the past (a priority raised after the new target's deadline) is folded
/// once, with its consequences at its own instant, whatever was recorded before it.
pub fn fold(
    ctx: FoldContext<'_>,
    events: &[Event],
    as_of: DateTime<Utc>,
) -> Result<TicketState, Rejected> {
    #[cfg(test)]
    FOLDS.with(|c| c.set(c.get() + 1));
    let retracted: BTreeSet<i64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Retracted { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let mut recorded: Vec<(i64, SystemAction)> = events
        .iter()
        .filter(|e| !retracted.contains(&e.seq))
        .filter_map(|e| SystemAction::of_event(e.occurred_at, &e.kind).map(|a| (e.seq, a)))
        .collect();
    let mut sorted: Vec<&Event> = events.iter().filter(|e| !e.kind.is_system()).collect();
    sort_events(&mut sorted);
    let t = ctx.ticket;
    let mut f = Fold {
        ctx,
        status: Status::New,
        cycle: 0,
        attrs: Attrs {
            priority: t.priority.clone(),
            estimate: t.estimate_minutes,
            scheduled_at: t.scheduled_at,
        },
        now: t.received_at,
        approvals: Vec::new(),
        instances: Vec::new(),
        reached: Vec::new(),
        relevant: ctx
            .policy
            .clocks
            .iter()
            .map(|c| c.relevant_for(t.plan.as_ref(), &t.request_type))
            .collect(),
    };
    f.signal(
        t.received_at,
        &[Trigger::Received, Trigger::CycleStarted],
        None,
    );
    for e in sorted {
        if e.occurred_at < t.received_at {
            return Err(f.reject(e, Violation::BeforeReceived));
        }
        f.advance(e.occurred_at);
        f.now = e.occurred_at;
        f.apply(e).map_err(|v| f.reject(e, v))?;
        // What the event put in the past (a shorter target, a resume after the budget ran
        // out) is reached now, at the event's own instant.
        f.advance(e.occurred_at);
    }
    // Only deadlines strictly before `as_of` have passed: a clock exactly at its deadline
    // has used its budget but is not past it, and an event at that instant still meets it.
    f.advance(as_of);
    let mut state = f.view(as_of);
    let mut missing = Vec::new();
    for a in &state.reached {
        match recorded.iter().position(|(_, r)| r == a) {
            Some(i) => {
                recorded.swap_remove(i);
            }
            None => missing.push(a.clone()),
        }
    }
    let mut wrong: Vec<i64> = recorded.into_iter().map(|(seq, _)| seq).collect();
    wrong.sort_unstable();
    state.missing = missing;
    state.wrong = wrong;
    Ok(state)
}

impl<'a> Fold<'a> {
    fn reject(&self, e: &Event, violation: Violation) -> Rejected {
        Rejected {
            seq: e.seq,
            occurred_at: e.occurred_at,
            violation,
        }
    }

    fn def(&self, i: &Instance) -> &'a ClockDefinition {
        &self.ctx.policy.clocks[i.def]
    }

    /// Processes what the running clocks reach before `t`, earliest first: warning
    /// thresholds are crossed, promises breach, timers fire (taking their action), and
    /// clocks chained to them start. Each takes effect at its own instant, or at `now`
    /// when an event already put it in the past. A paused clock reaches nothing new, but a
    /// shorter target applied while it is paused can find its budget already used up
    /// before the pause: breached at once. Events at a deadline instant itself come
    /// first, so a clock stopped exactly at its deadline is met.
    fn advance(&mut self, t: DateTime<Utc>) {
        loop {
            // (instant, deadline after warnings, clock, warning threshold)
            let mut next: Option<(DateTime<Utc>, bool, usize, Option<u8>)> = None;
            for (k, inst) in self.instances.iter().enumerate() {
                if !inst.active() || inst.due_at.is_some() {
                    continue;
                }
                let Ok(r) = self.resolve(inst) else { continue };
                let thresholds = &self.def(inst).targets[r.target].warnings;
                let warnings = thresholds
                    .iter()
                    .filter(|p| inst.crossed(**p).is_none())
                    .filter_map(|p| Some((self.warning_at(inst, &r, *p)?, false, k, Some(*p))));
                let deadline = self.deadline(inst).map(|d| (d, true, k, None));
                for c in warnings.chain(deadline).filter(|c| c.0 < t) {
                    if next.is_none_or(|n| c < n) {
                        next = Some(c);
                    }
                }
            }
            let Some((due, _, k, warning)) = next else {
                return;
            };
            let at = due.max(self.now);
            let inst = &self.instances[k];
            let (metric, instance) = (self.def(inst).metric.clone(), inst.seq);
            if let Some(level) = warning {
                self.instances[k].warned.push((level, due));
                self.reached.push(SystemAction {
                    at,
                    due,
                    metric,
                    instance,
                    what: ActionKind::Warning { level },
                });
                continue;
            }
            let kind = self.def(inst).kind;
            let attrs = self.attrs.clone();
            let inst = &mut self.instances[k];
            inst.due_at = Some(due);
            inst.frozen.get_or_insert(attrs);
            let action = match kind {
                ClockKind::Promise => Some(ActionKind::Breach),
                ClockKind::Timer => {
                    inst.end = Some((at, EndReason::Fired));
                    self.due_action(&self.instances[k])
                }
            };
            self.signal(at, &[Trigger::TargetDue(metric.clone())], None);
            if let Some(ActionKind::MoveTo { status, .. }) = &action {
                let from = self.status;
                if from.check_transition(*status).is_err() {
                    // Nowhere to move (already there, or final): the timer fired and
                    // nothing is recorded.
                    continue;
                }
                self.status = *status;
                self.signal(
                    at,
                    &[Trigger::LeftStatus(from), Trigger::EnteredStatus(*status)],
                    Some((from, *status)),
                );
            }
            if let Some(what) = action {
                self.reached.push(SystemAction {
                    at,
                    due,
                    metric,
                    instance,
                    what,
                });
            }
        }
    }

    /// The instant a clock crosses a warning threshold of its target, with the pauses
    /// known so far; `None` while paused before it.
    fn warning_at(&self, inst: &Instance, r: &Resolved, percent: u8) -> Option<DateTime<Utc>> {
        let share = r.budget * i32::from(percent) / 100;
        let at = match r.fixed {
            Some(_) => r.calendar.add(inst.start, share).ok(),
            None => after_running(&r.calendar, inst, share).ok().flatten(),
        }?;
        inst.reached_before_pause(at)
    }

    /// What a fired timer does, by its target.
    fn due_action(&self, inst: &Instance) -> Option<ActionKind> {
        let r = self.resolve(inst).ok()?;
        match &self.def(inst).targets[r.target].on_due {
            DueAction::None => None,
            DueAction::Escalate { level } => Some(ActionKind::Escalate { level: *level }),
            DueAction::MoveTo { status, reason } => Some(ActionKind::MoveTo {
                status: *status,
                reason: reason.clone(),
            }),
        }
    }

    fn apply(&mut self, e: &Event) -> Result<(), Violation> {
        let t = e.occurred_at;
        match &e.kind {
            EventKind::StatusChanged { to, .. } => {
                let from = self.status;
                from.check_transition(*to)
                    .map_err(|error| Violation::Transition {
                        from,
                        to: *to,
                        error,
                    })?;
                self.check_guards(*to)?;
                self.status = *to;
                self.signal(
                    t,
                    &[Trigger::LeftStatus(from), Trigger::EnteredStatus(*to)],
                    Some((from, *to)),
                );
            }
            EventKind::Reopened => {
                let from = self.status;
                from.check_reopen().map_err(Violation::Reopen)?;
                self.status = Status::Processing;
                self.cycle += 1;
                self.signal(
                    t,
                    &[
                        Trigger::LeftStatus(from),
                        Trigger::EnteredStatus(Status::Processing),
                        Trigger::Event(EventSignal::Reopened),
                        Trigger::CycleStarted,
                    ],
                    Some((from, Status::Processing)),
                );
            }
            EventKind::AgentResponded => {
                self.signal(t, &[Trigger::Event(EventSignal::AgentResponded)], None)
            }
            EventKind::CustomerReplied => {
                self.signal(t, &[Trigger::Event(EventSignal::CustomerReplied)], None)
            }
            EventKind::TriageCompleted => {
                self.signal(t, &[Trigger::Event(EventSignal::TriageCompleted)], None)
            }
            EventKind::Custom { name } => self.signal(
                t,
                &[Trigger::Event(EventSignal::Custom(name.clone()))],
                None,
            ),
            EventKind::WorkAuthorised => {
                if let Some(role) = &self.ctx.policy.work_authorisation_role
                    && !self.holds(e.actor.contact.as_ref(), role, t)
                {
                    return Err(Violation::NotAuthorised {
                        role: role.clone(),
                        contact: e.actor.contact.clone(),
                    });
                }
                self.signal(t, &[Trigger::Event(EventSignal::WorkAuthorised)], None);
            }
            EventKind::Approved => {
                self.approvals
                    .push((self.cycle, e.actor.contact.clone(), t));
                self.signal(t, &[Trigger::Event(EventSignal::Approved)], None);
            }
            // Re-targeting needs no bookkeeping: the deadlines of clocks still running or
            // paused are resolved from the current priority, estimate and schedule each
            // time they are needed, from each clock's original start, with its own
            // pauses. Clocks whose outcome is final keep the attributes they ended with.
            EventKind::PriorityChanged { to } => {
                if !self.ctx.policy.priorities.contains(to) {
                    return Err(Violation::UnknownPriority(to.clone()));
                }
                self.attrs.priority = Some(to.clone());
            }
            EventKind::EstimateSet { minutes } => {
                if *minutes == 0 {
                    return Err(Violation::ZeroEstimate);
                }
                self.attrs.estimate = Some(*minutes);
            }
            EventKind::ScheduledTimeSet { at } => self.attrs.scheduled_at = Some(*at),
            // Outputs of the fold, never folded (see `fold`).
            EventKind::ClockWarning { .. }
            | EventKind::ClockBreached { .. }
            | EventKind::ActionTaken { .. }
            | EventKind::Retracted { .. } => {}
        }
        Ok(())
    }

    fn holds(&self, contact: Option<&ExternalId>, role: &RoleName, at: DateTime<Utc>) -> bool {
        contact
            .and_then(|c| self.ctx.organization.contact(c))
            .is_some_and(|c| c.holds(role, at))
    }

    fn check_guards(&self, to: Status) -> Result<(), Violation> {
        for g in self
            .ctx
            .policy
            .approval_guards
            .iter()
            .filter(|g| g.to == to)
        {
            let requester = self.ctx.ticket.requested_by.as_ref();
            if g.waived_when_requested_by_role
                && self.holds(requester, &g.role, self.ctx.ticket.received_at)
            {
                continue;
            }
            let approved = self.approvals.iter().any(|(cycle, contact, at)| {
                *cycle == self.cycle && self.holds(contact.as_ref(), &g.role, *at)
            });
            if !approved {
                return Err(Violation::ApprovalMissing {
                    to,
                    role: g.role.clone(),
                });
            }
        }
        Ok(())
    }

    /// Applies what happened at `t` to every clock: cancel, else stop (a stop wins over a
    /// pause), else pause or resume; then starts clocks whose start trigger fired. A clock
    /// stopped without a resolution, or falling due, starts the clocks chained to it.
    fn signal(&mut self, t: DateTime<Utc>, signals: &[Trigger], moved: Option<(Status, Status)>) {
        let mut chained = Vec::new();
        let entered = moved.map(|(_, to)| to);
        let resolution = entered.is_some_and(Status::is_resolution);
        let policy = self.ctx.policy;
        let attrs = &self.attrs;
        for k in 0..self.instances.len() {
            if !self.instances[k].active() {
                continue;
            }
            let def = &policy.clocks[self.instances[k].def];
            let hit = |list: &[Trigger]| signals.iter().find(|s| list.contains(s));
            let end = if entered == Some(Status::Cancelled) {
                Some(EndReason::Cancelled {
                    by: "ticket cancelled".into(),
                })
            } else if let Some(s) = hit(&def.cancel) {
                Some(EndReason::Cancelled { by: s.to_string() })
            } else if let Some(s) = hit(&def.stop) {
                Some(EndReason::Stopped {
                    by: s.to_string(),
                    resolution,
                })
            } else if resolution {
                Some(EndReason::Stopped {
                    by: format!("ticket {}", self.status),
                    resolution: true,
                })
            } else {
                None
            };
            let inst = &mut self.instances[k];
            match end {
                Some(reason) => {
                    if let Some(p) = inst.pauses.last_mut()
                        && p.1.is_none()
                    {
                        p.1 = Some(t);
                    }
                    if matches!(
                        reason,
                        EndReason::Stopped {
                            resolution: false,
                            ..
                        }
                    ) {
                        chained.push(Trigger::TargetStoppedUnresolved(def.metric.clone()));
                    }
                    inst.end = Some((t, reason));
                    inst.frozen.get_or_insert_with(|| attrs.clone());
                }
                None => {
                    if let Some((from, to)) = moved {
                        let (was, now) = (
                            def.pause_statuses.contains(&from),
                            def.pause_statuses.contains(&to),
                        );
                        if !was && now {
                            inst.pauses.push((t, None));
                        } else if was
                            && !now
                            && let Some(p) = inst.pauses.last_mut()
                        {
                            p.1 = Some(t);
                        }
                    }
                }
            }
        }
        if self.status.is_open() {
            for (d, def) in policy.clocks.iter().enumerate() {
                if !self.relevant[d] || !signals.iter().any(|s| def.start.contains(s)) {
                    continue;
                }
                if self.instances.iter().any(|i| i.def == d && i.active()) {
                    continue;
                }
                let seq = self.instances.iter().filter(|i| i.def == d).count() as u32;
                let paused = def.pause_statuses.contains(&self.status);
                let pauses = if paused { vec![(t, None)] } else { Vec::new() };
                self.instances
                    .push(Instance::new(d, self.cycle, seq, t, pauses));
            }
        }
        if !chained.is_empty() {
            self.signal(t, &chained, None);
        }
    }

    /// The attributes a clock resolves with: those it ended with, else the current ones.
    fn attrs_of<'i>(&'i self, inst: &'i Instance) -> &'i Attrs {
        inst.frozen.as_ref().unwrap_or(&self.attrs)
    }

    fn target(&self, def: &'a ClockDefinition, attrs: &Attrs) -> Option<(usize, &'a Target)> {
        let t = self.ctx.ticket;
        def.target_for(t.plan.as_ref(), attrs.priority.as_ref(), &t.request_type)
    }

    /// Resolves a clock's rule for its start with the ticket's attributes (see `attrs_of`).
    fn resolve(&self, inst: &Instance) -> Result<Resolved, NotStartedReason> {
        let attrs = self.attrs_of(inst);
        if let Some((at, resolved)) = &*inst.resolved.borrow()
            && at == attrs
        {
            return resolved.clone();
        }
        let resolved = self.resolve_afresh(inst, attrs);
        *inst.resolved.borrow_mut() = Some((attrs.clone(), resolved.clone()));
        resolved
    }

    fn resolve_afresh(&self, inst: &Instance, attrs: &Attrs) -> Result<Resolved, NotStartedReason> {
        let def = self.def(inst);
        let (index, target) = self
            .target(def, attrs)
            .ok_or_else(|| NotStartedReason::NoTargetForPriority(attrs.priority.clone()))?;
        let (calendar, nominal, fixed) = self.nominal(&target.duration, inst.start, attrs)?;
        let budget = calendar
            .elapsed(inst.start, nominal)
            .map_err(|_| NotStartedReason::OutOfRange)?;
        let used_up = calendar
            .add(inst.start, budget)
            .map_err(|_| NotStartedReason::OutOfRange)?;
        Ok(Resolved {
            target: index,
            calendar,
            budget,
            fixed,
            at_opening: fixed.is_none() && used_up < nominal,
        })
    }

    fn slot(&self, slot: &SlotName) -> Result<&Arc<VersionedCalendar>, NotStartedReason> {
        self.ctx
            .calendars
            .slots
            .get(slot)
            .ok_or_else(|| NotStartedReason::CalendarNotBound(slot.clone()))
    }

    /// The nominal deadline of a rule for a clock starting at `s`, and the calendar the
    /// clock counts on.
    fn nominal(
        &self,
        rule: &DurationRule,
        s: DateTime<Utc>,
        attrs: &Attrs,
    ) -> Result<Nominal, NotStartedReason> {
        let range =
            |r: Result<DateTime<Utc>, TimeError>| r.map_err(|_| NotStartedReason::OutOfRange);
        Ok(match self.leaf(rule, s, attrs)? {
            DurationRule::WallClock { minutes } => (
                ClockCalendar::RealTime,
                range(ClockCalendar::RealTime.add(s, TimeDelta::minutes(i64::from(*minutes))))?,
                None,
            ),
            DurationRule::CalendarDays { days } => (
                ClockCalendar::RealTime,
                range(self.ctx.calendars.zone.add_calendar_days(s, *days))?,
                None,
            ),
            DurationRule::BusinessMinutes { calendar, minutes } => {
                let cal = self.slot(calendar)?;
                (
                    ClockCalendar::Calendar(Arc::clone(cal)),
                    range(cal.add(s, TimeDelta::minutes(i64::from(*minutes))))?,
                    None,
                )
            }
            DurationRule::BusinessDays {
                calendar,
                days,
                mode,
            } => {
                let cal = self.slot(calendar)?;
                (
                    ClockCalendar::Calendar(Arc::clone(cal)),
                    range(cal.at(s).add_business_days(s, *days, (*mode).into()))?,
                    None,
                )
            }
            DurationRule::ScheduledTime => {
                let at = attrs
                    .scheduled_at
                    .ok_or(NotStartedReason::NoScheduledTime)?;
                (ClockCalendar::RealTime, at, Some(at))
            }
            DurationRule::NextWeek { calendar } => {
                let cal = self.slot(calendar)?;
                let version = cal.at(s);
                let today = version
                    .local_date(s)
                    .map_err(|_| NotStartedReason::OutOfRange)?;
                let to_monday = 7 - u64::from(today.weekday().num_days_from_monday());
                let monday = today
                    .checked_add_days(Days::new(to_monday))
                    .ok_or(NotStartedReason::OutOfRange)?;
                (
                    ClockCalendar::Calendar(Arc::clone(cal)),
                    range(version.first_opening_on_or_after(monday))?,
                    None,
                )
            }
            // `leaf` resolved these to one of the rules above.
            DurationRule::ByOpenHours { .. } | DurationRule::ByEstimate { .. } => {
                return Err(NotStartedReason::OutOfRange);
            }
        })
    }

    /// The rule that applies to a clock starting at `s`: a choice between rules (by open
    /// hours, by estimate) resolved to the one chosen.
    fn leaf<'r>(
        &self,
        rule: &'r DurationRule,
        s: DateTime<Utc>,
        attrs: &Attrs,
    ) -> Result<&'r DurationRule, NotStartedReason> {
        match rule {
            DurationRule::ByOpenHours {
                calendar,
                inside,
                outside,
            } => {
                let open = self
                    .slot(calendar)?
                    .is_open(s)
                    .map_err(|_| NotStartedReason::OutOfRange)?;
                self.leaf(if open { inside } else { outside }, s, attrs)
            }
            DurationRule::ByEstimate { buckets } => {
                let estimate = attrs.estimate.ok_or(NotStartedReason::NoEstimate)?;
                let bucket = buckets.iter().find(|b| estimate <= b.up_to_minutes).ok_or(
                    NotStartedReason::NeedsQuote {
                        estimate_minutes: estimate,
                    },
                )?;
                self.leaf(&bucket.duration, s, attrs)
            }
            other => Ok(other),
        }
    }

    /// The clock's deadline with its rule and pauses; `None` while paused (a scheduled
    /// time too: a paused clock reaches nothing) or when it cannot be set.
    fn deadline(&self, inst: &Instance) -> Option<DateTime<Utc>> {
        if let Some(d) = inst.due_at {
            return Some(d);
        }
        let r = self.resolve(inst).ok()?;
        let d = match r.fixed {
            Some(fixed) => fixed,
            None => {
                let used_up = after_running(&r.calendar, inst, r.budget).ok().flatten()?;
                r.anchor(used_up)?
            }
        };
        inst.reached_before_pause(d)
    }

    fn view(&self, as_of: DateTime<Utc>) -> TicketState {
        let mut next_change: Option<DateTime<Utc>> = None;
        let mut note = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t.filter(|t| *t > as_of) {
                next_change = Some(next_change.map_or(t, |n| n.min(t)));
            }
        };
        let mut clocks = Vec::new();
        for inst in &self.instances {
            let def = self.def(inst);
            let v = self.clock_view(inst, def, as_of);
            // A paused clock shows a deadline only when pauses cannot move it.
            if v.active && (!v.paused || v.deadline.is_some()) {
                note(v.deadline);
                for (_, at) in &v.warnings {
                    note(*at);
                }
            }
            clocks.push(v);
        }
        TicketState {
            status: self.status,
            cycle: self.cycle,
            priority: self.attrs.priority.clone(),
            estimate_minutes: self.attrs.estimate,
            scheduled_at: self.attrs.scheduled_at,
            clocks,
            next_change_at: next_change,
            reached: {
                let mut reached = self.reached.clone();
                reached.sort();
                reached
            },
            missing: Vec::new(),
            wrong: Vec::new(),
        }
    }

    fn clock_view(
        &self,
        inst: &Instance,
        def: &ClockDefinition,
        as_of: DateTime<Utc>,
    ) -> ClockView {
        let until = inst.end.as_ref().map_or(as_of, |(t, _)| *t).max(inst.start);
        // Pauses as seen at `until`: an open pause counts up to then.
        let pauses_until: Vec<(DateTime<Utc>, DateTime<Utc>)> = inst
            .pauses
            .iter()
            .filter(|(from, _)| *from < until)
            .map(|(from, to)| (*from, to.map_or(until, |t| t.min(until))))
            .collect();
        let mut v = ClockView {
            metric: def.metric.clone(),
            kind: def.kind,
            cycle: inst.cycle,
            instance: inst.seq,
            target_index: None,
            rule: None,
            state: ClockState::NotStarted,
            active: inst.active(),
            paused: inst.active() && inst.paused(),
            not_started: None,
            started_at: inst.start,
            ended_at: inst.end.as_ref().map(|(t, _)| *t),
            end_reason: inst.end.as_ref().map(|(_, r)| r.clone()),
            deadline: None,
            deadline_if_resumed: None,
            budget: None,
            elapsed: TimeDelta::zero(),
            remaining: None,
            paused_time: TimeDelta::zero(),
            pauses: inst.pauses.clone(),
            warnings: Vec::new(),
            warning_level: 0,
            breached_at: None,
        };
        let resolved = match self.resolve(inst) {
            Ok(r) => r,
            Err(reason) => {
                v.not_started = Some(reason);
                if let Some((_, EndReason::Cancelled { .. })) = &inst.end {
                    v.state = ClockState::Cancelled;
                }
                return v;
            }
        };
        let cal = &resolved.calendar;
        let paused_time: TimeDelta = pauses_until
            .iter()
            .map(|(a, b)| cal.elapsed(*a, *b).unwrap_or_default())
            .sum();
        let gross = cal.elapsed(inst.start, until).unwrap_or_default();
        let elapsed = if resolved.fixed.is_some() {
            (until - inst.start).max(TimeDelta::zero())
        } else {
            gross - paused_time
        };
        let deadline = self.deadline(inst);
        v.target_index = Some(resolved.target);
        v.rule = self
            .leaf(
                &def.targets[resolved.target].duration,
                inst.start,
                self.attrs_of(inst),
            )
            .ok()
            .cloned();
        v.budget = Some(resolved.budget);
        v.elapsed = elapsed;
        v.paused_time = paused_time;
        v.remaining = Some(resolved.budget - elapsed);
        v.breached_at = inst
            .due_at
            .or(deadline.filter(|d| *d < until && def.kind == ClockKind::Promise));
        let target = &def.targets[resolved.target];
        v.warnings = target
            .warnings
            .iter()
            .map(|p| {
                let at = inst
                    .crossed(*p)
                    .or_else(|| self.warning_at(inst, &resolved, *p));
                (*p, at)
            })
            .collect();
        v.warning_level = inst.warned.iter().map(|(p, _)| *p).max().unwrap_or(0);
        v.deadline = if v.paused && v.breached_at.is_none() {
            None
        } else {
            deadline
        };
        if v.paused && v.breached_at.is_none() {
            v.deadline_if_resumed = match resolved.fixed {
                Some(fixed) => Some(fixed),
                None => {
                    let left = (resolved.budget - elapsed).max(TimeDelta::zero());
                    resolved.due_after(as_of.max(inst.start), left)
                }
            };
        }
        v.state = match (&inst.end, def.kind) {
            // Cancelling does not erase a promise already broken.
            (Some((_, EndReason::Cancelled { .. })), ClockKind::Promise)
                if inst.due_at.is_some() =>
            {
                ClockState::Breached
            }
            (Some((_, EndReason::Cancelled { .. })), _) => ClockState::Cancelled,
            (Some((_, EndReason::Fired)), _) => ClockState::Fired,
            (Some((at, EndReason::Stopped { .. })), ClockKind::Promise) => {
                if deadline.is_some_and(|d| *at <= d) && inst.due_at.is_none() {
                    ClockState::Met
                } else {
                    ClockState::Breached
                }
            }
            (Some((_, EndReason::Stopped { .. })), ClockKind::Timer) => ClockState::Stopped,
            (None, ClockKind::Promise)
                if v.breached_at.is_some_and(|b| b < as_of) || inst.due_at.is_some() =>
            {
                ClockState::Breached
            }
            (None, _) if v.paused => ClockState::Paused,
            (None, _) => ClockState::Running,
        };
        v
    }
}

/// The earliest instant at which `amount` of running open time has passed since the
/// clock's start, with its pauses not counting; `None` when an open-ended pause comes
/// first. The closed pauses are counted once (see [`RunningPrefix`]), and only as far as
/// `amount` needs: what a count of them all from the start would give, error included.
fn after_running(
    cal: &ClockCalendar,
    inst: &Instance,
    amount: TimeDelta,
) -> Result<Option<DateTime<Utc>>, TimeError> {
    let start = inst.start;
    if amount <= TimeDelta::zero() {
        return Ok(Some(start));
    }
    let pauses = &inst.pauses;
    let mut memo = inst.running.borrow_mut();
    let same = matches!(&memo.basis, Some((c, s)) if c.same(cal) && *s == start);
    if !same {
        *memo = RunningPrefix {
            basis: Some((cal.clone(), start)),
            ..RunningPrefix::default()
        };
    }
    let asked: Pauses = (pauses.len(), pauses.last().copied());
    if let Some((_, _, answer)) = memo
        .answers
        .iter()
        .find(|(a, p, _)| *a == amount && *p == asked)
    {
        return answer.clone();
    }
    let answer = count_running(cal, start, pauses, amount, &mut memo);
    if memo.answers.len() >= KEPT_ANSWERS {
        memo.answers.clear();
    }
    memo.answers.push((amount, asked, answer.clone()));
    answer
}

fn count_running(
    cal: &ClockCalendar,
    start: DateTime<Utc>,
    pauses: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    amount: TimeDelta,
    memo: &mut RunningPrefix,
) -> Result<Option<DateTime<Utc>>, TimeError> {
    let closed = match pauses.last() {
        Some((_, None)) => pauses.len() - 1,
        _ => pauses.len(),
    };
    while memo.steps.len() < closed && memo.used < amount {
        let (from, to) = pauses[memo.steps.len()];
        let cursor = memo.cursor.unwrap_or(start);
        let here = cal.elapsed(cursor, from.max(cursor))?;
        let used = memo.used;
        memo.steps.push((cursor, used, used + here));
        memo.used = used + here;
        memo.cursor = Some(to.map_or(cursor, |to| cursor.max(to)));
    }
    // The first counted pause the amount is used up before.
    let i = memo
        .steps
        .partition_point(|(_, _, through)| *through < amount);
    if let Some((cursor, before, _)) = memo.steps.get(i) {
        return cal.add(*cursor, amount - *before).map(Some);
    }
    let cursor = memo.cursor.unwrap_or(start);
    let left = amount - memo.used;
    if let Some((from, None)) = pauses.get(closed) {
        let here = cal.elapsed(cursor, (*from).max(cursor))?;
        if here >= left {
            return cal.add(cursor, left).map(Some);
        }
        return Ok(None);
    }
    cal.add(cursor, left).map(Some)
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "clock_props.rs"]
mod props;
