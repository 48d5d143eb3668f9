#!/usr/bin/env bash
# Alert webhooks out under load, on Postgres (fresh schema): tickets whose deadlines fall
# `per_minute` a minute for `seconds`; the breaches the runner records are delivered to a
# receiver in the load generator that answers after 50 ms. Prints the runner's lag and the
# delay from each alert's recording to its arrival at the receiver. Usage:
#   scripts/bench-alerts-out.sh [per_minute=10000] [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
per_minute="${1:-10000}"; seconds="${2:-60}"
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
sep='?'; [[ "$base" == *\?* ]] && sep='&'
cargo build --release --quiet --bin loadgen
schema="bench_alerts_$(date +%s%N)"
trap 'psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true' EXIT
psql "$base" -qc "CREATE SCHEMA $schema"
url="${base}${sep}options=-c%20search_path%3D${schema}"
target/release/loadgen --serve-db "$url" --scenario due-lag --due-per-minute "$per_minute" \
  --duration "$seconds" --webhook-receiver-ms 50 2>/dev/null | grep -E '^(due-lag|recorded=|webhooks:)'
