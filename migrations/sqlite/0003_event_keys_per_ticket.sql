-- An event's request id is unique per ticket, whoever the client (as documented): a CRM
-- numbering events per ticket ("comment-1" on two tickets) must not collide with itself,
-- and two clients sending the same event to one ticket get one event. RecordEvent now
-- keys its idempotency records by the ticket ('tickets/{id}' in the client column).
-- The records it stored per client are copied under their ticket, so a retry across the
-- upgrade still gets its first answer. The ticket is read from the stored fingerprint
-- (its "ticket" field, the request's ticket name quoted).
INSERT OR IGNORE INTO idempotency (client, method, request_id, fingerprint, response, create_us)
SELECT 'tickets/' || CASE WHEN substr(t, 1, 8) = 'tickets/' THEN substr(t, 9) ELSE t END,
       method, request_id, fingerprint, response, create_us
FROM (
    SELECT trim(json_extract(fingerprint, '$.ticket'), '"') AS t, method, request_id,
           fingerprint, response, create_us
    FROM idempotency
    WHERE method = 'RecordEvent'
      AND client NOT LIKE 'tickets/%'
      AND response IS NOT NULL
      AND json_valid(fingerprint)
    ORDER BY create_us
)
WHERE t IS NOT NULL;
