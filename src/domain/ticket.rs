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
    /// Recorded by servicelevel itself: a clock crossed a warning threshold (the event's
    /// time is the instant it was crossed).
    ClockWarning {
        metric: MetricName,
        instance: u32,
        level: u8,
    },
    /// Recorded by servicelevel itself: a promise passed its deadline (stamped with it).
    ClockBreached {
        metric: MetricName,
        instance: u32,
    },
    /// Recorded by servicelevel itself: a timer fell due and its action was taken
    /// (stamped with the due instant). A move to a status changes the ticket's status.
    ActionTaken {
        metric: MetricName,
        instance: u32,
        action: DueAction,
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
    pub at: DateTime<Utc>,
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
        match &self.what {
            ActionKind::Warning { level } => EventKind::ClockWarning {
                metric: self.metric.clone(),
                instance: self.instance,
                level: *level,
            },
            ActionKind::Breach => EventKind::ClockBreached {
                metric: self.metric.clone(),
                instance: self.instance,
            },
            ActionKind::Escalate { level } => EventKind::ActionTaken {
                metric: self.metric.clone(),
                instance: self.instance,
                action: DueAction::Escalate { level: *level },
            },
            ActionKind::MoveTo { status, reason } => EventKind::ActionTaken {
                metric: self.metric.clone(),
                instance: self.instance,
                action: DueAction::MoveTo {
                    status: *status,
                    reason: reason.clone(),
                },
            },
        }
    }

    /// The action a recorded event stands for, if it is one.
    pub fn of_event(at: DateTime<Utc>, kind: &EventKind) -> Option<SystemAction> {
        let (metric, instance, what) = match kind {
            EventKind::ClockWarning {
                metric,
                instance,
                level,
            } => (metric, *instance, ActionKind::Warning { level: *level }),
            EventKind::ClockBreached { metric, instance } => {
                (metric, *instance, ActionKind::Breach)
            }
            EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::Escalate { level },
            } => (metric, *instance, ActionKind::Escalate { level: *level }),
            EventKind::ActionTaken {
                metric,
                instance,
                action: DueAction::MoveTo { status, reason },
            } => (
                metric,
                *instance,
                ActionKind::MoveTo {
                    status: *status,
                    reason: reason.clone(),
                },
            ),
            _ => return None,
        };
        Some(SystemAction {
            at,
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
