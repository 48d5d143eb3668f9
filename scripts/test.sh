#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit, property, and
# the end-to-end suite against embedded SQLite and Postgres). Run it from anywhere; it
# needs cargo, and starts (or, on a bare machine, installs) Postgres by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/postgres.sh
ensure_postgres
echo "postgres: $SERVICELEVEL_TEST_POSTGRES_URL" >&2

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
