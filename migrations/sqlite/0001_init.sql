-- Instants are INTEGER microseconds since the Unix epoch (UTC), the same in both stores,
-- so index range scans compare integers and both backends share one query text.
-- Flags are INTEGER 0/1 for the same reason.

-- Organisations, calendars and policies: versioned documents (domain JSON).
CREATE TABLE resources (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    latest_version INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    create_us INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE resource_versions (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    effective_us INTEGER NOT NULL,
    display_name TEXT NOT NULL,
    body TEXT NOT NULL,
    create_us INTEGER NOT NULL,
    PRIMARY KEY (kind, id, version),
    FOREIGN KEY (kind, id) REFERENCES resources (kind, id)
);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    source_system TEXT NOT NULL,
    external_id TEXT NOT NULL,
    request_type TEXT NOT NULL,
    initial_priority TEXT,
    received_us INTEGER NOT NULL,
    requested_by TEXT,
    initial_estimate_minutes INTEGER,
    initial_scheduled_us INTEGER,
    policy TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    plan TEXT,
    status TEXT NOT NULL,
    cycle INTEGER NOT NULL,
    priority TEXT,
    next_change_us INTEGER,
    create_us INTEGER NOT NULL,
    update_us INTEGER NOT NULL,
    CONSTRAINT tickets_source_external_key UNIQUE (source_system, external_id)
);
CREATE INDEX tickets_by_org ON tickets (organization, received_us DESC, id);
CREATE INDEX tickets_by_received ON tickets (received_us DESC, id);
CREATE INDEX tickets_next_change ON tickets (next_change_us) WHERE next_change_us IS NOT NULL;

-- Append-only: events are never updated or deleted.
CREATE TABLE ticket_events (
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    seq INTEGER NOT NULL,
    occurred_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    client TEXT NOT NULL,
    contact TEXT,
    request_id TEXT NOT NULL,
    record_us INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, seq),
    CONSTRAINT ticket_events_request_key UNIQUE (ticket_id, request_id)
);

-- The clocks index: derived from the event fold on every write, in the same transaction.
CREATE TABLE clocks (
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    metric TEXT NOT NULL,
    instance INTEGER NOT NULL,
    organization TEXT NOT NULL,
    priority TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    deadline_us INTEGER,
    warning_us INTEGER,
    -- When the outcome was settled: the clock's end, or its breach while still running
    -- (attainment reports count a clock in the period it settled in).
    settled_us INTEGER,
    -- Open seconds counted, once the clock has ended.
    elapsed_s INTEGER,
    PRIMARY KEY (ticket_id, metric, instance)
);
CREATE INDEX clocks_due ON clocks (deadline_us, ticket_id, metric, instance) WHERE active = 1;
CREATE INDEX clocks_due_by_org ON clocks (organization, deadline_us, ticket_id, metric, instance) WHERE active = 1;
CREATE INDEX clocks_due_by_metric ON clocks (metric, deadline_us, ticket_id, instance) WHERE active = 1;
CREATE INDEX clocks_warning ON clocks (warning_us) WHERE active = 1;
CREATE INDEX clocks_settled ON clocks (settled_us, organization) WHERE settled_us IS NOT NULL;

-- Idempotency keys (AIP-155), scoped to the calling client and the method; never expire.
CREATE TABLE idempotency (
    client TEXT NOT NULL,
    method TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response BLOB,
    create_us INTEGER NOT NULL,
    PRIMARY KEY (client, method, request_id)
);

-- Background recomputation after a calendar or organisation change: which tickets, how
-- far along. Progress is readable while it runs; unfinished jobs resume after a restart.
CREATE TABLE recompute_jobs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    tickets_total INTEGER NOT NULL DEFAULT 0,
    tickets_done INTEGER NOT NULL DEFAULT 0,
    start_us INTEGER NOT NULL,
    finish_us INTEGER,
    PRIMARY KEY (kind, id, version)
);

-- Bumped by every write to organisations, calendars or policies, in the same transaction.
-- Writers of ticket events read it (one row) instead of every version of the catalogue
-- their fold needs, and reuse what they assembled while it stays the same.
CREATE TABLE catalog_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO catalog_epoch (id, epoch) VALUES (1, 0);

-- Prepaid-hours ledgers: one account per organisation and bucket. The account row is the
-- lock writers take (FOR UPDATE on Postgres), so two writers of one account queue and
-- neither can overdraw; next_seq numbers its entries.
CREATE TABLE hour_accounts (
    organization TEXT NOT NULL,
    bucket TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    PRIMARY KEY (organization, bucket)
);

-- Append-only: entries are never updated or deleted; corrections are reversals.
CREATE TABLE ledger_entries (
    organization TEXT NOT NULL,
    bucket TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    record_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (organization, bucket, seq),
    FOREIGN KEY (organization, bucket) REFERENCES hour_accounts (organization, bucket)
);
CREATE INDEX ledger_entries_by_period ON ledger_entries (organization, bucket, period, seq);

-- The alerts outbox: every warning, breach, action and retraction servicelevel records,
-- written in the same transaction as its event. Readers page by (tx, id): on Postgres
-- tx is the writing transaction's id, and rows are handed out only once every older
-- transaction has finished, so a reader resuming from its cursor misses nothing even
-- when transactions commit out of order. SQLite has one writer: tx is 0 and ids commit
-- in order.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx INTEGER NOT NULL,
    organization TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    occurred_us INTEGER NOT NULL,
    record_us INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX alerts_by_cursor ON alerts (tx, id);

-- API clients (`servicelevel client create`): who may call, with which scopes, for which
-- organisations. A token is kept only as its SHA-256 (lowercase hex); a revoked client
-- stays, so its name is never reused. Idempotency keys are scoped to the client's id.
CREATE TABLE api_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    -- Scope names, comma-separated.
    scopes TEXT NOT NULL,
    -- Organisation ids, comma-separated; NULL: every organisation.
    organizations TEXT,
    create_us INTEGER NOT NULL,
    revoke_us INTEGER
);
