#!/usr/bin/env bash
# Makes a Postgres server reachable for the Postgres test suite and exports its URL in
# SERVICELEVEL_TEST_POSTGRES_URL. Order of preference:
#   1. SERVICELEVEL_TEST_POSTGRES_URL if already set and reachable;
#   2. the machine's cluster on 127.0.0.1:5432 (started with pg_ctlcluster when down);
#   3. a private throwaway server (initdb with trust auth on port 54329 under target/),
#      installing Debian's postgresql package first if the machine has no server binaries.
# Fails loudly if none works: the Postgres suite is not optional.
set -euo pipefail

pg_reachable() { # url
  command -v psql >/dev/null 2>&1 || return 1
  psql "$1" -qAtc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
  local url="${SERVICELEVEL_TEST_POSTGRES_URL:-}"
  if [[ -n "$url" ]] && pg_reachable "$url"; then
    export SERVICELEVEL_TEST_POSTGRES_URL="$url"; return 0
  fi
  url="postgres://postgres@127.0.0.1:5432/test"
  if pg_reachable "$url"; then
    export SERVICELEVEL_TEST_POSTGRES_URL="$url"; return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql 2>/dev/null)" ]]; then
    echo "postgres: starting the local cluster" >&2
    local v; v="$(ls /etc/postgresql | sort -V | tail -n1)"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 || true
    for _ in $(seq 1 30); do
      pg_reachable "$url" && { export SERVICELEVEL_TEST_POSTGRES_URL="$url"; return 0; }
      sleep 1
    done
    echo "postgres: the local cluster did not come up on 127.0.0.1:5432; trying a private server" >&2
  fi
  private_postgres
}

private_postgres() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [[ -z "$bin" ]]; then
    echo "postgres: no server binaries; installing Debian's postgresql package" >&2
    if [[ $(id -u) -eq 0 ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    else
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    fi
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
  fi
  local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/test-postgres"
  local port=54329 data="$root/data" run_as=()
  # initdb refuses to run as root: use the postgres system user when we are root.
  if [[ $(id -u) -eq 0 ]]; then run_as=(runuser -u postgres --); fi
  mkdir -p "$root"
  [[ $(id -u) -eq 0 ]] && chown -R postgres "$root" 2>/dev/null || true
  if [[ ! -f "$data/PG_VERSION" ]]; then
    "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >&2
  fi
  "${run_as[@]}" "$bin/pg_ctl" -D "$data" -o "-p $port -k $root -c listen_addresses=127.0.0.1" -l "$root/log" -w start >&2 || true
  local base="postgres://postgres@127.0.0.1:$port"
  psql "$base/postgres" -qAtc "select 1 from pg_database where datname = 'test'" 2>/dev/null | grep -q 1 \
    || psql "$base/postgres" -qc 'create database test' >&2
  if pg_reachable "$base/test"; then
    export SERVICELEVEL_TEST_POSTGRES_URL="$base/test"; return 0
  fi
  echo "postgres: no server could be reached or started; the Postgres suite cannot run" >&2
  return 1
}
