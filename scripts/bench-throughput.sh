#!/usr/bin/env bash
# Write throughput next to the database's own rate for the same work, alternated: each
# round runs an empty RPC (the health check: the ceiling of any RPC on these cores), then
# for RecordEvent, RecordUsage on one hot account and RecordUsage over 1,000 accounts the
# service followed by its pgbench baseline (scripts/pgbench/*.sql, unchanged), all with
# 16 clients and durable commits. Prints every run, then the medians over the rounds.
#   scripts/bench-throughput.sh [rounds=3] [seconds=20]
# Needs a reachable Postgres (scripts/postgres.sh) and pgbench; builds the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; seconds="${2:-20}"; clients=16
source scripts/postgres.sh
ensure_postgres
base="$SERVICELEVEL_TEST_POSTGRES_URL"
cargo build --release --quiet --bin loadgen
work="$(mktemp -d)"
schemas=()
cleanup() {
  for s in "${schemas[@]}"; do psql "$base" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
sep='?'; [[ "$base" == *\?* ]] && sep='&'

fresh_schema() { # name -> prints the URL
  local s="bt_$1_$$"
  psql "$base" -qc "DROP SCHEMA IF EXISTS $s CASCADE; CREATE SCHEMA $s" >/dev/null 2>&1
  schemas+=("$s")
  echo "$s"
}

# loadgen's last line: ok=... throughput=1234/s p50=1.23ms p90=... p99=4.56ms max=...
servicelevel() { # path round schema scenario [args...]
  local path="$1" round="$2" schema="$3" scenario="$4"; shift 4
  local line
  line="$(target/release/loadgen --serve-db "${base}${sep}options=-c%20search_path%3D${schema}" \
    --scenario "$scenario" --clients "$clients" --duration "$seconds" "$@" | tail -1)"
  echo "  servicelevel $path: $line"
  local tps p50 p99
  tps="$(sed -E 's/.*throughput=([0-9.]+)\/s.*/\1/' <<<"$line")"
  p50="$(sed -E 's/.*p50=([0-9.]+)ms.*/\1/' <<<"$line")"
  p99="$(sed -E 's/.*p99=([0-9.]+)ms.*/\1/' <<<"$line")"
  printf '%s\t%s\tservicelevel\t%s\t%s\t%s\n' "$path" "$round" "$tps" "$p50" "$p99" >>"$work/results"
}

# pgbench with a per-transaction log, for p50 and p99 next to its tps.
pgb() { # path round schema script [pgbench args...]
  local path="$1" round="$2" schema="$3" script="$4"; shift 4
  rm -f "$work"/pgb.*
  local out
  out="$(cd "$work" && PGOPTIONS="-c search_path=$schema" pgbench -n -M prepared -c "$clients" -j 2 \
    -T "$seconds" -l --log-prefix=pgb "$@" -f "$OLDPWD/scripts/pgbench/$script" "$base" 2>&1)"
  local tps; tps="$(grep -E '^tps' <<<"$out" | sed -E 's/tps = ([0-9.]+).*/\1/')"
  # Column 3 of the log is the transaction's latency in microseconds.
  cat "$work"/pgb.* | awk '{print $3}' | sort -n >"$work/lat"
  local n p50 p99
  n="$(wc -l <"$work/lat")"
  p50="$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")"
  p99="$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")"
  echo "  pgbench      $path: tps=$tps p50=${p50}ms p99=${p99}ms"
  printf '%s\t%s\tpgbench\t%s\t%s\t%s\n' "$path" "$round" "$tps" "$p50" "$p99" >>"$work/results"
}

for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds ($clients clients, ${seconds}s a run)"
  s="$(fresh_schema empty)"
  servicelevel empty-rpc "$round" "$s" empty

  s="$(fresh_schema event)"
  servicelevel record-event "$round" "$s" record-event --tickets-per-client 50
  # pgbench works on copies of the tickets the run created, with their events and clocks.
  psql "$base" -q -v schema="$s" -f scripts/pgbench/copy_tickets.sql >/dev/null
  tickets="$(psql "$base" -qAtc "SELECT count(*) FROM $s.tickets WHERE id LIKE 'pgb-%'")"
  pgb record-event "$round" "$s" record_event.sql -D tickets="$tickets"

  for accounts in 1 1000; do
    path=usage-hot; scenario=usage-hot
    [[ "$accounts" == 1000 ]] && { path=usage-spread; scenario=usage-spread; }
    s="$(fresh_schema "u$accounts")"
    servicelevel "$path" "$round" "$s" "$scenario" --accounts 1000
    psql "$base" -q >/dev/null <<SQL
SET search_path = $s;
CREATE TABLE pgb_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO pgb_accounts SELECT g, 1000000000000 FROM generate_series(1, 1000) g;
ANALYZE pgb_accounts;
SQL
    pgb "$path" "$round" "$s" conditional_update.sql -D accounts="$accounts"
  done
done

median() { sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'; }
echo
echo "== medians over $rounds rounds: throughput/s (p50 ms, p99 ms)"
ceiling="$(awk -F'\t' '$1 == "empty-rpc" {print $4}' "$work/results" | median)"
printf '%-14s %-28s %-28s %s\n' path servicelevel pgbench "ratio (to the lower of pgbench and the empty-RPC ceiling)"
for path in empty-rpc record-event usage-hot usage-spread; do
  col() { awk -F'\t' -v p="$path" -v w="$1" -v c="$2" '$1 == p && $3 == w {print $c}' "$work/results" | median; }
  sl="$(col servicelevel 4)"; sl50="$(col servicelevel 5)"; sl99="$(col servicelevel 6)"
  if [[ "$path" == empty-rpc ]]; then
    printf '%-14s %-28s\n' "$path" "$sl ($sl50, $sl99)"
    continue
  fi
  pg="$(col pgbench 4)"; pg50="$(col pgbench 5)"; pg99="$(col pgbench 6)"
  ratio="$(awk -v s="$sl" -v p="$pg" -v c="$ceiling" 'BEGIN {
    lo = (c > 0 && c < p) ? c : p; printf "%.0f %% of %s (%s)", 100 * s / lo, lo, (lo == p) ? "pgbench" : "empty RPC" }')"
  printf '%-14s %-28s %-28s %s\n' "$path" "$sl ($sl50, $sl99)" "$pg ($pg50, $pg99)" "$ratio"
done
