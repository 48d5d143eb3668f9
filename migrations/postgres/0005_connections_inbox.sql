-- Webhooks in (docs/integrations.md). A connection itself is a catalogue resource (kind
-- 'connection'); its secrets are kept here, never in its versions, and never shown.
-- Keys lead with the organisation, the distribution column a tenant-sharded layout needs.
CREATE TABLE connection_secrets (
    organization TEXT NOT NULL,
    connection TEXT NOT NULL,
    -- The secret's fingerprint: what the API shows and removes it by.
    fingerprint TEXT NOT NULL,
    secret BYTEA NOT NULL,
    create_us BIGINT NOT NULL,
    PRIMARY KEY (organization, connection, fingerprint)
);
CREATE INDEX connection_secrets_by_connection ON connection_secrets (connection);

-- Every delivery a connection received, unique on the provider's delivery id, kept until
-- the retention removes it: pending until applied, then applied, stale, ignored or
-- failed (with the reason).
CREATE TABLE inbox (
    organization TEXT NOT NULL,
    connection TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_us BIGINT NOT NULL,
    body BYTEA NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- Read from the body on arrival: the source's ticket and the time of its state.
    external_id TEXT,
    source_us BIGINT,
    ticket_id TEXT,
    done_us BIGINT,
    PRIMARY KEY (organization, connection, delivery_id)
);
CREATE INDEX inbox_pending ON inbox (source_us, received_us) WHERE state = 'pending';
CREATE INDEX inbox_by_connection ON inbox (connection, received_us);
CREATE INDEX inbox_done ON inbox (done_us) WHERE done_us IS NOT NULL;

-- The newest source time applied per ticket of a connection: an older snapshot is stale.
CREATE TABLE connection_tickets (
    organization TEXT NOT NULL,
    connection TEXT NOT NULL,
    external_id TEXT NOT NULL,
    last_source_us BIGINT NOT NULL,
    PRIMARY KEY (organization, connection, external_id)
);
