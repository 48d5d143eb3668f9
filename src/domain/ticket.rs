//! Tickets and the events recorded on them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{
    CustomEventName, ExternalId, PlanName, PriorityLabel, RequestType, ResourceId, ShortText,
};
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
        }
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

/// Events in the order the ticket's state folds them: by when they happened, ties by
/// arrival.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by_key(|e| (e.occurred_at, e.seq));
}
