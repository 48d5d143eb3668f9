#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit, property,
# integration). Run it from anywhere; it needs only cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
