//! Tickets and the events recorded on them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{
    CustomEventName, ExternalId, MetricName, PlanName, PriorityLabel, RequestType, ResourceId,
    ShortText,
};
use super::policy::DueAction;
use super::status::Status;

/// A support ticket as created; everything that happens to it afterwards is an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: String,
    pub organization: ResourceId,
    pub source_system: ExternalId,
    pub external_id: ExternalId,
    pub request_type: RequestType,
    pub priority: Option<PriorityLabel>,
    pub received_at: DateTime<Utc>,
    pub requested_by: Option<ExternalId>,
    pub estimate_minutes: Option<u32>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub policy: ResourceId,
    pub policy_version: u32,
    /// The organisation's plan when the ticket was created: targets select by it, and a
    /// later plan change applies to later tickets.
    pub plan: Option<PlanName>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    StatusChanged {
        to: Status,
        #[serde(default)]
        reason: Option<ShortText>,
    },
    AgentResponded,
    CustomerReplied,
    PriorityChanged {
        to: PriorityLabel,
    },
    EstimateSet {
        minutes: u32,
    },
    ScheduledTimeSet {
        at: DateTime<Utc>,
    },
    /// Work that uses contracted hours was authorised (by the contact in the actor).
    WorkAuthorised,
    /// The work was approved (by the contact in the actor).
    Approved,
    TriageCompleted,
    /// A RESOLVED or CLOSED ticket is reopened: back to PROCESSING, a new cycle.
    Reopened,
    Custom {
        name: CustomEventName,
    },
    /// Recorded by servicelevel itself: a clock crossed a warning threshold. The event's
    /// time is when that took effect: the threshold's instant, or the caller's event that
    /// made it already past (a priority raised after it); `due_at` is the threshold's own
    /// instant.
    ClockWarning {
        metric: MetricName,
        instance: u32,
        level: u8,
        /// Absent in events recorded before it existed: then the event's time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_at: Option<DateTime<Utc>>,
    },
    /// Recorded by servicelevel itself: a promise passed its deadline (`due_at`), taking
    /// effect at the event's time (the deadline, or the change that put it in the past).
    ClockBreached {
        metric: MetricName,
        instance: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_at: Option<DateTime<Utc>>,
    },
    /// Recorded by servicelevel itself: a timer fell due (`due_at`) and its action was
    /// taken at the event's time, never before the event that made it due. A move to a
    /// status changes the ticket's status.
    ActionTaken {
        metric: MetricName,
        instance: u32,
        action: DueAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_at: Option<DateTime<Utc>>,
    },
    /// An event of servicelevel's own that a later-arriving event showed to be wrong: it
    /// stays in the log and no longer counts.
    Retracted {
        seq: i64,
        reason: ShortText,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::StatusChanged { .. } => "status_changed",
            EventKind::AgentResponded => "agent_responded",
            EventKind::CustomerReplied => "customer_replied",
            EventKind::PriorityChanged { .. } => "priority_changed",
            EventKind::EstimateSet { .. } => "estimate_set",
            EventKind::ScheduledTimeSet { .. } => "scheduled_time_set",
            EventKind::WorkAuthorised => "work_authorised",
            EventKind::Approved => "approved",
            EventKind::TriageCompleted => "triage_completed",
            EventKind::Reopened => "reopened",
            EventKind::Custom { .. } => "custom",
            EventKind::ClockWarning { .. } => "clock_warning",
            EventKind::ClockBreached { .. } => "clock_breached",
            EventKind::ActionTaken { .. } => "action_taken",
            EventKind::Retracted { .. } => "retracted",
        }
    }

    /// Whether servicelevel wrote it itself (from a clock), rather than a caller.
    pub fn is_system(&self) -> bool {
        matches!(
            self,
            EventKind::ClockWarning { .. }
                | EventKind::ClockBreached { .. }
                | EventKind::ActionTaken { .. }
                | EventKind::Retracted { .. }
        )
    }
}

/// What a clock reached by itself, and servicelevel records as an event: the key says
/// which clock, what, and when, so each is recorded exactly once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemAction {
    /// When it took effect: `due`, or the caller's event that made `due` already past.
    pub at: DateTime<Utc>,
    /// The nominal instant: the deadline or warning threshold as the clock's rule puts it.
    pub due: DateTime<Utc>,
    pub metric: MetricName,
    pub instance: u32,
    pub what: ActionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Warning { level: u8 },
    Breach,
    Escalate { level: u32 },
    MoveTo { status: Status, reason: ShortText },
}

impl SystemAction {
    /// The event that records it.
    pub fn event_kind(&self) -> EventKind {
        let (metric, instance, due_at) = (self.metric.clone(), self.instance, Some(self.due));
        match &self.what {
            ActionKind::Warning { level } => EventKind::ClockWarning {
                metric,
                instance,
                level: *level,
                due_at,
            },
            ActionKind::Breach => EventKind::ClockBreached {
                metric,
                instance,
                due_at,
            },
            ActionKind::Escalate { level } => EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::Escalate { level: *level },
                due_at,
            },
            ActionKind::MoveTo { status, reason } => EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::MoveTo {
                    status: *status,
                    reason: reason.clone(),
                },
                due_at,
            },
        }
    }

    /// The action a recorded event stands for, if it is one.
    pub fn of_event(at: DateTime<Utc>, kind: &EventKind) -> Option<SystemAction> {
        let (metric, instance, what, due_at) = match kind {
            EventKind::ClockWarning {
                metric,
                instance,
                level,
                due_at,
            } => (
                metric,
                *instance,
                ActionKind::Warning { level: *level },
                due_at,
            ),
            EventKind::ClockBreached {
                metric,
                instance,
                due_at,
            } => (metric, *instance, ActionKind::Breach, due_at),
            EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::Escalate { level },
                due_at,
            } => (
                metric,
                *instance,
                ActionKind::Escalate { level: *level },
                due_at,
            ),
            EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::MoveTo { status, reason },
                due_at,
            } => (
                metric,
                *instance,
                ActionKind::MoveTo {
                    status: *status,
                    reason: reason.clone(),
                },
                due_at,
            ),
            _ => return None,
        };
        Some(SystemAction {
            at,
            due: due_at.unwrap_or(at),
            metric: metric.clone(),
            instance,
            what,
        })
    }
}

/// Who recorded an event: the API client, and the customer's contact where given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub client: String,
    #[serde(default)]
    pub contact: Option<ExternalId>,
}

/// An event as stored: `seq` is its arrival order on the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub kind: EventKind,
    pub actor: Actor,
    pub request_id: String,
}

/// Events in the order the ticket's state folds them: by when they happened; at one
/// instant, callers' events before servicelevel's own (a stop at the deadline instant
/// meets it); then by arrival.
pub fn sort_events(events: &mut [&Event]) {
    events.sort_by_key(|e| (e.occurred_at, e.kind.is_system(), e.seq));
}
