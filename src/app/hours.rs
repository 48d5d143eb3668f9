//! Prepaid hours: plans, hours contracts, ledger writes and statements.
//!
//! Every write locks its account row, decides on the account's fold (kept in memory
//! between writes and brought up to date from the entries posted since), appends what the
//! ledger decided, and stores the answer under the request's idempotency key, in one
//! transaction. Reads first post the period closes that have fallen due, exactly once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::answer::{Answer, Idempotency};
use super::catalog::{Render, json};
use super::error::{AppError, AppResult, Violation};
use super::fingerprint::Fingerprint;
use super::{App, Reader, page, parse_body};
use crate::domain::catalog::Dated;
use crate::domain::hours::HoursContractSpec;
use crate::domain::ledger::{
    BucketName, Command, Contract, Entry, ErrorClass, Ledger, LedgerError, Plan, Statement,
    TicketRef, authorised_by_main_stakeholder,
};
use crate::domain::names::{ExternalId, ResourceId};
use crate::domain::organization::Organization;
use crate::domain::ticket::EventKind;
use crate::store::{ResourceKind, ResourceVersion, Store, StoreError, StoreTx};

/// An account's balance in one period, as of an instant.
#[derive(Debug, Clone)]
pub struct Balance {
    pub organization: ResourceId,
    pub statement: Statement,
    pub as_of: DateTime<Utc>,
    /// The organisation's zone: periods end on its local dates.
    pub zone: Tz,
}

/// What a ledger write posted, and the balance after it.
#[derive(Debug, Clone)]
pub struct LedgerWrite {
    pub entries: Vec<Entry>,
    pub balance: Balance,
}

/// An organisation's statement: each bucket's period that contains a date.
#[derive(Debug, Clone)]
pub struct StatementView {
    pub organization: ResourceId,
    pub date: NaiveDate,
    pub buckets: Vec<Statement>,
    pub with_entries: bool,
    pub zone: Tz,
    pub as_of: DateTime<Utc>,
}

/// Organisations whose statements an export reads together (a few queries for all).
const EXPORT_PIECE: usize = 100;

/// An organisation's hours context: the organisation, its contract and the ledger
/// contract assembled from its plans.
pub struct HoursContext {
    pub organization: Organization,
    pub contract: Contract,
    pub buckets: Vec<BucketName>,
}

/// Caches of the hours side of [`App`]: contexts by catalogue epoch, and each account's
/// fold with the epoch it was built under.
#[derive(Default)]
pub struct HoursCache {
    contexts: Mutex<HashMap<ResourceId, (i64, Arc<HoursContext>)>>,
    ledgers: Mutex<HashMap<(ResourceId, BucketName), (i64, Ledger)>>,
    /// Accounts whose kept fold lately turned out behind the database (another process
    /// wrote): their writes take the locked way, which catches a fold up, until a group
    /// finds the fold current again.
    contended: Mutex<HashSet<(ResourceId, BucketName)>>,
}

/// An account's kept fold with its organisation's context.
pub(super) type KeptFold = (Arc<HoursContext>, Ledger);

/// Most cached account folds; beyond it the cache starts over.
const MAX_LEDGERS: usize = 10_000;

impl From<LedgerError> for AppError {
    fn from(e: LedgerError) -> Self {
        let message = e.to_string();
        match (e.class(), e) {
            (_, LedgerError::InvalidTerms(v)) => AppError::InvalidArgument(
                v.into_iter()
                    .map(|v| Violation {
                        field: v.path,
                        description: v.reason,
                    })
                    .collect(),
            ),
            (_, LedgerError::InvalidMinutes { field, reason }) => AppError::invalid(field, reason),
            (ErrorClass::InvalidArgument, _) => AppError::InvalidArgument(vec![Violation {
                field: "request".into(),
                description: message,
            }]),
            (ErrorClass::NotFound, _) => AppError::NotFound(message),
            (ErrorClass::AlreadyExists, _) => AppError::AlreadyExists(message),
            (ErrorClass::FailedPrecondition, _) => AppError::FailedPrecondition(message),
            (ErrorClass::Internal, _) => AppError::Internal(message),
        }
    }
}

impl<S: Store> App<S> {
    /// The organisation's hours context, cached while the catalogue is unchanged, and the
    /// catalogue epoch it is valid for (what the ledger cache is keyed on too).
    pub async fn hours_context(
        &self,
        reader: &mut Reader<'_, S>,
        org: &ResourceId,
    ) -> AppResult<(i64, Arc<HoursContext>)> {
        let epoch = reader.catalog_epoch().await?;
        let ctx = self.hours_context_at(reader, org, epoch).await?;
        Ok((epoch, ctx))
    }

    /// The organisation's hours context as of catalogue `epoch`, read in the same
    /// transaction (a group of ledger writes reads the epoch once for all its accounts).
    pub(super) async fn hours_context_at(
        &self,
        reader: &mut Reader<'_, S>,
        org: &ResourceId,
        epoch: i64,
    ) -> AppResult<Arc<HoursContext>> {
        if let Some((at, ctx)) = self
            .hours
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(org)
            && *at == epoch
        {
            return Ok(Arc::clone(ctx));
        }
        let org_v = reader
            .resource_opt(ResourceKind::Organization, org)
            .await?
            .ok_or_else(|| AppError::NotFound(ResourceKind::Organization.name(org)))?;
        let organization: Organization = parse_body(&org_v)?;
        let contract_v = reader
            .resource_opt(ResourceKind::HoursContract, org)
            .await?
            .ok_or_else(|| {
                AppError::FailedPrecondition(format!(
                    "{} has no hours contract: SetHoursContract first",
                    ResourceKind::Organization.name(org)
                ))
            })?;
        let spec: HoursContractSpec = parse_body(&contract_v)?;
        let mut plans: BTreeMap<ResourceId, Vec<Dated<Plan>>> = BTreeMap::new();
        for id in spec.plans() {
            plans.insert(id.clone(), plan_versions(reader, id).await?);
        }
        let ctx = Arc::new(assemble(organization, &spec, &plans)?);
        let mut cache = self
            .hours
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.insert(org.clone(), (epoch, Arc::clone(&ctx)));
        Ok(ctx)
    }

    pub(super) fn cached_ledger(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
    ) -> Option<(i64, Ledger)> {
        self.hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(org.clone(), bucket.clone()))
    }

    /// The kept contexts and folds of `accounts` (the folds taken out of the cache), when
    /// every one is kept under one catalogue epoch and none is contended: what a group is
    /// decided on without reading anything first. `None` takes nothing.
    pub(super) fn take_kept(
        &self,
        accounts: &[(ResourceId, BucketName)],
    ) -> Option<(i64, Vec<KeptFold>)> {
        let contexts = self
            .hours
            .contexts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut ledgers = self
            .hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let contended = self
            .hours
            .contended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut epoch = None;
        let mut ctxs = Vec::with_capacity(accounts.len());
        for account in accounts {
            let (at, ctx) = contexts.get(&account.0)?;
            let (kept_at, _) = ledgers.get(account)?;
            if contended.contains(account) || at != kept_at || epoch.is_some_and(|e| e != *at) {
                return None;
            }
            epoch = Some(*at);
            ctxs.push(Arc::clone(ctx));
        }
        let epoch = epoch?;
        // Checked above under the same locks: every fold is there to take.
        let kept: Vec<KeptFold> = accounts
            .iter()
            .zip(ctxs)
            .filter_map(|(account, ctx)| Some((ctx, ledgers.remove(account)?.1)))
            .collect();
        (kept.len() == accounts.len()).then_some((epoch, kept))
    }

    /// Whether the kept fold of the account is at `epoch` and `next_seq`: nobody but this
    /// process wrote to the account since it was kept.
    pub(super) fn kept_is_current(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
        epoch: i64,
        next_seq: u64,
    ) -> bool {
        self.hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(org.clone(), bucket.clone()))
            .is_some_and(|(at, ledger)| *at == epoch && ledger.next_seq() == next_seq)
    }

    /// Marks the account contended (`true`) or not.
    pub(super) fn set_contended(&self, account: &(ResourceId, BucketName), contended: bool) {
        let mut set = self
            .hours
            .contended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if contended {
            if set.len() >= MAX_LEDGERS {
                set.clear();
            }
            set.insert(account.clone());
        } else {
            set.remove(account);
        }
    }

    pub(super) fn keep_ledger(&self, org: &ResourceId, epoch: i64, ledger: Ledger) {
        let mut cache = self
            .hours
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_LEDGERS {
            cache.clear();
        }
        cache.insert((org.clone(), ledger.bucket().clone()), (epoch, ledger));
    }

    /// The account's fold as of `next_seq` entries: the cached one brought up to date,
    /// or folded from all entries.
    pub(super) async fn ledger(
        &self,
        reader: &mut Reader<'_, S>,
        ctx: &HoursContext,
        epoch: i64,
        org: &ResourceId,
        bucket: &BucketName,
        next_seq: u64,
    ) -> AppResult<Ledger> {
        if let Some((at, mut ledger)) = self.cached_ledger(org, bucket)
            && at == epoch
            && ledger.next_seq() <= next_seq
        {
            if ledger.next_seq() < next_seq {
                let more = reader
                    .account_entries(org, bucket.as_str(), ledger.next_seq())
                    .await?;
                ledger.apply(more)?;
            }
            return Ok(ledger);
        }
        let entries = reader.account_entries(org, bucket.as_str(), 1).await?;
        Ok(Ledger::new(&ctx.contract, bucket.clone(), entries)?)
    }

    /// One ledger write: queued on its account and decided there with the writes queued
    /// beside it, in one transaction (see [`super::account_writes`]). `ticket` (an id) is
    /// the ticket the work was for, checked to be the organisation's before the write
    /// and handed to `command`; a retry of a write that went through gets its answer
    /// without that check.
    #[allow(clippy::too_many_arguments)]
    pub async fn ledger_write<A: Answer + 'static>(
        self: &Arc<Self>,
        id: &Idempotency,
        fp: &Fingerprint,
        org: &ResourceId,
        bucket: &BucketName,
        ticket: Option<String>,
        command: impl Fn(&HoursContext, &Ledger, Option<TicketRef>) -> AppResult<Command>
        + Send
        + Sync
        + 'static,
        render: fn(&LedgerWrite) -> A,
    ) -> AppResult<A> {
        let ticket = match ticket {
            None => None,
            Some(ticket) => {
                if let Some(answer) = self.replay(id, fp).await? {
                    return Ok(answer);
                }
                self.usage_ticket(org, Some(ticket)).await?
            }
        };
        self.queue_account_write(id, fp, org, bucket, ticket, Box::new(command), render)
            .await
    }

    /// The account as of now, with the period closes that fell due posted first.
    pub async fn settled_ledger(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
    ) -> AppResult<(Arc<HoursContext>, Ledger)> {
        let now = self.now();
        let mut reader = Reader::Pool(&self.store);
        let (epoch, ctx) = self.hours_context(&mut reader, org).await?;
        if !ctx.buckets.contains(bucket) {
            return Err(AppError::NotFound(format!(
                "bucket {bucket}: the hours contract of {} has no such bucket",
                ResourceKind::Organization.name(org)
            )));
        }
        let next_seq = self
            .store
            .account_next_seq(org, bucket.as_str())
            .await?
            .unwrap_or(1);
        let ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        if ledger.decide(&Command::ClosePeriods, now)?.is_empty() {
            let copy = ledger.clone();
            self.keep_ledger(org, epoch, ledger);
            return Ok((ctx, copy));
        }
        // Closes fell due: post them, once, under the account's lock.
        self.keep_ledger(org, epoch, ledger);
        let mut tx = self.store.begin().await?;
        let next_seq = tx.lock_account(org, bucket.as_str()).await?;
        let mut reader = Reader::Tx(&mut tx);
        let (epoch, ctx) = self.hours_context(&mut reader, org).await?;
        let mut ledger = self
            .ledger(&mut reader, &ctx, epoch, org, bucket, next_seq)
            .await?;
        let entries = ledger.decide(&Command::ClosePeriods, now)?;
        tx.append_entries(org, bucket.as_str(), &entries).await?;
        ledger.apply(entries)?;
        let copy = ledger.clone();
        self.keep_ledger(org, epoch, ledger);
        tx.commit().await?;
        Ok((ctx, copy))
    }

    /// An organisation's statement for the period of each bucket that contains `date`.
    pub async fn statement(
        &self,
        org: &ResourceId,
        date: NaiveDate,
        with_entries: bool,
    ) -> AppResult<StatementView> {
        let now = self.now();
        let (_, ctx) = self
            .hours_context(&mut Reader::Pool(&self.store), org)
            .await?;
        let mut buckets = Vec::new();
        for bucket in &ctx.buckets {
            let (_, ledger) = self.settled_ledger(org, bucket).await?;
            buckets.extend(bucket_statement(&ledger, date, with_entries)?);
        }
        Ok(StatementView {
            organization: org.clone(),
            date,
            buckets,
            with_entries,
            zone: ctx.organization.zone,
            as_of: now,
        })
    }

    /// The statements of a piece of an export (hours contracts, in order), read in a few
    /// queries: the organisations in one, every entry of their accounts in one, each
    /// plan once; each account folded from its entries. An account with a period close
    /// due (which must be posted, a write) and an organisation whose context cannot be
    /// assembled are read the usual way, so their answers are exactly GetStatement's.
    pub async fn statements_of(
        &self,
        contracts: &[ResourceVersion],
        date: NaiveDate,
        with_entries: bool,
    ) -> Vec<AppResult<StatementView>> {
        match self.read_statements(contracts, date, with_entries).await {
            Ok(views) => views,
            Err(e) => contracts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn read_statements(
        &self,
        contracts: &[ResourceVersion],
        date: NaiveDate,
        with_entries: bool,
    ) -> AppResult<Vec<AppResult<StatementView>>> {
        let now = self.now();
        let ids: Vec<ResourceId> = contracts.iter().map(|v| v.id.clone()).collect();
        // An export may lag like any list: its bulk reads go to the read replica when
        // one is usable (a close that fell due is still posted on the primary).
        let reads = self.reads();
        let orgs: HashMap<ResourceId, ResourceVersion> = reads
            .latest_resources(ResourceKind::Organization, &ids)
            .await?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();
        let mut entries = reads.entries_of_organizations(&ids).await?;
        let mut plans: BTreeMap<ResourceId, Vec<Dated<Plan>>> = BTreeMap::new();
        let mut reader = Reader::Pool(reads);
        let mut views = Vec::with_capacity(contracts.len());
        for contract_v in contracts {
            let org = &contract_v.id;
            let bulk = async {
                let org_v = orgs.get(org)?;
                let organization: Organization = parse_body(org_v).ok()?;
                let spec: HoursContractSpec = parse_body(contract_v).ok()?;
                Some((organization, spec))
            }
            .await;
            let Some((organization, spec)) = bulk else {
                views.push(self.statement(org, date, with_entries).await);
                continue;
            };
            for id in spec.plans() {
                if !plans.contains_key(id) {
                    plans.insert(id.clone(), plan_versions(&mut reader, id).await?);
                }
            }
            let Ok(ctx) = assemble(organization, &spec, &plans) else {
                views.push(self.statement(org, date, with_entries).await);
                continue;
            };
            let view = async {
                let mut buckets = Vec::new();
                for bucket in &ctx.buckets {
                    let posted = entries
                        .remove(&(org.to_string(), bucket.to_string()))
                        .unwrap_or_default();
                    let mut ledger = Ledger::new(&ctx.contract, bucket.clone(), posted)?;
                    if !ledger.decide(&Command::ClosePeriods, now)?.is_empty() {
                        ledger = self.settled_ledger(org, bucket).await?.1;
                    }
                    buckets.extend(bucket_statement(&ledger, date, with_entries)?);
                }
                Ok(StatementView {
                    organization: org.clone(),
                    date,
                    buckets,
                    with_entries,
                    zone: ctx.organization.zone,
                    as_of: now,
                })
            }
            .await;
            views.push(view);
        }
        Ok(views)
    }

    /// The ticket a usage or hold names, checked against the organisation; nothing is
    /// read without one (the write itself reads the hours context, in its transaction).
    async fn usage_ticket(
        &self,
        org: &ResourceId,
        ticket: Option<String>,
    ) -> AppResult<Option<TicketRef>> {
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        let (_, ctx) = self
            .hours_context(&mut Reader::Pool(&self.store), org)
            .await?;
        self.ticket_ref(&ctx, org, &ticket).await.map(Some)
    }

    /// Whether a ticket's work was authorised by the organisation's main stakeholder.
    async fn ticket_ref(
        &self,
        ctx: &HoursContext,
        org: &ResourceId,
        ticket: &str,
    ) -> AppResult<TicketRef> {
        // Another organisation's ticket is answered as one that does not exist: the
        // answer must not tell whose it is.
        let not_found = || {
            AppError::NotFound(format!(
                "tickets/{ticket} in {}",
                ResourceKind::Organization.name(org)
            ))
        };
        match self.store.get_ticket(ticket).await {
            Ok(r) if &r.ticket.organization == org => {}
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
        let events = self.store.ticket_events(ticket).await?;
        let authorised = events.iter().any(|e| {
            matches!(e.event.kind, EventKind::WorkAuthorised)
                && e.event.actor.contact.as_ref().is_some_and(|c| {
                    authorised_by_main_stakeholder(&ctx.organization, c, e.event.occurred_at)
                })
        });
        Ok(TicketRef {
            id: ExternalId::parse(ticket).map_err(|e| AppError::Internal(e.to_string()))?,
            authorised_by_main_stakeholder: authorised,
        })
    }
}

impl<S: Store> App<S> {
    /// An account's balance as of an instant (`None`: now).
    pub async fn balance(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
        as_of: Option<DateTime<Utc>>,
    ) -> AppResult<Balance> {
        let (ctx, ledger) = self.settled_ledger(org, bucket).await?;
        let at = as_of.unwrap_or_else(|| self.now());
        let period = ledger.period_at(at)?;
        Ok(Balance {
            organization: org.clone(),
            statement: ledger.summary(period)?,
            as_of: at,
            zone: ctx.organization.zone,
        })
    }

    /// A page of an account's entries (of one period, or all), and the token of the next
    /// page (empty at the end).
    pub async fn entries(
        &self,
        org: &ResourceId,
        bucket: &BucketName,
        period: Option<NaiveDate>,
        size: u32,
        page_token: &str,
    ) -> AppResult<(Vec<Entry>, String)> {
        let query = format!("{org}/{bucket}/{period:?}");
        let after: u64 = page::decode(&query, page_token)?.unwrap_or(0);
        let period = period.map(|p| p.to_string());
        let rows = self
            .store
            .entries_page(org, bucket.as_str(), period.as_deref(), after, size + 1)
            .await?;
        let more = rows.len() > size as usize;
        let rows: Vec<Entry> = rows.into_iter().take(size as usize).collect();
        let next = match rows.last() {
            Some(last) if more => page::encode(&query, &last.seq),
            _ => String::new(),
        };
        Ok((rows, next))
    }

    /// An organisation's hours contract (its latest version).
    pub async fn hours_contract(&self, org: &ResourceId) -> AppResult<ResourceVersion> {
        self.store
            .get_resource(ResourceKind::HoursContract, org, None)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    AppError::NotFound(format!("hours contract of organizations/{org}"))
                }
                e => e.into(),
            })
    }

    /// Sets an organisation's hours contract (a new version from now on). The contract
    /// must assemble: plans whose buckets change period units between them are refused
    /// now rather than at the first usage.
    pub async fn set_hours_contract<A: Answer>(
        &self,
        id: &Idempotency,
        org: &ResourceId,
        spec: HoursContractSpec,
        render: Render<'_, A>,
    ) -> AppResult<A> {
        let fp = Fingerprint::new()
            .with("organization", org)
            .with("contract", &spec);
        if let Some(answer) = self.replay(id, &fp).await? {
            return Ok(answer);
        }
        let org_v = self
            .require_live(ResourceKind::Organization, org, "contract.organization")
            .await?;
        let organization: Organization = parse_body(&org_v)?;
        let mut plans = BTreeMap::new();
        for plan in spec.plans() {
            let versions = self
                .store
                .resource_versions(ResourceKind::Plan, plan)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(_) => AppError::FailedPrecondition(format!(
                        "contract.assignments: {} does not exist",
                        ResourceKind::Plan.name(plan)
                    )),
                    e => e.into(),
                })?;
            let dated = versions
                .iter()
                .map(|v| {
                    Ok(Dated {
                        effective_at: v.effective_at,
                        value: parse_body::<Plan>(v)?,
                    })
                })
                .collect::<AppResult<Vec<_>>>()?;
            plans.insert(plan.clone(), dated);
        }
        spec.contract(organization.zone, &plans)?;
        let body = json(&spec)?;
        let mut tx = self.store.begin().await?;
        if let Some(answer) = self.claim::<A>(&mut tx, id, &fp).await? {
            return Ok(answer);
        }
        let now = self.now();
        let v = match tx
            .get_resource(ResourceKind::HoursContract, org, None)
            .await
        {
            Ok(_) => {
                tx.add_version(
                    ResourceKind::HoursContract,
                    org,
                    org.as_str(),
                    &body,
                    now,
                    now,
                )
                .await?
            }
            Err(StoreError::NotFound(_)) => {
                tx.create_resource(ResourceKind::HoursContract, org, org.as_str(), &body, now)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let answer = render(&v)?;
        self.finish(tx, &id.key, &answer).await?;
        Ok(answer)
    }

    /// Every organisation's statement for `date`, in organisation order, those `allowed`
    /// only: sent as they are read, a few read at once. The stream ends early when the
    /// receiver goes away.
    pub fn export_statements(
        self: &Arc<Self>,
        date: NaiveDate,
        with_entries: bool,
        allowed: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> tokio::sync::mpsc::Receiver<AppResult<StatementView>> {
        let app = Arc::clone(self);
        let (tx, rx) = tokio::sync::mpsc::channel::<AppResult<StatementView>>(64);
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let page = match app
                    .reads()
                    .list_resources(ResourceKind::HoursContract, after.as_deref(), 500, true)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = Some(last.id.to_string());
                let contracts: Vec<ResourceVersion> = page
                    .iter()
                    .filter(|v| allowed(v.id.as_str()))
                    .cloned()
                    .collect();
                // Pieces of a page, the next read while the one before is sent: the first
                // statement leaves soon, and reads overlap the sending.
                let mut reading: VecDeque<StatementsRead> = VecDeque::new();
                for piece in contracts.chunks(EXPORT_PIECE) {
                    let (app, piece) = (Arc::clone(&app), piece.to_vec());
                    reading.push_back(tokio::spawn(async move {
                        app.statements_of(&piece, date, with_entries).await
                    }));
                    if reading.len() >= 2 && !send_next(&tx, &mut reading).await {
                        return;
                    }
                }
                while !reading.is_empty() {
                    if !send_next(&tx, &mut reading).await {
                        return;
                    }
                }
                if page.len() < 500 {
                    return;
                }
            }
        });
        rx
    }
}

type StatementsRead = tokio::task::JoinHandle<Vec<AppResult<StatementView>>>;

/// Sends the oldest piece read to the export. False when the receiver went away: the
/// reads still under way are stopped.
async fn send_next(
    tx: &tokio::sync::mpsc::Sender<AppResult<StatementView>>,
    reading: &mut VecDeque<StatementsRead>,
) -> bool {
    let Some(next) = reading.pop_front() else {
        return true;
    };
    let items = match next.await {
        Ok(items) => items,
        Err(e) => vec![Err(AppError::Internal(format!(
            "a statement read failed: {e}"
        )))],
    };
    for item in items {
        if tx.send(item).await.is_err() {
            for read in reading.drain(..) {
                read.abort();
            }
            return false;
        }
    }
    true
}

/// The statement of one bucket's period containing `date`, if the account has one.
fn bucket_statement(
    ledger: &Ledger,
    date: NaiveDate,
    with_entries: bool,
) -> AppResult<Option<Statement>> {
    let Some(period) = ledger.clock().rule.period_of(date) else {
        return Ok(None);
    };
    if period < ledger.first_period() {
        return Ok(None);
    }
    Ok(Some(if with_entries {
        ledger.statement(period)?
    } else {
        ledger.summary(period)?
    }))
}

/// A plan's versions, each with the instant it takes effect.
async fn plan_versions<S: Store>(
    reader: &mut Reader<'_, S>,
    id: &ResourceId,
) -> AppResult<Vec<Dated<Plan>>> {
    reader
        .versions(ResourceKind::Plan, id)
        .await?
        .iter()
        .map(|v| {
            Ok(Dated {
                effective_at: v.effective_at,
                value: parse_body(v)?,
            })
        })
        .collect()
}

/// An organisation's hours context from its contract and the versions of its plans
/// (`plans` may hold others': only the contract's are used).
fn assemble(
    organization: Organization,
    spec: &HoursContractSpec,
    plans: &BTreeMap<ResourceId, Vec<Dated<Plan>>>,
) -> AppResult<HoursContext> {
    let own: BTreeMap<ResourceId, Vec<Dated<Plan>>> = spec
        .plans()
        .into_iter()
        .filter_map(|id| plans.get(id).map(|p| (id.clone(), p.clone())))
        .collect();
    let contract = spec.contract(organization.zone, &own)?;
    let buckets = HoursContractSpec::buckets(&own).into_iter().collect();
    Ok(HoursContext {
        organization,
        contract,
        buckets,
    })
}
