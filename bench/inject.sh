#!/usr/bin/env bash
# HTTP injection rate: requests of 1,000 templated recipients against an fsync-on node; a recipient
# counts once its request's answer (sent after the spool commit) arrived. Messages are held in
# their queues (due in 2099) so delivery does not compete with injection for the two cores.
# Usage: bench/inject.sh [requests] [concurrency] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-50}
concurrency=${2:-2}
rounds=${3:-3}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release/ferry
work=$(mktemp -d /tmp/ferry-bench-inject.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

cat > "$work/policy.lua" <<'LUA'
kumo.on('http_message_generated', function(msg)
  msg:set_due('2099-01-01T00:00:00Z')
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {}
end)
LUA
for round in $(seq 1 "$rounds"); do
  start_ferry "$bin" "$work/node-$round" "$work/policy.lua"
  echo "== round $round: $requests requests x 1000 recipients, concurrency $concurrency, fsync on"
  "$bin" bench-inject --target "http://$FERRY_HTTP" --requests "$requests" --recipients 1000 --concurrency "$concurrency"
  "$bin" spool list --config "$work/node-$round/ferry.toml" 2>&1 >/dev/null | tail -1
  kill -TERM "$FERRY_PID"; wait "$FERRY_PID" 2>/dev/null || true
done
