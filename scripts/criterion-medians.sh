#!/usr/bin/env bash
# Prints the median of every criterion benchmark of the last `cargo bench` run, in ns.
# Usage: scripts/criterion-medians.sh [group]   (default: every group)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - "${1:-}" <<'PY'
import glob, json, os, sys
group = sys.argv[1]
for f in sorted(glob.glob(f"target/criterion/{group or '*'}/*/new/estimates.json")):
    name = os.path.relpath(os.path.dirname(os.path.dirname(f)), "target/criterion")
    e = json.load(open(f))
    print(f"{name:50s} median {e['median']['point_estimate']:>12.1f} ns")
PY
