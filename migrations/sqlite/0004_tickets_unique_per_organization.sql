-- Tickets are unique per organisation: two customers on Zendesk both have a ticket 1001.
-- The key (source_system, external_id) becomes (organization, source_system,
-- external_id): a relaxation, so every existing row satisfies it. SQLite cannot drop a
-- table constraint, so the table is rebuilt by SQLite's documented procedure: foreign
-- keys off (only possible outside a transaction: this migration runs outside sqlx's),
-- the new table built and renamed in one transaction, foreign keys on again. ticket_events
-- and clocks keep referring to "tickets", the new table.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE tickets_0004 (
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
    trace_context TEXT,
    CONSTRAINT tickets_org_source_external_key UNIQUE (organization, source_system, external_id)
);

INSERT INTO tickets_0004 (id, organization, source_system, external_id, request_type,
    initial_priority, received_us, requested_by, initial_estimate_minutes,
    initial_scheduled_us, policy, policy_version, plan, status, cycle, priority,
    next_change_us, create_us, update_us, trace_context)
SELECT id, organization, source_system, external_id, request_type, initial_priority,
    received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy,
    policy_version, plan, status, cycle, priority, next_change_us, create_us, update_us,
    trace_context
FROM tickets;

DROP TABLE tickets;
ALTER TABLE tickets_0004 RENAME TO tickets;

CREATE INDEX tickets_by_org ON tickets (organization, received_us DESC, id);
CREATE INDEX tickets_by_received ON tickets (received_us DESC, id);
CREATE INDEX tickets_next_change ON tickets (next_change_us) WHERE next_change_us IS NOT NULL;

COMMIT;

PRAGMA foreign_keys = ON;
