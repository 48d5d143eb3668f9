#!/usr/bin/env bash
# Record-event throughput on Postgres next to pgbench running the same statements, in one
# run, so the ratio is measured under the same conditions. Usage:
#   scripts/bench-record-event.sh [clients=16] [seconds=20]
# Needs a release build of the load generator and a reachable Postgres (scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}"; seconds="${2:-20}"
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
schema="bench_$(date +%s)"
psql "$base" -qc "CREATE SCHEMA $schema"
trap 'psql "$base" -qc "DROP SCHEMA IF EXISTS '"$schema"' CASCADE" >/dev/null 2>&1 || true' EXIT
sep='?'; [[ "$base" == *\?* ]] && sep='&'
url="${base}${sep}options=-c%20search_path%3D${schema}"
cargo build --release --quiet --bin loadgen
echo "== servicelevel RecordEvent, $clients clients, ${seconds}s (server in-process, pool 16)"
target/release/loadgen --serve-db "$url" --scenario record-event --clients "$clients" --duration "$seconds" \
  --tickets-per-client 50 | tail -1
# pgbench works on copies of the tickets the run created, with their events and clocks.
psql "$base" -q -v schema="$schema" -f scripts/pgbench/copy_tickets.sql
tickets=$(psql "$base" -qAtc "SELECT count(*) FROM $schema.tickets WHERE id LIKE 'pgb-%'")
echo "== pgbench, the same statements, $clients clients, ${seconds}s"
PGOPTIONS="-c search_path=$schema" pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" \
  -D tickets="$tickets" -f scripts/pgbench/record_event.sql "$base" 2>&1 | grep -E '^(tps|latency average|number of failed)'
