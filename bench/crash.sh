#!/usr/bin/env bash
# Crash safety at scale: SIGKILL during injection, during delivery, and during xfer (sender and
# receiver), each with N messages (default 10,000), then restart. Prints one line per run:
# acknowledged/delivered/transferred counts, lost (must be 0) and, for xfer, duplicated (must be 0).
# Usage: bench/crash.sh [--scale N]
set -euo pipefail
cd "$(dirname "$0")/.."
scale=10000
if [ "${1:-}" = "--scale" ]; then scale=$2; fi
FERRY_CRASH_SCALE=$scale cargo test --release -p ferry-integration-tests --test crash --test xfer_crash \
  -- --nocapture --test-threads 1 2>&1 | grep -oE "crash: .*|^test result.*|FAILED.*|panicked.*"
