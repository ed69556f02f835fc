#!/usr/bin/env bash
# Decide's latency idle and under 16 concurrent Report callers, on a
# ~50 MB decision log, for one or more builds of the binary.
#
#   scripts/report_load.sh [BINARY ...]     (default: target/release/nudge)
#
# The log is generated once (nudge simulate --log-dir, 5 simulated hours at
# 2000 sessions per hour: about 53 MB) into $NUDGE_LOAD_LOG (default
# /tmp/nudge-load/log); every run serves a fresh copy of it. Phases last
# $NUDGE_LOAD_SECS seconds (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
log="${NUDGE_LOAD_LOG:-/tmp/nudge-load/log}"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/nudge)
if [ ! -d "$log" ]; then
  "${bins[0]}" simulate --hours 5 --sessions-per-hour 2000 --budgets 1000 \
    --no-out --no-holdout-variant --no-exit-intent-variant --log-dir "$log" >/dev/null
fi
for bin in "${bins[@]}"; do
  NUDGE_BIN="$(realpath "$bin")" NUDGE_LOAD_LOG="$log" \
    cargo test --test it report_load -- --ignored --nocapture --test-threads 1 2>&1 |
    grep -E "^(binary|log|decide|server)"
done
