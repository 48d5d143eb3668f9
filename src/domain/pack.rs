//! Policy packs: a contract's calendars, SLA policy and hour plans in one TOML file, each
//! target quoting the sentence it enforces. The format is documented in `docs/packs.md`.
//!
//! Parsing turns the file into the same domain values the API builds (checked the same
//! way), so a pack can express exactly what the API can.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;

use super::calendar::{CalendarSpec, Hours, Window, parse_zone};
use super::ledger::{
    ActivityKind, BucketName, BucketTerms, Currency, FreeActivity, Frequency, Overage, PeriodUnit,
    Plan, Rollover,
};
use super::names::{
    CustomEventName, MetricName, PlanName, PriorityLabel, RequestType, ResourceId, RoleName,
    ShortText, SlotName,
};
use super::policy::{
    Applicability, ApprovalGuard, BusinessDays, ClockDefinition, ClockKind, DueAction,
    DurationRule, EstimateBucket, EventSignal, Policy, Target, Trigger,
};
use super::status::Status;

/// A parsed pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    pub name: ResourceId,
    pub title: String,
    pub source: String,
    pub calendars: Vec<PackCalendar>,
    pub policy: Policy,
    /// The quoted source of each of `policy.approval_guards`, in order (an approval guard
    /// has no source field of its own): the quote, then ` (reading: ...)` if there is one.
    pub guard_sources: Vec<String>,
    pub plans: Vec<PackPlan>,
}

/// A calendar slot with its default definition (an organisation overrides zone, hours
/// and holidays when it binds the slot).
#[derive(Debug, Clone, PartialEq)]
pub struct PackCalendar {
    pub slot: SlotName,
    pub spec: CalendarSpec,
    /// Where the source is silent: the reading the pack takes.
    pub reading: String,
}

/// An hour plan, named after the SLA plan it belongs to (`tier-3`).
#[derive(Debug, Clone, PartialEq)]
pub struct PackPlan {
    pub plan: Plan,
    pub reading: String,
    /// The quoted source of each of `plan.buckets`, in order, as for targets.
    pub bucket_sources: Vec<String>,
}

impl Pack {
    /// The id of a slot's calendar resource: `{pack}-{slot}`.
    pub fn calendar_id(&self, slot: &SlotName) -> Result<ResourceId, PackError> {
        let id = format!(
            "{}-{}",
            self.name,
            slot.as_str().to_ascii_lowercase().replace(['_', '.'], "-")
        );
        ResourceId::parse(&id).map_err(|e| PackError::at("calendars", e.to_string()))
    }

    /// The id of an hour plan resource: `{pack}-{plan}`.
    pub fn plan_id(&self, plan: &PlanName) -> Result<ResourceId, PackError> {
        let id = format!(
            "{}-{}",
            self.name,
            plan.as_str().to_ascii_lowercase().replace(['_', '.'], "-")
        );
        ResourceId::parse(&id).map_err(|e| PackError::at("plans", e.to_string()))
    }
}

/// What is wrong with a pack, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PackError {
    pub path: String,
    pub reason: String,
}

impl PackError {
    fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        PackError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------- the file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    pack: Header,
    #[serde(default)]
    calendars: BTreeMap<String, CalendarFile>,
    policy: PolicyFile,
    #[serde(default)]
    plans: Vec<PlanFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    title: String,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    time_zone: String,
    #[serde(default)]
    always_open: bool,
    /// Windows for Monday to Friday.
    #[serde(default)]
    weekdays: Vec<String>,
    /// Windows per day: `mon = ["09:00-17:00"]`.
    #[serde(default)]
    days: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    reading: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    work_authorisation_role: Option<String>,
    #[serde(default)]
    approval_guards: Vec<GuardFile>,
    clocks: Vec<ClockFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardFile {
    to: String,
    role: String,
    #[serde(default)]
    waived_when_requested_by_role: bool,
    /// The contract's sentence, verbatim.
    quote: String,
    #[serde(default)]
    reading: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockFile {
    metric: String,
    #[serde(default = "promise")]
    kind: String,
    start: Vec<String>,
    #[serde(default)]
    stop: Vec<String>,
    #[serde(default)]
    cancel: Vec<String>,
    /// Statuses that pause it; absent means `["REQUIRES_DELIVERABLES"]`.
    #[serde(default)]
    pause: Option<Vec<String>>,
    targets: Vec<TargetFile>,
}

fn promise() -> String {
    "promise".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    #[serde(default)]
    plans: Vec<String>,
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    request_types: Vec<String>,
    duration: DurationFile,
    #[serde(default)]
    warnings: Vec<u8>,
    #[serde(default)]
    escalate_to_level: Option<u32>,
    #[serde(default)]
    move_to: Option<String>,
    #[serde(default)]
    move_reason: Option<String>,
    /// The contract's sentence, verbatim.
    quote: String,
    /// Where the contract is silent or ambiguous: the reading this target takes.
    #[serde(default)]
    reading: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DurationFile {
    wall_clock_minutes: Option<u32>,
    calendar_days: Option<u32>,
    business_minutes: Option<u32>,
    business_days: Option<u32>,
    #[serde(default)]
    mode: Option<String>,
    calendar: Option<String>,
    #[serde(default)]
    scheduled_time: bool,
    next_week: Option<String>,
    open_hours: Option<String>,
    inside: Option<Box<DurationFile>>,
    outside: Option<Box<DurationFile>>,
    by_estimate: Option<Vec<BucketFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketFile {
    up_to_minutes: u32,
    duration: DurationFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: String,
    #[serde(default)]
    reading: String,
    buckets: Vec<HourBucketFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HourBucketFile {
    bucket: String,
    period: String,
    allowance_minutes: u32,
    #[serde(default)]
    rollover: Option<String>,
    #[serde(default)]
    rollover_minutes: Option<u32>,
    #[serde(default)]
    rollover_periods: Option<u32>,
    /// `reject` or `bill`.
    #[serde(default)]
    overage: Option<String>,
    #[serde(default)]
    rate_minor_units_per_hour: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    rounding_increment_minutes: Option<u32>,
    #[serde(default)]
    free_activities: Vec<FreeFile>,
    #[serde(default)]
    requires_authorisation: bool,
    #[serde(default)]
    prorate_mid_period: bool,
    #[serde(default)]
    grace_hours: Option<u32>,
    /// The contract's sentence, verbatim.
    quote: String,
    #[serde(default)]
    reading: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreeFile {
    kind: String,
    per_occurrence_cap_minutes: u32,
    frequency: String,
    #[serde(default = "one")]
    max_per_frequency: u32,
}

fn one() -> u32 {
    1
}

// ---------------------------------------------------------------- parsing

fn name<T, E: std::fmt::Display>(path: &str, r: Result<T, E>) -> Result<T, PackError> {
    r.map_err(|e| PackError::at(path, e.to_string()))
}

/// A quoted source: the contract's words, then the reading taken where it is silent.
fn source(path: &str, quote: &str, reading: &str) -> Result<String, PackError> {
    if quote.trim().is_empty() {
        return Err(PackError::at(
            format!("{path}.quote"),
            "every target, guard and hour bucket quotes the contract sentence it enforces",
        ));
    }
    Ok(if reading.trim().is_empty() {
        quote.to_string()
    } else {
        format!("{quote} (reading: {reading})")
    })
}

fn status(path: &str, s: &str) -> Result<Status, PackError> {
    s.parse()
        .map_err(|()| PackError::at(path, format!("unknown status {s:?}")))
}

fn trigger(path: &str, s: &str) -> Result<Trigger, PackError> {
    let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
    Ok(match (kind, arg) {
        ("received", "") => Trigger::Received,
        ("cycle_started", "") => Trigger::CycleStarted,
        ("entered", st) => Trigger::EnteredStatus(status(path, st)?),
        ("left", st) => Trigger::LeftStatus(status(path, st)?),
        ("event", "agent_responded") => Trigger::Event(EventSignal::AgentResponded),
        ("event", "customer_replied") => Trigger::Event(EventSignal::CustomerReplied),
        ("event", "work_authorised") => Trigger::Event(EventSignal::WorkAuthorised),
        ("event", "approved") => Trigger::Event(EventSignal::Approved),
        ("event", "triage_completed") => Trigger::Event(EventSignal::TriageCompleted),
        ("event", "reopened") => Trigger::Event(EventSignal::Reopened),
        ("custom", n) => {
            Trigger::Event(EventSignal::Custom(name(path, CustomEventName::parse(n))?))
        }
        ("due", m) => Trigger::TargetDue(name(path, MetricName::parse(m))?),
        ("stopped_unresolved", m) => {
            Trigger::TargetStoppedUnresolved(name(path, MetricName::parse(m))?)
        }
        _ => {
            return Err(PackError::at(
                path,
                format!(
                    "unknown trigger {s:?}: received, cycle_started, entered:STATUS, left:STATUS, event:NAME, \
                     custom:NAME, due:METRIC, stopped_unresolved:METRIC"
                ),
            ));
        }
    })
}

fn duration(path: &str, d: &DurationFile, depth: usize) -> Result<DurationRule, PackError> {
    if depth > 3 {
        return Err(PackError::at(path, "durations nest at most 3 deep"));
    }
    let slot = |p: &str| -> Result<SlotName, PackError> {
        let c = d.calendar.as_deref().ok_or_else(|| {
            PackError::at(format!("{path}.calendar"), "is required for this duration")
        })?;
        name(p, SlotName::parse(c))
    };
    let mode = || -> Result<BusinessDays, PackError> {
        match d.mode.as_deref() {
            None | Some("same_time") => Ok(BusinessDays::SameTime),
            Some("end_of_day") => Ok(BusinessDays::EndOfDay),
            Some(m) => Err(PackError::at(
                format!("{path}.mode"),
                format!("{m:?}: same_time or end_of_day"),
            )),
        }
    };
    let rules = [
        d.wall_clock_minutes.is_some(),
        d.calendar_days.is_some(),
        d.business_minutes.is_some(),
        d.business_days.is_some(),
        d.scheduled_time,
        d.next_week.is_some(),
        d.open_hours.is_some(),
        d.by_estimate.is_some(),
    ];
    if rules.iter().filter(|r| **r).count() != 1 {
        return Err(PackError::at(
            path,
            "set exactly one of wall_clock_minutes, calendar_days, business_minutes, business_days, scheduled_time, \
             next_week, open_hours, by_estimate",
        ));
    }
    // A field that only goes with another rule is refused, not silently ignored.
    let business = d.business_minutes.is_some() || d.business_days.is_some();
    let stray = [
        (
            "calendar",
            d.calendar.is_some() && !business,
            "business_minutes or business_days",
        ),
        (
            "mode",
            d.mode.is_some() && d.business_days.is_none(),
            "business_days",
        ),
        (
            "inside",
            d.inside.is_some() && d.open_hours.is_none(),
            "open_hours",
        ),
        (
            "outside",
            d.outside.is_some() && d.open_hours.is_none(),
            "open_hours",
        ),
    ];
    if let Some((field, _, with)) = stray.iter().find(|(_, bad, _)| *bad) {
        return Err(PackError::at(
            format!("{path}.{field}"),
            format!("is only used with {with}"),
        ));
    }
    Ok(if let Some(minutes) = d.wall_clock_minutes {
        DurationRule::WallClock { minutes }
    } else if let Some(days) = d.calendar_days {
        DurationRule::CalendarDays { days }
    } else if let Some(minutes) = d.business_minutes {
        DurationRule::BusinessMinutes {
            calendar: slot(path)?,
            minutes,
        }
    } else if let Some(days) = d.business_days {
        DurationRule::BusinessDays {
            calendar: slot(path)?,
            days,
            mode: mode()?,
        }
    } else if d.scheduled_time {
        DurationRule::ScheduledTime
    } else if let Some(c) = &d.next_week {
        DurationRule::NextWeek {
            calendar: name(&format!("{path}.next_week"), SlotName::parse(c))?,
        }
    } else if let Some(c) = &d.open_hours {
        let inside = d.inside.as_deref().ok_or_else(|| {
            PackError::at(format!("{path}.inside"), "is required with open_hours")
        })?;
        let outside = d.outside.as_deref().ok_or_else(|| {
            PackError::at(format!("{path}.outside"), "is required with open_hours")
        })?;
        DurationRule::ByOpenHours {
            calendar: name(&format!("{path}.open_hours"), SlotName::parse(c))?,
            inside: Box::new(duration(&format!("{path}.inside"), inside, depth + 1)?),
            outside: Box::new(duration(&format!("{path}.outside"), outside, depth + 1)?),
        }
    } else {
        let buckets = d.by_estimate.as_deref().unwrap_or_default();
        DurationRule::ByEstimate {
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    Ok(EstimateBucket {
                        up_to_minutes: b.up_to_minutes,
                        duration: duration(
                            &format!("{path}.by_estimate[{i}].duration"),
                            &b.duration,
                            depth + 1,
                        )?,
                    })
                })
                .collect::<Result<_, PackError>>()?,
        }
    })
}

fn windows(path: &str, list: &[String]) -> Result<Vec<Window>, PackError> {
    list.iter()
        .enumerate()
        .map(|(i, w)| name(&format!("{path}[{i}]"), Window::parse(w)))
        .collect()
}

fn calendar(slot: &str, c: &CalendarFile) -> Result<PackCalendar, PackError> {
    let path = format!("calendars.{slot}");
    let zone = name(&format!("{path}.time_zone"), parse_zone(&c.time_zone))?;
    let hours = if c.always_open {
        if !c.weekdays.is_empty() || !c.days.is_empty() {
            return Err(PackError::at(
                &path,
                "an always_open calendar has no weekdays or days",
            ));
        }
        Hours::AlwaysOpen
    } else {
        let mut week: [Vec<Window>; 7] = Default::default();
        let weekdays = windows(&format!("{path}.weekdays"), &c.weekdays)?;
        for day in week.iter_mut().take(5) {
            *day = weekdays.clone();
        }
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (d, list) in &c.days {
            let i = DAYS.iter().position(|x| x == d).ok_or_else(|| {
                PackError::at(
                    format!("{path}.days.{d}"),
                    "days are mon, tue, wed, thu, fri, sat, sun",
                )
            })?;
            week[i] = windows(&format!("{path}.days.{d}"), list)?;
        }
        Hours::Weekly(week)
    };
    let spec = name(
        &path,
        CalendarSpec::new(zone, hours, Vec::<NaiveDate>::new(), Vec::new()),
    )?;
    Ok(PackCalendar {
        slot: name(&path, SlotName::parse(slot))?,
        spec,
        reading: c.reading.clone(),
    })
}

fn target(path: &str, t: &TargetFile) -> Result<Target, PackError> {
    let on_due = match (&t.escalate_to_level, &t.move_to) {
        (None, None) if t.move_reason.is_some() => {
            return Err(PackError::at(
                format!("{path}.move_reason"),
                "is only used with move_to",
            ));
        }
        (None, None) => DueAction::None,
        (Some(0), None) => {
            return Err(PackError::at(
                format!("{path}.escalate_to_level"),
                "levels start at 1",
            ));
        }
        (Some(level), None) => DueAction::Escalate { level: *level },
        (None, Some(to)) => DueAction::MoveTo {
            status: status(&format!("{path}.move_to"), to)?,
            reason: name(
                &format!("{path}.move_reason"),
                ShortText::parse(t.move_reason.as_deref().unwrap_or("moved when due")),
            )?,
        },
        (Some(_), Some(_)) => {
            return Err(PackError::at(
                path,
                "escalate_to_level and move_to exclude each other",
            ));
        }
    };
    let source = source(path, &t.quote, &t.reading)?;
    Ok(Target {
        applies: Applicability {
            plans: t
                .plans
                .iter()
                .map(|p| name(&format!("{path}.plans"), PlanName::parse(p)))
                .collect::<Result<_, _>>()?,
            priorities: t
                .priorities
                .iter()
                .map(|p| name(&format!("{path}.priorities"), PriorityLabel::parse(p)))
                .collect::<Result<_, _>>()?,
            request_types: t
                .request_types
                .iter()
                .map(|p| name(&format!("{path}.request_types"), RequestType::parse(p)))
                .collect::<Result<_, _>>()?,
        },
        duration: duration(&format!("{path}.duration"), &t.duration, 0)?,
        warnings: t.warnings.clone(),
        on_due,
        source,
    })
}

fn clock(i: usize, c: &ClockFile) -> Result<ClockDefinition, PackError> {
    let path = format!("policy.clocks[{i}]");
    let triggers = |field: &str, v: &[String]| -> Result<Vec<Trigger>, PackError> {
        v.iter()
            .enumerate()
            .map(|(k, t)| trigger(&format!("{path}.{field}[{k}]"), t))
            .collect()
    };
    Ok(ClockDefinition {
        metric: name(&format!("{path}.metric"), MetricName::parse(&c.metric))?,
        kind: match c.kind.as_str() {
            "promise" => ClockKind::Promise,
            "timer" => ClockKind::Timer,
            k => {
                return Err(PackError::at(
                    format!("{path}.kind"),
                    format!("{k:?}: promise or timer"),
                ));
            }
        },
        start: triggers("start", &c.start)?,
        stop: triggers("stop", &c.stop)?,
        cancel: triggers("cancel", &c.cancel)?,
        pause_statuses: match &c.pause {
            None => vec![Status::RequiresDeliverables],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(k, s)| status(&format!("{path}.pause[{k}]"), s))
                .collect::<Result<_, _>>()?,
        },
        targets: c
            .targets
            .iter()
            .enumerate()
            .map(|(k, t)| target(&format!("{path}.targets[{k}]"), t))
            .collect::<Result<_, _>>()?,
    })
}

fn plan(i: usize, p: &PlanFile) -> Result<PackPlan, PackError> {
    let path = format!("plans[{i}]");
    let mut buckets = Vec::new();
    let mut sources = Vec::new();
    for (k, b) in p.buckets.iter().enumerate() {
        let bp = format!("{path}.buckets[{k}]");
        let unit = match b.period.as_str() {
            "month" => PeriodUnit::Month,
            "year" => PeriodUnit::Year,
            u => {
                return Err(PackError::at(
                    format!("{bp}.period"),
                    format!("{u:?}: month or year"),
                ));
            }
        };
        let mut t = BucketTerms::new(
            name(&format!("{bp}.bucket"), BucketName::parse(&b.bucket))?,
            unit,
            b.allowance_minutes,
        );
        let only = |field: &str, set: bool, with: &str| -> Result<(), PackError> {
            if set {
                return Err(PackError::at(
                    format!("{bp}.{field}"),
                    format!("is only used with {with}"),
                ));
            }
            Ok(())
        };
        let rollover = b.rollover.as_deref().unwrap_or("none");
        only(
            "rollover_minutes",
            b.rollover_minutes.is_some() && rollover != "capped",
            "rollover = \"capped\"",
        )?;
        only(
            "rollover_periods",
            b.rollover_periods.is_some() && rollover != "expiring",
            "rollover = \"expiring\"",
        )?;
        let bill = b.overage.as_deref() == Some("bill");
        only(
            "rate_minor_units_per_hour",
            b.rate_minor_units_per_hour.is_some() && !bill,
            "overage = \"bill\"",
        )?;
        only(
            "currency",
            b.currency.is_some() && !bill,
            "overage = \"bill\"",
        )?;
        t.rollover = match b.rollover.as_deref() {
            None | Some("none") => Rollover::None,
            Some("all") => Rollover::All,
            Some("capped") => Rollover::Capped {
                minutes: b.rollover_minutes.ok_or_else(|| {
                    PackError::at(format!("{bp}.rollover_minutes"), "is required with capped")
                })?,
            },
            Some("expiring") => Rollover::Expiring {
                periods: b.rollover_periods.ok_or_else(|| {
                    PackError::at(
                        format!("{bp}.rollover_periods"),
                        "is required with expiring",
                    )
                })?,
            },
            Some(r) => {
                return Err(PackError::at(
                    format!("{bp}.rollover"),
                    format!("{r:?}: none, all, capped, expiring"),
                ));
            }
        };
        t.overage = match b.overage.as_deref() {
            None | Some("reject") => Overage::Reject,
            Some("bill") => Overage::Bill {
                rate_minor_units_per_hour: b.rate_minor_units_per_hour.ok_or_else(|| {
                    PackError::at(
                        format!("{bp}.rate_minor_units_per_hour"),
                        "is required with bill",
                    )
                })?,
                currency: name(
                    &format!("{bp}.currency"),
                    Currency::parse(b.currency.as_deref().unwrap_or_default()),
                )?,
            },
            Some(o) => {
                return Err(PackError::at(
                    format!("{bp}.overage"),
                    format!("{o:?}: reject or bill"),
                ));
            }
        };
        t.rounding_increment_minutes = b.rounding_increment_minutes.unwrap_or(1).max(1);
        t.requires_authorisation = b.requires_authorisation;
        t.prorate_mid_period = b.prorate_mid_period;
        if let Some(g) = b.grace_hours {
            t.grace_hours = g;
        }
        t.free_activities = b
            .free_activities
            .iter()
            .enumerate()
            .map(|(j, f)| {
                let fp = format!("{bp}.free_activities[{j}]");
                Ok(FreeActivity {
                    kind: name(&format!("{fp}.kind"), ActivityKind::parse(&f.kind))?,
                    per_occurrence_cap_minutes: f.per_occurrence_cap_minutes,
                    frequency: match f.frequency.as_str() {
                        "iso_week" => Frequency::PerIsoWeek,
                        "month" => Frequency::PerMonth,
                        "quarter" => Frequency::PerCalendarQuarter,
                        "period" => Frequency::PerPeriod,
                        q => {
                            return Err(PackError::at(
                                format!("{fp}.frequency"),
                                format!("{q:?}: iso_week, month, quarter, period"),
                            ));
                        }
                    },
                    max_per_frequency: f.max_per_frequency,
                })
            })
            .collect::<Result<_, PackError>>()?;
        buckets.push(t);
        sources.push(source(&bp, &b.quote, &b.reading)?);
    }
    let plan = Plan {
        name: name(&format!("{path}.name"), PlanName::parse(&p.name))?,
        buckets,
    };
    plan.check()
        .map_err(|e| PackError::at(&path, e.to_string()))?;
    Ok(PackPlan {
        plan,
        reading: p.reading.clone(),
        bucket_sources: sources,
    })
}

/// Parses and checks a pack.
pub fn parse(text: &str) -> Result<Pack, PackError> {
    let f: File = toml::from_str(text).map_err(|e| PackError::at("pack", e.to_string()))?;
    let policy = Policy {
        priorities: f
            .policy
            .priorities
            .iter()
            .map(|p| name("policy.priorities", PriorityLabel::parse(p)))
            .collect::<Result<_, _>>()?,
        clocks: f
            .policy
            .clocks
            .iter()
            .enumerate()
            .map(|(i, c)| clock(i, c))
            .collect::<Result<_, _>>()?,
        approval_guards: f
            .policy
            .approval_guards
            .iter()
            .enumerate()
            .map(|(i, g)| {
                Ok(ApprovalGuard {
                    to: status(&format!("policy.approval_guards[{i}].to"), &g.to)?,
                    role: name(
                        &format!("policy.approval_guards[{i}].role"),
                        RoleName::parse(&g.role),
                    )?,
                    waived_when_requested_by_role: g.waived_when_requested_by_role,
                })
            })
            .collect::<Result<_, PackError>>()?,
        work_authorisation_role: f
            .policy
            .work_authorisation_role
            .as_deref()
            .map(|r| name("policy.work_authorisation_role", RoleName::parse(r)))
            .transpose()?,
    };
    if let Err(errors) = policy.check() {
        let first = errors.into_iter().next();
        return Err(first.map_or_else(
            || PackError::at("policy", "invalid"),
            |e| PackError::at(format!("policy.{}", e.path), e.reason),
        ));
    }
    let calendars: Vec<PackCalendar> = f
        .calendars
        .iter()
        .map(|(slot, c)| calendar(slot, c))
        .collect::<Result<_, _>>()?;
    for slot in policy.calendar_slots() {
        if !calendars.iter().any(|c| c.slot == slot) {
            return Err(PackError::at(
                "calendars",
                format!("the policy counts on the slot {slot}, which the pack does not define"),
            ));
        }
    }
    let guard_sources = f
        .policy
        .approval_guards
        .iter()
        .enumerate()
        .map(|(i, g)| {
            source(
                &format!("policy.approval_guards[{i}]"),
                &g.quote,
                &g.reading,
            )
        })
        .collect::<Result<_, _>>()?;
    let plans: Vec<PackPlan> = f
        .plans
        .iter()
        .enumerate()
        .map(|(i, p)| plan(i, p))
        .collect::<Result<_, _>>()?;
    for (i, p) in plans.iter().enumerate() {
        if plans[..i].iter().any(|o| o.plan.name == p.plan.name) {
            return Err(PackError::at(
                format!("plans[{i}].name"),
                format!("the plan {} is defined twice", p.plan.name),
            ));
        }
    }
    Ok(Pack {
        name: name("pack.name", ResourceId::parse(&f.pack.name))?,
        title: f.pack.title,
        source: f.pack.source,
        calendars,
        policy,
        guard_sources,
        plans,
    })
}

/// The packs embedded in the binary, by name.
pub const EMBEDDED: [(&str, &str); 5] = [
    ("concinnity", include_str!("../../policies/concinnity.toml")),
    (
        "priority-matrix",
        include_str!("../../policies/priority-matrix.toml"),
    ),
    ("contently", include_str!("../../policies/contently.toml")),
    ("clevr", include_str!("../../policies/clevr.toml")),
    ("24social", include_str!("../../policies/24social.toml")),
];

/// An embedded pack's text.
pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ------------------------------------------------------------ building the expected

    fn slot(s: &str) -> SlotName {
        SlotName::parse(s).expect("slot")
    }

    fn wall(minutes: u32) -> DurationRule {
        DurationRule::WallClock { minutes }
    }

    fn bminutes(calendar: &str, minutes: u32) -> DurationRule {
        DurationRule::BusinessMinutes {
            calendar: slot(calendar),
            minutes,
        }
    }

    fn bdays(calendar: &str, days: u32, mode: BusinessDays) -> DurationRule {
        DurationRule::BusinessDays {
            calendar: slot(calendar),
            days,
            mode,
        }
    }

    fn entered(s: Status) -> Trigger {
        Trigger::EnteredStatus(s)
    }

    fn metric(m: &str) -> MetricName {
        MetricName::parse(m).expect("metric")
    }

    fn target(
        plans: &[&str],
        priorities: &[&str],
        types: &[&str],
        duration: DurationRule,
    ) -> Target {
        Target {
            applies: Applicability {
                plans: plans
                    .iter()
                    .map(|p| PlanName::parse(p).expect("plan"))
                    .collect(),
                priorities: priorities
                    .iter()
                    .map(|p| PriorityLabel::parse(p).expect("priority"))
                    .collect(),
                request_types: types
                    .iter()
                    .map(|t| RequestType::parse(t).expect("type"))
                    .collect(),
            },
            duration,
            warnings: vec![],
            on_due: DueAction::None,
            source: String::new(),
        }
    }

    fn promise(
        m: &str,
        start: Vec<Trigger>,
        stop: Vec<Trigger>,
        targets: Vec<Target>,
    ) -> ClockDefinition {
        ClockDefinition {
            metric: metric(m),
            kind: ClockKind::Promise,
            start,
            stop,
            cancel: vec![],
            pause_statuses: vec![Status::RequiresDeliverables],
            targets,
        }
    }

    fn labels(v: &[&str]) -> Vec<PriorityLabel> {
        v.iter()
            .map(|p| PriorityLabel::parse(p).expect("priority"))
            .collect()
    }

    fn pack(name: &str) -> Pack {
        parse(embedded(name).expect("embedded")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The policy with every target's source blanked: the sources are checked apart.
    fn without_sources(mut p: Policy) -> Policy {
        for c in &mut p.clocks {
            for t in &mut c.targets {
                t.source.clear();
            }
        }
        p
    }

    fn weekdays(zone: chrono_tz::Tz, window: &str) -> CalendarSpec {
        let w = Window::parse(window).expect("window");
        let mut week: [Vec<Window>; 7] = Default::default();
        for d in week.iter_mut().take(5) {
            d.push(w);
        }
        CalendarSpec::new(zone, Hours::Weekly(week), Vec::new(), Vec::new()).expect("calendar")
    }

    fn calendars(p: &Pack) -> Vec<(&str, &CalendarSpec)> {
        p.calendars
            .iter()
            .map(|c| (c.slot.as_str(), &c.spec))
            .collect()
    }

    fn bucket(name: &str, period: PeriodUnit, allowance: u32) -> BucketTerms {
        BucketTerms::new(BucketName::parse(name).expect("bucket"), period, allowance)
    }

    fn plans(p: &Pack) -> Vec<Plan> {
        p.plans.iter().map(|p| p.plan.clone()).collect()
    }

    // ------------------------------------------------------------ the five packs

    #[test]
    fn every_embedded_pack_parses_and_quotes_its_contract() {
        for (name, text) in EMBEDDED {
            let pack = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(pack.name.as_str(), name);
            assert!(
                pack.source.ends_with(".txt"),
                "{name}: source names the seed file"
            );
            for c in &pack.policy.clocks {
                for t in &c.targets {
                    assert!(
                        !t.source.trim().is_empty(),
                        "{name}: {} has a target without a quote",
                        c.metric
                    );
                }
            }
            assert_eq!(
                pack.guard_sources.len(),
                pack.policy.approval_guards.len(),
                "{name}"
            );
            for p in &pack.plans {
                assert_eq!(
                    p.bucket_sources.len(),
                    p.plan.buckets.len(),
                    "{name}: {}",
                    p.plan.name
                );
            }
            for c in &pack.calendars {
                assert!(
                    c.spec.holidays().is_empty(),
                    "{name}: packs ship no holidays"
                );
                assert!(
                    !c.reading.is_empty(),
                    "{name}: calendar {} says which reading it takes",
                    c.slot
                );
            }
        }
    }

    /// Every quote is a verbatim fragment of its contract (the source documents are kept
    /// in `policies/sources/`).
    #[test]
    fn quotes_are_verbatim_from_the_seed_contracts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sources");
        let quote = |source: &str| {
            source
                .split(" (reading: ")
                .next()
                .unwrap_or_default()
                .to_string()
        };
        for (name, _) in EMBEDDED {
            let pack = pack(name);
            let seed = std::fs::read_to_string(dir.join(&pack.source))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let quotes = pack
                .policy
                .clocks
                .iter()
                .flat_map(|c| c.targets.iter().map(|t| quote(&t.source)))
                .chain(pack.guard_sources.iter().map(|s| quote(s)))
                .chain(
                    pack.plans
                        .iter()
                        .flat_map(|p| p.bucket_sources.iter().map(|s| quote(s))),
                );
            for q in quotes {
                assert!(seed.contains(&q), "{name}: {q:?} is not in {}", pack.source);
            }
        }
    }

    #[test]
    fn concinnity_is_the_reference_build() {
        let p = pack("concinnity");
        assert_eq!(
            calendars(&p),
            vec![(
                "office",
                &weekdays(chrono_tz::America::New_York, "09:00-17:00")
            )]
        );
        let task = &["task"];
        let same = BusinessDays::SameTime;
        let mut start_processing = promise(
            "start_processing",
            vec![entered(Status::Confirmed)],
            vec![entered(Status::Processing)],
            vec![
                target(&["tier-1"], &[], task, bdays("office", 7, same)),
                target(&["tier-2"], &[], task, bdays("office", 4, same)),
                target(&["tier-3"], &[], task, bdays("office", 3, same)),
                target(&["tier-4"], &[], task, bdays("office", 1, same)),
            ],
        );
        start_processing.cancel = vec![entered(Status::OutOfScope)];
        let mut review = promise(
            "review_autoclose",
            vec![entered(Status::SubmittedForReview)],
            vec![Trigger::LeftStatus(Status::SubmittedForReview)],
            vec![target(
                &[],
                &[],
                task,
                bdays("office", 5, BusinessDays::EndOfDay),
            )],
        );
        review.kind = ClockKind::Timer;
        review.pause_statuses = vec![];
        review.targets[0].on_due = DueAction::MoveTo {
            status: Status::Closed,
            reason: ShortText::parse("auto_closed").expect("reason"),
        };
        let expected = Policy {
            priorities: vec![],
            clocks: vec![
                promise(
                    "receipt_confirmation",
                    vec![Trigger::Received],
                    vec![entered(Status::Confirmed)],
                    vec![
                        target(&["tier-1"], &[], task, wall(48 * 60)),
                        target(&["tier-2", "tier-3"], &[], task, wall(24 * 60)),
                        target(
                            &["tier-4"],
                            &[],
                            task,
                            DurationRule::ByOpenHours {
                                calendar: slot("office"),
                                inside: Box::new(wall(120)),
                                outside: Box::new(wall(720)),
                            },
                        ),
                    ],
                ),
                start_processing,
                review,
            ],
            approval_guards: vec![],
            work_authorisation_role: None,
        };
        assert_eq!(without_sources(p.policy.clone()), expected);
        let tier4 = &p.policy.clocks[0].targets[2].source;
        assert!(
            tier4.starts_with("Confirmed request receipt - 2 hours during office hours, 12 hours otherwise. (reading: ")
                && tier4.contains("18:30"),
            "{tier4}"
        );
        let usd = |allowance, period| {
            let mut b = bucket("meetings", period, allowance);
            b.overage = Overage::Bill {
                rate_minor_units_per_hour: 15_000,
                currency: Currency::parse("USD").expect("usd"),
            };
            b
        };
        let tier = |name: &str, meetings: u32, training: u32| Plan {
            name: PlanName::parse(name).expect("plan"),
            buckets: vec![usd(meetings, PeriodUnit::Month), {
                let mut t = usd(training, PeriodUnit::Year);
                t.bucket = BucketName::parse("training").expect("bucket");
                t
            }],
        };
        assert_eq!(
            plans(&p),
            vec![
                tier("tier-1", 0, 0),
                tier("tier-2", 0, 0),
                tier("tier-3", 60, 120),
                tier("tier-4", 180, 720)
            ]
        );
        assert_eq!(
            p.plan_id(&p.plans[2].plan.name).map(|id| id.to_string()),
            Ok("concinnity-tier-3".to_string())
        );
        assert_eq!(
            p.calendar_id(&slot("office")).map(|id| id.to_string()),
            Ok("concinnity-office".to_string())
        );
    }

    #[test]
    fn priority_matrix_is_the_reference_build() {
        let p = pack("priority-matrix");
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            calendars(&p),
            vec![
                ("24x7", &CalendarSpec::always_open(ny)),
                ("support", &weekdays(ny, "09:00-17:00"))
            ]
        );
        let same = BusinessDays::SameTime;
        let expected = Policy {
            priorities: labels(&["P1", "P2", "P3", "P4", "P5", "P6"]),
            clocks: vec![promise(
                "first_response",
                vec![Trigger::Received],
                vec![Trigger::Event(EventSignal::AgentResponded)],
                vec![
                    target(&[], &["P1"], &[], wall(15)),
                    target(&[], &["P2"], &[], wall(30)),
                    target(&[], &["P3"], &[], wall(240)),
                    target(&[], &["P4"], &[], bdays("support", 3, same)),
                    target(&[], &["P5"], &[], bdays("support", 5, same)),
                    target(&[], &["P6"], &[], DurationRule::ScheduledTime),
                ],
            )],
            approval_guards: vec![],
            work_authorisation_role: None,
        };
        assert_eq!(without_sources(p.policy.clone()), expected);
        assert!(p.plans.is_empty());
        assert_eq!(
            p.calendar_id(&slot("24x7")).map(|id| id.to_string()),
            Ok("priority-matrix-24x7".to_string())
        );
    }

    #[test]
    fn contently_is_the_reference_build() {
        let p = pack("contently");
        assert_eq!(
            calendars(&p),
            vec![(
                "business",
                &weekdays(chrono_tz::America::New_York, "09:00-17:00")
            )]
        );
        let same = BusinessDays::SameTime;
        let triage = metric("escalation_triage");
        let mut handoff = promise(
            "engineering_handoff",
            vec![
                Trigger::TargetStoppedUnresolved(triage.clone()),
                Trigger::TargetDue(triage.clone()),
            ],
            vec![
                Trigger::Event(EventSignal::Custom(
                    CustomEventName::parse("engineering_engaged").expect("event"),
                )),
                entered(Status::Resolved),
                entered(Status::Closed),
            ],
            vec![target(
                &[],
                &[],
                &[],
                DurationRule::NextWeek {
                    calendar: slot("business"),
                },
            )],
        );
        handoff.pause_statuses = vec![Status::RequiresDeliverables];
        let expected = Policy {
            priorities: vec![],
            clocks: vec![
                promise(
                    "first_response",
                    vec![Trigger::Received],
                    vec![Trigger::Event(EventSignal::AgentResponded)],
                    vec![target(&[], &[], &[], bdays("business", 2, same))],
                ),
                promise(
                    "escalation_triage",
                    vec![entered(Status::Escalated)],
                    vec![
                        Trigger::Event(EventSignal::TriageCompleted),
                        entered(Status::Processing),
                        entered(Status::Resolved),
                        entered(Status::Closed),
                    ],
                    vec![target(&[], &[], &[], bdays("business", 1, same))],
                ),
                handoff,
            ],
            approval_guards: vec![],
            work_authorisation_role: None,
        };
        assert_eq!(without_sources(p.policy.clone()), expected);
        assert!(p.plans.is_empty());
    }

    #[test]
    fn clevr_is_the_reference_build() {
        let p = pack("clevr");
        assert_eq!(
            calendars(&p),
            vec![(
                "support",
                &weekdays(chrono_tz::America::Toronto, "08:00-18:30")
            )]
        );
        let same = BusinessDays::SameTime;
        let resolved = || vec![entered(Status::Resolved), entered(Status::Closed)];
        let mut resolution = promise(
            "resolution",
            vec![Trigger::CycleStarted],
            resolved(),
            vec![
                target(&[], &["sev-1"], &[], bdays("support", 1, same)),
                target(&[], &["sev-2"], &[], bdays("support", 1, same)),
                target(&[], &["sev-3"], &[], bdays("support", 2, same)),
            ],
        );
        resolution.targets[0].warnings = vec![50];
        let mut escalation = promise(
            "escalation",
            vec![Trigger::Received],
            resolved(),
            vec![
                target(&[], &["sev-1"], &[], bminutes("support", 60)),
                target(&[], &["sev-2"], &[], bminutes("support", 480)),
                target(&[], &["sev-3"], &[], bdays("support", 2, same)),
            ],
        );
        escalation.kind = ClockKind::Timer;
        for (level, t) in (1..).zip(escalation.targets.iter_mut()) {
            t.on_due = DueAction::Escalate { level };
        }
        let expected = Policy {
            priorities: labels(&["sev-1", "sev-2", "sev-3", "sev-4"]),
            clocks: vec![
                promise(
                    "first_response",
                    vec![Trigger::Received],
                    vec![Trigger::Event(EventSignal::AgentResponded)],
                    vec![
                        target(&[], &["sev-1"], &[], bminutes("support", 60)),
                        target(&[], &["sev-2"], &[], bminutes("support", 240)),
                        target(&[], &["sev-3", "sev-4"], &[], bdays("support", 1, same)),
                    ],
                ),
                resolution,
                escalation,
            ],
            approval_guards: vec![],
            work_authorisation_role: None,
        };
        assert_eq!(without_sources(p.policy.clone()), expected);
        // Severity 4's resolution is "TBD": the clock has no target for it.
        let sev4 = PriorityLabel::parse("sev-4").expect("sev-4");
        let incident = RequestType::parse("incident").expect("type");
        assert!(
            p.policy.clocks[1]
                .target_for(None, Some(&sev4), &incident)
                .is_none()
        );
        assert!(
            p.policy.clocks[1].targets[0]
                .source
                .starts_with(".5 - 1 business day")
        );
    }

    #[test]
    fn social_is_the_reference_build() {
        let p = pack("24social");
        assert_eq!(
            calendars(&p),
            vec![(
                "operations",
                &weekdays(chrono_tz::Europe::London, "09:00-17:30")
            )]
        );
        let main = RoleName::parse("main_stakeholder").expect("role");
        let expected = Policy {
            priorities: vec![],
            clocks: vec![promise(
                "lead_time",
                vec![Trigger::Event(EventSignal::WorkAuthorised)],
                vec![entered(Status::SubmittedForReview)],
                vec![target(
                    &[],
                    &[],
                    &["task"],
                    DurationRule::ByEstimate {
                        buckets: vec![
                            EstimateBucket {
                                up_to_minutes: 180,
                                duration: wall(24 * 60),
                            },
                            EstimateBucket {
                                up_to_minutes: 480,
                                duration: wall(72 * 60),
                            },
                            EstimateBucket {
                                up_to_minutes: 960,
                                duration: DurationRule::CalendarDays { days: 7 },
                            },
                        ],
                    },
                )],
            )],
            approval_guards: vec![ApprovalGuard {
                to: Status::Closed,
                role: main.clone(),
                waived_when_requested_by_role: true,
            }],
            work_authorisation_role: Some(main),
        };
        assert_eq!(without_sources(p.policy.clone()), expected);
        assert!(
            p.guard_sources[0].contains("will not require to be checked. (reading: "),
            "{}",
            p.guard_sources[0]
        );
        let mut cs = bucket("customer_success", PeriodUnit::Month, 600);
        cs.requires_authorisation = true;
        cs.free_activities = vec![
            FreeActivity {
                kind: ActivityKind::parse("weekly_review").expect("kind"),
                per_occurrence_cap_minutes: 30,
                frequency: Frequency::PerIsoWeek,
                max_per_frequency: 1,
            },
            FreeActivity {
                kind: ActivityKind::parse("quarterly_review").expect("kind"),
                per_occurrence_cap_minutes: 180,
                frequency: Frequency::PerCalendarQuarter,
                max_per_frequency: 1,
            },
        ];
        assert_eq!(
            plans(&p),
            vec![Plan {
                name: PlanName::parse("customer-success").expect("plan"),
                buckets: vec![cs],
            }]
        );
        assert_eq!(cs_rollover(&p), (Rollover::None, Overage::Reject));
        assert!(p.plans[0].reading.contains("order form"));
    }

    fn cs_rollover(p: &Pack) -> (Rollover, Overage) {
        let b = &p.plans[0].plan.buckets[0];
        (b.rollover, b.overage.clone())
    }

    // ------------------------------------------------------------ mistakes

    const SMALL: &str = r#"
[pack]
name = "x"
title = "X"
source = "x.txt"

[calendars.office]
time_zone = "America/New_York"
weekdays = ["09:00-17:00"]

[policy]
[[policy.clocks]]
metric = "first_response"
kind = "timer"
start = ["received"]
[[policy.clocks.targets]]
duration = { wall_clock_minutes = 60 }
quote = "within an hour"

[[plans]]
name = "basic"
[[plans.buckets]]
bucket = "meetings"
period = "month"
allowance_minutes = 60
quote = "an hour a month"
"#;

    fn error_path(text: &str) -> String {
        parse(text).map(|_| ()).expect_err("a mistake").path
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/packs.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/packs.md has a TOML example");
        let p = parse(example).unwrap_or_else(|e| panic!("docs/packs.md example: {e}"));
        assert_eq!(p.name.as_str(), "acme");
        assert_eq!(p.policy.clocks[0].targets.len(), 2);
        assert_eq!(
            p.plan_id(&p.plans[0].plan.name).map(|id| id.to_string()),
            Ok("acme-standard".to_string())
        );
    }

    #[test]
    fn the_small_pack_parses() {
        let p = parse(SMALL).expect("parses");
        assert_eq!(
            p.plans[0].bucket_sources,
            vec!["an hour a month".to_string()]
        );
        assert!(p.guard_sources.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let bad = SMALL.replace("\"received\"", "\"recieved\"");
        assert_eq!(error_path(&bad), "policy.clocks[0].start[0]");
        let no_quote = SMALL.replace("quote = \"within an hour\"", "quote = \"\"");
        assert_eq!(error_path(&no_quote), "policy.clocks[0].targets[0].quote");
        let missing_slot = SMALL.replace(
            "{ wall_clock_minutes = 60 }",
            "{ business_minutes = 60, calendar = \"support\" }",
        );
        assert_eq!(error_path(&missing_slot), "calendars");
        let stray = SMALL.replace(
            "{ wall_clock_minutes = 60 }",
            "{ wall_clock_minutes = 60, calendar = \"office\" }",
        );
        assert_eq!(
            error_path(&stray),
            "policy.clocks[0].targets[0].duration.calendar"
        );
        let stray_mode = SMALL.replace(
            "{ wall_clock_minutes = 60 }",
            "{ business_minutes = 60, calendar = \"office\", mode = \"end_of_day\" }",
        );
        assert_eq!(
            error_path(&stray_mode),
            "policy.clocks[0].targets[0].duration.mode"
        );
        let level_zero = SMALL.replace(
            "quote = \"within an hour\"",
            "quote = \"within an hour\"\nescalate_to_level = 0",
        );
        assert_eq!(
            error_path(&level_zero),
            "policy.clocks[0].targets[0].escalate_to_level"
        );
        let reason_alone = SMALL.replace(
            "quote = \"within an hour\"",
            "quote = \"within an hour\"\nmove_reason = \"x\"",
        );
        assert_eq!(
            error_path(&reason_alone),
            "policy.clocks[0].targets[0].move_reason"
        );
        let promise_acting = SMALL.replace("kind = \"timer\"\n", "").replace(
            "quote = \"within an hour\"",
            "quote = \"within an hour\"\nescalate_to_level = 1",
        );
        assert_eq!(
            error_path(&promise_acting),
            "policy.clocks[0].targets[0].on_due"
        );
    }

    #[test]
    fn plan_and_calendar_mistakes_are_named() {
        let bucket_quote = SMALL.replace("quote = \"an hour a month\"", "quote = \" \"");
        assert_eq!(error_path(&bucket_quote), "plans[0].buckets[0].quote");
        let rate_without_bill = SMALL.replace(
            "allowance_minutes = 60",
            "allowance_minutes = 60\nrate_minor_units_per_hour = 100",
        );
        assert_eq!(
            error_path(&rate_without_bill),
            "plans[0].buckets[0].rate_minor_units_per_hour"
        );
        let bill_without_rate = SMALL.replace(
            "allowance_minutes = 60",
            "allowance_minutes = 60\noverage = \"bill\"",
        );
        assert_eq!(
            error_path(&bill_without_rate),
            "plans[0].buckets[0].rate_minor_units_per_hour"
        );
        let cap_without_capped = SMALL.replace(
            "allowance_minutes = 60",
            "allowance_minutes = 60\nrollover_minutes = 30",
        );
        assert_eq!(
            error_path(&cap_without_capped),
            "plans[0].buckets[0].rollover_minutes"
        );
        let twice = format!("{SMALL}\n[[plans]]\nname = \"basic\"\nbuckets = []\n");
        assert_eq!(error_path(&twice), "plans[1].name");
        let open_with_hours = SMALL.replace("weekdays = [", "always_open = true\nweekdays = [");
        assert_eq!(error_path(&open_with_hours), "calendars.office");
        let bad_window = SMALL.replace("09:00-17:00", "17:00-09:00");
        assert_eq!(error_path(&bad_window), "calendars.office.weekdays[0]");
        let guard_without_quote = SMALL.replace(
            "[policy]\n",
            "[policy]\n[[policy.approval_guards]]\nto = \"CLOSED\"\nrole = \"boss\"\nquote = \"\"\n",
        );
        assert_eq!(
            error_path(&guard_without_quote),
            "policy.approval_guards[0].quote"
        );
    }
}
