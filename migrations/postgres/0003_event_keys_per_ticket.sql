-- An event's request id is unique per ticket, whoever the client (as documented): a CRM
-- numbering events per ticket ("comment-1" on two tickets) must not collide with itself,
-- and two clients sending the same event to one ticket get one event. RecordEvent now
-- keys its idempotency records by the ticket ('tickets/{id}' in the client column).
-- The records it stored per client are copied under their ticket, so a retry across the
-- upgrade still gets its first answer. The ticket is read from the stored fingerprint
-- (its "ticket" field, the request's ticket name quoted).
INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us)
SELECT 'tickets/' || regexp_replace(btrim(fingerprint::json ->> 'ticket', '"'), '^tickets/', ''),
       method, request_id, fingerprint, response, create_us
FROM idempotency
WHERE method = 'RecordEvent'
  AND client NOT LIKE 'tickets/%'
  AND response IS NOT NULL
  AND fingerprint LIKE '{%'
ORDER BY create_us
ON CONFLICT DO NOTHING;
