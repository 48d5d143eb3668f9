#!/usr/bin/env bash
# The service behind PgBouncer in transaction pooling mode (docs/scaling.md, "PgBouncer"):
#   1. installs Debian's pgbouncer when absent (1.18 on Debian 12: no
#      max_prepared_statements, so the statement cache is off on the client side);
#   2. starts a private PgBouncer (config, log and pid under target/pgbouncer-check/, a
#      free port, pool_mode = transaction, any database name routed to the test server);
#   3. runs the end-to-end suite's Postgres part through it: each test on a database of
#      its own, its server and pool through PgBouncer with statement-cache-capacity=0,
#      its migrations on the direct URL (tests/it/harness.rs, SERVICELEVEL_TEST_POSTGRES_POOLER_URL),
#      and the pooler test that shows why the store lends connections inside a transaction;
#   4. starts 3 `servicelevel serve` replicas behind PgBouncer on one database (migrating
#      at once through the direct URL), creates tickets through each over Connect JSON,
#      and checks that every due first response is recorded as breached exactly once.
# Stops what it started on exit and prints its duration. CI runs it after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
started=$(date +%s)
say() { printf 'pgbouncer-check: %s\n' "$*"; }
die() { printf 'pgbouncer-check: FAILED: %s\n' "$*" >&2; exit 1; }

source scripts/postgres.sh
ensure_postgres
direct="$SERVICELEVEL_TEST_POSTGRES_URL"

if ! command -v pgbouncer >/dev/null 2>&1 && [[ ! -x /usr/sbin/pgbouncer ]]; then
  say "installing Debian's pgbouncer"
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >&2 \
    || { "${sudo[@]}" apt-get update -q >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >&2; }
fi
pgbouncer_bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
say "$("$pgbouncer_bin" --version | head -n1)"

# A port nothing listens on, below the kernel's range for outgoing connections' own
# ports (32768 and up: one of those in use cannot be bound, yet answers no connect), and
# not one handed out before in this script (`taken`, kept by the callers).
taken=()
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    [[ " ${taken[*]} " == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# The direct server's host and port, from its URL (postgres://user@host:port/db).
hostport="${direct#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
pg_host="${hostport%%:*}"; pg_port=5432
[[ "$hostport" == *:* ]] && pg_port="${hostport##*:}"
pg_user="${direct#*://}"; pg_user="${pg_user%%@*}"; pg_user="${pg_user%%:*}"

work="$root/target/pgbouncer-check"
rm -rf "$work"; mkdir -p "$work"
port=$(free_port); taken+=("$port")
# auth_type = any: the test server trusts local connections, and PgBouncer connects as
# the user named here whatever the client sends. `*` routes any database name, so each
# test's own database works without a config change. default_pool_size below the
# suite's pool sizes, so server connections change hands between clients.
cat >"$work/pgbouncer.ini" <<EOF
[databases]
* = host=$pg_host port=$pg_port user=$pg_user

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 6
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
run_as=()
if [[ $(id -u) -eq 0 ]]; then run_as=(runuser -u postgres --); chown -R postgres "$work"; fi

replicas=()
cleanup() {
  for p in "${replicas[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${replicas[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -f "$work/pgbouncer.pid" ]]; then kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true; fi
  say "took $(( $(date +%s) - started )) s"
}
trap cleanup EXIT
"${run_as[@]}" "$pgbouncer_bin" -d "$work/pgbouncer.ini"
pooler="postgres://$pg_user@127.0.0.1:$port/test"
for _ in $(seq 1 50); do psql "$pooler" -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql "$pooler" -qAtc 'select 1' >/dev/null || die "PgBouncer does not answer on port $port"
say "PgBouncer on 127.0.0.1:$port (transaction pooling) in front of $pg_host:$pg_port"

# 3. The Postgres part of the suite: the `postgres` halves of the tests run on both
# stores, and the Postgres-only tests by name (docs/scaling.md lists them).
cargo build --locked --bins
export SERVICELEVEL_TEST_POSTGRES_POOLER_URL="$pooler"
suite_started=$(date +%s)
cargo test --locked --test it -- --include-ignored \
  postgres \
  distribution::every_table_follows_the_distribution_plan \
  replicas::two_replicas_record_each_due_action_once \
  webhooks_out::a_killed_server_still_delivers \
  pooler::
unset SERVICELEVEL_TEST_POSTGRES_POOLER_URL
say "the suite's Postgres part passed through PgBouncer in $(( $(date +%s) - suite_started )) s"

# 4. Three replicas behind PgBouncer on one database.
db="servicelevel_pgbouncer_check"
admin="${direct%/*}/postgres"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
bin="${CARGO_TARGET_DIR:-$root/target}/debug/servicelevel"
ports=()
for i in 1 2 3; do
  p=$(free_port); ports+=("$p"); taken+=("$p")
  SERVICELEVEL_DATABASE_URL="postgres://$pg_user@127.0.0.1:$port/$db?statement-cache-capacity=0" \
  SERVICELEVEL_MIGRATION_DATABASE_URL="${direct%/*}/$db" \
  SERVICELEVEL_MAX_CONNECTIONS=8 \
  RUST_LOG=warn \
    "$bin" serve --listen "127.0.0.1:$p" >"$work/replica-$i.log" 2>&1 &
  replicas+=("$!")
done
call() { # port method json
  curl -sS --fail-with-body -H 'content-type: application/json' \
    "http://127.0.0.1:$1/servicelevel.v1.$2" -d "$3"
}
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -H 'content-type: application/json' -d '{}' \
      "http://127.0.0.1:$p/servicelevel.v1.DeadlineService/ListBreachedClocks" && break
    sleep 0.2
  done
done
say "3 replicas serving on ports ${ports[*]} (migrated through the direct URL, all at once)"
call "${ports[0]}" CalendarService/CreateCalendar '{"calendar_id":"office","request_id":"c1","calendar":{"display_name":"Office","definition":{"time_zone":"UTC","always_open":true}}}' >/dev/null
call "${ports[1]}" PolicyService/CreatePolicy '{"policy_id":"fast","request_id":"p1","policy":{"display_name":"Fast","definition":{"clocks":[{"metric":"first_response","kind":"CLOCK_KIND_PROMISE","start":[{"received":{}}],"stop":[{"event":"EVENT_SIGNAL_AGENT_RESPONDED"}],"targets":[{"duration":{"wall_clock":{"minutes":1}}}]}]}}}' >/dev/null
call "${ports[2]}" OrganizationService/CreateOrganization '{"organization_id":"acme","request_id":"o1","organization":{"display_name":"Acme","time_zone":"UTC","policy":"policies/fast"}}' >/dev/null
# 30 tickets, 10 through each replica, whose one-minute first responses fall due over the
# next ~6 s; 6 of them answered in time (recorded through yet another replica).
now=$(date +%s)
answered=0
for i in $(seq 0 29); do
  p="${ports[$((i % 3))]}"
  received=$(date -u -d "@$((now - 57 + (i * 200) / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf '%03d' $(( (i * 200) % 1000 )))Z
  ticket=$(call "$p" TicketService/CreateTicket "{\"request_id\":\"t$i\",\"ticket\":{\"organization\":\"organizations/acme\",\"source_system\":\"crm\",\"external_id\":\"X-$i\",\"request_type\":\"task\",\"received_time\":\"$received\"}}" \
    | grep -o 'tickets/[0-9a-f-]*' | head -n1)
  [[ -n "$ticket" ]] || die "CreateTicket through port $p answered no ticket"
  if (( i % 5 == 0 )); then
    q="${ports[$(((i + 1) % 3))]}"
    call "$q" TicketService/RecordEvent "{\"ticket\":\"$ticket\",\"event\":{\"request_id\":\"r$i\",\"occurred_time\":\"$received\",\"agent_response\":{}}}" >/dev/null
    answered=$((answered + 1))
  fi
done
say "30 tickets created (10 through each replica), $answered answered in time"
sleep 10
dbq="${direct%/*}/$db"
total=$(psql "$dbq" -qAtc "SELECT count(*) FROM tickets")
breached=$(psql "$dbq" -qAtc "SELECT count(*) FROM ticket_events WHERE body LIKE '%\"type\":\"clock_breached\"%'")
tickets_breached=$(psql "$dbq" -qAtc "SELECT count(DISTINCT ticket_id) FROM ticket_events WHERE body LIKE '%\"type\":\"clock_breached\"%'")
[[ "$total" == 30 ]] || die "$total tickets, not 30"
(( breached == 30 - answered && tickets_breached == 30 - answered )) \
  || die "$breached breaches on $tickets_breached tickets; want exactly one on each of the $((30 - answered)) unanswered"
for p in "${replicas[@]}"; do kill -0 "$p" 2>/dev/null || die "a replica stopped: see $work/replica-*.log"; done
grep -h 'WARN\|ERROR' "$work"/replica-*.log | grep -v 'authentication is off' >&2 \
  && die "the replicas logged warnings or errors (above)"
say "every unanswered ticket breached exactly once ($breached breaches, $answered met)"
for p in "${replicas[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${replicas[@]}"; do wait "$p" 2>/dev/null || true; done
replicas=()
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
say "passed"
