#!/usr/bin/env bash
# Checks a real scrape with promtool: starts the service (debug build) on a fresh SQLite
# file with the five built-in packs (policies and plans, so the known label sets show at
# zero), makes a few calls, scrapes /metrics and runs `promtool check metrics` on it.
# With SERVICELEVEL_METRICS_LEGACY_NAMES=false the scrape must be clean; with the default
# (the old names kept for one release) promtool may complain about those names only.
# Also checks that a scraper asking for OpenMetrics gets it. promtool comes from Debian's
# `prometheus` package, installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'metrics-check: %s\n' "$*"; }
die() { printf 'metrics-check: FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (Debian package prometheus)"
  if [[ $(id -u) -eq 0 ]]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q prometheus >/dev/null 2>&1 \
    || { "${apt_get[@]}" update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q prometheus >/dev/null; }
fi
command -v promtool >/dev/null || die "no promtool"

cargo build --quiet --locked --bin servicelevel
bin="$PWD/target/debug/servicelevel"
work="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts the server with the given legacy setting; sets $pid, $grpc and $metrics.
start() {
  grpc="$(free_port)"; metrics="$(free_port)"
  SERVICELEVEL_DATABASE_URL="sqlite://$work/m-$1.db" SERVICELEVEL_LISTEN="127.0.0.1:$grpc" \
    SERVICELEVEL_METRICS_LISTEN="127.0.0.1:$metrics" SERVICELEVEL_METRICS_LEGACY_NAMES="$1" \
    SERVICELEVEL_PACKS=clevr,concinnity,contently,priority-matrix,24social RUST_LOG=warn \
    "$bin" >"$work/log-$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$metrics/metrics" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/log-$1" >&2; die "the server stopped"; }
    sleep 0.1
  done
  die "no metrics endpoint"
}

# A few calls so the RPC families have series; a gRPC client from the tests' toolbox is
# not needed: the service answers HTTP/2 gRPC frames to curl.
calls() {
  for path in servicelevel.v1.CalendarService/ListCalendars servicelevel.v1.TicketService/GetTicket grpc.health.v1.Health/Check; do
    curl -sS --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
      --data-binary @/dev/null "http://127.0.0.1:$grpc/$path" -o /dev/null || true
  done
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start false
calls
curl -fsS "http://127.0.0.1:$metrics/metrics" >"$work/scrape"
grep -q '^servicelevel_rpc_requests_total{' "$work/scrape" || die "no RPC series in the scrape"
grep -q '^servicelevel_clock_breaches_total{.*} 0$' "$work/scrape" || die "no breach counters at zero"
grep -q '^servicelevel_usage_billable_seconds_total{' "$work/scrape" || die "no usage counters at zero"
grep -q '^process_resident_memory_bytes ' "$work/scrape" || die "no process metrics"
grep -q '^servicelevel_build_info{' "$work/scrape" || die "no build info"
promtool check metrics <"$work/scrape" || die "promtool check metrics on the scrape"
curl -fsS -H 'Accept: application/openmetrics-text; version=1.0.0' \
  "http://127.0.0.1:$metrics/metrics" | tail -n1 | grep -qx '# EOF' || die "no OpenMetrics when asked"
series=$(grep -vc '^#' "$work/scrape")
stop
say "promtool: $series series clean (legacy names off)"

start true
calls
curl -fsS "http://127.0.0.1:$metrics/metrics" >"$work/legacy"
grep -q '^servicelevel_hours_consumed_minutes_total{' "$work/legacy" || die "the old names are not exported"
complaints="$(promtool check metrics <"$work/legacy" 2>&1 || true)"
others="$(grep -v -e '^servicelevel_hours_consumed_minutes_total ' -e '^servicelevel_hours_overage_minutes_total ' <<<"$complaints" || true)"
[[ -z "$others" ]] || { printf '%s\n' "$others" >&2; die "promtool complaints beyond the deprecated names"; }
stop
say "promtool: only the deprecated minutes names complain with legacy names on"
