//! Previews of calendar and policy changes: every affected open ticket folded as it is and
//! as it would be, compared clock by clock. Nothing is written.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::app::{App, Extra, Loaded, OrgContext, Reader, rejected};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult};
use super::pb;
use crate::domain::calendar::CalendarSpec;
use crate::domain::catalog::Dated;
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::domain::policy::Policy;
use crate::domain::preview::{Moved, compare};
use crate::store::{ResourceKind, Store, StoreError, TicketRecord};

/// Most open tickets a preview folds.
const MAX_TICKETS: usize = 20_000;
/// Most clocks listed per list.
const MAX_LISTED: usize = 100;

/// The preview being built.
#[derive(Default)]
struct Tally {
    tickets: usize,
    moved: u64,
    max_earlier: TimeDelta,
    max_later: TimeDelta,
    newly_breached: Vec<pb::PreviewedClock>,
    newly_breached_count: u64,
    largest: Vec<(TimeDelta, pb::PreviewedClock)>,
    truncated: bool,
}

impl Tally {
    fn add(&mut self, record: &TicketRecord, moves: Vec<Moved>) {
        for m in moves {
            self.moved += 1;
            let shift = m.shift();
            if shift < TimeDelta::zero() {
                self.max_earlier = self.max_earlier.max(-shift);
            } else {
                self.max_later = self.max_later.max(shift);
            }
            let clock = pb::PreviewedClock {
                ticket: format!("tickets/{}", record.ticket.id),
                organization: cv::name_of(ResourceKind::Organization, &record.ticket.organization),
                metric: m.metric.to_string(),
                instance: m.instance as i32,
                current_deadline_time: cv::opt_timestamp(m.before),
                new_deadline_time: cv::opt_timestamp(m.after),
                newly_breached: m.newly_breached,
            };
            if m.newly_breached {
                self.newly_breached_count += 1;
                if self.newly_breached.len() < MAX_LISTED {
                    self.newly_breached.push(clock.clone());
                } else {
                    self.truncated = true;
                }
            }
            self.largest.push((shift.abs(), clock));
            if self.largest.len() > 4 * MAX_LISTED {
                self.keep_largest();
            }
        }
    }

    fn keep_largest(&mut self) {
        self.largest.sort_by_key(|c| std::cmp::Reverse(c.0));
        if self.largest.len() > MAX_LISTED {
            self.truncated = true;
            self.largest.truncate(MAX_LISTED);
        }
    }

    fn finish(mut self) -> pb::ChangePreview {
        self.keep_largest();
        pb::ChangePreview {
            tickets_examined: self.tickets as i64,
            clocks_moved: self.moved as i64,
            max_earlier: Some(cv::duration(self.max_earlier)),
            max_later: Some(cv::duration(self.max_later)),
            newly_breached: self.newly_breached,
            largest_moves: self.largest.into_iter().map(|(_, c)| c).collect(),
            truncated: self.truncated,
            newly_breached_count: self.newly_breached_count as i64,
        }
    }
}

impl<S: Store> App<S> {
    /// A ticket's record, events and current context.
    async fn preview_ticket(
        &self,
        id: &str,
    ) -> ApiResult<Option<(TicketRecord, Vec<crate::domain::ticket::Event>, Loaded)>> {
        let record = match self.store.get_ticket(id).await {
            Ok(r) => r,
            // Deleted or moved since it was listed: nothing to preview.
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stored = self.store.ticket_events(id).await?;
        let loaded = self.load(&mut Reader::Pool(&self.store), &record).await?;
        Ok(Some((record, App::<S>::events(&stored), loaded)))
    }

    /// What a new version of `calendar`, effective at `effective`, would do.
    pub async fn preview_calendar(
        &self,
        calendar: &ResourceId,
        spec: CalendarSpec,
        effective: Option<DateTime<Utc>>,
    ) -> ApiResult<pb::ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Calendar, calendar, None)
            .await?;
        if current.archived {
            return Err(ApiError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                cv::name_of(ResourceKind::Calendar, calendar)
            )));
        }
        let version = Dated {
            effective_at: effective.unwrap_or(now).max(now),
            value: spec,
        };
        let mut tally = Tally::default();
        let orgs = super::recompute::organizations_binding(self, calendar).await?;
        'orgs: for org in &orgs {
            let changed = self
                .context_with(
                    &mut Reader::Pool(&self.store),
                    org,
                    Extra::Calendar(calendar, version.clone()),
                )
                .await?;
            if !self
                .tally_organization(&mut tally, org, changed, now)
                .await?
            {
                break 'orgs;
            }
        }
        Ok(tally.finish())
    }

    /// What a new version of an organisation, effective now, would do.
    pub async fn preview_organization(
        &self,
        id: &ResourceId,
        org: Organization,
    ) -> ApiResult<pb::ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Organization, id, None)
            .await?;
        if current.archived {
            return Err(ApiError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                cv::name_of(ResourceKind::Organization, id)
            )));
        }
        let version = Dated {
            effective_at: now,
            value: org,
        };
        let changed = self
            .context_with(
                &mut Reader::Pool(&self.store),
                id,
                Extra::Organization(version),
            )
            .await?;
        let mut tally = Tally::default();
        self.tally_organization(&mut tally, id, changed, now)
            .await?;
        Ok(tally.finish())
    }

    /// Folds every open ticket of an organisation as it is and under `changed`, into the
    /// tally; `false` once the tally is full.
    async fn tally_organization(
        &self,
        tally: &mut Tally,
        org: &ResourceId,
        changed: OrgContext,
        now: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let changed = Arc::new(changed);
        for id in self.store.open_ticket_ids(org).await? {
            if tally.tickets >= MAX_TICKETS {
                tally.truncated = true;
                return Ok(false);
            }
            let Some((record, events, loaded)) = self.preview_ticket(&id).await? else {
                continue;
            };
            tally.tickets += 1;
            let before = self
                .fold(&loaded, &record, &events, now)
                .map_err(|r| rejected(r, None))?;
            let alt = Loaded {
                policy: Arc::clone(&loaded.policy),
                context: Arc::clone(&changed),
            };
            // A calendar change cannot make an event illegal; a fold that refuses under
            // it leaves the ticket's clocks as they are.
            if let Ok(after) = self.fold(&alt, &record, &events, now) {
                tally.add(&record, compare(&before, &after));
            }
        }
        Ok(true)
    }

    /// What moving every open ticket on `policy` to `definition` would do.
    pub async fn preview_policy(
        &self,
        policy: &ResourceId,
        definition: Policy,
    ) -> ApiResult<pb::ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Policy, policy, None)
            .await?;
        if current.archived {
            return Err(ApiError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                cv::name_of(ResourceKind::Policy, policy)
            )));
        }
        let definition = Arc::new(definition);
        let mut tally = Tally::default();
        let ids = self
            .store
            .open_tickets_on_policy(policy, MAX_TICKETS as u32 + 1)
            .await?;
        if ids.len() > MAX_TICKETS {
            tally.truncated = true;
        }
        for id in ids.iter().take(MAX_TICKETS) {
            let Some((record, events, loaded)) = self.preview_ticket(id).await? else {
                continue;
            };
            tally.tickets += 1;
            let before = self
                .fold(&loaded, &record, &events, now)
                .map_err(|r| rejected(r, None))?;
            let alt = Loaded {
                policy: Arc::clone(&definition),
                context: Arc::clone(&loaded.context),
            };
            // Under the new policy an event may no longer stand (a guard it adds); such a
            // ticket could not be moved, and its clocks are not counted as moving.
            if let Ok(after) = self.fold(&alt, &record, &events, now) {
                tally.add(&record, compare(&before, &after));
            }
        }
        Ok(tally.finish())
    }
}
