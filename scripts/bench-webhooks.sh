#!/usr/bin/env bash
# Webhook ingestion beside RecordEvent, on Postgres, each on a fresh schema: RecordEvent
# over gRPC at full speed, signed webhook deliveries over HTTP/1.1 at full speed, then
# deliveries at half that rate with the delay from kept to applied. Usage:
#   scripts/bench-webhooks.sh [clients=16] [seconds=20]
# Needs a reachable Postgres (scripts/postgres.sh); builds the load generator (release).
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}"; seconds="${2:-20}"
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
sep='?'; [[ "$base" == *\?* ]] && sep='&'
cargo build --release --quiet --bin loadgen
schemas=()
trap 'for s in "${schemas[@]}"; do psql "$base" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done' EXIT
run() { # label, then loadgen arguments
  local label="$1"; shift
  local schema="bench_wh_$(date +%s%N)"
  schemas+=("$schema")
  psql "$base" -qc "CREATE SCHEMA $schema"
  local url="${base}${sep}options=-c%20search_path%3D${schema}"
  echo "== $label"
  target/release/loadgen --serve-db "$url" --clients "$clients" --duration "$seconds" "$@" 2>/dev/null \
    | grep -E '^(cpu:|ok=|inbox:|kept-to-applied)'
}
run "RecordEvent, gRPC" --scenario record-event --tickets-per-client 50
out=$(run "webhooks, full speed" --scenario webhooks --tickets-per-client 50)
echo "$out"
full=$(grep -o 'throughput=[0-9]*' <<<"$out" | head -n1 | cut -d= -f2)
run "webhooks at half that rate ($((full / 2))/s)" --scenario webhooks --tickets-per-client 50 --rate "$((full / 2))"
