//! Tickets, events and clocks as the API shows them.

use chrono::{DateTime, Utc};

use super::{
    duration, name_of, opt_timestamp, optional, positive, request_id, required_instant, status,
    status_to_pb, timestamp,
};
use crate::api::error::Check;
use crate::api::pb;
use crate::domain::clock::{ClockState, ClockView, EndReason, NotStartedReason};
use crate::domain::names::{CustomEventName, ExternalId, PriorityLabel, ShortText};
use crate::domain::policy::{ClockKind, DueAction, MAX_MINUTES, Policy};
use crate::domain::ticket::{Actor, EventKind};
use crate::store::{NewEvent, ResourceKind, StoredEvent};

pub fn event(
    c: &mut Check,
    field: &str,
    e: Option<&pb::TicketEvent>,
    client: &str,
) -> Option<NewEvent> {
    use pb::ticket_event::Kind;
    let Some(e) = e else {
        c.fail(field, "is required");
        return None;
    };
    let occurred = required_instant(
        c,
        &format!("{field}.occurred_time"),
        e.occurred_time.as_ref(),
    );
    let contact = optional(
        c,
        format!("{field}.contact_id"),
        &e.contact_id,
        ExternalId::parse,
    );
    let rid = request_id(c, &format!("{field}.request_id"), &e.request_id);
    let kind = match e.kind.as_ref() {
        None => {
            c.fail(field, "names no event: set one of status_change, agent_response, customer_reply, priority_change, estimate_change, schedule_change, work_authorisation, approval, triage_completion, reopen, custom");
            None
        }
        Some(Kind::StatusChange(s)) => {
            let to = status(c, &format!("{field}.status_change.status"), s.status);
            let reason = optional(
                c,
                format!("{field}.status_change.reason"),
                &s.reason,
                ShortText::parse,
            );
            match (to, reason) {
                (Some(to), Some(reason)) => Some(EventKind::StatusChanged { to, reason }),
                _ => None,
            }
        }
        Some(Kind::AgentResponse(())) => Some(EventKind::AgentResponded),
        Some(Kind::CustomerReply(())) => Some(EventKind::CustomerReplied),
        Some(Kind::PriorityChange(p)) => c
            .ok(
                format!("{field}.priority_change.priority"),
                PriorityLabel::parse(&p.priority),
            )
            .map(|to| EventKind::PriorityChanged { to }),
        Some(Kind::EstimateChange(m)) => positive(
            c,
            &format!("{field}.estimate_change.estimate_minutes"),
            m.estimate_minutes,
            MAX_MINUTES,
            "minutes",
        )
        .map(|minutes| EventKind::EstimateSet { minutes }),
        Some(Kind::ScheduleChange(s)) => required_instant(
            c,
            &format!("{field}.schedule_change.scheduled_time"),
            s.scheduled_time.as_ref(),
        )
        .map(|at| EventKind::ScheduledTimeSet { at }),
        Some(Kind::WorkAuthorisation(())) => Some(EventKind::WorkAuthorised),
        Some(Kind::Approval(())) => Some(EventKind::Approved),
        Some(Kind::TriageCompletion(())) => Some(EventKind::TriageCompleted),
        Some(Kind::Reopen(())) => Some(EventKind::Reopened),
        Some(Kind::Custom(n)) => c
            .ok(
                format!("{field}.custom.name"),
                CustomEventName::parse(&n.name),
            )
            .map(|name| EventKind::Custom { name }),
        Some(
            Kind::ClockWarning(_)
            | Kind::ClockBreach(_)
            | Kind::ActionTaken(_)
            | Kind::Retraction(_),
        ) => {
            c.fail(
                field,
                "clock warnings, breaches, actions and retractions are recorded by servicelevel only",
            );
            None
        }
    };
    Some(NewEvent {
        occurred_at: occurred?,
        kind: kind?,
        actor: Actor {
            client: client.to_string(),
            contact: contact?,
        },
        request_id: rid?,
    })
}

/// An event's kind; `occurred_at` is the due instant of system events recorded before
/// they carried one.
pub fn event_kind_to_pb(k: &EventKind, occurred_at: DateTime<Utc>) -> pb::ticket_event::Kind {
    let due = |d: &Option<DateTime<Utc>>| Some(timestamp(d.unwrap_or(occurred_at)));
    use pb::ticket_event::Kind;
    match k {
        EventKind::StatusChanged { to, reason } => Kind::StatusChange(pb::StatusChange {
            status: status_to_pb(*to) as i32,
            reason: reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        }),
        EventKind::AgentResponded => Kind::AgentResponse(()),
        EventKind::CustomerReplied => Kind::CustomerReply(()),
        EventKind::PriorityChanged { to } => Kind::PriorityChange(pb::PriorityChange {
            priority: to.to_string(),
        }),
        EventKind::EstimateSet { minutes } => Kind::EstimateChange(pb::EstimateChange {
            estimate_minutes: *minutes as i32,
        }),
        EventKind::ScheduledTimeSet { at } => Kind::ScheduleChange(pb::ScheduleChange {
            scheduled_time: Some(timestamp(*at)),
        }),
        EventKind::WorkAuthorised => Kind::WorkAuthorisation(()),
        EventKind::Approved => Kind::Approval(()),
        EventKind::TriageCompleted => Kind::TriageCompletion(()),
        EventKind::Reopened => Kind::Reopen(()),
        EventKind::Custom { name } => Kind::Custom(pb::CustomEvent {
            name: name.to_string(),
        }),
        EventKind::ClockWarning {
            metric,
            instance,
            level,
            due_at,
        } => Kind::ClockWarning(pb::ClockWarningEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            level: i32::from(*level),
            due_time: due(due_at),
        }),
        EventKind::ClockBreached {
            metric,
            instance,
            due_at,
        } => Kind::ClockBreach(pb::ClockBreachEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            due_time: due(due_at),
        }),
        EventKind::ActionTaken {
            metric,
            instance,
            action,
            due_at,
        } => Kind::ActionTaken(pb::ActionTakenEvent {
            metric: metric.to_string(),
            instance: *instance as i32,
            due_time: due(due_at),
            action: match action {
                DueAction::Escalate { level } => Some(
                    pb::action_taken_event::Action::EscalatedToLevel(*level as i32),
                ),
                DueAction::MoveTo { status, reason } => {
                    Some(pb::action_taken_event::Action::MovedTo(pb::StatusChange {
                        status: status_to_pb(*status) as i32,
                        reason: reason.to_string(),
                    }))
                }
                DueAction::None => None,
            },
        }),
        EventKind::Retracted { seq, reason } => Kind::Retraction(pb::RetractionEvent {
            sequence: *seq,
            reason: reason.to_string(),
        }),
    }
}

fn not_started_code(r: &NotStartedReason) -> pb::NotStartedCode {
    match r {
        NotStartedReason::NoTargetForPriority(_) => pb::NotStartedCode::NoTarget,
        NotStartedReason::NeedsQuote { .. } => pb::NotStartedCode::NeedsQuote,
        NotStartedReason::NoEstimate => pb::NotStartedCode::NoEstimate,
        NotStartedReason::NoScheduledTime => pb::NotStartedCode::NoScheduledTime,
        NotStartedReason::CalendarNotBound(_) => pb::NotStartedCode::CalendarNotBound,
        NotStartedReason::OutOfRange => pb::NotStartedCode::OutOfRange,
    }
}

pub fn event_to_pb(e: &StoredEvent) -> pb::TicketEvent {
    pb::TicketEvent {
        occurred_time: Some(timestamp(e.event.occurred_at)),
        contact_id: e
            .event
            .actor
            .contact
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        kind: Some(event_kind_to_pb(&e.event.kind, e.event.occurred_at)),
        request_id: e.event.request_id.clone(),
        sequence: e.event.seq,
        recorded_by: e.event.actor.client.clone(),
        record_time: Some(timestamp(e.recorded_at)),
    }
}

fn state_to_pb(s: ClockState) -> pb::ClockState {
    match s {
        ClockState::NotStarted => pb::ClockState::NotStarted,
        ClockState::Running => pb::ClockState::Running,
        ClockState::Paused => pb::ClockState::Paused,
        ClockState::Met => pb::ClockState::Met,
        ClockState::Breached => pb::ClockState::Breached,
        ClockState::Cancelled => pb::ClockState::Cancelled,
        ClockState::Fired => pb::ClockState::Fired,
        ClockState::Stopped => pb::ClockState::Stopped,
    }
}

pub fn kind_to_pb(k: &str) -> pb::ClockKind {
    match k {
        "timer" => pb::ClockKind::Timer,
        _ => pb::ClockKind::Promise,
    }
}

pub fn clock_to_pb(v: &ClockView, policy: &Policy) -> pb::Clock {
    let source = policy
        .clock(&v.metric)
        .and_then(|d| v.target_index.and_then(|i| d.targets.get(i)))
        .map(|t| t.source.clone())
        .unwrap_or_default();
    pb::Clock {
        metric: v.metric.to_string(),
        kind: match v.kind {
            ClockKind::Promise => pb::ClockKind::Promise as i32,
            ClockKind::Timer => pb::ClockKind::Timer as i32,
        },
        cycle: v.cycle as i32,
        instance: v.instance as i32,
        state: state_to_pb(v.state) as i32,
        active: v.active,
        paused: v.paused,
        not_started_reason: v
            .not_started
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        not_started_code: v
            .not_started
            .as_ref()
            .map_or(pb::NotStartedCode::Unspecified, not_started_code)
            as i32,
        start_time: Some(timestamp(v.started_at)),
        end_time: opt_timestamp(v.ended_at),
        end_reason: match &v.end_reason {
            None => String::new(),
            Some(EndReason::Stopped { by, .. }) => format!("stopped: {by}"),
            Some(EndReason::Cancelled { by }) => format!("cancelled: {by}"),
            Some(EndReason::Fired) => "fired".to_string(),
        },
        deadline_time: opt_timestamp(v.deadline),
        deadline_if_resumed_time: opt_timestamp(v.deadline_if_resumed),
        budget: v.budget.map(duration),
        elapsed: Some(duration(v.elapsed)),
        remaining: v.remaining.map(duration),
        paused_duration: Some(duration(v.paused_time)),
        pauses: v
            .pauses
            .iter()
            .map(|(a, b)| pb::TimeInterval {
                start_time: Some(timestamp(*a)),
                end_time: opt_timestamp(*b),
            })
            .collect(),
        warnings: v
            .warnings
            .iter()
            .map(|(p, at)| pb::ClockWarning {
                percentage: i32::from(*p),
                time: opt_timestamp(*at),
            })
            .collect(),
        warning_level: i32::from(v.warning_level),
        breach_time: opt_timestamp(v.breached_at),
        target_index: v.target_index.map_or(-1, |i| i as i32),
        source,
    }
}

/// A ticket as the API shows it.
pub fn ticket_to_pb(v: &crate::app::tickets::TicketView) -> pb::Ticket {
    let (r, state, policy, as_of) = (&v.record, &v.state, &*v.policy, v.as_of);
    let t = &r.ticket;
    let mut events: Vec<&StoredEvent> = v
        .events
        .as_ref()
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    events.sort_by_key(|e| (e.event.occurred_at, e.event.seq));
    pb::Ticket {
        name: format!("tickets/{}", t.id),
        organization: name_of(ResourceKind::Organization, &t.organization),
        source_system: t.source_system.to_string(),
        external_id: t.external_id.to_string(),
        request_type: t.request_type.to_string(),
        priority: state
            .priority
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        received_time: Some(timestamp(t.received_at)),
        requested_by: t
            .requested_by
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        estimate_minutes: state.estimate_minutes.map_or(0, |m| m as i32),
        scheduled_time: opt_timestamp(state.scheduled_at),
        policy: name_of(ResourceKind::Policy, &t.policy),
        policy_version: t.policy_version as i32,
        plan: t.plan.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        status: status_to_pb(state.status) as i32,
        cycle: state.cycle as i32,
        clocks: state
            .clocks
            .iter()
            .map(|c| clock_to_pb(c, policy))
            .collect(),
        events: events.into_iter().map(event_to_pb).collect(),
        as_of_time: Some(timestamp(as_of)),
        create_time: Some(timestamp(r.created_at)),
    }
}

pub fn preview_to_pb(p: &crate::app::preview::ChangePreview) -> pb::ChangePreview {
    let clock = |c: &crate::app::preview::PreviewedClock| pb::PreviewedClock {
        ticket: format!("tickets/{}", c.ticket),
        organization: name_of(ResourceKind::Organization, &c.organization),
        metric: c.metric.clone(),
        instance: c.instance as i32,
        current_deadline_time: opt_timestamp(c.before),
        new_deadline_time: opt_timestamp(c.after),
        newly_breached: c.newly_breached,
    };
    pb::ChangePreview {
        tickets_examined: p.tickets_examined as i64,
        clocks_moved: p.clocks_moved as i64,
        max_earlier: Some(duration(p.max_earlier)),
        max_later: Some(duration(p.max_later)),
        newly_breached: p.newly_breached.iter().map(clock).collect(),
        largest_moves: p.largest_moves.iter().map(clock).collect(),
        truncated: p.truncated,
        newly_breached_count: p.newly_breached_count as i64,
    }
}
