#!/usr/bin/env bash
# RecordUsage throughput on one hot hour account and spread over 1,000, next to pgbench
# running a single-row conditional update on one row and on 1,000 rows, in one run.
#   scripts/bench-usage.sh [clients=16] [seconds=20]
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}"; seconds="${2:-20}"
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
schema="usage_$(date +%s)"
psql "$base" -qc "CREATE SCHEMA $schema"
trap 'psql "$base" -qc "DROP SCHEMA IF EXISTS '"$schema"' CASCADE" >/dev/null 2>&1 || true' EXIT
sep='?'; [[ "$base" == *\?* ]] && sep='&'
url="${base}${sep}options=-c%20search_path%3D${schema}"
cargo build --release --quiet --bin loadgen
for scenario in usage-hot usage-spread; do
  echo "== servicelevel RecordUsage, $scenario, $clients clients, ${seconds}s"
  target/release/loadgen --serve-db "$url" --scenario "$scenario" --accounts 1000 --clients "$clients" \
    --duration "$seconds" | tail -1
done
psql "$base" -qc "SET search_path = $schema; CREATE TABLE pgb_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
  INSERT INTO pgb_accounts SELECT g, 1000000000000 FROM generate_series(1, 1000) g; ANALYZE pgb_accounts;"
for accounts in 1 1000; do
  echo "== pgbench conditional update, $accounts account(s), $clients clients, ${seconds}s"
  PGOPTIONS="-c search_path=$schema" pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" \
    -D accounts="$accounts" -f scripts/pgbench/conditional_update.sql "$base" 2>&1 | grep -E '^(tps|latency average)'
done
