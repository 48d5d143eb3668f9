-- The plan for distributing by organisation (docs/scaling.md, tests/it/distribution.rs):
-- a distributed table's primary key carries the organisation first. Alerts and their
-- webhook deliveries move now; what found a row by its old key finds it by a plain
-- index of the same columns (alert ids and (subscription, alert) pairs stay unique, as
-- the ids come from one sequence).
ALTER TABLE alerts DROP CONSTRAINT alerts_pkey;
ALTER TABLE alerts ADD PRIMARY KEY (organization, id);
-- The newest alert (the outbox head the backlog gauge reads).
CREATE INDEX alerts_by_id ON alerts (id);

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey;
ALTER TABLE webhook_deliveries ADD PRIMARY KEY (organization, subscription, alert_id);
CREATE INDEX webhook_deliveries_by_alert ON webhook_deliveries (subscription, alert_id);
