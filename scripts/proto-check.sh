#!/usr/bin/env bash
# The proto is a public contract: `buf lint` must be clean, and `buf breaking` against the
# contract as it first landed must find nothing. Installs buf from the npm registry into
# target/tools when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."

buf="$(command -v buf || true)"
if [[ -z "$buf" ]]; then
  tools="target/tools"
  if [[ ! -x "$tools/node_modules/.bin/buf" ]]; then
    mkdir -p "$tools"
    (cd "$tools" && npm install --silent --no-audit --no-fund @bufbuild/buf@1 >&2)
  fi
  buf="$tools/node_modules/.bin/buf"
fi

"$buf" lint
# The first commit that carried the v1 contract: every later version must stay compatible.
baseline="$(git log --diff-filter=A --format=%H -- proto/servicelevel/v1/tickets.proto | tail -n1)"
if [[ -n "$baseline" ]]; then
  "$buf" breaking --against ".git#ref=${baseline},subdir=proto"
fi
echo "proto: buf lint and buf breaking clean"
