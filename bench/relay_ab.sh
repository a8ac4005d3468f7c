#!/usr/bin/env bash
# A/B end-to-end relay: two ferry builds, alternating, through the same counting sink.
# Usage: bench/relay_ab.sh BIN_DIR_A BIN_DIR_B [messages] [rounds] [size]
#   (each BIN_DIR holds `ferry` and `smtp-sink`, e.g. release builds of two commits, or the same
#   build twice with different policies)
# LUA_A / LUA_B are appended to A's / B's relay policy (a build ignores events it does not know);
# QCFG_A / QCFG_B are inserted into the relay's make_queue_config{} (e.g. "egress_pool = 'p4', ");
# DOMAINS spreads the recipients over that many domains (queues).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 messages=${3:-20000} rounds=${4:-3} size=${5:-4096}
work=$(mktemp -d /tmp/ferry-relay-ab.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

run() {
  local label=$1 bin=$2 dir=$work/$1-$3 extra=$4 qcfg=$5
  start_relay_sink "$bin" "$dir/sink"
  sed -i "s/make_queue_config { /make_queue_config { $qcfg/" "$dir/sink/policy.lua"
  printf '%s\n' "$extra" >> "$dir/sink/policy.lua"
  start_ferry "$bin/ferry" "$dir" "$dir/sink/policy.lua"
  local start end
  start=$(date +%s.%N)
  "$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size "$size" --domains "${DOMAINS:-1}" >/dev/null
  until [ "$(cat "$dir/sink/count" 2>/dev/null || echo 0)" -ge "$messages" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  # Ferry's own CPU time (user + system) per message: steadier than the rate on a busy host.
  local ticks
  ticks=$(awk '{print $14 + $15}' "/proc/$FERRY_PID/stat")
  python3 -c "import sys,os; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); cpu=int(sys.argv[6])/os.sysconf('SC_CLK_TCK'); print(f'{sys.argv[4]}: {n} x {sys.argv[5]} B delivered in {t:.2f}s: {n/t:.0f} msgs/s; ferry CPU {cpu*1e6/n:.0f} us/msg')" "$messages" "$start" "$end" "$label" "$size" "$ticks"
  kill -TERM "$FERRY_PID" "$SINK_PID"; wait "$FERRY_PID" "$SINK_PID" 2>/dev/null || true
}

for r in $(seq 1 "$rounds"); do
  run A "$a" "$r" "${LUA_A:-}" "${QCFG_A:-}"
  run B "$b" "$r" "${LUA_B:-}" "${QCFG_B:-}"
done
