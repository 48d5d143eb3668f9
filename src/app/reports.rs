//! Explained deadlines and attainment reports: read-only questions answered from a
//! ticket's fold and from the clocks index.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta};
use chrono_tz::Tz;

use super::error::{AppError, AppResult};
use super::{App, Reader, parse_body, rejected};
use crate::domain::attainment::{self, Line, Outcome, Period, Settled};
use crate::domain::clock::ClockView;
use crate::domain::explain::{self, Explanation};
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::store::{ClockCursor, ClockFilter, ResourceKind, Store, StoreError};

/// Clocks read per page while a report is built.
const REPORT_PAGE: u32 = 5000;

/// Why one clock's deadline is what it is.
#[derive(Debug, Clone)]
pub struct ExplainedDeadline {
    pub policy_id: ResourceId,
    pub policy_version: u32,
    pub policy: Arc<Policy>,
    pub clock: ClockView,
    pub explanation: Explanation,
    /// The calendar the organisation binds to the slot the clock counts on.
    pub calendar: Option<ResourceId>,
}

impl<S: Store> App<S> {
    pub async fn explain_deadline(
        &self,
        ticket_id: &str,
        metric: &str,
        instance: Option<u32>,
    ) -> AppResult<ExplainedDeadline> {
        let record = self
            .store
            .get_ticket(ticket_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => AppError::NotFound(format!("tickets/{ticket_id}")),
                e => e.into(),
            })?;
        let stored = self.store.ticket_events(ticket_id).await?;
        let loaded = self.load(&mut Reader::Pool(&self.store), &record).await?;
        let now = self.now();
        let state = self
            .fold(&loaded, &record, &App::<S>::events(&stored), now)
            .map_err(|r| rejected(r, None))?;
        let view = state
            .clocks
            .into_iter()
            .filter(|c| c.metric.as_str() == metric)
            .filter(|c| instance.is_none_or(|i| c.instance == i))
            .max_by_key(|c| c.instance)
            .ok_or_else(|| {
                AppError::NotFound(match instance {
                    Some(i) => format!("clock {metric} #{i} of tickets/{ticket_id}"),
                    None => format!("clock {metric} of tickets/{ticket_id}"),
                })
            })?;
        let (_, calendars) = &*loaded.context;
        let explanation: Explanation = explain::explain(&view, calendars, now)
            .map_err(|e| AppError::Internal(format!("explaining {metric}: {e}")))?;
        let calendar = explanation
            .counted_on
            .as_ref()
            .and_then(|slot| {
                loaded
                    .organization()
                    .calendars
                    .iter()
                    .find(|b| &b.slot == slot)
            })
            .map(|b| b.calendar.clone());
        Ok(ExplainedDeadline {
            policy_id: record.ticket.policy.clone(),
            policy_version: record.ticket.policy_version,
            policy: loaded.policy,
            clock: view,
            explanation,
            calendar,
        })
    }

    /// Promises met, breached and cancelled per organisation, metric, priority and period
    /// in `[from, to)`, each organisation's periods in its own zone.
    pub async fn report_attainment(
        &self,
        filter: ClockFilter,
        period: Period,
        from: NaiveDate,
        to: NaiveDate,
    ) -> AppResult<Vec<Line>> {
        // Local dates in any zone lie within a day of UTC's: read a day wider, then keep
        // what falls in [from, to) in each organisation's own zone.
        let day = TimeDelta::days(1);
        let start = from.and_hms_opt(0, 0, 0).map(|t| t.and_utc() - day);
        let end = to.and_hms_opt(0, 0, 0).map(|t| t.and_utc() + day);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(AppError::Internal("report range".into()));
        };
        let mut settled = Vec::new();
        let mut zones: HashMap<String, Tz> = HashMap::new();
        let mut after: Option<ClockCursor> = None;
        loop {
            let page = self
                .reads()
                .settled_promises(start, end, &filter, after.as_ref(), REPORT_PAGE)
                .await?;
            for p in &page {
                if !zones.contains_key(&p.organization) {
                    zones.insert(p.organization.clone(), self.zone_of(&p.organization).await?);
                }
                let outcome = match p.state.as_str() {
                    "met" => Outcome::Met,
                    "breached" => Outcome::Breached,
                    "cancelled" => Outcome::Cancelled,
                    // A promise not started (no target) settles nothing.
                    _ => continue,
                };
                settled.push(Settled {
                    organization: p.organization.clone(),
                    metric: p.metric.clone(),
                    priority: p.priority.clone(),
                    outcome,
                    settled_at: p.settled_at,
                    elapsed_seconds: p.elapsed_seconds,
                });
            }
            match page.last() {
                Some(last) if page.len() == REPORT_PAGE as usize => {
                    after = Some(ClockCursor {
                        deadline_us: last.settled_at.timestamp_micros(),
                        ticket_id: last.ticket_id.clone(),
                        metric: last.metric.clone(),
                        instance: last.instance,
                    });
                }
                _ => break,
            }
        }
        Ok(attainment::report(
            settled,
            |org| zones.get(org).copied().unwrap_or(chrono_tz::UTC),
            period,
            from,
            to,
        ))
    }

    async fn zone_of(&self, organization: &str) -> AppResult<Tz> {
        let Ok(id) = ResourceId::parse(organization) else {
            return Ok(chrono_tz::UTC);
        };
        match self
            .store
            .get_resource(ResourceKind::Organization, &id, None)
            .await
        {
            Ok(v) => Ok(parse_body::<Organization>(&v)?.zone),
            Err(StoreError::NotFound(_)) => Ok(chrono_tz::UTC),
            Err(e) => Err(e.into()),
        }
    }
}
