#!/usr/bin/env bash
# A/B end-to-end relay: two ferry builds, alternating, through the same counting sink.
# Usage: bench/relay_ab.sh BIN_DIR_A BIN_DIR_B [messages] [rounds] [size]
#   (each BIN_DIR holds `ferry` and `smtp-sink`, e.g. release builds of two commits)
# EXTRA_LUA is appended to the relay policy (e.g. an egress path config for B; A ignores events
# it does not know).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 messages=${3:-20000} rounds=${4:-3} size=${5:-4096}
work=$(mktemp -d /tmp/ferry-relay-ab.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

run() {
  local label=$1 bin=$2 dir=$work/$1-$3
  start_relay_sink "$bin" "$dir/sink"
  printf '%s\n' "${EXTRA_LUA:-}" >> "$dir/sink/policy.lua"
  start_ferry "$bin/ferry" "$dir" "$dir/sink/policy.lua"
  local start end
  start=$(date +%s.%N)
  "$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size "$size" >/dev/null
  until [ "$(cat "$dir/sink/count" 2>/dev/null || echo 0)" -ge "$messages" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  python3 -c "import sys; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[4]}: {n} x {sys.argv[5]} B delivered in {t:.2f}s: {n/t:.0f} msgs/s')" "$messages" "$start" "$end" "$label" "$size"
  kill -TERM "$FERRY_PID" "$SINK_PID"; wait "$FERRY_PID" "$SINK_PID" 2>/dev/null || true
}

for r in $(seq 1 "$rounds"); do
  run A "$a" "$r"
  run B "$b" "$r"
done
