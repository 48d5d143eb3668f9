-- The statements one RecordEvent transaction executes on Postgres, in order, with values
-- of the same shape (see src/store/sql.rs). scripts/bench-record-event.sh runs this with
-- pgbench next to the load generator to give the ratio in docs/performance.md.
\set n random(1, :tickets)
\set r random(1, 2000000000)
BEGIN;
INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) VALUES ('pgbench', 'RecordEvent', 'pgb-' || :client_id || '-' || :r, '{"event":"Some(TicketEvent { occurred_time: Some(Timestamp { seconds: 1795645303, nanos: 820465665 }), contact_id: \"\", request_id: \"\", sequence: 0, recorded_by: \"\", record_time: None, kind: Some(CustomerReply(())) })","ticket":"\"tickets/01a219f3-4097-7032-9261-8b9c0fd09cec\""}', NULL, 1795645303000000) ON CONFLICT DO NOTHING;
SELECT id, organization, source_system, external_id, request_type, initial_priority, received_us, requested_by, initial_estimate_minutes, initial_scheduled_us, policy, policy_version, plan, status, cycle, priority, next_change_us, create_us, update_us FROM tickets WHERE id = 'pgb-' || :n FOR UPDATE;
SELECT seq, occurred_us, body, client, contact, request_id, record_us FROM ticket_events WHERE ticket_id = 'pgb-' || :n ORDER BY seq;
SELECT v.kind, v.id, v.version, v.effective_us, v.display_name, v.body, v.create_us, r.archived FROM resource_versions v JOIN resources r ON r.kind = v.kind AND r.id = v.id WHERE v.kind = 'organization' AND v.id = 'lg-org-' || (:n % 10) ORDER BY v.version;
SELECT v.kind, v.id, v.version, v.effective_us, v.display_name, v.body, v.create_us, r.archived FROM resource_versions v JOIN resources r ON r.kind = v.kind AND r.id = v.id WHERE v.kind = 'calendar' AND v.id = 'lg-support' ORDER BY v.version;
INSERT INTO ticket_events (ticket_id, seq, occurred_us, body, client, contact, request_id, record_us) SELECT 'pgb-' || :n, COALESCE(MAX(seq), 0) + 1, 1795645303820465, '{"type":"customer_replied"}', 'pgbench', NULL, 'pgb-' || :client_id || '-' || :r, 1795645303820465 FROM ticket_events WHERE ticket_id = 'pgb-' || :n RETURNING seq;
UPDATE tickets SET status = 'PROCESSING', cycle = 0, priority = 'sev-2', next_change_us = 1795731703820760, update_us = 1795645303820465 WHERE id = 'pgb-' || :n;
DELETE FROM clocks WHERE ticket_id = 'pgb-' || :n;
INSERT INTO clocks (ticket_id, metric, instance, organization, priority, kind, state, active, started_us, deadline_us, warning_us) VALUES ('pgb-' || :n, 'first_response', 0, 'lg-org-1', 'sev-2', 'promise', 'met', 0, 1795645301820760, NULL, NULL), ('pgb-' || :n, 'resolution', 0, 'lg-org-1', 'sev-2', 'promise', 'running', 1, 1795645301820760, 1795818103820760, 1795731703820760), ('pgb-' || :n, 'escalation', 0, 'lg-org-1', 'sev-2', 'timer', 'fired', 0, 1795645301820760, NULL, NULL);
UPDATE idempotency SET response = decode(repeat('0a2d7469636b6574732f', 40), 'hex') WHERE client = 'pgbench' AND method = 'RecordEvent' AND request_id = 'pgb-' || :client_id || '-' || :r;
END;
