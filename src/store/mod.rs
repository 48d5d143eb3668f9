//! Persistence: one store trait, implemented for Postgres and embedded SQLite.
//!
//! The store keeps what happened (versioned resources, tickets, their append-only events,
//! idempotency keys) and the clocks index derived from it; it decides nothing. Every
//! mutation runs in a transaction the API layer drives, so an event, its recomputed
//! clocks and its idempotency record commit together or not at all.

mod sql;

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::ledger::Entry;
use crate::domain::names::ResourceId;
use crate::domain::status::Status;
use crate::domain::ticket::{Actor, Event, EventKind, Ticket};

pub use sql::{Backend, SqlStore, SqlTx};

/// The versioned documents the catalogue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Organization,
    Calendar,
    Policy,
    /// A named bundle of hour terms.
    Plan,
    /// An organisation's hours contract (keyed by the organisation's id).
    HoursContract,
    /// A helpdesk pushing an organisation's tickets over webhooks.
    Connection,
    /// An HTTP receiver of alerts (webhooks out).
    Subscription,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Organization => "organization",
            ResourceKind::Calendar => "calendar",
            ResourceKind::Policy => "policy",
            ResourceKind::Plan => "plan",
            ResourceKind::HoursContract => "hours_contract",
            ResourceKind::Connection => "connection",
            ResourceKind::Subscription => "subscription",
        }
    }

    /// A resource's name: `organizations/acme`.
    pub fn name(self, id: &ResourceId) -> String {
        format!("{}/{}", self.collection(), id)
    }

    /// The collection in resource names: `organizations/acme`.
    pub fn collection(self) -> &'static str {
        match self {
            ResourceKind::Organization => "organizations",
            ResourceKind::Calendar => "calendars",
            ResourceKind::Policy => "policies",
            ResourceKind::Plan => "plans",
            ResourceKind::HoursContract => "organizations",
            ResourceKind::Connection => "connections",
            ResourceKind::Subscription => "webhookSubscriptions",
        }
    }
}

/// One version of a resource. `body` is the domain value as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceVersion {
    pub kind: ResourceKind,
    pub id: ResourceId,
    pub version: u32,
    pub effective_at: DateTime<Utc>,
    pub display_name: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub archived: bool,
}

/// A ticket as stored: as created, plus the state its last fold derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub ticket: Ticket,
    pub status: Status,
    pub cycle: u32,
    pub priority: Option<String>,
    pub next_change_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The W3C `traceparent` of the call that created it, when traces were on.
    pub trace_context: Option<String>,
}

/// A ticket the due-time runner is to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTicket {
    pub id: String,
    /// Its creating call's `traceparent`, which the runner's span links to.
    pub trace_context: Option<String>,
}

/// The state a fold derived, written back with the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedState {
    pub status: Status,
    pub cycle: u32,
    pub priority: Option<String>,
    pub next_change_at: Option<DateTime<Utc>>,
    pub clocks: Vec<ClockRow>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub occurred_at: DateTime<Utc>,
    pub kind: EventKind,
    pub actor: Actor,
    pub request_id: String,
}

/// An event as stored, with when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub recorded_at: DateTime<Utc>,
}

/// One row of the clocks index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRow {
    pub metric: String,
    pub instance: u32,
    pub kind: String,
    pub state: String,
    pub active: bool,
    pub started_at: DateTime<Utc>,
    /// For an active clock: its deadline, or when it breached; `None` while paused.
    pub deadline: Option<DateTime<Utc>>,
    /// When its first warning threshold is crossed.
    pub warning: Option<DateTime<Utc>>,
    /// When its outcome settled: its end, or its breach while still running.
    pub settled_at: Option<DateTime<Utc>>,
    /// Open seconds counted, once it has ended.
    pub elapsed_seconds: Option<i64>,
}

/// A clock found by a deadline query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRef {
    pub ticket_id: String,
    pub organization: String,
    pub metric: String,
    pub instance: u32,
    pub priority: Option<String>,
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    pub warning: Option<DateTime<Utc>>,
}

/// Filters of the deadline queries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClockFilter {
    pub organization: Option<String>,
    pub metric: Option<String>,
    pub priority: Option<String>,
}

/// A promise as an attainment report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledPromise {
    pub ticket_id: String,
    pub organization: String,
    pub metric: String,
    pub instance: u32,
    pub priority: Option<String>,
    /// The clock's state name (`met`, `breached`, `cancelled`, ...).
    pub state: String,
    pub settled_at: DateTime<Utc>,
    pub elapsed_seconds: Option<i64>,
}

/// Where a page of clocks continues: after this (deadline, ticket, metric, instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockCursor {
    pub deadline_us: i64,
    pub ticket_id: String,
    pub metric: String,
    pub instance: u32,
}

/// Which clocks a deadline query wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockQuery {
    /// Deadline in `[from, to)`.
    Due {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Promises whose deadline passed before `now`.
    Breached { now: DateTime<Utc> },
    /// First warning reached by `now`, deadline still ahead.
    AtRisk { now: DateTime<Utc> },
}

/// Filters of the ticket list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFilter {
    pub organization: Option<String>,
    pub status: Option<Status>,
    pub source_system: Option<String>,
    pub external_id: Option<String>,
}

/// Where a page of tickets continues: after this (received, id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCursor {
    pub received_us: i64,
    pub id: String,
}

/// Where a delivery stands in its connection's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Kept, not applied yet.
    Pending,
    /// Its events are recorded (or it changed nothing).
    Applied,
    /// Older than a snapshot already applied from its source: kept, not folded.
    Stale,
    /// About nothing servicelevel follows (a deleted ticket, another property).
    Ignored,
    /// Cannot be applied as it is (its reason says why); replayable.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Applied,
        DeliveryState::Stale,
        DeliveryState::Ignored,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Applied => "applied",
            DeliveryState::Stale => "stale",
            DeliveryState::Ignored => "ignored",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A delivery's place: its connection (and the connection's organisation) and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub organization: String,
    pub connection: String,
    pub delivery_id: String,
}

/// A delivery in a connection's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub key: DeliveryKey,
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
    pub state: DeliveryState,
    pub reason: Option<String>,
    /// Times it was applied or tried.
    pub attempts: i64,
    /// The source's ticket and the time of its state, read on arrival.
    pub external_id: Option<String>,
    pub source_at: Option<DateTime<Utc>>,
    pub ticket_id: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// Where a webhook subscription stands: its place in the alert log, who delivers it, and
/// its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCursor {
    pub cursor: (i64, i64),
    pub lease_owner: Option<String>,
    pub lease_until: DateTime<Utc>,
    /// The first failure with no success since.
    pub failing_since: Option<DateTime<Utc>>,
    /// Why it was disabled, while it is.
    pub disabled_reason: Option<String>,
}

/// How far an alert's delivery to a subscription got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Not delivered yet: waiting for its attempt (or for the ticket's earlier one).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retried for the whole retry period in vain; replayable.
    Dead,
}

impl WebhookState {
    pub const ALL: [WebhookState; 3] = [
        WebhookState::Pending,
        WebhookState::Delivered,
        WebhookState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        WebhookState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One alert's delivery to one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub subscription: String,
    /// The alert's id in the log (its cursor's second part): one ticket's alerts are
    /// delivered in this order.
    pub alert_id: i64,
    pub organization: String,
    pub ticket_id: String,
    pub kind: String,
    pub recorded_at: DateTime<Utc>,
    /// When the worker took it from the log.
    pub taken_at: DateTime<Utc>,
    /// The body as POSTed.
    pub payload: String,
    pub state: WebhookState,
    pub attempts: i64,
    pub next_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// What one delivery attempt leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry { next_at: DateTime<Utc> },
    Dead,
}

/// A connection's secret (its key bytes) and when it was added.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub fingerprint: String,
    pub secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("fingerprint", &self.fingerprint)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What an idempotency key says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: carry on, then complete the key.
    Fresh,
    /// Seen before: this was the request (as a fingerprint) and the answer.
    Seen {
        fingerprint: String,
        response: Vec<u8>,
    },
}

/// What [`StoreTx::open_group`] found.
#[derive(Debug, Clone, Default)]
pub struct GroupStart {
    /// The keys claimed now (first seen).
    pub claimed: Vec<IdempotencyKey>,
    /// Keys answered before, each with its request's fingerprint and its answer.
    pub answered: Vec<(IdempotencyKey, Claim)>,
    /// The accounts' next entry numbers, in the order asked.
    pub next_seqs: Vec<u64>,
    /// The catalogue epoch.
    pub epoch: i64,
}

/// One hour account's part in a group of ledger writes decided on the fold this process
/// kept, for [`Store::post_group`].
#[derive(Debug, Clone)]
pub struct PostedAccount<'a> {
    pub organization: &'a ResourceId,
    pub bucket: &'a str,
    /// The account's next entry number the writes were decided on.
    pub decided_at: u64,
    /// The new entries, numbered from `decided_at` on, consecutively.
    pub entries: &'a [Entry],
    /// Every write decided on the account, answered or refused.
    pub writes: Vec<PostedWrite<'a>>,
}

impl PostedAccount<'_> {
    /// The account's next number once the entries are appended.
    pub fn next_seq(&self) -> u64 {
        self.entries.last().map_or(self.decided_at, |e| e.seq + 1)
    }
}

/// A write of a [`PostedAccount`]: its key and request fingerprint, and its answer
/// (`None` when it was refused: then nothing of it is kept).
#[derive(Debug, Clone)]
pub struct PostedWrite<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: String,
    pub answer: Option<Vec<u8>>,
}

/// New entries of one hour account, for [`StoreTx::append_entries_many`].
#[derive(Debug, Clone, Copy)]
pub struct AccountEntries<'a> {
    pub organization: &'a ResourceId,
    pub bucket: &'a str,
    /// Numbered from the account's next number on, consecutively.
    pub entries: &'a [Entry],
}

impl AccountEntries<'_> {
    /// The account's next number once these are appended.
    pub fn next_seq(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.seq + 1)
    }
}

/// An idempotency key: the calling client, the method, the client's request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub client: String,
    pub method: &'static str,
    pub request_id: String,
}

impl IdempotencyKey {
    /// The key of an event: its request id is unique per ticket, whoever the client, so
    /// the ticket takes the client's place (`tickets/{id}`, which no client name can be).
    pub fn event(ticket_id: &str, request_id: &str) -> Self {
        IdempotencyKey {
            client: format!("tickets/{ticket_id}"),
            method: "RecordEvent",
            request_id: request_id.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why the service is not ready to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the database does not answer: {0}")]
    Unreachable(String),
    #[error(
        "the database schema is at version {have}, this binary needs {want}: run `servicelevel migrate` (or start without --no-migrate)"
    )]
    SchemaBehind { have: i64, want: i64 },
}

/// One row of the alerts outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// Where a reader resumes: (writing transaction, id).
    pub cursor: (i64, i64),
    pub organization: String,
    pub ticket_id: String,
    pub metric: String,
    /// warning, breach, escalation, move, retraction.
    pub kind: String,
    pub event_seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The event, as JSON.
    pub body: String,
}

/// Which alerts a reader wants; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub organization: Option<String>,
    pub metric: Option<String>,
}

/// An API client (`servicelevel client create`): its token is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClientRecord {
    pub id: String,
    /// Unique, and never reused: a revoked client keeps it.
    pub name: ResourceId,
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: String,
    /// The scope names granted (`tickets:read`).
    pub scopes: Vec<String>,
    /// The organisations it may touch; `None`: every one.
    pub organizations: Option<Vec<ResourceId>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Progress of a background recomputation after a calendar or organisation change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputeJob {
    pub kind: ResourceKind,
    pub id: ResourceId,
    pub version: u32,
    pub tickets_total: u64,
    pub tickets_done: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The database side of the metrics (see `crate::metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Active clocks: (metric, state, count).
    pub clocks: Vec<(String, String, u64)>,
    /// The id of the newest alert in the outbox.
    pub alert_head: Option<i64>,
    pub pool: Option<PoolUse>,
    /// Pending alert webhook deliveries, and when the oldest was taken.
    pub webhooks_out: Option<(i64, Option<DateTime<Utc>>)>,
}

/// A connection pool's use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUse {
    pub open: u32,
    pub idle: usize,
    pub max: u32,
}

/// A store: reads outside transactions, writes inside them.
pub trait Store: Clone + Send + Sync + 'static {
    type Tx: StoreTx;

    /// Starts a write transaction. On SQLite it takes the write lock at once, so two
    /// writers queue instead of failing on upgrade.
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;

    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// How far this database, a read replica, is behind its primary, in seconds: 0 when
    /// it has replayed all it received; `None` when it is no standby (or cannot say).
    fn replica_lag(&self) -> impl Future<Output = StoreResult<Option<f64>>> + Send {
        async { Ok(None) }
    }

    /// Whether the service may take calls: the database answers (on a connection of the
    /// probe's own, within a second) and its schema is at this binary's version.
    fn readiness(&self) -> impl Future<Output = Result<(), NotReady>> + Send;

    /// The catalogue's change counter: it moves with every write to an organisation,
    /// calendar or policy.
    fn catalog_epoch(&self) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Writes a group of ledger writes decided on folds kept in memory, each account's
    /// part only if nothing it was decided on has moved: the catalogue is still at
    /// `epoch`, the account's next number is still `decided_at`, and none of its writes'
    /// request ids has been seen. Returns, per account in the order given, whether its
    /// part (entries, next number, answers) was written; a part not written left nothing.
    /// A request id claimed meanwhile by another write fails the whole call, as does any
    /// database error: then nothing was written. Postgres does it in one statement (its
    /// own transaction: one round trip instead of a locked group's four).
    fn post_group(
        &self,
        epoch: i64,
        accounts: &[PostedAccount<'_>],
    ) -> impl Future<Output = StoreResult<Vec<bool>>> + Send;

    fn get_resource(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> impl Future<Output = StoreResult<ResourceVersion>> + Send;

    /// What an idempotency key holds once its request was answered (its fingerprint and
    /// answer), read without claiming it; a key unused or still in flight is `None`.
    fn answered(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = StoreResult<Option<Claim>>> + Send;

    /// A webhook subscription's cursor, lease and health; `None` before its first run.
    fn subscription_cursor(
        &self,
        subscription: &str,
    ) -> impl Future<Output = StoreResult<Option<SubscriptionCursor>>> + Send;

    /// The deliveries to attempt now: of each ticket only its earliest pending one, and
    /// only when its next attempt is due; in alert order, at most `limit`.
    fn webhooks_due(
        &self,
        subscription: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<WebhookRow>>> + Send;

    /// The earliest next attempt of a pending delivery.
    fn webhook_next_at(
        &self,
        subscription: &str,
    ) -> impl Future<Output = StoreResult<Option<DateTime<Utc>>>> + Send;

    /// A page of a subscription's deliveries in these states (all when empty), newest
    /// alert first, after `after` (an alert id).
    fn webhooks_page(
        &self,
        subscription: &str,
        states: &[WebhookState],
        after: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<WebhookRow>>> + Send;

    fn webhook(
        &self,
        subscription: &str,
        alert_id: i64,
    ) -> impl Future<Output = StoreResult<WebhookRow>> + Send;

    /// Pending deliveries of every subscription, and when the oldest was taken.
    fn webhook_backlog(
        &self,
    ) -> impl Future<Output = StoreResult<(i64, Option<DateTime<Utc>>)>> + Send;

    /// A connection's secrets, oldest first.
    fn connection_secrets(
        &self,
        connection: &str,
    ) -> impl Future<Output = StoreResult<Vec<SecretRow>>> + Send;

    /// Pending deliveries of every connection, by their source time, at most `limit`.
    fn pending_deliveries(
        &self,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<InboxRow>>> + Send;

    /// A connection's deliveries in these states (all when empty), newest first, after
    /// the cursor (received instant in microseconds, delivery id).
    fn deliveries_page(
        &self,
        connection: &str,
        states: &[DeliveryState],
        after: Option<(i64, String)>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<InboxRow>>> + Send;

    fn delivery(
        &self,
        connection: &str,
        delivery_id: &str,
    ) -> impl Future<Output = StoreResult<InboxRow>> + Send;

    /// Removes deliveries done before `before` (not pending ones), at most `limit`;
    /// returns how many.
    fn purge_inbox(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Pending deliveries and the arrival of the oldest.
    fn inbox_backlog(
        &self,
    ) -> impl Future<Output = StoreResult<(i64, Option<DateTime<Utc>>)>> + Send;

    /// Every version of a resource, oldest first.
    fn resource_versions(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> impl Future<Output = StoreResult<Vec<ResourceVersion>>> + Send;

    /// Latest versions in id order, after `after`.
    fn list_resources(
        &self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: u32,
        show_archived: bool,
    ) -> impl Future<Output = StoreResult<Vec<ResourceVersion>>> + Send;

    fn get_ticket(&self, id: &str) -> impl Future<Output = StoreResult<TicketRecord>> + Send;

    /// A ticket by its key: tickets are unique per organisation on (source system,
    /// external id).
    fn find_ticket(
        &self,
        organization: &ResourceId,
        source_system: &str,
        external_id: &str,
    ) -> impl Future<Output = StoreResult<Option<TicketRecord>>> + Send;

    fn ticket_events(&self, id: &str)
    -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;

    /// The events of several tickets, each ticket's in order (a ticket without events
    /// has no entry).
    fn events_of_tickets(
        &self,
        ids: &[String],
    ) -> impl Future<Output = StoreResult<std::collections::HashMap<String, Vec<StoredEvent>>>> + Send;

    fn list_tickets(
        &self,
        filter: &TicketFilter,
        after: Option<&TicketCursor>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<TicketRecord>>> + Send;

    fn query_clocks(
        &self,
        query: &ClockQuery,
        filter: &ClockFilter,
        after: Option<&ClockCursor>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ClockRef>>> + Send;

    fn ticket_clocks(&self, id: &str) -> impl Future<Output = StoreResult<Vec<ClockRow>>> + Send;

    /// Ids of the open tickets (not resolved, closed or cancelled) under a policy, any
    /// version, at most `limit`.
    fn open_tickets_on_policy(
        &self,
        policy: &ResourceId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Promises settled in `[from, to)` (ended, or breached while running), in (settled,
    /// ticket, metric, instance) order after `after`, for attainment reports.
    fn settled_promises(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &ClockFilter,
        after: Option<&ClockCursor>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<SettledPromise>>> + Send;

    /// An hour account's entries from `from_seq` on (1 for all), in order.
    fn account_entries(
        &self,
        organization: &ResourceId,
        bucket: &str,
        from_seq: u64,
    ) -> impl Future<Output = StoreResult<Vec<Entry>>> + Send;

    /// The latest version of each of `ids` that exists, in one read (an export's page).
    fn latest_resources(
        &self,
        kind: ResourceKind,
        ids: &[ResourceId],
    ) -> impl Future<Output = StoreResult<Vec<ResourceVersion>>> + Send;

    /// Every entry of every hour account of `organizations`, in one read, by
    /// (organisation, bucket), each account's in order.
    fn entries_of_organizations(
        &self,
        organizations: &[ResourceId],
    ) -> impl Future<Output = StoreResult<std::collections::HashMap<(String, String), Vec<Entry>>>> + Send;

    /// The next entry number of an hour account; `None` when it has no entries yet.
    fn account_next_seq(
        &self,
        organization: &ResourceId,
        bucket: &str,
    ) -> impl Future<Output = StoreResult<Option<u64>>> + Send;

    /// A page of an account's entries after `after_seq`, optionally of one period.
    fn entries_page(
        &self,
        organization: &ResourceId,
        bucket: &str,
        period: Option<&str>,
        after_seq: u64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Entry>>> + Send;

    /// Alerts after a cursor, oldest first, only from transactions no older running
    /// transaction can precede (see the `alerts` table).
    fn alerts_after(
        &self,
        cursor: (i64, i64),
        filter: &AlertFilter,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<AlertRow>>> + Send;

    /// The earliest instant at which some ticket's clocks change by themselves.
    fn next_change(&self) -> impl Future<Output = StoreResult<Option<DateTime<Utc>>>> + Send;

    /// Starts (or restarts) the job for a resource version with its ticket count.
    fn start_job(&self, job: &RecomputeJob) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records progress, and the finish when `finished_at` is set.
    fn update_job(&self, job: &RecomputeJob) -> impl Future<Output = StoreResult<()>> + Send;

    /// The job of a resource version, if one ran.
    fn job(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        version: u32,
    ) -> impl Future<Output = StoreResult<Option<RecomputeJob>>> + Send;

    /// Jobs that never finished (the process stopped while they ran).
    fn unfinished_jobs(&self) -> impl Future<Output = StoreResult<Vec<RecomputeJob>>> + Send;

    /// Ids of the tickets of an organisation that are not resolved, closed or cancelled.
    fn open_ticket_ids(
        &self,
        organization: &ResourceId,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Tickets whose clocks change by themselves before `before` (a deadline or warning
    /// passes), oldest first: what the due-time runner refreshes.
    fn tickets_changing_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<DueTicket>>> + Send;

    /// What the metrics endpoint reports of the database: active clocks by metric and
    /// state, the outbox head, the pool. Read at scrape time (at most every few seconds).
    fn gauges(&self) -> impl Future<Output = StoreResult<StoreGauges>> + Send {
        async { Ok(StoreGauges::default()) }
    }

    /// Stores a new API client: `AlreadyExists` when its id, name or token hash is taken.
    fn insert_api_client(
        &self,
        client: &ApiClientRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The API client holding a token hash, revoked or not.
    fn api_client_by_token_hash(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<ApiClientRecord>>> + Send;

    /// Every API client, revoked ones too, by name.
    fn list_api_clients(&self) -> impl Future<Output = StoreResult<Vec<ApiClientRecord>>> + Send;

    /// Revokes an API client by name (a second revocation keeps the first instant).
    fn revoke_api_client(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<ApiClientRecord>> + Send;
}

/// Work to do once a transaction has committed, and never if it does not.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// The writes, and the reads that must see them.
pub trait StoreTx: Send {
    /// Commits, then runs the `after_commit` hooks in the order they were added.
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Runs `hook` after a successful commit (counting what the transaction recorded,
    /// say); a transaction rolled back or dropped drops it unrun.
    fn after_commit(&mut self, hook: AfterCommit);

    /// Claims an idempotency key with the request's fingerprint. A key claimed by a
    /// transaction still in flight blocks until it commits or rolls back.
    fn claim(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> impl Future<Output = StoreResult<Claim>> + Send;

    /// Stores the answer for a claimed key.
    fn complete(
        &mut self,
        key: &IdempotencyKey,
        response: &[u8],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Claims many keys in one statement (a group of writes decided together), each with
    /// its request's fingerprint; returns the keys this transaction claimed. A key
    /// claimed by a transaction still in flight blocks until it ends; a key answered
    /// before is not claimed (read it with [`StoreTx::answers_of`]).
    fn claim_many(
        &mut self,
        claims: &[(IdempotencyKey, String)],
    ) -> impl Future<Output = StoreResult<Vec<IdempotencyKey>>> + Send;

    /// The answered requests among `keys`, in one read.
    fn answers_of(
        &mut self,
        keys: &[IdempotencyKey],
    ) -> impl Future<Output = StoreResult<Vec<(IdempotencyKey, Claim)>>> + Send;

    /// Gives up keys this transaction claimed (writes refused in a group): as if they had
    /// never been claimed, as a rolled-back write's claim is.
    fn release_claims(
        &mut self,
        keys: &[IdempotencyKey],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores the answers of keys this transaction claimed, in one statement.
    fn complete_many(
        &mut self,
        answers: &[(IdempotencyKey, String, Vec<u8>)],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Adds a secret to a connection; a fingerprint it already has is AlreadyExists.
    fn insert_secret(
        &mut self,
        organization: &str,
        connection: &str,
        secret: &SecretRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes a connection's secret; whether it had it.
    fn delete_secret(
        &mut self,
        connection: &str,
        fingerprint: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    fn secrets_of(
        &mut self,
        connection: &str,
    ) -> impl Future<Output = StoreResult<Vec<SecretRow>>> + Send;

    /// Takes (or renews) a subscription's lease for `owner` until `until`, unless
    /// another owner holds one that has not run out at `now`; its cursor starts at
    /// `start` when it has none yet. Whether `owner` holds it now.
    fn take_lease(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        start: (i64, i64),
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Moves a subscription's cursor to `cursor` and keeps `rows` (those already kept
    /// stay as they are), if `owner` still holds the lease at `now`; whether it did.
    fn take_alerts(
        &mut self,
        subscription: &str,
        owner: &str,
        now: DateTime<Utc>,
        cursor: (i64, i64),
        rows: &[WebhookRow],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records an attempt of a pending delivery and what it comes to.
    #[allow(clippy::too_many_arguments)]
    fn finish_attempt(
        &mut self,
        subscription: &str,
        alert_id: i64,
        at: DateTime<Utc>,
        status: Option<i64>,
        error: Option<&str>,
        outcome: AttemptOutcome,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Sets a subscription's health: `Some(x)` sets a field to `x`.
    fn set_subscription_health(
        &mut self,
        subscription: &str,
        failing_since: Option<Option<DateTime<Utc>>>,
        disabled_reason: Option<Option<&str>>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Makes a delivered or dead delivery pending again, due at `now`, its attempts
    /// counted afresh; whether there was one to replay.
    fn replay_webhook(
        &mut self,
        subscription: &str,
        alert_id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Keeps deliveries unless already kept (same key): for each, whether it was new.
    fn insert_deliveries(
        &mut self,
        rows: &[InboxRow],
    ) -> impl Future<Output = StoreResult<Vec<bool>>> + Send;

    /// A pending delivery, locked; `None` if it is no longer pending or another
    /// transaction holds it.
    fn lock_delivery(
        &mut self,
        key: &DeliveryKey,
    ) -> impl Future<Output = StoreResult<Option<InboxRow>>> + Send;

    /// Records how a delivery ended (one more attempt).
    fn finish_delivery(
        &mut self,
        key: &DeliveryKey,
        state: DeliveryState,
        reason: Option<&str>,
        ticket_id: Option<&str>,
        done_at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Makes deliveries of a connection in these states (or the one named) pending again;
    /// returns how many.
    fn replay_deliveries(
        &mut self,
        connection: &str,
        delivery_id: Option<&str>,
        states: &[DeliveryState],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Locks a source ticket's row and returns the newest source time applied from it
    /// (`None` before the first).
    fn lock_source_ticket(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
    ) -> impl Future<Output = StoreResult<Option<DateTime<Utc>>>> + Send;

    fn set_source_ticket(
        &mut self,
        organization: &str,
        connection: &str,
        external_id: &str,
        last: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn create_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<ResourceVersion>> + Send;

    /// A new version, effective at `effective` (not before `now`).
    fn add_version(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        display_name: &str,
        body: &str,
        effective: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<ResourceVersion>> + Send;

    fn archive_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> impl Future<Output = StoreResult<ResourceVersion>> + Send;

    /// Reads inside the transaction (after the ticket's lock, so they see every version
    /// committed before it).
    fn resource_versions(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
    ) -> impl Future<Output = StoreResult<Vec<ResourceVersion>>> + Send;

    fn get_resource(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        version: Option<u32>,
    ) -> impl Future<Output = StoreResult<ResourceVersion>> + Send;

    /// The catalogue's change counter, as this transaction sees it.
    fn catalog_epoch(&mut self) -> impl Future<Output = StoreResult<i64>> + Send;

    fn insert_ticket(
        &mut self,
        record: &TicketRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Locks a ticket unless another transaction holds it (then `None`): how replicas
    /// share due work without waiting on each other.
    fn lock_ticket_skip(
        &mut self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<TicketRecord>>> + Send;

    /// Locks up to `limit` tickets whose next change is before `before`, soonest first,
    /// in one statement, passing over those another transaction holds (Postgres: SKIP
    /// LOCKED, so replicas and concurrent batches take different tickets). The condition
    /// is checked again on each locked row: a ticket settled meanwhile is not taken.
    fn lock_due_tickets(
        &mut self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<TicketRecord>>> + Send;

    /// The events of several tickets (locked by this transaction), in one read.
    fn events_of_locked(
        &mut self,
        ids: &[String],
    ) -> impl Future<Output = StoreResult<std::collections::HashMap<String, Vec<StoredEvent>>>> + Send;

    /// Writes an alert to the outbox (its cursor is assigned by the store).
    fn append_alert(&mut self, alert: &AlertRow) -> impl Future<Output = StoreResult<()>> + Send;

    /// Locks a ticket for the rest of the transaction and reads it.
    fn lock_ticket(&mut self, id: &str) -> impl Future<Output = StoreResult<TicketRecord>> + Send;

    fn find_ticket(
        &mut self,
        organization: &ResourceId,
        source_system: &str,
        external_id: &str,
    ) -> impl Future<Output = StoreResult<Option<TicketRecord>>> + Send;

    fn ticket_events(
        &mut self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;

    /// Appends an event; its sequence number is the next on the ticket.
    fn append_event(
        &mut self,
        ticket_id: &str,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Event>> + Send;

    /// Writes what the fold derived: the ticket's state and its clocks index rows.
    fn save_derived(
        &mut self,
        ticket: &TicketRecord,
        derived: &DerivedState,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// [`Self::save_derived`] and [`Self::complete`] of the request that made the change,
    /// in one round trip where the backend can.
    fn save_derived_answered(
        &mut self,
        ticket: &TicketRecord,
        derived: &DerivedState,
        now: DateTime<Utc>,
        key: &IdempotencyKey,
        response: &[u8],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Opens a group of ledger writes: claims the new keys, reads the answers of the keys
    /// answered before, locks the accounts (creating the new ones) and reads the catalogue
    /// epoch; what `claim_many`, `answers_of`, `lock_accounts` and `catalog_epoch` do, in
    /// one round trip where the backend can.
    fn open_group(
        &mut self,
        claims: &[(IdempotencyKey, String)],
        accounts: &[(ResourceId, String)],
    ) -> impl Future<Output = StoreResult<GroupStart>> + Send;

    /// Closes a group of ledger writes: appends the entries, gives back the claims of
    /// refused writes and keeps the answers; what `append_entries_many`,
    /// `release_claims` and `complete_many` do, in one round trip where the backend can.
    fn close_group(
        &mut self,
        entries: &[AccountEntries<'_>],
        refused: &[IdempotencyKey],
        answers: &[(IdempotencyKey, String, Vec<u8>)],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Locks hour accounts for the rest of the transaction (creating the new ones), in key
    /// order whatever the order asked, and returns their next entry numbers in the order
    /// asked.
    fn lock_accounts(
        &mut self,
        accounts: &[(ResourceId, String)],
    ) -> impl Future<Output = StoreResult<Vec<u64>>> + Send;

    /// Locks an hour account for the rest of the transaction (creating it when new) and
    /// returns its next entry number.
    fn lock_account(
        &mut self,
        organization: &ResourceId,
        bucket: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let accounts = [(organization.clone(), bucket.to_string())];
        async move {
            self.lock_accounts(&accounts)
                .await?
                .pop()
                .ok_or_else(|| StoreError::Corrupt("an account lock returned nothing".into()))
        }
    }

    fn account_entries(
        &mut self,
        organization: &ResourceId,
        bucket: &str,
        from_seq: u64,
    ) -> impl Future<Output = StoreResult<Vec<Entry>>> + Send;

    /// Appends entries to several accounts (each numbered from its account's next number
    /// on) and advances their numbers, in one statement where the backend can.
    fn append_entries_many(
        &mut self,
        accounts: &[AccountEntries<'_>],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Appends entries (numbered from the account's next number on) and advances it.
    fn append_entries(
        &mut self,
        organization: &ResourceId,
        bucket: &str,
        entries: &[Entry],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async move {
            self.append_entries_many(&[AccountEntries {
                organization,
                bucket,
                entries,
            }])
            .await
        }
    }

    /// Moves a ticket to another policy version.
    fn set_ticket_policy(
        &mut self,
        id: &str,
        policy: &ResourceId,
        version: u32,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}
