//! Previews of calendar and policy changes: every affected open ticket folded as it is and
//! as it would be, compared clock by clock. Nothing is written.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::error::{AppError, AppResult};
use super::{App, Extra, Loaded, OrgContext, Reader, rejected};
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

/// A clock a previewed change would alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewedClock {
    pub ticket: String,
    pub organization: ResourceId,
    pub metric: String,
    pub instance: u32,
    /// Its deadline now (for a paused clock, if it resumed now).
    pub before: Option<DateTime<Utc>>,
    /// Its deadline under the change.
    pub after: Option<DateTime<Utc>>,
    pub newly_breached: bool,
}

/// What a change would do to running clocks, before it is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePreview {
    pub tickets_examined: u64,
    pub clocks_moved: u64,
    pub max_earlier: TimeDelta,
    pub max_later: TimeDelta,
    pub newly_breached: Vec<PreviewedClock>,
    pub newly_breached_count: u64,
    pub largest_moves: Vec<PreviewedClock>,
    pub truncated: bool,
}

/// The preview being built.
#[derive(Default)]
struct Tally {
    tickets: usize,
    moved: u64,
    max_earlier: TimeDelta,
    max_later: TimeDelta,
    newly_breached: Vec<PreviewedClock>,
    newly_breached_count: u64,
    largest: Vec<(TimeDelta, PreviewedClock)>,
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
            let clock = PreviewedClock {
                ticket: record.ticket.id.clone(),
                organization: record.ticket.organization.clone(),
                metric: m.metric.to_string(),
                instance: m.instance,
                before: m.before,
                after: m.after,
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

    fn finish(mut self) -> ChangePreview {
        self.keep_largest();
        ChangePreview {
            tickets_examined: self.tickets as u64,
            clocks_moved: self.moved,
            max_earlier: self.max_earlier,
            max_later: self.max_later,
            newly_breached: self.newly_breached,
            newly_breached_count: self.newly_breached_count,
            largest_moves: self.largest.into_iter().map(|(_, c)| c).collect(),
            truncated: self.truncated,
        }
    }
}

impl<S: Store> App<S> {
    /// A ticket's record, events and current context.
    async fn preview_ticket(
        &self,
        id: &str,
    ) -> AppResult<Option<(TicketRecord, Vec<crate::domain::ticket::Event>, Loaded)>> {
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
    ) -> AppResult<ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Calendar, calendar, None)
            .await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                ResourceKind::Calendar.name(calendar)
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
    ) -> AppResult<ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Organization, id, None)
            .await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                ResourceKind::Organization.name(id)
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
    ) -> AppResult<bool> {
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
    ) -> AppResult<ChangePreview> {
        let now = self.now();
        let current = self
            .store
            .get_resource(ResourceKind::Policy, policy, None)
            .await?;
        if current.archived {
            return Err(AppError::FailedPrecondition(format!(
                "{} is archived; archived resources do not change",
                ResourceKind::Policy.name(policy)
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
