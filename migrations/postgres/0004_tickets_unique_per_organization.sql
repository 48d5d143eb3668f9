-- Tickets are unique per organisation: two customers on Zendesk both have a ticket 1001.
-- The key (source_system, external_id) becomes (organization, source_system,
-- external_id): a relaxation, so every existing row satisfies it. The organisation leads,
-- as a distribution by organisation needs (docs/scaling.md).
ALTER TABLE tickets DROP CONSTRAINT tickets_source_external_key;
ALTER TABLE tickets ADD CONSTRAINT tickets_org_source_external_key
    UNIQUE (organization, source_system, external_id);
