//! The store on Postgres and on SQLite, through sqlx's `Any` driver: one query text per
//! operation (instants are integer microseconds in both), with the placeholders and the
//! few statements that differ chosen by backend.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor as _, Row, SqlSafeStr as _, Transaction};

mod inbox;
mod webhooks;

mod groups;

use super::{
    AccountEntries, AlertFilter, AlertRow, AttemptOutcome, Claim, ClockCursor, ClockFilter,
    ClockQuery, ClockRef, ClockRow, DeliveryKey, DeliveryState, DerivedState, GroupStart,
    IdempotencyKey, InboxRow, NewEvent, PostedAccount, RecomputeJob, ResourceKind, ResourceVersion,
    SecretRow, SettledPromise, StoreError, StoreResult, StoredEvent, SubscriptionCursor,
    TicketCursor, TicketFilter, TicketRecord, WebhookRow, WebhookState,
};
use crate::domain::ledger::Entry;
use crate::domain::names::{ExternalId, PlanName, PriorityLabel, RequestType, ResourceId};
use crate::domain::ticket::{Actor, Event, EventKind, Ticket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Where a store's database is: the OpenTelemetry attributes of its `db.*` spans.
#[derive(Debug)]
struct DbTarget {
    /// `db.system.name`: `postgresql` or `sqlite`.
    system: &'static str,
    /// `db.namespace`: the Postgres database, or the SQLite file.
    namespace: String,
    /// `server.address` and `server.port` (Postgres).
    address: Option<String>,
    port: Option<u16>,
}

impl DbTarget {
    fn of(backend: Backend, url: &str) -> DbTarget {
        match backend {
            Backend::Postgres => {
                let options = url.parse::<sqlx::postgres::PgConnectOptions>().ok();
                DbTarget {
                    system: "postgresql",
                    namespace: options
                        .as_ref()
                        .map(|o| o.get_database().unwrap_or(o.get_username()).to_string())
                        .unwrap_or_default(),
                    address: options.as_ref().map(|o| o.get_host().to_string()),
                    port: options.as_ref().map(|o| o.get_port()),
                }
            }
            Backend::Sqlite => DbTarget {
                system: "sqlite",
                namespace: url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .map(|o| o.get_filename().display().to_string())
                    .unwrap_or_default(),
                address: None,
                port: None,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    /// Single statements (and the readers' executor).
    pool: AnyPool,
    /// Explicit transactions (`begin`): the same pool unless `pooled`.
    tx_pool: AnyPool,
    /// The URL turns sqlx's statement cache off (`statement-cache-capacity=0`), the
    /// setting for a transaction-pooling PgBouncer: see `connect_with`.
    pooled: bool,
    backend: Backend,
    db: Arc<DbTarget>,
    /// SQLite has one writer. Writers queue here, in order, instead of in SQLite's busy
    /// handler, which sleeps and retries and gives some writers seconds-long waits.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Readiness's own connection, outside the pool.
    probe: Arc<Probe>,
    /// Tickets' committed events, read again only from the last one kept.
    events: Arc<EventCache>,
}

/// Most tickets whose events are kept; when full it starts again empty.
const KEPT_TICKETS: usize = 4096;

/// Tickets' events as committed, by ticket id. Events are only ever appended (a
/// correction is a new event) and numbered without gaps under the ticket's lock, so the
/// events after the last one kept are exactly what a full read would add: a write reads
/// those instead of decoding the whole history again (a ticket of 40 events cost 19 % of
/// RecordEvent's CPU to read). Only what a transaction read and then committed is kept,
/// so nothing a rolled-back transaction wrote is ever served.
#[derive(Debug, Default)]
struct EventCache {
    tickets: Mutex<HashMap<String, Arc<Vec<StoredEvent>>>>,
}

impl EventCache {
    fn get(&self, id: &str) -> Option<Arc<Vec<StoredEvent>>> {
        self.tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn keep(&self, id: String, events: Arc<Vec<StoredEvent>>) {
        let mut tickets = self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        let last = |e: &Arc<Vec<StoredEvent>>| e.last().map(|s| s.event.seq);
        // Two transactions' hooks may run in either order: keep the longer history.
        if tickets
            .get(&id)
            .is_some_and(|kept| last(kept) > last(&events))
        {
            return;
        }
        if tickets.len() >= KEPT_TICKETS && !tickets.contains_key(&id) {
            tickets.clear();
        }
        tickets.insert(id, events);
    }
}

/// A connection of its own for readiness: a saturated pool (every connection busy with
/// calls) must not read as an outage and pull every replica out of the load balancer at
/// once, and an outage must be seen within a second, not after a pool's acquire wait.
struct Probe {
    url: String,
    connection: tokio::sync::Mutex<Option<sqlx::AnyConnection>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// How long readiness waits for the database: a connection, or an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The schema version this binary expects: its newest migration.
pub fn expected_schema_version(backend: Backend) -> i64 {
    migrations(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

pub struct SqlTx {
    // Declared before the guard: the transaction ends (rolls back if not committed)
    // before the next writer may start.
    tx: Transaction<'static, Any>,
    backend: Backend,
    db: Arc<DbTarget>,
    after_commit: Vec<super::AfterCommit>,
    events: Arc<EventCache>,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

fn migrations(backend: Backend) -> Migrator {
    // Applied migrations are checksummed: a landed file never changes, a change is a new one.
    let files: [(i64, &str, &'static str, &'static str); 7] = [
        (
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "ticket trace context",
            include_str!("../../migrations/postgres/0002_ticket_trace_context.sql"),
            include_str!("../../migrations/sqlite/0002_ticket_trace_context.sql"),
        ),
        (
            3,
            "event keys per ticket",
            include_str!("../../migrations/postgres/0003_event_keys_per_ticket.sql"),
            include_str!("../../migrations/sqlite/0003_event_keys_per_ticket.sql"),
        ),
        (
            4,
            "tickets unique per organization",
            include_str!("../../migrations/postgres/0004_tickets_unique_per_organization.sql"),
            include_str!("../../migrations/sqlite/0004_tickets_unique_per_organization.sql"),
        ),
        (
            5,
            "connections and their inbox",
            include_str!("../../migrations/postgres/0005_connections_inbox.sql"),
            include_str!("../../migrations/sqlite/0005_connections_inbox.sql"),
        ),
        (
            6,
            "webhooks out",
            include_str!("../../migrations/postgres/0006_webhooks_out.sql"),
            include_str!("../../migrations/sqlite/0006_webhooks_out.sql"),
        ),
        (
            7,
            "alerts and deliveries keyed by organization",
            include_str!(
                "../../migrations/postgres/0007_alerts_and_deliveries_keyed_by_organization.sql"
            ),
            include_str!(
                "../../migrations/sqlite/0007_alerts_and_deliveries_keyed_by_organization.sql"
            ),
        ),
    ];
    // SQLite rebuilds a table with foreign keys off, which only works outside a
    // transaction: such a migration runs its own (see its file).
    const SQLITE_OWN_TRANSACTION: [i64; 1] = [4];
    Migrator::with_migrations(
        files
            .into_iter()
            .map(|(version, description, postgres, sqlite)| {
                let (sql, own_transaction) = match backend {
                    Backend::Postgres => (postgres, false),
                    Backend::Sqlite => (sqlite, SQLITE_OWN_TRANSACTION.contains(&version)),
                };
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    own_transaction,
                )
            })
            .collect(),
    )
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        _ => unavailable(e),
    }
}

/// A database error, with a unique violation turned into `AlreadyExists(what)`.
fn unique_as(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::AlreadyExists(what()),
        _ => db_error(e),
    }
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_us(v: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {v} out of range")))
}

fn opt_from_us(v: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    v.map(from_us).transpose()
}

fn parse<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> StoreResult<T> {
    r.map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn u32_of(what: &str, v: i64) -> StoreResult<u32> {
    parse(what, u32::try_from(v))
}

/// `?` placeholders as the backend wants them: Postgres numbers them `$1, $2, ...`.
/// The events of `n` tickets, in ticket and sequence order.
fn events_of_text(backend: Backend, n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    placeholders(
        backend,
        &format!(
            "SELECT ticket_id, seq, occurred_us, body, client, contact, request_id, record_us \
             FROM ticket_events WHERE ticket_id IN ({marks}) ORDER BY ticket_id, seq"
        ),
    )
}

fn group_events(rows: &[AnyRow], out: &mut HashMap<String, Vec<StoredEvent>>) -> StoreResult<()> {
    for r in rows {
        let id: String = r.try_get("ticket_id").map_err(db_error)?;
        let e = event_row(&id, r)?;
        out.entry(id).or_default().push(e);
    }
    Ok(())
}

/// Appends `rows` tuples of `width` placeholders, each ending with `tail`:
/// `(?, ?), (?, ?)`.
fn push_tuples(text: &mut String, rows: usize, width: usize, tail: &str) {
    for i in 0..rows {
        if i > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for j in 0..width {
            if j > 0 {
                text.push_str(", ");
            }
            text.push('?');
        }
        text.push_str(tail);
        text.push(')');
    }
}

/// The keys named by rows' `client, method, request_id`, in row order, as the asked
/// keys (whose methods are `&'static str`s).
fn keys_of_rows<'k>(
    rows: &[AnyRow],
    asked: impl Iterator<Item = &'k IdempotencyKey> + Clone,
) -> StoreResult<Vec<IdempotencyKey>> {
    rows.iter()
        .map(|row| {
            let client: String = row.try_get("client").map_err(db_error)?;
            let method: String = row.try_get("method").map_err(db_error)?;
            let request_id: String = row.try_get("request_id").map_err(db_error)?;
            asked
                .clone()
                .find(|k| k.client == client && k.method == method && k.request_id == request_id)
                .cloned()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "an idempotency row for a key not asked for: {request_id:?}"
                    ))
                })
        })
        .collect()
}

fn placeholders(backend: Backend, q: &str) -> String {
    match backend {
        Backend::Sqlite => q.to_string(),
        Backend::Postgres => {
            let mut out = String::with_capacity(q.len() + 8);
            let mut n = 0;
            for c in q.chars() {
                if c == '?' {
                    n += 1;
                    let _ = write!(out, "${n}");
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// A fixed query for the backend, converted once and kept.
fn q(backend: Backend, text: &'static str) -> &'static str {
    if backend == Backend::Sqlite {
        return text;
    }
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(text)
        .or_insert_with(|| Box::leak(placeholders(backend, text).into_boxed_str()))
}

const RESOURCE_COLUMNS: &str =
    "v.kind, v.id, v.version, v.effective_us, v.display_name, v.body, v.create_us, r.archived";

fn resource_row(kind: ResourceKind, row: &AnyRow) -> StoreResult<ResourceVersion> {
    let id: String = row.try_get("id").map_err(db_error)?;
    Ok(ResourceVersion {
        kind,
        id: parse("resource id", ResourceId::parse(&id))?,
        version: u32_of("version", row.try_get("version").map_err(db_error)?)?,
        effective_at: from_us(row.try_get("effective_us").map_err(db_error)?)?,
        display_name: row.try_get("display_name").map_err(db_error)?,
        body: row.try_get("body").map_err(db_error)?,
        created_at: from_us(row.try_get("create_us").map_err(db_error)?)?,
        archived: row.try_get::<i64, _>("archived").map_err(db_error)? != 0,
    })
}

const TICKET_COLUMNS: &str = "id, organization, source_system, external_id, request_type, initial_priority, \
     received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy, policy_version, plan, \
     status, cycle, priority, next_change_us, create_us, update_us, trace_context";

/// The clock listings' shared tail: the filter's conditions, the keyset condition after a
/// cursor on (`key`, ticket, metric, instance), that order, and the limit. Bound by
/// [`bind_clock_page`] in the same order.
fn clock_page_sql(text: &mut String, filter: &ClockFilter, after: bool, key: &str) {
    for (set, column) in [
        (filter.organization.is_some(), "organization"),
        (filter.metric.is_some(), "metric"),
        (filter.priority.is_some(), "priority"),
    ] {
        if set {
            text.push_str(&format!(" AND c.{column} = ?"));
        }
    }
    if after {
        text.push_str(&format!(
            " AND (c.{key} > ? OR (c.{key} = ? AND (c.ticket_id > ? OR (c.ticket_id = ? \
             AND (c.metric > ? OR (c.metric = ? AND c.instance > ?))))))"
        ));
    }
    text.push_str(&format!(
        " ORDER BY c.{key}, c.ticket_id, c.metric, c.instance LIMIT ?"
    ));
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

fn bind_clock_page<'q>(
    mut sql: AnyQuery<'q>,
    filter: &ClockFilter,
    after: Option<&ClockCursor>,
    limit: u32,
) -> AnyQuery<'q> {
    for v in [&filter.organization, &filter.metric, &filter.priority]
        .into_iter()
        .flatten()
    {
        sql = sql.bind(v.clone());
    }
    if let Some(c) = after {
        sql = sql
            .bind(c.deadline_us)
            .bind(c.deadline_us)
            .bind(c.ticket_id.clone())
            .bind(c.ticket_id.clone())
            .bind(c.metric.clone())
            .bind(c.metric.clone())
            .bind(i64::from(c.instance));
    }
    sql.bind(i64::from(limit))
}

fn ticket_row(row: &AnyRow) -> StoreResult<TicketRecord> {
    let s = |c: &str| -> StoreResult<String> { row.try_get::<String, _>(c).map_err(db_error) };
    let os = |c: &str| -> StoreResult<Option<String>> {
        row.try_get::<Option<String>, _>(c).map_err(db_error)
    };
    let i = |c: &str| -> StoreResult<i64> { row.try_get::<i64, _>(c).map_err(db_error) };
    let oi = |c: &str| -> StoreResult<Option<i64>> {
        row.try_get::<Option<i64>, _>(c).map_err(db_error)
    };
    let status_text = s("status")?;
    let ticket = Ticket {
        id: s("id")?,
        organization: parse("organization", ResourceId::parse(&s("organization")?))?,
        source_system: parse("source_system", ExternalId::parse(&s("source_system")?))?,
        external_id: parse("external_id", ExternalId::parse(&s("external_id")?))?,
        request_type: parse("request_type", RequestType::parse(&s("request_type")?))?,
        priority: os("initial_priority")?
            .map(|p| parse("priority", PriorityLabel::parse(&p)))
            .transpose()?,
        received_at: from_us(i("received_us")?)?,
        requested_by: os("requested_by")?
            .map(|p| parse("requested_by", ExternalId::parse(&p)))
            .transpose()?,
        estimate_minutes: oi("initial_estimate_minutes")?
            .map(|m| u32_of("estimate", m))
            .transpose()?,
        scheduled_at: opt_from_us(oi("initial_scheduled_us")?)?,
        policy: parse("policy", ResourceId::parse(&s("policy")?))?,
        policy_version: u32_of("policy_version", i("policy_version")?)?,
        plan: os("plan")?
            .map(|p| parse("plan", PlanName::parse(&p)))
            .transpose()?,
    };
    Ok(TicketRecord {
        ticket,
        status: status_text
            .parse()
            .map_err(|()| StoreError::Corrupt(format!("status {status_text}")))?,
        cycle: u32_of("cycle", i("cycle")?)?,
        priority: os("priority")?,
        next_change_at: opt_from_us(oi("next_change_us")?)?,
        created_at: from_us(i("create_us")?)?,
        updated_at: from_us(i("update_us")?)?,
        trace_context: os("trace_context")?,
    })
}

fn event_row(ticket_id: &str, row: &AnyRow) -> StoreResult<StoredEvent> {
    let body: String = row.try_get("body").map_err(db_error)?;
    let kind: EventKind = parse("event body", serde_json::from_str(&body))?;
    let contact: Option<String> = row.try_get("contact").map_err(db_error)?;
    Ok(StoredEvent {
        event: Event {
            seq: row.try_get("seq").map_err(db_error)?,
            occurred_at: from_us(row.try_get("occurred_us").map_err(db_error)?)?,
            kind,
            actor: Actor {
                client: row.try_get("client").map_err(db_error)?,
                contact: contact
                    .map(|c| parse("contact", ExternalId::parse(&c)))
                    .transpose()?,
            },
            request_id: row.try_get("request_id").map_err(db_error)?,
        },
        recorded_at: from_us(row.try_get("record_us").map_err(db_error)?)
            .map_err(|e| StoreError::Corrupt(format!("event of {ticket_id}: {e}")))?,
    })
}

fn clock_row(row: &AnyRow) -> StoreResult<ClockRow> {
    Ok(ClockRow {
        metric: row.try_get("metric").map_err(db_error)?,
        instance: u32_of("instance", row.try_get("instance").map_err(db_error)?)?,
        kind: row.try_get("kind").map_err(db_error)?,
        state: row.try_get("state").map_err(db_error)?,
        active: row.try_get::<i64, _>("active").map_err(db_error)? != 0,
        started_at: from_us(row.try_get("started_us").map_err(db_error)?)?,
        deadline: opt_from_us(row.try_get("deadline_us").map_err(db_error)?)?,
        warning: opt_from_us(row.try_get("warning_us").map_err(db_error)?)?,
        settled_at: opt_from_us(row.try_get("settled_us").map_err(db_error)?)?,
        elapsed_seconds: row.try_get("elapsed_s").map_err(db_error)?,
    })
}

fn clock_ref(row: &AnyRow) -> StoreResult<ClockRef> {
    Ok(ClockRef {
        ticket_id: row.try_get("ticket_id").map_err(db_error)?,
        organization: row.try_get("organization").map_err(db_error)?,
        metric: row.try_get("metric").map_err(db_error)?,
        instance: u32_of("instance", row.try_get("instance").map_err(db_error)?)?,
        priority: row.try_get("priority").map_err(db_error)?,
        kind: row.try_get("kind").map_err(db_error)?,
        started_at: from_us(row.try_get("started_us").map_err(db_error)?)?,
        deadline: opt_from_us(row.try_get("deadline_us").map_err(db_error)?)?,
        warning: opt_from_us(row.try_get("warning_us").map_err(db_error)?)?,
    })
}

fn alert_row(r: &AnyRow) -> StoreResult<AlertRow> {
    Ok(AlertRow {
        cursor: (
            r.try_get("tx").map_err(db_error)?,
            r.try_get("id").map_err(db_error)?,
        ),
        organization: r.try_get("organization").map_err(db_error)?,
        ticket_id: r.try_get("ticket_id").map_err(db_error)?,
        metric: r.try_get("metric").map_err(db_error)?,
        kind: r.try_get("kind").map_err(db_error)?,
        event_seq: r.try_get("event_seq").map_err(db_error)?,
        occurred_at: from_us(r.try_get("occurred_us").map_err(db_error)?)?,
        recorded_at: from_us(r.try_get("record_us").map_err(db_error)?)?,
        body: r.try_get("body").map_err(db_error)?,
    })
}

fn entry_rows(rows: &[AnyRow]) -> StoreResult<Vec<Entry>> {
    rows.iter()
        .map(|r| {
            let body: String = r.try_get("body").map_err(db_error)?;
            parse("ledger entry", serde_json::from_str::<Entry>(&body))
        })
        .collect()
}

fn job_row(row: &AnyRow) -> StoreResult<RecomputeJob> {
    let kind: String = row.try_get("kind").map_err(db_error)?;
    let id: String = row.try_get("id").map_err(db_error)?;
    Ok(RecomputeJob {
        kind: match kind.as_str() {
            "calendar" => ResourceKind::Calendar,
            "policy" => ResourceKind::Policy,
            "plan" => ResourceKind::Plan,
            "hours_contract" => ResourceKind::HoursContract,
            _ => ResourceKind::Organization,
        },
        id: parse("job id", ResourceId::parse(&id))?,
        version: u32_of("version", row.try_get("version").map_err(db_error)?)?,
        tickets_total: parse(
            "total",
            u64::try_from(row.try_get::<i64, _>("tickets_total").map_err(db_error)?),
        )?,
        tickets_done: parse(
            "done",
            u64::try_from(row.try_get::<i64, _>("tickets_done").map_err(db_error)?),
        )?,
        started_at: from_us(row.try_get("start_us").map_err(db_error)?)?,
        finished_at: opt_from_us(row.try_get("finish_us").map_err(db_error)?)?,
    })
}

const API_CLIENT_COLUMNS: &str =
    "id, name, token_hash, scopes, organizations, create_us, revoke_us";

fn api_client_row(row: &AnyRow) -> StoreResult<super::ApiClientRecord> {
    let name: String = row.try_get("name").map_err(db_error)?;
    let scopes: String = row.try_get("scopes").map_err(db_error)?;
    let organizations: Option<String> = row.try_get("organizations").map_err(db_error)?;
    Ok(super::ApiClientRecord {
        id: row.try_get("id").map_err(db_error)?,
        name: parse("API client name", ResourceId::parse(&name))?,
        token_hash: row.try_get("token_hash").map_err(db_error)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        organizations: organizations
            .map(|orgs| {
                orgs.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|o| parse("API client organization", ResourceId::parse(o)))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .transpose()?,
        created_at: from_us(row.try_get("create_us").map_err(db_error)?)?,
        revoked_at: opt_from_us(row.try_get("revoke_us").map_err(db_error)?)?,
    })
}

/// Whether a Postgres URL sets `statement-cache-capacity=0` (sqlx's own parameter, which
/// it honours through the `Any` driver): the setting for a transaction-pooling PgBouncer.
fn statement_cache_off(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                k == "statement-cache-capacity" && v.trim().parse::<usize>() == Ok(0)
            })
        })
    })
}

/// A SQLite URL that creates its file when missing (`mode=rwc`) unless it names a mode
/// itself: `sqlite://new.db` works as users expect. Other URLs are left as they are.
fn sqlite_create_if_missing(backend: Backend, url: &str) -> std::borrow::Cow<'_, str> {
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if backend != Backend::Sqlite || memory || url.contains("mode=") {
        return url.into();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc").into()
}

impl SqlStore {
    /// Connects to `url` (`postgres://...` or `sqlite://...`), waiting up to 5 s for a
    /// pooled connection.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        Self::connect_with(url, max_connections, Duration::from_secs(5)).await
    }

    /// Connects to `url`, a call waiting at most `acquire_timeout` for a connection before
    /// it fails with UNAVAILABLE.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Unavailable(format!(
                "unsupported database URL {url:?}: expected postgres://... or sqlite://..."
            )));
        };
        // sqlx pings every connection it lends (a round trip before each transaction's
        // BEGIN): only one idle for a while is pinged here, as only that one may have
        // been cut (a restarted server, a pooler's idle timeout) since it was last used.
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        let pooled = backend == Backend::Postgres && statement_cache_off(url);
        let url = sqlite_create_if_missing(backend, url);
        let (pool, tx_pool) = if pooled {
            // Behind a transaction-pooling PgBouncer, the server connection is only ours
            // until a ReadyForQuery outside a transaction. With its statement cache off,
            // sqlx still sends a statement in two rounds (Parse, Describe, Sync; then
            // Bind, Execute, Sync), so the Bind may reach another server connection,
            // whose unnamed statement is someone else's: errors, or another statement
            // run with these parameters. Each connection lent for single statements is
            // therefore inside a transaction (BEGIN when lent, COMMIT when returned), and
            // explicit transactions come from a second pool without those hooks (a
            // nested BEGIN or a COMMIT after the caller's own would each log a warning).
            let statements = options
                .clone()
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move { conn.execute("BEGIN").await.map(|_| ()) })
                })
                .before_acquire(|conn, _| {
                    Box::pin(async move { conn.execute("BEGIN").await.map(|_| true) })
                })
                .after_release(|conn, _| {
                    Box::pin(async move { conn.execute("COMMIT").await.map(|_| true) })
                })
                // Lazy: `connect` would open a first connection (its BEGIN sent) and put it
                // back without `after_release`, idle inside a transaction.
                .connect_lazy(&url)
                .map_err(unavailable)?;
            // This one connects now: the database must answer at start.
            let transactions = options.connect(&url).await.map_err(unavailable)?;
            (statements, transactions)
        } else {
            let options = if backend == Backend::Sqlite {
                options.after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL lets readers run beside the one writer; the busy timeout makes
                        // writers queue for the lock instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                })
            } else {
                options
            };
            let pool = options.connect(&url).await.map_err(unavailable)?;
            (pool.clone(), pool)
        };
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(SqlStore {
            pool,
            tx_pool,
            pooled,
            backend,
            db: Arc::new(DbTarget::of(backend, &url)),
            writer,
            probe: Arc::new(Probe {
                url: url.to_string(),
                connection: tokio::sync::Mutex::new(None),
            }),
            events: Arc::default(),
        })
    }

    /// Whether this store goes through a transaction pooler (its URL turns the statement
    /// cache off): migrations and session state need a direct connection then.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Readiness, on the probe's own connection (opened again after any failure), each
    /// step within a second: the database answers, and its schema is at least at the
    /// version this binary expects (a database never migrated is version 0).
    pub async fn readiness(&self) -> Result<(), super::NotReady> {
        use sqlx::Connection as _;
        if self.pool.is_closed() {
            return Err(super::NotReady::Unreachable(
                "this process's connection pool is closed".into(),
            ));
        }
        let want = expected_schema_version(self.backend);
        let mut slot = self.probe.connection.lock().await;
        let step = async {
            if slot.is_none() {
                *slot = Some(sqlx::AnyConnection::connect(&self.probe.url).await?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(sqlx::Error::PoolClosed);
            };
            // One simple-protocol round trip: through a transaction pooler, the two rounds
            // of an extended-protocol statement may reach different server connections.
            let version = sqlx::raw_sql(
                "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
            )
            .fetch_one(&mut *conn)
            .await;
            match version {
                Ok(row) => row.try_get::<i64, _>(0),
                // The database answered: it has no migrations table, version 0.
                Err(sqlx::Error::Database(_)) => Ok(0),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, step).await {
            Ok(Ok(have)) if have >= want => Ok(()),
            Ok(Ok(have)) => Err(super::NotReady::SchemaBehind { have, want }),
            Ok(Err(e)) => {
                *slot = None;
                Err(super::NotReady::Unreachable(e.to_string()))
            }
            Err(_) => {
                *slot = None;
                Err(super::NotReady::Unreachable(format!(
                    "no answer within {} ms",
                    PROBE_TIMEOUT.as_millis()
                )))
            }
        }
    }

    /// Runs administrative SQL (tests create and drop their schemas with it).
    pub async fn execute_raw(&self, sql: &str) -> StoreResult<()> {
        let raw = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
        if !self.pooled {
            return raw.execute(&self.pool).await.map(|_| ()).map_err(db_error);
        }
        // Committed before this returns (see `write`).
        let mut tx = self.tx_pool.begin().await.map_err(db_error)?;
        raw.execute(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// The first column of the first row of a query, as an integer: for tests and
    /// operational checks that read the database's own views.
    pub async fn count_raw(&self, sql: &str) -> StoreResult<i64> {
        let row = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.try_get::<i64, _>(0).map_err(db_error)
    }

    /// The first column of every row of a query, as text (tests list their tables).
    pub async fn strings_raw(&self, sql: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(db_error))
            .collect()
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        if self.pooled {
            return self.already_at(expected_schema_version(self.backend)).await;
        }
        migrations(self.backend)
            .run(&self.pool)
            .await
            .map_err(unavailable)
    }

    /// Applies the migrations up to `version` only: a database as an older release left
    /// it, for testing upgrades.
    pub async fn migrate_until(&self, version: i64) -> StoreResult<()> {
        if self.pooled {
            return self.already_at(version).await;
        }
        let mut migrator = migrations(self.backend);
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        migrator.run(&self.pool).await.map_err(unavailable)
    }

    /// Runs one writing statement, committed when this returns. A pooled store commits a
    /// statement run on its statement pool only once the connection is back in the pool
    /// (`connect_with`), after the caller has moved on; so there a write takes a
    /// transaction of its own.
    async fn write<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        if !self.pooled {
            return query.execute(&self.pool).await;
        }
        let mut tx = self.tx_pool.begin().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// On a store that goes through a transaction pooler, where sqlx's migrator cannot
    /// run (it holds a session advisory lock across statements and transactions):
    /// nothing to do when the schema is at `want` already (replicas and commands
    /// starting on a migrated database), else refused with what to set.
    async fn already_at(&self, want: i64) -> StoreResult<()> {
        let have =
            sqlx::raw_sql("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await;
        let have = match have {
            Ok(row) => row.try_get::<i64, _>(0).map_err(db_error)?,
            Err(sqlx::Error::Database(_)) => 0,
            Err(e) => return Err(db_error(e)),
        };
        if have >= want {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "the schema is at version {have}, and migrations need a direct database \
             connection: this URL turns the statement cache off (statement-cache-capacity=0: \
             a transaction pooler); set the migration database URL \
             (--migration-database-url) to the database itself"
        )))
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.tx_pool.close().await;
    }

    /// Pool use, for metrics: (connections open, idle).
    pub fn pool_use(&self) -> (u32, usize) {
        if self.pooled {
            (
                self.pool.size() + self.tx_pool.size(),
                self.pool.num_idle() + self.tx_pool.num_idle(),
            )
        } else {
            (self.pool.size(), self.pool.num_idle())
        }
    }

    fn q(&self, text: &'static str) -> &'static str {
        q(self.backend, text)
    }
}

impl SqlTx {
    fn q(&self, text: &'static str) -> &'static str {
        q(self.backend, text)
    }

    /// The ticket's derived state, and on Postgres the request's answer with it.
    async fn save_derived_with(
        &mut self,
        r: &TicketRecord,
        d: &DerivedState,
        now: DateTime<Utc>,
        answer: Option<(&IdempotencyKey, &[u8])>,
    ) -> StoreResult<()> {
        let id = r.ticket.id.as_str();
        const UPDATE: &str = "UPDATE tickets SET status = ?, cycle = ?, priority = ?, next_change_us = ?, update_us = ? WHERE id = ?";
        // Postgres: the old clocks (and the answer) go in the ticket's update statement
        // (round trips less under the ticket's lock); the new clocks cannot join it, as
        // an insert in the same statement would meet the rows being deleted.
        let postgres = self.backend == Backend::Postgres;
        let text = match (postgres, answer) {
            (false, _) => UPDATE.to_string(),
            (true, None) => {
                format!("WITH gone AS (DELETE FROM clocks WHERE ticket_id = ?) {UPDATE}")
            }
            (true, Some(_)) => format!(
                "WITH gone AS (DELETE FROM clocks WHERE ticket_id = ?), answered AS (UPDATE idempotency \
                 SET response = ? WHERE client = ? AND method = ? AND request_id = ?) {UPDATE}"
            ),
        };
        let mut update = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        if postgres {
            update = update.bind(id);
            if let Some((key, response)) = answer {
                update = update
                    .bind(response.to_vec())
                    .bind(key.client.as_str())
                    .bind(key.method)
                    .bind(key.request_id.as_str());
            }
        }
        update
            .bind(d.status.as_str())
            .bind(i64::from(d.cycle))
            .bind(d.priority.clone())
            .bind(d.next_change_at.map(us))
            .bind(us(now))
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        if !postgres {
            sqlx::query(self.q("DELETE FROM clocks WHERE ticket_id = ?"))
                .bind(id)
                .execute(&mut *self.tx)
                .await
                .map_err(db_error)?;
        }
        if d.clocks.is_empty() {
            return Ok(());
        }
        let mut text = String::from(
            "INSERT INTO clocks (ticket_id, metric, instance, organization, priority, kind, state, active, \
             started_us, deadline_us, warning_us, settled_us, elapsed_s) VALUES ",
        );
        for i in 0..d.clocks.len() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        for c in &d.clocks {
            query = query
                .bind(id)
                .bind(c.metric.clone())
                .bind(i64::from(c.instance))
                .bind(r.ticket.organization.as_str())
                .bind(d.priority.clone())
                .bind(c.kind.clone())
                .bind(c.state.clone())
                .bind(i64::from(c.active))
                .bind(us(c.started_at))
                .bind(c.deadline.map(us))
                .bind(c.warning.map(us))
                .bind(c.settled_at.map(us))
                .bind(c.elapsed_seconds);
        }
        query.execute(&mut *self.tx).await.map_err(db_error)?;
        Ok(())
    }

    async fn bump_epoch(&mut self) -> StoreResult<()> {
        sqlx::query("UPDATE catalog_epoch SET epoch = epoch + 1 WHERE id = 1")
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

/// Shared read queries, for the pool and for a transaction.
macro_rules! reads {
    () => {
        async fn read_resource(
            exec: impl sqlx::Executor<'_, Database = Any>,
            backend: Backend,
            kind: ResourceKind,
            id: &ResourceId,
            version: Option<u32>,
        ) -> StoreResult<ResourceVersion> {
            let text = format!(
                "SELECT {RESOURCE_COLUMNS} FROM resource_versions v JOIN resources r ON r.kind = v.kind AND r.id = v.id \
                 WHERE v.kind = ? AND v.id = ? AND v.version = COALESCE(?, r.latest_version)"
            );
            let row = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
                .bind(kind.as_str())
                .bind(id.as_str())
                .bind(version.map(i64::from))
                .fetch_optional(exec)
                .await
                .map_err(db_error)?;
            match row {
                Some(r) => resource_row(kind, &r),
                None => Err(StoreError::NotFound(match version {
                    Some(v) => format!("{} {} version {v}", kind.as_str(), id),
                    None => format!("{} {}", kind.as_str(), id),
                })),
            }
        }

        async fn read_versions(
            exec: impl sqlx::Executor<'_, Database = Any>,
            backend: Backend,
            kind: ResourceKind,
            id: &ResourceId,
        ) -> StoreResult<Vec<ResourceVersion>> {
            let text = format!(
                "SELECT {RESOURCE_COLUMNS} FROM resource_versions v JOIN resources r ON r.kind = v.kind AND r.id = v.id \
                 WHERE v.kind = ? AND v.id = ? ORDER BY v.version"
            );
            let rows = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
                .bind(kind.as_str())
                .bind(id.as_str())
                .fetch_all(exec)
                .await
                .map_err(db_error)?;
            if rows.is_empty() {
                return Err(StoreError::NotFound(format!("{} {}", kind.as_str(), id)));
            }
            rows.iter().map(|r| resource_row(kind, r)).collect()
        }

        /// The ticket's events numbered after `after` (0: all of them).
        async fn read_events(
            exec: impl sqlx::Executor<'_, Database = Any>,
            backend: Backend,
            id: &str,
            after: i64,
        ) -> StoreResult<Vec<StoredEvent>> {
            let rows = sqlx::query(q(
                backend,
                "SELECT seq, occurred_us, body, client, contact, request_id, record_us FROM ticket_events \
                 WHERE ticket_id = ? AND seq > ? ORDER BY seq",
            ))
            .bind(id)
            .bind(after)
            .fetch_all(exec)
            .await
            .map_err(db_error)?;
            rows.iter().map(|r| event_row(id, r)).collect()
        }

        async fn read_ticket_by_key(
            exec: impl sqlx::Executor<'_, Database = Any>,
            backend: Backend,
            organization: &ResourceId,
            source_system: &str,
            external_id: &str,
        ) -> StoreResult<Option<TicketRecord>> {
            let text = format!(
                "SELECT {TICKET_COLUMNS} FROM tickets \
                 WHERE organization = ? AND source_system = ? AND external_id = ?"
            );
            let row = sqlx::query(AssertSqlSafe(placeholders(backend, &text)))
                .bind(organization.as_str())
                .bind(source_system)
                .bind(external_id)
                .fetch_optional(exec)
                .await
                .map_err(db_error)?;
            row.as_ref().map(ticket_row).transpose()
        }
    };
}

reads!();

impl super::Store for SqlStore {
    async fn subscription_cursor(
        &self,
        subscription: &str,
    ) -> StoreResult<Option<SubscriptionCursor>> {
        webhooks::subscription_cursor(&self.pool, self.backend, subscription).await
    }

    async fn webhooks_due(
        &self,
        subscription: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookRow>> {
        webhooks::webhooks_due(&self.pool, self.backend, subscription, now, limit).await
    }

    async fn webhook_next_at(&self, subscription: &str) -> StoreResult<Option<DateTime<Utc>>> {
        webhooks::webhook_next_at(&self.pool, self.backend, subscription).await
    }

    async fn webhooks_page(
        &self,
        subscription: &str,
        states: &[WebhookState],
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookRow>> {
        webhooks::webhooks_page(&self.pool, self.backend, subscription, states, after, limit).await
    }

    async fn webhook(&self, subscription: &str, alert_id: i64) -> StoreResult<WebhookRow> {
        webhooks::webhook(&self.pool, self.backend, subscription, alert_id).await
    }

    async fn webhook_backlog(&self) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
        webhooks::webhook_backlog(&self.pool, self.backend).await
    }

    async fn connection_secrets(&self, connection: &str) -> StoreResult<Vec<SecretRow>> {
        inbox::connection_secrets(&self.pool, self.backend, connection).await
    }

    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<InboxRow>> {
        inbox::pending_deliveries(&self.pool, self.backend, limit).await
    }

    async fn deliveries_page(
        &self,
        connection: &str,
        states: &[DeliveryState],
        after: Option<(i64, String)>,
        limit: u32,
    ) -> StoreResult<Vec<InboxRow>> {
        inbox::deliveries_page(&self.pool, self.backend, connection, states, after, limit).await
    }

    async fn delivery(&self, connection: &str, delivery_id: &str) -> StoreResult<InboxRow> {
        inbox::delivery(&self.pool, self.backend, connection, delivery_id).await
    }

    async fn purge_inbox(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        // A write: a transaction of its own on a pooled store (see `write`).
        inbox::purge_inbox(&self.tx_pool, self.pooled, self.backend, before, limit).await
    }

    async fn inbox_backlog(&self) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
        inbox::inbox_backlog(&self.pool, self.backend).await
    }

    type Tx = SqlTx;

    #[tracing::instrument(level = "debug", name = "db.begin", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn begin(&self) -> StoreResult<SqlTx> {
        let writer = match &self.writer {
            Some(lock) => Some(Arc::clone(lock).lock_owned().await),
            None => None,
        };
        // BEGIN runs to completion in a task of its own: a call cancelled while it is on
        // the wire (a client gone, a deadline) must not leave the connection with a
        // BEGIN or a compensating ROLLBACK the server never matched. If the caller is
        // gone by then, the task's transaction is dropped and rolls back cleanly.
        let (pool, backend) = (self.tx_pool.clone(), self.backend);
        let tx = tokio::spawn(async move {
            match backend {
                Backend::Postgres => pool.begin().await,
                Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            }
        })
        .await
        .map_err(|e| unavailable(format!("BEGIN did not complete: {e}")))?
        .map_err(db_error)?;
        Ok(SqlTx {
            tx,
            backend: self.backend,
            db: Arc::clone(&self.db),
            after_commit: Vec::new(),
            events: Arc::clone(&self.events),
            _writer: writer,
        })
    }

    #[tracing::instrument(level = "debug", name = "db.post_group", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn post_group(
        &self,
        epoch: i64,
        accounts: &[PostedAccount<'_>],
    ) -> StoreResult<Vec<bool>> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend == Backend::Postgres {
            // A write of its own, on the writers' pool (in a transaction when `pooled`).
            return groups::post_group_pg(&self.tx_pool, self.pooled, epoch, accounts).await;
        }
        // SQLite has one writer: the same checks in a transaction of its own. Dropped
        // unfinished, it rolls back.
        use super::StoreTx as _;
        let mut tx = self.begin().await?;
        let mut posted = vec![false; accounts.len()];
        if tx.catalog_epoch().await? != epoch {
            return Ok(posted);
        }
        let locks: Vec<(ResourceId, String)> = accounts
            .iter()
            .map(|a| (a.organization.clone(), a.bucket.to_string()))
            .collect();
        let numbers = tx.lock_accounts(&locks).await?;
        let claims: Vec<(IdempotencyKey, String)> = accounts
            .iter()
            .flat_map(|a| &a.writes)
            .map(|w| (w.key.clone(), w.fingerprint.clone()))
            .collect();
        let claimed = tx.claim_many(&claims).await?;
        let mut entries = Vec::new();
        let mut answers = Vec::new();
        for ((account, number), posted) in accounts.iter().zip(numbers).zip(&mut posted) {
            *posted = number == account.decided_at
                && account.writes.iter().all(|w| claimed.contains(w.key));
            if *posted {
                entries.push(AccountEntries {
                    organization: account.organization,
                    bucket: account.bucket,
                    entries: account.entries,
                });
                answers.extend(account.writes.iter().filter_map(|w| {
                    let answer = w.answer.clone()?;
                    Some((w.key.clone(), w.fingerprint.clone(), answer))
                }));
            }
        }
        let released: Vec<IdempotencyKey> = claimed
            .into_iter()
            .filter(|k| !answers.iter().any(|(a, _, _)| a == k))
            .collect();
        tx.close_group(&entries, &released, &answers).await?;
        tx.commit().await?;
        Ok(posted)
    }

    async fn catalog_epoch(&self) -> StoreResult<i64> {
        sqlx::query("SELECT epoch FROM catalog_epoch WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?
            .try_get("epoch")
            .map_err(db_error)
    }

    async fn readiness(&self) -> Result<(), super::NotReady> {
        SqlStore::readiness(self).await
    }

    async fn replica_lag(&self) -> StoreResult<Option<f64>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        // One simple-protocol round trip (also safe through a transaction pooler). On a
        // primary both LSN functions are NULL: no lag to read, `None`.
        let row = sqlx::raw_sql(
            "SELECT CAST(CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
             ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END \
             AS DOUBLE PRECISION)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        row.try_get::<Option<f64>, _>(0).map_err(db_error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    #[tracing::instrument(level = "debug", name = "db.get_resource", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn get_resource(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> StoreResult<ResourceVersion> {
        read_resource(&self.pool, self.backend, kind, id, version).await
    }

    #[tracing::instrument(level = "debug", name = "db.answered", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn answered(&self, key: &IdempotencyKey) -> StoreResult<Option<Claim>> {
        let row = sqlx::query(AssertSqlSafe(placeholders(
            self.backend,
            "SELECT fingerprint, response FROM idempotency \
             WHERE client = ? AND method = ? AND request_id = ? AND response IS NOT NULL",
        )))
        .bind(key.client.as_str())
        .bind(key.method)
        .bind(key.request_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            Ok(Claim::Seen {
                fingerprint: row.try_get("fingerprint").map_err(db_error)?,
                response: row.try_get("response").map_err(db_error)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(level = "debug", name = "db.resource_versions", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn resource_versions(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> StoreResult<Vec<ResourceVersion>> {
        read_versions(&self.pool, self.backend, kind, id).await
    }

    #[tracing::instrument(level = "debug", name = "db.list_resources", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn list_resources(
        &self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: u32,
        show_archived: bool,
    ) -> StoreResult<Vec<ResourceVersion>> {
        let text = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources r JOIN resource_versions v \
             ON v.kind = r.kind AND v.id = r.id AND v.version = r.latest_version \
             WHERE r.kind = ? AND r.id > ? AND (r.archived = 0 OR ? = 1) ORDER BY r.id LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(kind.as_str())
            .bind(after.unwrap_or(""))
            .bind(i64::from(show_archived))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(|r| resource_row(kind, r)).collect()
    }

    #[tracing::instrument(level = "debug", name = "db.get_ticket", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn get_ticket(&self, id: &str) -> StoreResult<TicketRecord> {
        let text = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?");
        let row = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
        ticket_row(&row)
    }

    #[tracing::instrument(level = "debug", name = "db.find_ticket", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn find_ticket(
        &self,
        organization: &ResourceId,
        source_system: &str,
        external_id: &str,
    ) -> StoreResult<Option<TicketRecord>> {
        read_ticket_by_key(
            &self.pool,
            self.backend,
            organization,
            source_system,
            external_id,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "db.ticket_events", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn ticket_events(&self, id: &str) -> StoreResult<Vec<StoredEvent>> {
        read_events(&self.pool, self.backend, id, 0).await
    }

    async fn events_of_tickets(
        &self,
        ids: &[String],
    ) -> StoreResult<HashMap<String, Vec<StoredEvent>>> {
        let mut out: HashMap<String, Vec<StoredEvent>> = HashMap::new();
        // Chunks keep the statement within both databases' parameter limits.
        for chunk in ids.chunks(500) {
            let text = events_of_text(self.backend, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(text));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let rows = query.fetch_all(&self.pool).await.map_err(db_error)?;
            group_events(&rows, &mut out)?;
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "db.list_tickets", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        after: Option<&TicketCursor>,
        limit: u32,
    ) -> StoreResult<Vec<TicketRecord>> {
        let mut text = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1");
        if filter.organization.is_some() {
            text.push_str(" AND organization = ?");
        }
        if filter.status.is_some() {
            text.push_str(" AND status = ?");
        }
        if filter.source_system.is_some() {
            text.push_str(" AND source_system = ?");
        }
        if filter.external_id.is_some() {
            text.push_str(" AND external_id = ?");
        }
        if after.is_some() {
            text.push_str(" AND (received_us < ? OR (received_us = ? AND id < ?))");
        }
        text.push_str(" ORDER BY received_us DESC, id DESC LIMIT ?");
        let sql = placeholders(self.backend, &text);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(o) = &filter.organization {
            query = query.bind(o.clone());
        }
        if let Some(s) = filter.status {
            query = query.bind(s.as_str());
        }
        for v in [&filter.source_system, &filter.external_id]
            .into_iter()
            .flatten()
        {
            query = query.bind(v.clone());
        }
        if let Some(c) = after {
            query = query
                .bind(c.received_us)
                .bind(c.received_us)
                .bind(c.id.clone());
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(ticket_row).collect()
    }

    #[tracing::instrument(level = "debug", name = "db.query_clocks", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn query_clocks(
        &self,
        query: &ClockQuery,
        filter: &ClockFilter,
        after: Option<&ClockCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ClockRef>> {
        let mut text = String::from(
            "SELECT c.ticket_id, c.organization, c.metric, c.instance, c.priority, c.kind, c.started_us, \
             c.deadline_us, c.warning_us FROM clocks c WHERE c.active = 1",
        );
        match query {
            ClockQuery::Due { .. } => {
                text.push_str(" AND c.deadline_us >= ? AND c.deadline_us < ?")
            }
            ClockQuery::Breached { .. } => {
                text.push_str(" AND c.kind = 'promise' AND c.deadline_us < ?")
            }
            ClockQuery::AtRisk { .. } => {
                text.push_str(" AND c.warning_us <= ? AND c.deadline_us >= ?")
            }
        }
        clock_page_sql(&mut text, filter, after.is_some(), "deadline_us");
        let mut sql = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        match query {
            ClockQuery::Due { from, to } => sql = sql.bind(us(*from)).bind(us(*to)),
            ClockQuery::Breached { now } => sql = sql.bind(us(*now)),
            ClockQuery::AtRisk { now } => sql = sql.bind(us(*now)).bind(us(*now)),
        }
        let rows = bind_clock_page(sql, filter, after, limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(clock_ref).collect()
    }

    async fn settled_promises(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &ClockFilter,
        after: Option<&ClockCursor>,
        limit: u32,
    ) -> StoreResult<Vec<SettledPromise>> {
        let mut text = String::from(
            "SELECT c.ticket_id, c.organization, c.metric, c.instance, c.priority, c.state, c.settled_us, \
             c.elapsed_s FROM clocks c WHERE c.settled_us >= ? AND c.settled_us < ? AND c.kind = 'promise'",
        );
        clock_page_sql(&mut text, filter, after.is_some(), "settled_us");
        let sql = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(us(from))
            .bind(us(to));
        let rows = bind_clock_page(sql, filter, after, limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(SettledPromise {
                    ticket_id: row.try_get("ticket_id").map_err(db_error)?,
                    organization: row.try_get("organization").map_err(db_error)?,
                    metric: row.try_get("metric").map_err(db_error)?,
                    instance: u32_of("instance", row.try_get("instance").map_err(db_error)?)?,
                    priority: row.try_get("priority").map_err(db_error)?,
                    state: row.try_get("state").map_err(db_error)?,
                    settled_at: from_us(row.try_get("settled_us").map_err(db_error)?)?,
                    elapsed_seconds: row.try_get("elapsed_s").map_err(db_error)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", name = "db.ticket_clocks", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn ticket_clocks(&self, id: &str) -> StoreResult<Vec<ClockRow>> {
        let rows = sqlx::query(self.q(
            "SELECT metric, instance, kind, state, active, started_us, deadline_us, warning_us, settled_us, elapsed_s \
             FROM clocks \
             WHERE ticket_id = ? ORDER BY metric, instance",
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(clock_row).collect()
    }

    #[tracing::instrument(level = "debug", name = "db.account_entries", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn account_entries(
        &self,
        organization: &ResourceId,
        bucket: &str,
        from_seq: u64,
    ) -> StoreResult<Vec<Entry>> {
        let rows = sqlx::query(self.q(
            "SELECT body FROM ledger_entries WHERE organization = ? AND bucket = ? AND seq >= ? ORDER BY seq",
        ))
        .bind(organization.as_str())
        .bind(bucket)
        .bind(from_seq as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        entry_rows(&rows)
    }

    #[tracing::instrument(level = "debug", name = "db.latest_resources", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn latest_resources(
        &self,
        kind: ResourceKind,
        ids: &[ResourceId],
    ) -> StoreResult<Vec<ResourceVersion>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let text = format!(
                "SELECT {RESOURCE_COLUMNS} FROM resources r JOIN resource_versions v \
                 ON v.kind = r.kind AND v.id = r.id AND v.version = r.latest_version \
                 WHERE r.kind = ? AND r.id IN ({marks})"
            );
            let mut query =
                sqlx::query(AssertSqlSafe(placeholders(self.backend, &text))).bind(kind.as_str());
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await.map_err(db_error)? {
                out.push(resource_row(kind, &row)?);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "db.entries_of_organizations", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn entries_of_organizations(
        &self,
        organizations: &[ResourceId],
    ) -> StoreResult<HashMap<(String, String), Vec<Entry>>> {
        let mut out: HashMap<(String, String), Vec<Entry>> = HashMap::new();
        for chunk in organizations.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let text = format!(
                "SELECT organization, bucket, body FROM ledger_entries \
                 WHERE organization IN ({marks}) ORDER BY organization, bucket, seq"
            );
            let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
            for org in chunk {
                query = query.bind(org.as_str());
            }
            for row in query.fetch_all(&self.pool).await.map_err(db_error)? {
                let org: String = row.try_get("organization").map_err(db_error)?;
                let bucket: String = row.try_get("bucket").map_err(db_error)?;
                let body: String = row.try_get("body").map_err(db_error)?;
                let entry = parse("ledger entry", serde_json::from_str::<Entry>(&body))?;
                out.entry((org, bucket)).or_default().push(entry);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "db.account_next_seq", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn account_next_seq(
        &self,
        organization: &ResourceId,
        bucket: &str,
    ) -> StoreResult<Option<u64>> {
        let row = sqlx::query(
            self.q("SELECT next_seq FROM hour_accounts WHERE organization = ? AND bucket = ?"),
        )
        .bind(organization.as_str())
        .bind(bucket)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            r.try_get::<i64, _>("next_seq")
                .map_err(db_error)
                .and_then(|v| parse("next_seq", u64::try_from(v)))
        })
        .transpose()
    }

    #[tracing::instrument(level = "debug", name = "db.entries_page", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn entries_page(
        &self,
        organization: &ResourceId,
        bucket: &str,
        period: Option<&str>,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Entry>> {
        let rows = match period {
            Some(p) => sqlx::query(self.q(
                "SELECT body FROM ledger_entries WHERE organization = ? AND bucket = ? AND period = ? AND seq > ? \
                 ORDER BY seq LIMIT ?",
            ))
            .bind(organization.as_str())
            .bind(bucket)
            .bind(p)
            .bind(after_seq as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await,
            None => sqlx::query(self.q(
                "SELECT body FROM ledger_entries WHERE organization = ? AND bucket = ? AND seq > ? ORDER BY seq LIMIT ?",
            ))
            .bind(organization.as_str())
            .bind(bucket)
            .bind(after_seq as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await,
        }
        .map_err(db_error)?;
        entry_rows(&rows)
    }

    async fn alerts_after(
        &self,
        cursor: (i64, i64),
        filter: &AlertFilter,
        limit: u32,
    ) -> StoreResult<Vec<AlertRow>> {
        let mut text = String::from(
            "SELECT id, tx, organization, ticket_id, metric, kind, event_seq, occurred_us, record_us, body \
             FROM alerts WHERE (tx > ? OR (tx = ? AND id > ?))",
        );
        if self.backend == Backend::Postgres {
            // Held back while an older transaction runs: it may still commit alerts that
            // sort before these.
            text.push_str(
                " AND tx < CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)",
            );
        }
        if filter.organization.is_some() {
            text.push_str(" AND organization = ?");
        }
        if filter.metric.is_some() {
            text.push_str(" AND metric = ?");
        }
        text.push_str(" ORDER BY tx, id LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(cursor.0)
            .bind(cursor.0)
            .bind(cursor.1);
        for v in [&filter.organization, &filter.metric].into_iter().flatten() {
            q = q.bind(v.clone());
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(alert_row).collect()
    }

    async fn next_change(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MIN(next_change_us) AS next FROM tickets WHERE next_change_us IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        opt_from_us(row.try_get("next").map_err(db_error)?)
    }

    async fn start_job(&self, j: &RecomputeJob) -> StoreResult<()> {
        self.write(
            sqlx::query(self.q(
                "INSERT INTO recompute_jobs (kind, id, version, tickets_total, tickets_done, start_us, finish_us) \
                 VALUES (?, ?, ?, ?, 0, ?, NULL) ON CONFLICT (kind, id, version) DO UPDATE SET \
                 tickets_total = excluded.tickets_total, tickets_done = 0, start_us = excluded.start_us, finish_us = NULL",
            ))
            .bind(j.kind.as_str())
            .bind(j.id.as_str())
            .bind(i64::from(j.version))
            .bind(j.tickets_total as i64)
            .bind(us(j.started_at)),
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_job(&self, j: &RecomputeJob) -> StoreResult<()> {
        self.write(
            sqlx::query(self.q(
                "UPDATE recompute_jobs SET tickets_done = ?, finish_us = ? WHERE kind = ? AND id = ? AND version = ?",
            ))
            .bind(j.tickets_done as i64)
            .bind(j.finished_at.map(us))
            .bind(j.kind.as_str())
            .bind(j.id.as_str())
            .bind(i64::from(j.version)),
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn job(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: u32,
    ) -> StoreResult<Option<RecomputeJob>> {
        let row = sqlx::query(self.q(
            "SELECT kind, id, version, tickets_total, tickets_done, start_us, finish_us FROM recompute_jobs \
             WHERE kind = ? AND id = ? AND version = ?",
        ))
        .bind(kind.as_str())
        .bind(id.as_str())
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(job_row).transpose()
    }

    async fn unfinished_jobs(&self) -> StoreResult<Vec<RecomputeJob>> {
        let rows = sqlx::query(
            "SELECT kind, id, version, tickets_total, tickets_done, start_us, finish_us FROM recompute_jobs \
             WHERE finish_us IS NULL ORDER BY start_us",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(job_row).collect()
    }

    #[tracing::instrument(level = "debug", name = "db.open_ticket_ids", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn open_tickets_on_policy(
        &self,
        policy: &ResourceId,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(self.q(
            "SELECT id FROM tickets WHERE policy = ? AND status NOT IN ('RESOLVED', 'CLOSED', 'CANCELLED') \
             ORDER BY id LIMIT ?",
        ))
        .bind(policy.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(db_error))
            .collect()
    }

    async fn open_ticket_ids(&self, organization: &ResourceId) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(self.q(
            "SELECT id FROM tickets WHERE organization = ? AND status NOT IN ('RESOLVED', 'CLOSED', 'CANCELLED') \
             ORDER BY id",
        ))
        .bind(organization.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(db_error))
            .collect()
    }

    async fn tickets_changing_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<super::DueTicket>> {
        let rows = sqlx::query(self.q(
            "SELECT id, trace_context FROM tickets WHERE next_change_us IS NOT NULL AND next_change_us < ? \
             ORDER BY next_change_us LIMIT ?",
        ))
        .bind(us(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(super::DueTicket {
                    id: r.try_get("id").map_err(db_error)?,
                    trace_context: r.try_get("trace_context").map_err(db_error)?,
                })
            })
            .collect()
    }

    async fn gauges(&self) -> StoreResult<super::StoreGauges> {
        // The partial indexes cover active clocks; one pass groups them.
        let rows = sqlx::query(
            "SELECT metric, state, COUNT(*) AS n FROM clocks WHERE active = 1 GROUP BY metric, state \
             ORDER BY metric, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let clocks = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("metric").map_err(db_error)?,
                    r.try_get::<String, _>("state").map_err(db_error)?,
                    u64::try_from(r.try_get::<i64, _>("n").map_err(db_error)?).unwrap_or(0),
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let head = sqlx::query("SELECT MAX(id) AS head FROM alerts")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(super::StoreGauges {
            clocks,
            alert_head: head.try_get::<Option<i64>, _>("head").map_err(db_error)?,
            pool: Some(super::PoolUse {
                open: self.pool.size(),
                idle: self.pool.num_idle(),
                max: self.pool.options().get_max_connections(),
            }),
            webhooks_out: None,
        })
    }

    async fn insert_api_client(&self, c: &super::ApiClientRecord) -> StoreResult<()> {
        let organizations = c.organizations.as_ref().map(|orgs| {
            orgs.iter()
                .map(ResourceId::as_str)
                .collect::<Vec<_>>()
                .join(",")
        });
        self.write(
            sqlx::query(self.q(
                "INSERT INTO api_clients (id, name, token_hash, scopes, organizations, create_us, revoke_us) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            ))
            .bind(c.id.as_str())
            .bind(c.name.as_str())
            .bind(c.token_hash.as_str())
            .bind(c.scopes.join(","))
            .bind(organizations)
            .bind(us(c.created_at))
            .bind(c.revoked_at.map(us)),
        )
        .await
        .map_err(unique_as(|| format!("API client {}", c.name)))?;
        Ok(())
    }

    async fn api_client_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<super::ApiClientRecord>> {
        let text = format!("SELECT {API_CLIENT_COLUMNS} FROM api_clients WHERE token_hash = ?");
        sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(api_client_row)
            .transpose()
    }

    async fn list_api_clients(&self) -> StoreResult<Vec<super::ApiClientRecord>> {
        let text = format!("SELECT {API_CLIENT_COLUMNS} FROM api_clients ORDER BY name");
        let rows = sqlx::query(AssertSqlSafe(text))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(api_client_row).collect()
    }

    async fn revoke_api_client(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<super::ApiClientRecord> {
        self.write(
            sqlx::query(
                self.q("UPDATE api_clients SET revoke_us = COALESCE(revoke_us, ?) WHERE name = ?"),
            )
            .bind(us(at))
            .bind(name),
        )
        .await
        .map_err(db_error)?;
        let text = format!("SELECT {API_CLIENT_COLUMNS} FROM api_clients WHERE name = ?");
        let row = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StoreError::NotFound(format!("API client {name}")))?;
        api_client_row(&row)
    }
}

impl super::StoreTx for SqlTx {
    async fn take_lease(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        start: (i64, i64),
    ) -> StoreResult<bool> {
        self.webhooks_take_lease(subscription, owner, now, until, start)
            .await
    }

    async fn take_alerts(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        cursor: (i64, i64),
        rows: &[WebhookRow],
    ) -> StoreResult<bool> {
        self.webhooks_take_alerts(subscription, owner, now, cursor, rows)
            .await
    }

    async fn finish_attempt(
        &mut self,
        subscription: &str,
        alert_id: i64,
        at: DateTime<Utc>,
        status: Option<i64>,
        error: Option<&str>,
        outcome: AttemptOutcome,
    ) -> StoreResult<()> {
        self.webhooks_finish_attempt(subscription, alert_id, at, status, error, outcome)
            .await
    }

    async fn set_subscription_health(
        &mut self,
        subscription: &str,
        failing_since: Option<Option<DateTime<Utc>>>,
        disabled_reason: Option<Option<&str>>,
    ) -> StoreResult<()> {
        self.webhooks_set_health(subscription, failing_since, disabled_reason)
            .await
    }

    async fn replay_webhook(
        &mut self,
        subscription: &str,
        alert_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.webhooks_replay(subscription, alert_id, now).await
    }

    async fn insert_secret(
        &mut self,
        organization: &str,
        connection: &str,
        secret: &SecretRow,
    ) -> StoreResult<()> {
        self.inbox_insert_secret(organization, connection, secret)
            .await
    }

    async fn delete_secret(&mut self, connection: &str, fingerprint: &str) -> StoreResult<bool> {
        self.inbox_delete_secret(connection, fingerprint).await
    }

    async fn secrets_of(&mut self, connection: &str) -> StoreResult<Vec<SecretRow>> {
        self.inbox_secrets(connection).await
    }

    async fn insert_deliveries(&mut self, rows: &[InboxRow]) -> StoreResult<Vec<bool>> {
        self.inbox_insert(rows).await
    }

    async fn lock_delivery(&mut self, key: &DeliveryKey) -> StoreResult<Option<InboxRow>> {
        self.inbox_lock(key).await
    }

    async fn finish_delivery(
        &mut self,
        key: &DeliveryKey,
        state: DeliveryState,
        reason: Option<&str>,
        ticket_id: Option<&str>,
        done_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.inbox_finish(key, state, reason, ticket_id, done_at)
            .await
    }

    async fn replay_deliveries(
        &mut self,
        connection: &str,
        delivery_id: Option<&str>,
        states: &[DeliveryState],
    ) -> StoreResult<u64> {
        self.inbox_replay(connection, delivery_id, states).await
    }

    async fn lock_source_ticket(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        self.inbox_lock_source(organization, connection, external_id)
            .await
    }

    async fn set_source_ticket(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
        last: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.inbox_set_source(organization, connection, external_id, last)
            .await
    }

    #[tracing::instrument(level = "debug", name = "db.commit", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn commit(self) -> StoreResult<()> {
        let SqlTx {
            tx,
            after_commit,
            _writer: writer,
            ..
        } = self;
        // COMMIT, and what counts it, run to completion in a task of their own: a call
        // cancelled during COMMIT has committed or not, but never leaves the connection
        // to a stray ROLLBACK; a retry under the request id gets the answer.
        tokio::spawn(async move {
            tx.commit().await.map_err(db_error)?;
            drop(writer);
            for hook in after_commit {
                hook();
            }
            Ok(())
        })
        .await
        .map_err(|e| unavailable(format!("COMMIT did not complete: {e}")))?
    }

    fn after_commit(&mut self, hook: super::AfterCommit) {
        self.after_commit.push(hook);
    }

    #[tracing::instrument(level = "debug", name = "db.claim", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn claim(&mut self, key: &IdempotencyKey, fingerprint: &str) -> StoreResult<Claim> {
        let inserted = sqlx::query(self.q(
            "INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) \
             VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(key.client.as_str())
        .bind(key.method)
        .bind(key.request_id.as_str())
        .bind(fingerprint)
        .bind(us(Utc::now()))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let row = sqlx::query(self.q(
            "SELECT fingerprint, response FROM idempotency WHERE client = ? AND method = ? AND request_id = ?",
        ))
        .bind(key.client.as_str())
        .bind(key.method)
        .bind(key.request_id.as_str())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(Claim::Seen {
            fingerprint: row.try_get("fingerprint").map_err(db_error)?,
            response: row
                .try_get::<Option<Vec<u8>>, _>("response")
                .map_err(db_error)?
                .unwrap_or_default(),
        })
    }

    #[tracing::instrument(level = "debug", name = "db.complete", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn complete(&mut self, key: &IdempotencyKey, response: &[u8]) -> StoreResult<()> {
        sqlx::query(self.q(
            "UPDATE idempotency SET response = ? WHERE client = ? AND method = ? AND request_id = ?",
        ))
        .bind(response.to_vec())
        .bind(key.client.as_str())
        .bind(key.method)
        .bind(key.request_id.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.claim_many", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn claim_many(
        &mut self,
        claims: &[(IdempotencyKey, String)],
    ) -> StoreResult<Vec<IdempotencyKey>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut text = String::from(
            "INSERT INTO idempotency (client, method, request_id, fingerprint, create_us, response) VALUES ",
        );
        push_tuples(&mut text, claims.len(), 5, ", NULL");
        text.push_str(" ON CONFLICT DO NOTHING RETURNING client, method, request_id");
        let now = us(Utc::now());
        let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        for (key, fingerprint) in claims {
            query = query
                .bind(key.client.as_str())
                .bind(key.method)
                .bind(key.request_id.as_str())
                .bind(fingerprint.as_str())
                .bind(now);
        }
        let rows = query.fetch_all(&mut *self.tx).await.map_err(db_error)?;
        keys_of_rows(&rows, claims.iter().map(|(k, _)| k))
    }

    #[tracing::instrument(level = "debug", name = "db.answers_of", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn answers_of(
        &mut self,
        keys: &[IdempotencyKey],
    ) -> StoreResult<Vec<(IdempotencyKey, Claim)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Postgres plans a row `IN` list as an index scan on the client and method with
        // the request ids as a filter (every record of the client read): a join it plans
        // as one index probe per key. SQLite probes the index for either.
        let mut text = String::from(match self.backend {
            Backend::Postgres => {
                "SELECT i.client, i.method, i.request_id, i.fingerprint, i.response FROM idempotency AS i JOIN (VALUES "
            }
            Backend::Sqlite => {
                "SELECT client, method, request_id, fingerprint, response FROM idempotency \
                 WHERE response IS NOT NULL AND (client, method, request_id) IN ("
            }
        });
        push_tuples(&mut text, keys.len(), 3, "");
        text.push_str(match self.backend {
            Backend::Postgres => {
                ") AS k (client, method, request_id) ON i.client = k.client AND i.method = k.method \
                 AND i.request_id = k.request_id WHERE i.response IS NOT NULL"
            }
            Backend::Sqlite => ")",
        });
        let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        for key in keys {
            query = query
                .bind(key.client.as_str())
                .bind(key.method)
                .bind(key.request_id.as_str());
        }
        let rows = query.fetch_all(&mut *self.tx).await.map_err(db_error)?;
        let found = keys_of_rows(&rows, keys.iter())?;
        found
            .into_iter()
            .zip(&rows)
            .map(|(key, row)| {
                Ok((
                    key,
                    Claim::Seen {
                        fingerprint: row.try_get("fingerprint").map_err(db_error)?,
                        response: row.try_get("response").map_err(db_error)?,
                    },
                ))
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", name = "db.release_claims", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn release_claims(&mut self, keys: &[IdempotencyKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.backend == Backend::Postgres {
            return self.close_group_pg(&[], keys, &[]).await;
        }
        let mut text = String::from(
            "DELETE FROM idempotency WHERE response IS NULL AND (client, method, request_id) IN (",
        );
        push_tuples(&mut text, keys.len(), 3, "");
        text.push(')');
        let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        for key in keys {
            query = query
                .bind(key.client.as_str())
                .bind(key.method)
                .bind(key.request_id.as_str());
        }
        query.execute(&mut *self.tx).await.map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.complete_many", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn complete_many(
        &mut self,
        answers: &[(IdempotencyKey, String, Vec<u8>)],
    ) -> StoreResult<()> {
        if answers.is_empty() {
            return Ok(());
        }
        // The rows exist (claimed in this transaction): each insert meets its conflict and
        // becomes an update of the row's answer, one statement for all.
        let mut text = String::from(
            "INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) VALUES ",
        );
        push_tuples(&mut text, answers.len(), 6, "");
        text.push_str(
            " ON CONFLICT (client, method, request_id) DO UPDATE SET response = excluded.response",
        );
        let now = us(Utc::now());
        let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
        for (key, fingerprint, response) in answers {
            query = query
                .bind(key.client.as_str())
                .bind(key.method)
                .bind(key.request_id.as_str())
                .bind(fingerprint.as_str())
                .bind(response.clone())
                .bind(now);
        }
        query.execute(&mut *self.tx).await.map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.create_resource", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn create_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ResourceVersion> {
        sqlx::query(self.q(
            "INSERT INTO resources (kind, id, latest_version, archived, create_us) VALUES (?, ?, 1, 0, ?)",
        ))
        .bind(kind.as_str())
        .bind(id.as_str())
        .bind(us(now))
        .execute(&mut *self.tx)
        .await
        .map_err(unique_as(|| format!("{} {}", kind.as_str(), id)))?;
        self.bump_epoch().await?;
        sqlx::query(self.q(
            "INSERT INTO resource_versions (kind, id, version, effective_us, display_name, body, create_us) \
             VALUES (?, ?, 1, ?, ?, ?, ?)",
        ))
        .bind(kind.as_str())
        .bind(id.as_str())
        .bind(us(now))
        .bind(display_name)
        .bind(body)
        .bind(us(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        read_resource(&mut *self.tx, self.backend, kind, id, Some(1)).await
    }

    #[tracing::instrument(level = "debug", name = "db.add_version", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn add_version(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: &str,
        effective: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<ResourceVersion> {
        let text = format!(
            "SELECT latest_version FROM resources WHERE kind = ? AND id = ?{}",
            self.for_update()
        );
        let latest: i64 = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(kind.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StoreError::NotFound(format!("{} {}", kind.as_str(), id)))?
            .try_get("latest_version")
            .map_err(db_error)?;
        let version = latest + 1;
        self.bump_epoch().await?;
        sqlx::query(self.q("UPDATE resources SET latest_version = ? WHERE kind = ? AND id = ?"))
            .bind(version)
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        sqlx::query(self.q(
            "INSERT INTO resource_versions (kind, id, version, effective_us, display_name, body, create_us) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(kind.as_str())
        .bind(id.as_str())
        .bind(version)
        .bind(us(effective.max(now)))
        .bind(display_name)
        .bind(body)
        .bind(us(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        read_resource(
            &mut *self.tx,
            self.backend,
            kind,
            id,
            Some(u32_of("version", version)?),
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "db.archive_resource", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn archive_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> StoreResult<ResourceVersion> {
        self.bump_epoch().await?;
        sqlx::query(self.q("UPDATE resources SET archived = 1 WHERE kind = ? AND id = ?"))
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        read_resource(&mut *self.tx, self.backend, kind, id, None).await
    }

    #[tracing::instrument(level = "debug", name = "db.resource_versions", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn resource_versions(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> StoreResult<Vec<ResourceVersion>> {
        read_versions(&mut *self.tx, self.backend, kind, id).await
    }

    #[tracing::instrument(level = "debug", name = "db.get_resource", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn get_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> StoreResult<ResourceVersion> {
        read_resource(&mut *self.tx, self.backend, kind, id, version).await
    }

    async fn catalog_epoch(&mut self) -> StoreResult<i64> {
        sqlx::query("SELECT epoch FROM catalog_epoch WHERE id = 1")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_error)?
            .try_get("epoch")
            .map_err(db_error)
    }

    #[tracing::instrument(level = "debug", name = "db.insert_ticket", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn insert_ticket(&mut self, r: &TicketRecord) -> StoreResult<()> {
        let t = &r.ticket;
        sqlx::query(self.q(
            "INSERT INTO tickets (id, organization, source_system, external_id, request_type, initial_priority, \
             received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy, policy_version, \
             plan, status, cycle, priority, next_change_us, create_us, update_us, trace_context) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(t.id.as_str())
        .bind(t.organization.as_str())
        .bind(t.source_system.as_str())
        .bind(t.external_id.as_str())
        .bind(t.request_type.as_str())
        .bind(t.priority.as_ref().map(|p| p.as_str().to_string()))
        .bind(us(t.received_at))
        .bind(t.requested_by.as_ref().map(|p| p.as_str().to_string()))
        .bind(t.estimate_minutes.map(i64::from))
        .bind(t.scheduled_at.map(us))
        .bind(t.policy.as_str())
        .bind(i64::from(t.policy_version))
        .bind(t.plan.as_ref().map(|p| p.as_str().to_string()))
        .bind(r.status.as_str())
        .bind(i64::from(r.cycle))
        .bind(r.priority.clone())
        .bind(r.next_change_at.map(us))
        .bind(us(r.created_at))
        .bind(us(r.updated_at))
        .bind(r.trace_context.clone())
        .execute(&mut *self.tx)
        .await
        .map_err(unique_as(|| {
            format!(
                "ticket {}/{} of organizations/{}",
                t.source_system, t.external_id, t.organization
            )
        }))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.lock_ticket_skip", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn lock_ticket_skip(&mut self, id: &str) -> StoreResult<Option<TicketRecord>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let text = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?{lock}");
        let row = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_error)?;
        row.as_ref().map(ticket_row).transpose()
    }

    #[tracing::instrument(level = "debug", name = "db.lock_due_tickets", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn lock_due_tickets(
        &mut self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<TicketRecord>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let text = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE next_change_us IS NOT NULL AND next_change_us < ? \
             ORDER BY next_change_us LIMIT ?{lock}"
        );
        let rows = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(us(before))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_error)?;
        rows.iter().map(ticket_row).collect()
    }

    #[tracing::instrument(level = "debug", name = "db.events_of_locked", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn events_of_locked(
        &mut self,
        ids: &[String],
    ) -> StoreResult<HashMap<String, Vec<StoredEvent>>> {
        let mut out: HashMap<String, Vec<StoredEvent>> = HashMap::new();
        for chunk in ids.chunks(500) {
            let text = events_of_text(self.backend, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(text));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let rows = query.fetch_all(&mut *self.tx).await.map_err(db_error)?;
            group_events(&rows, &mut out)?;
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "db.append_alert", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn append_alert(&mut self, a: &AlertRow) -> StoreResult<()> {
        let tx = match self.backend {
            Backend::Postgres => "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)",
            Backend::Sqlite => "0",
        };
        let text = format!(
            "INSERT INTO alerts (tx, organization, ticket_id, metric, kind, event_seq, occurred_us, record_us, body) \
             VALUES ({tx}, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(a.organization.as_str())
            .bind(a.ticket_id.as_str())
            .bind(a.metric.as_str())
            .bind(a.kind.as_str())
            .bind(a.event_seq)
            .bind(us(a.occurred_at))
            .bind(us(a.recorded_at))
            .bind(a.body.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.lock_ticket", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn lock_ticket(&mut self, id: &str) -> StoreResult<TicketRecord> {
        let text = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?{}",
            self.for_update()
        );
        let row = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
        ticket_row(&row)
    }

    #[tracing::instrument(level = "debug", name = "db.find_ticket", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn find_ticket(
        &mut self,
        organization: &ResourceId,
        source_system: &str,
        external_id: &str,
    ) -> StoreResult<Option<TicketRecord>> {
        read_ticket_by_key(
            &mut *self.tx,
            self.backend,
            organization,
            source_system,
            external_id,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "db.ticket_events", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn ticket_events(&mut self, id: &str) -> StoreResult<Vec<StoredEvent>> {
        let kept = self.events.get(id);
        let events = match kept.as_ref().and_then(|k| Some((k, k.last()?.event.seq))) {
            Some((kept, last)) => {
                let more = read_events(&mut *self.tx, self.backend, id, last).await?;
                if more.first().is_none_or(|e| e.event.seq == last + 1) {
                    let mut all = Vec::with_capacity(kept.len() + more.len());
                    all.extend_from_slice(kept);
                    all.extend(more);
                    all
                } else {
                    read_events(&mut *self.tx, self.backend, id, 0).await?
                }
            }
            None => read_events(&mut *self.tx, self.backend, id, 0).await?,
        };
        let keep = Arc::new(events.clone());
        let (cache, id) = (Arc::clone(&self.events), id.to_string());
        self.after_commit
            .push(Box::new(move || cache.keep(id, keep)));
        Ok(events)
    }

    #[tracing::instrument(level = "debug", name = "db.append_event", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn append_event(
        &mut self,
        ticket_id: &str,
        e: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<Event> {
        let body =
            serde_json::to_string(&e.kind).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        // The ticket row is locked by this transaction, so the next number is ours.
        let seq: i64 = sqlx::query(self.q(
            "INSERT INTO ticket_events (ticket_id, seq, occurred_us, body, client, contact, request_id, record_us) \
             SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ? FROM ticket_events WHERE ticket_id = ? \
             RETURNING seq",
        ))
        .bind(ticket_id)
        .bind(us(e.occurred_at))
        .bind(body)
        .bind(e.actor.client.as_str())
        .bind(e.actor.contact.as_ref().map(|c| c.as_str().to_string()))
        .bind(e.request_id.as_str())
        .bind(us(now))
        .bind(ticket_id)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(unique_as(|| format!("event {} on ticket {ticket_id}", e.request_id)))?
        .try_get("seq")
        .map_err(db_error)?;
        Ok(Event {
            seq,
            occurred_at: e.occurred_at,
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            request_id: e.request_id.clone(),
        })
    }

    #[tracing::instrument(level = "debug", name = "db.save_derived", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn save_derived(
        &mut self,
        r: &TicketRecord,
        d: &DerivedState,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.save_derived_with(r, d, now, None).await
    }

    #[tracing::instrument(level = "debug", name = "db.save_derived", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn save_derived_answered(
        &mut self,
        r: &TicketRecord,
        d: &DerivedState,
        now: DateTime<Utc>,
        key: &IdempotencyKey,
        response: &[u8],
    ) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            return self
                .save_derived_with(r, d, now, Some((key, response)))
                .await;
        }
        self.save_derived_with(r, d, now, None).await?;
        self.complete(key, response).await
    }

    #[tracing::instrument(level = "debug", name = "db.lock_accounts", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn lock_accounts(&mut self, accounts: &[(ResourceId, String)]) -> StoreResult<Vec<u64>> {
        // In key order, in one statement: two transactions locking overlapping sets of
        // accounts (two replicas' groups) take the locks in the same order and cannot
        // deadlock. The accounts usually exist: one round trip locks them and reads their
        // numbers; new ones are inserted first (a concurrent insert is settled by the
        // conflict), in key order for the same reason.
        let mut keys: Vec<(&str, &str)> = accounts
            .iter()
            .map(|(o, b)| (o.as_str(), b.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut found: HashMap<(String, String), u64> = HashMap::with_capacity(keys.len());
        for _ in 0..2 {
            let missing: Vec<(&str, &str)> = keys
                .iter()
                .filter(|(o, b)| !found.contains_key(&(o.to_string(), b.to_string())))
                .copied()
                .collect();
            if missing.is_empty() {
                break;
            }
            let mut text = String::from(
                "SELECT organization, bucket, next_seq FROM hour_accounts WHERE (organization, bucket) IN (",
            );
            push_tuples(&mut text, missing.len(), 2, "");
            text.push_str(") ORDER BY organization, bucket");
            text.push_str(self.for_update());
            let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
            for (o, b) in &missing {
                query = query.bind(*o).bind(*b);
            }
            let rows = query.fetch_all(&mut *self.tx).await.map_err(db_error)?;
            for row in &rows {
                let o: String = row.try_get("organization").map_err(db_error)?;
                let b: String = row.try_get("bucket").map_err(db_error)?;
                let next: i64 = row.try_get("next_seq").map_err(db_error)?;
                found.insert((o, b), parse("next_seq", u64::try_from(next))?);
            }
            let new: Vec<&(&str, &str)> = missing
                .iter()
                .filter(|(o, b)| !found.contains_key(&(o.to_string(), b.to_string())))
                .collect();
            if new.is_empty() {
                break;
            }
            let mut text =
                String::from("INSERT INTO hour_accounts (organization, bucket, next_seq) VALUES ");
            push_tuples(&mut text, new.len(), 2, ", 1");
            text.push_str(" ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(AssertSqlSafe(placeholders(self.backend, &text)));
            for (o, b) in new {
                query = query.bind(*o).bind(*b);
            }
            query.execute(&mut *self.tx).await.map_err(db_error)?;
        }
        accounts
            .iter()
            .map(|(o, b)| {
                found
                    .get(&(o.as_str().to_string(), b.clone()))
                    .copied()
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "hour account {o}/{b} neither found nor created"
                        ))
                    })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", name = "db.account_entries", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn account_entries(
        &mut self,
        organization: &ResourceId,
        bucket: &str,
        from_seq: u64,
    ) -> StoreResult<Vec<Entry>> {
        let rows = sqlx::query(self.q(
            "SELECT body FROM ledger_entries WHERE organization = ? AND bucket = ? AND seq >= ? ORDER BY seq",
        ))
        .bind(organization.as_str())
        .bind(bucket)
        .bind(from_seq as i64)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db_error)?;
        entry_rows(&rows)
    }

    #[tracing::instrument(level = "debug", name = "db.append_entries", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn append_entries_many(&mut self, accounts: &[AccountEntries<'_>]) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            return self.close_group_pg(accounts, &[], &[]).await;
        }
        // SQLite runs in process: a statement per account costs nothing there.
        let accounts: Vec<&AccountEntries<'_>> =
            accounts.iter().filter(|a| !a.entries.is_empty()).collect();
        let Some(first) = accounts.first() else {
            return Ok(());
        };
        let rows: usize = accounts.iter().map(|a| a.entries.len()).sum();
        let mut text = String::from(
            "INSERT INTO ledger_entries (organization, bucket, seq, kind, period, record_us, body) VALUES ",
        );
        push_tuples(&mut text, rows, 7, "");
        let mut query = sqlx::query(AssertSqlSafe(text));
        for a in &accounts {
            for e in a.entries {
                let (kind, body) = groups::entry_columns(e)?;
                query = query
                    .bind(a.organization.as_str())
                    .bind(a.bucket.to_string())
                    .bind(e.seq as i64)
                    .bind(kind)
                    .bind(e.period.to_string())
                    .bind(us(e.recorded_at))
                    .bind(body);
            }
        }
        query.execute(&mut *self.tx).await.map_err(unique_as(|| {
            format!("an entry of {}/{}", first.organization, first.bucket)
        }))?;
        for a in &accounts {
            sqlx::query(
                self.q(
                    "UPDATE hour_accounts SET next_seq = ? WHERE organization = ? AND bucket = ?",
                ),
            )
            .bind(a.next_seq() as i64)
            .bind(a.organization.as_str())
            .bind(a.bucket)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.open_group", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn open_group(
        &mut self,
        claims: &[(IdempotencyKey, String)],
        accounts: &[(ResourceId, String)],
    ) -> StoreResult<GroupStart> {
        if self.backend == Backend::Postgres && !claims.is_empty() && !accounts.is_empty() {
            return self.open_group_pg(claims, accounts).await;
        }
        let claimed = self.claim_many(claims).await?;
        let earlier: Vec<IdempotencyKey> = claims
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !claimed.contains(k))
            .cloned()
            .collect();
        let answered = self.answers_of(&earlier).await?;
        let next_seqs = self.lock_accounts(accounts).await?;
        let epoch = self.catalog_epoch().await?;
        Ok(GroupStart {
            claimed,
            answered,
            next_seqs,
            epoch,
        })
    }

    #[tracing::instrument(level = "debug", name = "db.close_group", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn close_group(
        &mut self,
        entries: &[AccountEntries<'_>],
        refused: &[IdempotencyKey],
        answers: &[(IdempotencyKey, String, Vec<u8>)],
    ) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            return self.close_group_pg(entries, refused, answers).await;
        }
        self.append_entries_many(entries).await?;
        self.release_claims(refused).await?;
        self.complete_many(answers).await
    }

    #[tracing::instrument(level = "debug", name = "db.set_ticket_policy", skip_all, fields(db.system.name = self.db.system, db.namespace = self.db.namespace.as_str(), server.address = self.db.address.as_deref(), server.port = self.db.port.map(i64::from)))]
    async fn set_ticket_policy(
        &mut self,
        id: &str,
        policy: &ResourceId,
        version: u32,
    ) -> StoreResult<()> {
        sqlx::query(self.q("UPDATE tickets SET policy = ?, policy_version = ? WHERE id = ?"))
            .bind(policy.as_str())
            .bind(i64::from(version))
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
