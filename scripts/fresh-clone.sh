#!/usr/bin/env bash
# The README's first run, as a newcomer does it: clones this repository into a temporary
# folder, runs the README's run command there (`cargo run --release`) until gRPC health
# answers SERVING (15 minutes at most, the build included), runs the README's
# walk-through against it, and stops it. Prints the build time, the compiler's peak
# memory and the service's resident memory (the figures the README quotes).
#
# The clone builds into this repository's target/ (CARGO_TARGET_DIR) so that the
# dependencies compiled before are reused; the service crate itself is compiled from the
# clone's sources (its path differs, so cargo builds it anew).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

say() { printf 'fresh-clone: %s\n' "$*"; }
die() { printf 'fresh-clone: FAILED: %s\n' "$*" >&2; exit 1; }

command=$(sed -n '/^## Set-up on a fresh machine/,/^## /p' README.md | sed -n '/^```sh$/,/^```$/p' | sed '1d;$d' | head -n1)
[[ "$command" == "cargo run --release" ]] || die "the README's run command is now: $command (update this script)"
walkthrough=$(sed -n '/^## A first walk-through/,/^## /p' README.md | sed -n '/^```sh$/,/^```$/p' | sed '1d;$d')
[[ -n "$walkthrough" ]] || die "no walk-through in the README"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
git clone --quiet "$repo" "$work/servicelevel"
cd "$work/servicelevel"
say "cloned $(git rev-parse --short HEAD) into $work/servicelevel"

if (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null; then
  die "127.0.0.1:50051, the README's address, is taken"
fi

export CARGO_TARGET_DIR="${FRESH_CLONE_TARGET_DIR:-$repo/target}"
# The README's command, as a newcomer runs it: no SERVICELEVEL_* or OTEL_* settings.
clean_env=()
for v in $(compgen -e); do
  [[ "$v" == SERVICELEVEL_* || "$v" == OTEL_* || "$v" == RUST_LOG ]] && clean_env+=(-u "$v")
done
started=$(date +%s)
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f 'peak %M KiB' -o "$work/time")
env "${clean_env[@]}" "${timer[@]}" $command >"$work/run.log" 2>&1 &
pid=$!

health() {
  "$buf" curl --http2-prior-knowledge --protocol grpc -d '{"service":""}' \
    http://127.0.0.1:50051/grpc.health.v1.Health/Check 2>/dev/null
}
buf="$repo/target/tools/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  mkdir -p "$repo/target/tools"
  (cd "$repo/target/tools" && npm install --silent --no-audit --no-fund @bufbuild/buf@1 >&2)
fi

deadline=$((started + 900))
until health | grep -q '"SERVING"'; do
  kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/run.log" >&2; die "cargo run --release stopped"; }
  (( $(date +%s) < deadline )) || { tail -n 30 "$work/run.log" >&2; die "no SERVING within 15 minutes"; }
  sleep 2
done
serving=$(( $(date +%s) - started ))
server=$(pgrep -P "$(pgrep -P "$pid" | head -n1)" -x servicelevel 2>/dev/null || pgrep -P "$pid" -x servicelevel || true)
rss=""
for p in $server; do rss=$(awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$p/status" 2>/dev/null || true); done
say "health answered SERVING $serving s after \`$command\` started (service resident memory: ${rss:-unknown})"

out="$(bash -e -o pipefail -c "$walkthrough" 2>"$work/walk.err")" || { cat "$work/walk.err" >&2; die "the README walk-through failed"; }
grep -q 'CLOCK_STATE_MET' <<<"$out" || { printf '%s\n' "$out" >&2; die "the walk-through's RecordEvent did not meet the clock"; }
say "the README walk-through ran (RecordEvent met the first_response clock)"

# Stop the service the way a terminal's Ctrl-C does, and wait for cargo to return.
for p in $server; do kill -INT "$p" 2>/dev/null || true; done
wait "$pid" || true
pid=""
say "stopped; $(cat "$work/time" 2>/dev/null || echo 'peak unknown') (largest process of the run, the compiler)"
