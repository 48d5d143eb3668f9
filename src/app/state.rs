//! The imperative shell around the domain: loads what a fold needs, runs it, and writes
//! the outcome in one transaction with its idempotency record.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::error::{AppError, AppResult};
use crate::domain::calendar::CalendarSpec;
use crate::domain::calendar_cache::CalendarCache;
use crate::domain::catalog::{Dated, clock_calendars};
use crate::domain::clock::{ClockCalendars, ClockState, FoldContext, Rejected, TicketState, fold};
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::domain::policy::ClockKind;
use crate::domain::policy::Policy;
use crate::domain::ticket::Event;
use crate::store::{
    ClockRow, DerivedState, ResourceKind, ResourceVersion, Store, StoreResult, StoreTx,
    StoredEvent, TicketRecord,
};
use crate::time::Clock;

/// Shared state of the API: the store, the clock, and caches of immutable things.
pub struct App<S: Store> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub calendars: CalendarCache,
    /// Policy versions never change once written, so each is parsed once.
    policies: Mutex<HashMap<(ResourceId, u32), Arc<Policy>>>,
    /// The hours side's caches.
    pub(super) hours: super::hours::HoursCache,
    /// Ledger writes queued per hour account, decided a group at a time.
    pub(super) account_queues: super::account_writes::AccountQueues,
    /// Signalled after a commit that wrote alerts or moved a ticket's next change: wakes
    /// alert streams and the due-time runner in this process.
    pub alerts_written: Arc<tokio::sync::Notify>,
    /// Signalled when a webhook subscription was made or changed in this process: wakes
    /// the webhook supervisor.
    pub subscriptions_changed: Arc<tokio::sync::Notify>,
    /// Signalled when a webhook delivery was kept: wakes the inbox worker.
    pub inbox_wake: Arc<tokio::sync::Notify>,
    /// This server's metrics (served on `/metrics` when configured).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Assembled organisation contexts, valid while the catalogue epoch they were read at
    /// is current.
    contexts: Mutex<HashMap<ResourceId, (i64, Arc<OrgContext>)>>,
    /// How far ahead of `now` a caller's event or received time may be.
    pub max_future_skew: chrono::TimeDelta,
    /// Where alert webhooks may be delivered.
    pub webhook_destinations: crate::domain::webhook::DestinationPolicy,
    /// A read replica for lag-tolerant reads ([`App::reads`]); `None`: the primary only.
    pub replica: Option<Arc<super::replica::ReadRoute<S>>>,
}

/// An organisation (latest version) and its clock calendars over all versions.
pub type OrgContext = (Organization, ClockCalendars);

/// A version not written yet, for a preview.
pub enum Extra<'a> {
    Calendar(&'a ResourceId, Dated<CalendarSpec>),
    Organization(Dated<Organization>),
}

/// Most organisation contexts kept; beyond it the cache starts over.
const MAX_CONTEXTS: usize = 4096;

/// Reads either from the pool or inside a transaction (after a ticket's lock, so they
/// see every version committed before it).
pub enum Reader<'a, S: Store> {
    Pool(&'a S),
    Tx(&'a mut S::Tx),
}

impl<S: Store> Reader<'_, S> {
    pub(super) async fn catalog_epoch(&mut self) -> StoreResult<i64> {
        self.epoch().await
    }

    /// A resource's latest version, or `None` when it does not exist.
    pub(super) async fn resource_opt(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> StoreResult<Option<ResourceVersion>> {
        match self.resource(kind, id, None).await {
            Ok(v) => Ok(Some(v)),
            Err(crate::store::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn account_entries(
        &mut self,
        org: &ResourceId,
        bucket: &str,
        from_seq: u64,
    ) -> StoreResult<Vec<crate::domain::ledger::Entry>> {
        match self {
            Reader::Pool(s) => s.account_entries(org, bucket, from_seq).await,
            Reader::Tx(tx) => tx.account_entries(org, bucket, from_seq).await,
        }
    }

    pub(super) async fn versions(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> StoreResult<Vec<ResourceVersion>> {
        match self {
            Reader::Pool(s) => s.resource_versions(kind, id).await,
            Reader::Tx(tx) => tx.resource_versions(kind, id).await,
        }
    }

    async fn epoch(&mut self) -> StoreResult<i64> {
        match self {
            Reader::Pool(s) => s.catalog_epoch().await,
            Reader::Tx(tx) => tx.catalog_epoch().await,
        }
    }

    async fn resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> StoreResult<ResourceVersion> {
        match self {
            Reader::Pool(s) => s.get_resource(kind, id, version).await,
            Reader::Tx(tx) => tx.get_resource(kind, id, version).await,
        }
    }
}

/// Everything besides events a ticket's fold depends on.
#[derive(Clone)]
pub struct Loaded {
    pub policy: Arc<Policy>,
    pub context: Arc<OrgContext>,
}

impl Loaded {
    pub fn organization(&self) -> &Organization {
        &self.context.0
    }

    pub fn calendars(&self) -> &ClockCalendars {
        &self.context.1
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("stored {what} cannot be read: {e}"))
}

pub fn parse_body<T: serde::de::DeserializeOwned>(v: &ResourceVersion) -> AppResult<T> {
    serde_json::from_str(&v.body).map_err(|e| corrupt(v.kind.as_str(), e))
}

/// The rows of the clocks index for a fold's state: an active clock is indexed by its
/// deadline (or when it breached) and its first warning.
pub fn derived(state: &TicketState) -> DerivedState {
    DerivedState {
        status: state.status,
        cycle: state.cycle,
        priority: state.priority.as_ref().map(|p| p.to_string()),
        next_change_at: state.next_change_at,
        clocks: state
            .clocks
            .iter()
            .map(|c| ClockRow {
                metric: c.metric.to_string(),
                instance: c.instance,
                kind: kind_name(c.kind).to_string(),
                state: state_name(c.state).to_string(),
                active: c.active && c.state != ClockState::NotStarted,
                started_at: c.started_at,
                deadline: if c.active {
                    c.breached_at.or(c.deadline)
                } else {
                    None
                },
                warning: if c.active {
                    c.warnings.iter().find_map(|(_, at)| *at)
                } else {
                    None
                },
                settled_at: c.ended_at.or(c.breached_at.filter(|_| c.active)),
                elapsed_seconds: c.ended_at.map(|_| c.elapsed.num_seconds()),
            })
            .collect(),
    }
}

/// A fold's refusal as the API reports it.
pub fn rejected(r: Rejected, new_seq: Option<i64>) -> AppError {
    match new_seq {
        Some(seq) if seq == r.seq => AppError::FailedPrecondition(format!("{}", r.violation)),
        _ => AppError::FailedPrecondition(format!(
            "the event conflicts with stored event #{} at {}: {}",
            r.seq,
            r.occurred_at.to_rfc3339(),
            r.violation
        )),
    }
}

impl<S: Store> App<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        App {
            store,
            clock,
            calendars: CalendarCache::new(1024),
            policies: Mutex::new(HashMap::new()),
            contexts: Mutex::new(HashMap::new()),
            hours: super::hours::HoursCache::default(),
            account_queues: Default::default(),
            alerts_written: Arc::new(tokio::sync::Notify::new()),
            subscriptions_changed: Arc::new(tokio::sync::Notify::new()),
            inbox_wake: Arc::new(tokio::sync::Notify::new()),
            metrics: crate::metrics::Metrics::new(),
            max_future_skew: chrono::TimeDelta::minutes(5),
            webhook_destinations: Default::default(),
            replica: None,
        }
    }

    /// INVALID_ARGUMENT on `field` when `at` is further ahead of now than the allowed
    /// skew: nothing a caller reports can have happened in the future.
    pub fn not_in_future(&self, field: &str, at: DateTime<Utc>) -> AppResult<()> {
        let now = self.now();
        if at <= now + self.max_future_skew {
            return Ok(());
        }
        Err(AppError::invalid(
            field,
            format!(
                "{} is {} s ahead of the server's clock ({}); at most {} s ahead is accepted",
                at.to_rfc3339(),
                (at - now).num_seconds(),
                now.to_rfc3339(),
                self.max_future_skew.num_seconds()
            ),
        ))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub async fn policy(
        &self,
        reader: &mut Reader<'_, S>,
        id: &ResourceId,
        version: u32,
    ) -> AppResult<Arc<Policy>> {
        let key = (id.clone(), version);
        if let Some(p) = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(p));
        }
        let v = reader
            .resource(ResourceKind::Policy, id, Some(version))
            .await?;
        let p: Arc<Policy> = Arc::new(parse_body(&v)?);
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&p));
        Ok(p)
    }

    /// The organisation (latest version) and its clock calendars over all versions: from
    /// the cache while the catalogue has not changed since it was assembled.
    pub async fn organization_context(
        &self,
        reader: &mut Reader<'_, S>,
        id: &ResourceId,
    ) -> AppResult<Arc<OrgContext>> {
        let epoch = reader.epoch().await?;
        if let Some((at, ctx)) = self
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            && *at == epoch
        {
            return Ok(Arc::clone(ctx));
        }
        let ctx = Arc::new(self.assemble_context(reader, id, None).await?);
        let mut cache = self.contexts.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CONTEXTS {
            cache.clear();
        }
        cache.insert(id.clone(), (epoch, Arc::clone(&ctx)));
        Ok(ctx)
    }

    /// The organisation's context as it would be with one more version of a calendar or
    /// of the organisation itself: what an update would do, before it is made.
    pub async fn context_with(
        &self,
        reader: &mut Reader<'_, S>,
        id: &ResourceId,
        extra: Extra<'_>,
    ) -> AppResult<OrgContext> {
        self.assemble_context(reader, id, Some(extra)).await
    }

    async fn assemble_context(
        &self,
        reader: &mut Reader<'_, S>,
        id: &ResourceId,
        extra: Option<Extra<'_>>,
    ) -> AppResult<OrgContext> {
        let versions = reader.versions(ResourceKind::Organization, id).await?;
        let mut orgs: Vec<Dated<Organization>> = versions
            .iter()
            .map(|v| {
                Ok(Dated {
                    effective_at: v.effective_at,
                    value: parse_body(v)?,
                })
            })
            .collect::<AppResult<_>>()?;
        let (extra_calendar, extra_org) = match extra {
            Some(Extra::Calendar(calendar, version)) => (Some((calendar, version)), None),
            Some(Extra::Organization(version)) => (None, Some(version)),
            None => (None, None),
        };
        if let Some(version) = extra_org {
            orgs.push(version);
            orgs.sort_by_key(|v| v.effective_at);
        }
        let mut calendars: BTreeMap<ResourceId, Vec<Dated<CalendarSpec>>> = BTreeMap::new();
        for o in &orgs {
            for b in &o.value.calendars {
                if calendars.contains_key(&b.calendar) {
                    continue;
                }
                let versions = reader.versions(ResourceKind::Calendar, &b.calendar).await?;
                let specs = versions
                    .iter()
                    .map(|v| {
                        Ok(Dated {
                            effective_at: v.effective_at,
                            value: parse_body(v)?,
                        })
                    })
                    .collect::<AppResult<_>>()?;
                calendars.insert(b.calendar.clone(), specs);
            }
        }
        if let Some((calendar, version)) = extra_calendar
            && let Some(versions) = calendars.get_mut(calendar)
        {
            versions.push(version);
            versions.sort_by_key(|v| v.effective_at);
        }
        let cals = clock_calendars(&orgs, &calendars, &self.calendars)
            .map_err(|e| corrupt("calendar", e))?;
        let latest = orgs
            .pop()
            .ok_or_else(|| AppError::NotFound(format!("organization {id}")))?;
        Ok((latest.value, cals))
    }

    pub async fn load(
        &self,
        reader: &mut Reader<'_, S>,
        record: &TicketRecord,
    ) -> AppResult<Loaded> {
        let t = &record.ticket;
        let policy = self.policy(reader, &t.policy, t.policy_version).await?;
        let context = self.organization_context(reader, &t.organization).await?;
        Ok(Loaded { policy, context })
    }

    pub fn fold(
        &self,
        loaded: &Loaded,
        record: &TicketRecord,
        events: &[Event],
        as_of: DateTime<Utc>,
    ) -> Result<TicketState, Rejected> {
        fold(
            FoldContext {
                ticket: &record.ticket,
                policy: &loaded.policy,
                organization: loaded.organization(),
                calendars: loaded.calendars(),
            },
            events,
            as_of,
        )
    }

    /// Events of a ticket as the fold wants them.
    pub fn events(stored: &[StoredEvent]) -> Vec<Event> {
        stored.iter().map(|e| e.event.clone()).collect()
    }
}

/// A clock state as the clocks index stores it.
pub fn state_name(s: ClockState) -> &'static str {
    match s {
        ClockState::NotStarted => "not_started",
        ClockState::Running => "running",
        ClockState::Paused => "paused",
        ClockState::Met => "met",
        ClockState::Breached => "breached",
        ClockState::Cancelled => "cancelled",
        ClockState::Fired => "fired",
        ClockState::Stopped => "stopped",
    }
}

/// A clock kind as the clocks index stores it.
pub fn kind_name(k: ClockKind) -> &'static str {
    match k {
        ClockKind::Promise => "promise",
        ClockKind::Timer => "timer",
    }
}
