-- Webhooks out (docs/alerts.md). A subscription is a catalogue resource (kind
-- 'subscription'); its secrets live beside connections' in connection_secrets, keyed
-- 'webhookSubscriptions/{id}' (the two key spaces cannot meet: ids hold no '/').

-- Each subscription's place in the alert log (the outbox), who delivers it now (a lease,
-- taken and renewed by a conditional update, so a replica that dies hands over when it
-- runs out), and its health.
CREATE TABLE subscription_cursors (
    subscription TEXT PRIMARY KEY,
    cursor_tx INTEGER NOT NULL,
    cursor_id INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_us INTEGER NOT NULL DEFAULT 0,
    -- The first failure with no success since; cleared by a success.
    failing_since_us INTEGER,
    -- Set when the subscription was disabled for failing; cleared when re-enabled.
    disabled_reason TEXT
);

-- Alerts taken from the log for a subscription (no write in the alert's own
-- transaction), until delivered or dead-lettered. One ticket's are delivered in alert
-- order: a pending one holds back that ticket's later ones.
CREATE TABLE webhook_deliveries (
    subscription TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    organization TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    record_us INTEGER NOT NULL,
    taken_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_us INTEGER NOT NULL,
    first_attempt_us INTEGER,
    last_status INTEGER,
    last_error TEXT,
    done_us INTEGER,
    PRIMARY KEY (subscription, alert_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscription, ticket_id, alert_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries (subscription, state, alert_id);
