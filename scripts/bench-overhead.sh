#!/usr/bin/env bash
# Record-event throughput on Postgres with tracing and authentication off (the baseline),
# with spans exported to a live OTLP receiver in the load generator's process, with the
# exporter pointed at a closed port, and with every call authenticated by a bearer token,
# each on a fresh schema, repeated `rounds` times in turn. Usage:
#   scripts/bench-overhead.sh [clients=16] [seconds=20] [rounds=2]
# Needs a reachable Postgres (scripts/postgres.sh); builds the load generator (release).
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-16}"; seconds="${2:-20}"; rounds="${3:-2}"
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
sep='?'; [[ "$base" == *\?* ]] && sep='&'
cargo build --release --quiet --bin loadgen
schemas=()
trap 'for s in "${schemas[@]}"; do psql "$base" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done' EXIT
run() { # label, OTLP endpoint (empty: none), then extra loadgen arguments
  local label="$1" endpoint="$2"; shift 2
  local schema="bench_trace_$(date +%s%N)"
  schemas+=("$schema")
  psql "$base" -qc "CREATE SCHEMA $schema"
  local url="${base}${sep}options=-c%20search_path%3D${schema}"
  local out
  out=$(env -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" \
    target/release/loadgen --serve-db "$url" --scenario record-event --clients "$clients" \
    --duration "$seconds" --tickets-per-client 50 "$@" 2>/dev/null)
  echo "== $label"
  grep -E '^(cpu:|traces:|ok=)' <<<"$out"
}
for ((r = 1; r <= rounds; r++)); do
  run "off (round $r)" ""
  run "live receiver (round $r)" "" --otlp-sink
  run "closed port (round $r)" http://127.0.0.1:1
  run "authenticated (round $r)" "" --auth
done
