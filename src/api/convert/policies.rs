//! Policies: clock definitions, triggers, targets and durations, both ways.

use super::{limited, name_of, optional, status, status_to_pb, timestamp};
use crate::api::error::{AppError, AppResult, Check};
use crate::api::pb;
use crate::domain::limits;
use crate::domain::names::{
    CustomEventName, MetricName, PlanName, PriorityLabel, RequestType, RoleName, ShortText,
    SlotName,
};
use crate::domain::policy::{
    Applicability, ApprovalGuard, BusinessDays, ClockDefinition, ClockKind, DueAction,
    DurationRule, EstimateBucket, EventSignal, MAX_DAYS, MAX_MINUTES, Policy, Target, Trigger,
};
use crate::domain::status::Status;
use crate::store::{ResourceKind, ResourceVersion};

pub(super) fn positive(c: &mut Check, field: &str, v: i32, max: u32, unit: &str) -> Option<u32> {
    match u32::try_from(v) {
        Ok(v) if (1..=max).contains(&v) => Some(v),
        _ => {
            c.fail(field, format!("must be between 1 and {max} {unit}"));
            None
        }
    }
}

fn duration_rule(
    c: &mut Check,
    field: &str,
    d: Option<&pb::Duration>,
    depth: usize,
) -> Option<DurationRule> {
    use pb::duration::Kind;
    let Some(kind) = d.and_then(|d| d.kind.as_ref()) else {
        c.fail(field, "is required: one of wall_clock, calendar_days, business_minutes, business_days, scheduled_time, next_week, by_open_hours, by_estimate");
        return None;
    };
    if depth >= 3 {
        c.fail(field, "durations nest at most 3 deep");
        return None;
    }
    let slot = |c: &mut Check, f: String, s: &str| c.ok(f, SlotName::parse(s));
    match kind {
        Kind::WallClock(w) => Some(DurationRule::WallClock {
            minutes: positive(
                c,
                &format!("{field}.wall_clock.minutes"),
                w.minutes,
                MAX_MINUTES,
                "minutes",
            )?,
        }),
        Kind::CalendarDays(w) => Some(DurationRule::CalendarDays {
            days: positive(
                c,
                &format!("{field}.calendar_days.days"),
                w.days,
                MAX_DAYS,
                "days",
            )?,
        }),
        Kind::BusinessMinutes(w) => {
            let calendar = slot(c, format!("{field}.business_minutes.calendar"), &w.calendar);
            let minutes = positive(
                c,
                &format!("{field}.business_minutes.minutes"),
                w.minutes,
                MAX_MINUTES,
                "minutes",
            );
            Some(DurationRule::BusinessMinutes {
                calendar: calendar?,
                minutes: minutes?,
            })
        }
        Kind::BusinessDays(w) => {
            let calendar = slot(c, format!("{field}.business_days.calendar"), &w.calendar);
            let days = positive(
                c,
                &format!("{field}.business_days.days"),
                w.days,
                MAX_DAYS,
                "days",
            );
            let mode = match pb::BusinessDayMode::try_from(w.mode) {
                Ok(pb::BusinessDayMode::SameTime) => Some(BusinessDays::SameTime),
                Ok(pb::BusinessDayMode::EndOfDay) => Some(BusinessDays::EndOfDay),
                _ => {
                    c.fail(
                        format!("{field}.business_days.mode"),
                        "must be SAME_TIME or END_OF_DAY",
                    );
                    None
                }
            };
            Some(DurationRule::BusinessDays {
                calendar: calendar?,
                days: days?,
                mode: mode?,
            })
        }
        Kind::ScheduledTime(_) => Some(DurationRule::ScheduledTime),
        Kind::NextWeek(w) => Some(DurationRule::NextWeek {
            calendar: slot(c, format!("{field}.next_week.calendar"), &w.calendar)?,
        }),
        Kind::ByOpenHours(w) => {
            let f = format!("{field}.by_open_hours");
            let calendar = slot(c, format!("{f}.calendar"), &w.calendar);
            let inside = duration_rule(c, &format!("{f}.inside"), w.inside.as_deref(), depth + 1);
            let outside =
                duration_rule(c, &format!("{f}.outside"), w.outside.as_deref(), depth + 1);
            Some(DurationRule::ByOpenHours {
                calendar: calendar?,
                inside: Box::new(inside?),
                outside: Box::new(outside?),
            })
        }
        Kind::ByEstimate(w) => {
            let f = format!("{field}.by_estimate.buckets");
            if w.buckets.is_empty() {
                c.fail(f.clone(), "at least one bucket is needed");
            }
            let mut buckets = Vec::new();
            let mut prev = 0;
            let listed = limited(c, &f, &w.buckets, limits::ESTIMATE_BUCKETS);
            for (i, b) in listed.iter().enumerate() {
                let up_to = positive(
                    c,
                    &format!("{f}[{i}].up_to_minutes"),
                    b.up_to_minutes,
                    MAX_MINUTES,
                    "minutes",
                );
                if let Some(u) = up_to
                    && u <= prev
                {
                    c.fail(format!("{f}[{i}].up_to_minutes"), "buckets must ascend");
                }
                prev = up_to.unwrap_or(prev);
                let d = duration_rule(
                    c,
                    &format!("{f}[{i}].duration"),
                    b.duration.as_ref(),
                    depth + 1,
                );
                if let (Some(up_to_minutes), Some(duration)) = (up_to, d) {
                    buckets.push(EstimateBucket {
                        up_to_minutes,
                        duration,
                    });
                }
            }
            (buckets.len() == w.buckets.len() && !buckets.is_empty())
                .then_some(DurationRule::ByEstimate { buckets })
        }
    }
}

fn trigger(c: &mut Check, field: &str, t: &pb::Trigger) -> Option<Trigger> {
    use pb::trigger::Kind;
    let metric = |c: &mut Check, s: &str| c.ok(field, MetricName::parse(s));
    match t.kind.as_ref() {
        None => {
            c.fail(field, "is required");
            None
        }
        Some(Kind::Received(())) => Some(Trigger::Received),
        Some(Kind::CycleStarted(())) => Some(Trigger::CycleStarted),
        Some(Kind::EnteredStatus(s)) => {
            status(c, &format!("{field}.entered_status"), *s).map(Trigger::EnteredStatus)
        }
        Some(Kind::LeftStatus(s)) => {
            status(c, &format!("{field}.left_status"), *s).map(Trigger::LeftStatus)
        }
        Some(Kind::Event(e)) => {
            let signal = match pb::EventSignal::try_from(*e) {
                Ok(pb::EventSignal::AgentResponded) => EventSignal::AgentResponded,
                Ok(pb::EventSignal::CustomerReplied) => EventSignal::CustomerReplied,
                Ok(pb::EventSignal::WorkAuthorised) => EventSignal::WorkAuthorised,
                Ok(pb::EventSignal::Approved) => EventSignal::Approved,
                Ok(pb::EventSignal::TriageCompleted) => EventSignal::TriageCompleted,
                Ok(pb::EventSignal::Reopened) => EventSignal::Reopened,
                _ => {
                    c.fail(format!("{field}.event"), "unknown or unset event signal");
                    return None;
                }
            };
            Some(Trigger::Event(signal))
        }
        Some(Kind::CustomEvent(n)) => c
            .ok(format!("{field}.custom_event"), CustomEventName::parse(n))
            .map(|n| Trigger::Event(EventSignal::Custom(n))),
        Some(Kind::TargetDue(m)) => metric(c, m).map(Trigger::TargetDue),
        Some(Kind::TargetStoppedUnresolved(m)) => {
            metric(c, m).map(Trigger::TargetStoppedUnresolved)
        }
    }
}

fn triggers(c: &mut Check, field: &str, ts: &[pb::Trigger]) -> Option<Vec<Trigger>> {
    let parsed: Vec<Option<Trigger>> = limited(c, field, ts, limits::TRIGGERS)
        .iter()
        .enumerate()
        .map(|(i, t)| trigger(c, &format!("{field}[{i}]"), t))
        .collect();
    parsed.into_iter().collect()
}

pub(super) fn list<T, E: std::fmt::Display>(
    c: &mut Check,
    field: &str,
    items: &[String],
    max: usize,
    p: impl Fn(&str) -> Result<T, E>,
) -> Option<Vec<T>> {
    let parsed: Vec<Option<T>> = limited(c, field, items, max)
        .iter()
        .enumerate()
        .map(|(i, s)| c.ok(format!("{field}[{i}]"), p(s)))
        .collect();
    parsed.into_iter().collect()
}

fn target(c: &mut Check, field: &str, t: &pb::Target) -> Option<Target> {
    let applies = t.applies.clone().unwrap_or_default();
    let plans = list(
        c,
        &format!("{field}.applies.plans"),
        &applies.plans,
        limits::APPLICABILITY,
        PlanName::parse,
    );
    let priorities = list(
        c,
        &format!("{field}.applies.priorities"),
        &applies.priorities,
        limits::APPLICABILITY,
        PriorityLabel::parse,
    );
    let types = list(
        c,
        &format!("{field}.applies.request_types"),
        &applies.request_types,
        limits::APPLICABILITY,
        RequestType::parse,
    );
    let duration = duration_rule(c, &format!("{field}.duration"), t.duration.as_ref(), 0);
    let mut warnings = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.warning_percentages"),
        &t.warning_percentages,
        limits::WARNINGS,
    );
    for (i, w) in listed.iter().enumerate() {
        match u8::try_from(*w) {
            Ok(p) if (1..=99).contains(&p) && warnings.last().is_none_or(|l| *l < p) => {
                warnings.push(p)
            }
            _ => c.fail(
                format!("{field}.warning_percentages[{i}]"),
                "warnings are ascending percentages between 1 and 99",
            ),
        }
    }
    let on_due = match t.on_due.as_ref().and_then(|d| d.kind.as_ref()) {
        None => Some(DueAction::None),
        Some(pb::due_action::Kind::EscalateToLevel(l)) => match u32::try_from(*l) {
            Ok(level) if level >= 1 => Some(DueAction::Escalate { level }),
            _ => {
                c.fail(
                    format!("{field}.on_due.escalate_to_level"),
                    "must be 1 or more",
                );
                None
            }
        },
        Some(pb::due_action::Kind::MoveTo(m)) => {
            let s = status(c, &format!("{field}.on_due.move_to.status"), m.status);
            let reason = c.ok(
                format!("{field}.on_due.move_to.reason"),
                ShortText::parse(&m.reason),
            );
            match (s, reason) {
                (Some(status), Some(reason)) => Some(DueAction::MoveTo { status, reason }),
                _ => None,
            }
        }
    };
    if t.source.chars().count() > 4096 {
        c.fail(format!("{field}.source"), "is longer than 4096 characters");
    }
    Some(Target {
        applies: Applicability {
            plans: plans?,
            priorities: priorities?,
            request_types: types?,
        },
        duration: duration?,
        warnings,
        on_due: on_due?,
        source: t.source.clone(),
    })
}

pub fn policy_definition(
    c: &mut Check,
    field: &str,
    d: Option<&pb::PolicyDefinition>,
) -> Option<Policy> {
    let Some(d) = d else {
        c.fail(field, "is required");
        return None;
    };
    let priorities = list(
        c,
        &format!("{field}.priorities"),
        &d.priorities,
        limits::PRIORITIES,
        PriorityLabel::parse,
    );
    let mut clocks = Vec::new();
    let listed = limited(c, &format!("{field}.clocks"), &d.clocks, limits::CLOCKS);
    for (i, cd) in listed.iter().enumerate() {
        let f = format!("{field}.clocks[{i}]");
        let metric = c.ok(format!("{f}.metric"), MetricName::parse(&cd.metric));
        let kind = match pb::ClockKind::try_from(cd.kind) {
            Ok(pb::ClockKind::Promise) => Some(ClockKind::Promise),
            Ok(pb::ClockKind::Timer) => Some(ClockKind::Timer),
            _ => {
                c.fail(format!("{f}.kind"), "must be PROMISE or TIMER");
                None
            }
        };
        let start = triggers(c, &format!("{f}.start"), &cd.start);
        let stop = triggers(c, &format!("{f}.stop"), &cd.stop);
        let cancel = triggers(c, &format!("{f}.cancel"), &cd.cancel);
        let pauses: Vec<Option<Status>> = limited(
            c,
            &format!("{f}.pause_statuses"),
            &cd.pause_statuses,
            limits::PAUSE_STATUSES,
        )
        .iter()
        .enumerate()
        .map(|(k, s)| status(c, &format!("{f}.pause_statuses[{k}]"), *s))
        .collect();
        let pauses: Option<Vec<Status>> = pauses.into_iter().collect();
        let pause_statuses = match (cd.no_pause, pauses) {
            (true, Some(p)) if !p.is_empty() => {
                c.fail(format!("{f}.no_pause"), "contradicts pause_statuses");
                None
            }
            (true, Some(_)) => Some(Vec::new()),
            (false, Some(p)) if p.is_empty() => Some(vec![Status::RequiresDeliverables]),
            (_, p) => p,
        };
        let targets: Vec<Option<Target>> =
            limited(c, &format!("{f}.targets"), &cd.targets, limits::TARGETS)
                .iter()
                .enumerate()
                .map(|(k, t)| target(c, &format!("{f}.targets[{k}]"), t))
                .collect();
        let targets: Option<Vec<Target>> = targets.into_iter().collect();
        if let (
            Some(metric),
            Some(kind),
            Some(start),
            Some(stop),
            Some(cancel),
            Some(pause_statuses),
            Some(targets),
        ) = (metric, kind, start, stop, cancel, pause_statuses, targets)
        {
            clocks.push(ClockDefinition {
                metric,
                kind,
                start,
                stop,
                cancel,
                pause_statuses,
                targets,
            });
        }
    }
    let mut guards = Vec::new();
    let listed = limited(
        c,
        &format!("{field}.approval_guards"),
        &d.approval_guards,
        limits::APPROVAL_GUARDS,
    );
    for (i, g) in listed.iter().enumerate() {
        let f = format!("{field}.approval_guards[{i}]");
        let to = status(c, &format!("{f}.to"), g.to);
        let role = c.ok(format!("{f}.role"), RoleName::parse(&g.role));
        if let (Some(to), Some(role)) = (to, role) {
            guards.push(ApprovalGuard {
                to,
                role,
                waived_when_requested_by_role: g.waived_when_requested_by_role,
            });
        }
    }
    let auth_role = optional(
        c,
        format!("{field}.work_authorisation_role"),
        &d.work_authorisation_role,
        RoleName::parse,
    );
    if !c.is_clean() {
        return None;
    }
    let policy = Policy {
        priorities: priorities?,
        clocks,
        approval_guards: guards,
        work_authorisation_role: auth_role?,
    };
    if let Err(errors) = policy.check() {
        for e in errors {
            let path = e
                .path
                .replace(".warnings[", ".warning_percentages[")
                .replace(".on_due.status", ".on_due.move_to.status");
            c.fail(format!("{field}.{path}"), e.reason);
        }
        return None;
    }
    Some(policy)
}

fn duration_to_pb(r: &DurationRule) -> pb::Duration {
    use pb::duration::Kind;
    let kind = match r {
        DurationRule::WallClock { minutes } => Kind::WallClock(pb::WallClockDuration {
            minutes: *minutes as i32,
        }),
        DurationRule::CalendarDays { days } => {
            Kind::CalendarDays(pb::CalendarDaysDuration { days: *days as i32 })
        }
        DurationRule::BusinessMinutes { calendar, minutes } => {
            Kind::BusinessMinutes(pb::BusinessMinutesDuration {
                calendar: calendar.to_string(),
                minutes: *minutes as i32,
            })
        }
        DurationRule::BusinessDays {
            calendar,
            days,
            mode,
        } => Kind::BusinessDays(pb::BusinessDaysDuration {
            calendar: calendar.to_string(),
            days: *days as i32,
            mode: match mode {
                BusinessDays::SameTime => pb::BusinessDayMode::SameTime as i32,
                BusinessDays::EndOfDay => pb::BusinessDayMode::EndOfDay as i32,
            },
        }),
        DurationRule::ScheduledTime => Kind::ScheduledTime(pb::ScheduledTimeDuration {}),
        DurationRule::NextWeek { calendar } => Kind::NextWeek(pb::NextWeekDuration {
            calendar: calendar.to_string(),
        }),
        DurationRule::ByOpenHours {
            calendar,
            inside,
            outside,
        } => Kind::ByOpenHours(Box::new(pb::ByOpenHoursDuration {
            calendar: calendar.to_string(),
            inside: Some(Box::new(duration_to_pb(inside))),
            outside: Some(Box::new(duration_to_pb(outside))),
        })),
        DurationRule::ByEstimate { buckets } => Kind::ByEstimate(pb::ByEstimateDuration {
            buckets: buckets
                .iter()
                .map(|b| pb::EstimateBucket {
                    up_to_minutes: b.up_to_minutes as i32,
                    duration: Some(duration_to_pb(&b.duration)),
                })
                .collect(),
        }),
    };
    pb::Duration { kind: Some(kind) }
}

fn trigger_to_pb(t: &Trigger) -> pb::Trigger {
    use pb::trigger::Kind;
    let kind = match t {
        Trigger::Received => Kind::Received(()),
        Trigger::CycleStarted => Kind::CycleStarted(()),
        Trigger::EnteredStatus(s) => Kind::EnteredStatus(status_to_pb(*s) as i32),
        Trigger::LeftStatus(s) => Kind::LeftStatus(status_to_pb(*s) as i32),
        Trigger::Event(EventSignal::Custom(n)) => Kind::CustomEvent(n.to_string()),
        Trigger::Event(e) => Kind::Event(
            (match e {
                EventSignal::AgentResponded => pb::EventSignal::AgentResponded,
                EventSignal::CustomerReplied => pb::EventSignal::CustomerReplied,
                EventSignal::WorkAuthorised => pb::EventSignal::WorkAuthorised,
                EventSignal::Approved => pb::EventSignal::Approved,
                EventSignal::TriageCompleted => pb::EventSignal::TriageCompleted,
                EventSignal::Reopened | EventSignal::Custom(_) => pb::EventSignal::Reopened,
            }) as i32,
        ),
        Trigger::TargetDue(m) => Kind::TargetDue(m.to_string()),
        Trigger::TargetStoppedUnresolved(m) => Kind::TargetStoppedUnresolved(m.to_string()),
    };
    pb::Trigger { kind: Some(kind) }
}

pub fn policy_definition_to_pb(p: &Policy) -> pb::PolicyDefinition {
    pb::PolicyDefinition {
        priorities: p.priorities.iter().map(|l| l.to_string()).collect(),
        clocks: p
            .clocks
            .iter()
            .map(|cd| pb::ClockDefinition {
                metric: cd.metric.to_string(),
                kind: match cd.kind {
                    ClockKind::Promise => pb::ClockKind::Promise as i32,
                    ClockKind::Timer => pb::ClockKind::Timer as i32,
                },
                start: cd.start.iter().map(trigger_to_pb).collect(),
                stop: cd.stop.iter().map(trigger_to_pb).collect(),
                cancel: cd.cancel.iter().map(trigger_to_pb).collect(),
                pause_statuses: cd
                    .pause_statuses
                    .iter()
                    .map(|s| status_to_pb(*s) as i32)
                    .collect(),
                no_pause: cd.pause_statuses.is_empty(),
                targets: cd
                    .targets
                    .iter()
                    .map(|t| pb::Target {
                        applies: Some(pb::Applicability {
                            plans: t.applies.plans.iter().map(|p| p.to_string()).collect(),
                            priorities: t
                                .applies
                                .priorities
                                .iter()
                                .map(|p| p.to_string())
                                .collect(),
                            request_types: t
                                .applies
                                .request_types
                                .iter()
                                .map(|p| p.to_string())
                                .collect(),
                        }),
                        duration: Some(duration_to_pb(&t.duration)),
                        warning_percentages: t.warnings.iter().map(|w| i32::from(*w)).collect(),
                        on_due: Some(pb::DueAction {
                            kind: match &t.on_due {
                                DueAction::None => None,
                                DueAction::Escalate { level } => {
                                    Some(pb::due_action::Kind::EscalateToLevel(*level as i32))
                                }
                                DueAction::MoveTo { status, reason } => {
                                    Some(pb::due_action::Kind::MoveTo(pb::MoveToStatus {
                                        status: status_to_pb(*status) as i32,
                                        reason: reason.to_string(),
                                    }))
                                }
                            },
                        }),
                        source: t.source.clone(),
                    })
                    .collect(),
            })
            .collect(),
        approval_guards: p
            .approval_guards
            .iter()
            .map(|g| pb::ApprovalGuard {
                to: status_to_pb(g.to) as i32,
                role: g.role.to_string(),
                waived_when_requested_by_role: g.waived_when_requested_by_role,
            })
            .collect(),
        work_authorisation_role: p
            .work_authorisation_role
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
    }
}

pub fn policy_to_pb(v: &ResourceVersion) -> AppResult<pb::Policy> {
    let p: Policy = serde_json::from_str(&v.body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(pb::Policy {
        name: name_of(ResourceKind::Policy, &v.id),
        display_name: v.display_name.clone(),
        definition: Some(policy_definition_to_pb(&p)),
        version: v.version as i32,
        archived: v.archived,
        create_time: Some(timestamp(v.created_at)),
    })
}
