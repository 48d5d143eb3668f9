#!/usr/bin/env bash
# The read replica (docs/scaling.md, "Read replica") against a real streaming hot standby:
# initdb of a private primary on a free port, `pg_basebackup -R` of it into a standby on
# another free port, both started under target/replica-check/ (never the shared server),
# then the ignored test `read_replica::` run with their URLs. Tears both clusters down on
# exit and prints its duration. CI runs it after scripts/pgbouncer-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
started=$(date +%s)
say() { printf 'replica-check: %s\n' "$*"; }
die() { printf 'replica-check: FAILED: %s\n' "$*" >&2; exit 1; }

source scripts/postgres.sh
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
if [[ -z "$bin" ]]; then
  private_postgres >/dev/null # installs Debian's postgresql when absent
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
fi

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

work="$root/target/replica-check"
rm -rf "$work"; mkdir -p "$work"
run_as=()
if [[ $(id -u) -eq 0 ]]; then run_as=(runuser -u postgres --); chown -R postgres "$work"; fi
primary_port=$(free_port); taken+=("$primary_port")
standby_port=$(free_port)

cleanup() {
  for d in standby primary; do
    if [[ -f "$work/$d/postmaster.pid" ]]; then
      "${run_as[@]}" "$bin/pg_ctl" -D "$work/$d" -m immediate stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$work"
  say "took $(( $(date +%s) - started )) s"
}
trap cleanup EXIT

"${run_as[@]}" "$bin/initdb" -D "$work/primary" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; die "initdb"; }
cat >>"$work/primary/postgresql.conf" <<EOF
port = $primary_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = replica
max_wal_senders = 4
hot_standby = on
EOF
"${run_as[@]}" "$bin/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
psql "postgres://postgres@127.0.0.1:$primary_port/postgres" -qc 'CREATE DATABASE test' >/dev/null
"${run_as[@]}" "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$work/standby" -R -X stream \
  >"$work/basebackup.log" 2>&1 || { cat "$work/basebackup.log" >&2; die "pg_basebackup"; }
cat >>"$work/standby/postgresql.conf" <<EOF
port = $standby_port
EOF
"${run_as[@]}" "$bin/pg_ctl" -D "$work/standby" -l "$work/standby.log" -w start >/dev/null
primary="postgres://postgres@127.0.0.1:$primary_port/test"
standby="postgres://postgres@127.0.0.1:$standby_port/test"
[[ "$(psql "$standby" -qAtc 'SELECT pg_is_in_recovery()')" == t ]] || die "the standby is not in recovery"
say "primary on $primary_port, hot standby on $standby_port (streaming: $(psql "$primary" -qAtc 'SELECT count(*) FROM pg_stat_replication') sender)"

SERVICELEVEL_TEST_PRIMARY_URL="$primary" SERVICELEVEL_TEST_REPLICA_URL="$standby" \
  cargo test --locked --test it -- --ignored read_replica::
say "passed"
