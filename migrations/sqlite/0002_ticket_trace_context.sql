-- The W3C traceparent of the call that created a ticket (NULL without tracing): the
-- due-time runner's spans for the ticket link to it.
ALTER TABLE tickets ADD COLUMN trace_context TEXT;
