-- Copies of the tickets a load-generator run created, with their events and clocks, for
-- pgbench's record_event.sql to work on (run with: psql -v schema=NAME -f this file).
SET search_path = :schema;
CREATE TEMP TABLE m AS SELECT id, 'pgb-' || row_number() OVER (ORDER BY id) AS nid FROM tickets;
INSERT INTO tickets SELECT m.nid, organization, source_system, 'pgb-' || external_id, request_type, initial_priority,
  received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy, policy_version, plan, status, cycle,
  priority, next_change_us, create_us, update_us FROM tickets t JOIN m ON m.id = t.id;
INSERT INTO ticket_events SELECT m.nid, seq, occurred_us, body, client, contact, request_id, record_us
  FROM ticket_events e JOIN m ON m.id = e.ticket_id;
INSERT INTO clocks SELECT m.nid, metric, instance, organization, priority, kind, state, active, started_us, deadline_us,
  warning_us FROM clocks c JOIN m ON m.id = c.ticket_id;
ANALYZE;
