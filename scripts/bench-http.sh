#!/usr/bin/env bash
# RecordEvent over gRPC and over Connect JSON (HTTP/1.1), in turn in one run, each on a
# fresh Postgres schema: throughput, latency and CPU a call (the load generator's process,
# which holds the server and the clients). Usage:
#   scripts/bench-http.sh [clients=16] [seconds=20] [rounds=2]
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
run() { # protocol, then extra loadgen arguments
  local protocol="$1"; shift
  local schema="bench_http_$(date +%s%N)"
  schemas+=("$schema")
  psql "$base" -qc "CREATE SCHEMA $schema"
  local url="${base}${sep}options=-c%20search_path%3D${schema}"
  echo "== $protocol"
  target/release/loadgen --serve-db "$url" --scenario record-event --protocol "$protocol" \
    --clients "$clients" --duration "$seconds" --tickets-per-client 50 "$@" 2>/dev/null \
    | grep -E '^(cpu:|ok=)'
}
for ((r = 1; r <= rounds; r++)); do
  run grpc
  run connect-json
done
