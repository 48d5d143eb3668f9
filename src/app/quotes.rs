//! What-if quotes: the clocks a hypothetical ticket would get, without storing anything.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::{AppError, AppResult};
use super::tickets::check_priority;
use super::{App, Reader, parse_body};
use crate::domain::clock::ClockView;
use crate::domain::names::{ExternalId, PriorityLabel, RequestType, ResourceId};
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::domain::status::Status as TicketStatus;
use crate::domain::ticket::{Event, Ticket};
use crate::store::{NewEvent, ResourceKind, Store, TicketRecord};

/// The clocks a hypothetical ticket would get.
#[derive(Debug, Clone)]
pub struct QuoteView {
    pub clocks: Vec<ClockView>,
    pub policy: Arc<Policy>,
    pub policy_id: ResourceId,
    pub policy_version: u32,
}

/// A hypothetical ticket to quote deadlines for.
#[derive(Debug, Clone)]
pub struct Quote {
    pub organization: ResourceId,
    pub request_type: RequestType,
    pub priority: Option<PriorityLabel>,
    pub estimate_minutes: Option<u32>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Unset: now.
    pub received_at: Option<DateTime<Utc>>,
    /// Unset: now, or the latest event if later.
    pub as_of: Option<DateTime<Utc>>,
    pub events: Vec<NewEvent>,
}

impl<S: Store> App<S> {
    /// The clocks a hypothetical ticket would get, with hypothetical events; nothing is
    /// stored.
    pub async fn quote(&self, q: Quote) -> AppResult<QuoteView> {
        let now = self.now();
        let received_at = q.received_at.unwrap_or(now);
        let org_v = self
            .store
            .get_resource(ResourceKind::Organization, &q.organization, None)
            .await?;
        let org: Organization = parse_body(&org_v)?;
        let policy_v = self
            .store
            .get_resource(ResourceKind::Policy, &org.policy, None)
            .await?;
        let mut reader = Reader::Pool(&self.store);
        let policy = self
            .policy(&mut reader, &org.policy, policy_v.version)
            .await?;
        check_priority(&policy, q.priority.as_ref(), "priority")?;
        let quote = ExternalId::parse("quote").map_err(|e| AppError::Internal(e.to_string()))?;
        let record = TicketRecord {
            ticket: Ticket {
                id: "quote".into(),
                organization: q.organization.clone(),
                source_system: quote.clone(),
                external_id: quote,
                request_type: q.request_type,
                priority: q.priority,
                received_at,
                requested_by: None,
                estimate_minutes: q.estimate_minutes,
                scheduled_at: q.scheduled_at,
                policy: org.policy.clone(),
                policy_version: policy_v.version,
                plan: org.plan.clone(),
            },
            status: TicketStatus::New,
            cycle: 0,
            priority: None,
            next_change_at: None,
            created_at: now,
            updated_at: now,
            trace_context: None,
        };
        let loaded = self.load(&mut reader, &record).await?;
        let events: Vec<Event> = q
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: i as i64 + 1,
                occurred_at: e.occurred_at,
                kind: e.kind,
                actor: e.actor,
                request_id: e.request_id,
            })
            .collect();
        let last = events
            .iter()
            .map(|e| e.occurred_at)
            .max()
            .unwrap_or(received_at);
        let as_of = q.as_of.unwrap_or_else(|| now.max(last).max(received_at));
        let state = self.fold(&loaded, &record, &events, as_of).map_err(|r| {
            AppError::FailedPrecondition(format!("events[{}]: {}", r.seq - 1, r.violation))
        })?;
        Ok(QuoteView {
            clocks: state.clocks,
            policy: loaded.policy,
            policy_id: org.policy,
            policy_version: policy_v.version,
        })
    }
}
