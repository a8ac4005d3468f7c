#!/usr/bin/env bash
# End-to-end relay rate: SMTP in -> Ferry (fsync on) -> SMTP out to the test sink.
# Counts from the first message sent until the sink has stored every message.
# Usage: bench/relay.sh [messages] [size...]     default: 20000 messages, sizes 4096 and 102400
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(4096 102400)
cargo build --release --bin ferry --bin smtp-sink >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-relay.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

. bench/lib.sh

for size in "${sizes[@]}"; do
  run="$work/$size"
  start_relay_sink "$bin" "$run/sink"
  start_ferry "$bin/ferry" "$run" "$run/sink/policy.lua"
  smtp=$FERRY_SMTP
  start=$(date +%s.%N)
  echo "== relay size=$size messages=$messages"
  "$bin/ferry" bench-smtp --target "$smtp" --messages "$messages" --concurrency 50 --size "$size"
  until [ "$(cat "$run/sink/count" 2>/dev/null || echo 0)" -ge "$messages" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  python3 -c "import sys; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'end to end: {n} messages delivered to the sink in {t:.2f}s: {n/t:.0f} msgs/s')" "$messages" "$start" "$end"
  echo "sink connections: $(cat "$run/sink/connections"); left in spool: $("$bin/ferry" spool list --config "$run/ferry.toml" 2>/dev/null | wc -l)"
done
