-- The database's own ceiling for an overdraw-safe debit: one conditional single-row
-- update per transaction. scripts/bench-usage.sh runs it beside RecordUsage.
\set id random(1, :accounts)
UPDATE pgb_accounts SET balance = balance - 1 WHERE id = :id AND balance > 0;
