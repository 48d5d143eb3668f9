-- On Postgres this migration puts the organisation first in the keys of alerts and
-- webhook deliveries (the plan for distributing by organisation). SQLite is never
-- distributed: its keys stay, and the two schemas keep the same version numbers.
SELECT 1;
