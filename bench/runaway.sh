#!/usr/bin/env bash
# Reception latency with a runaway requeue_message handler present vs. without (issue #12 item 5).
# Both runs use the same policy: relay to the counting sink, a trivial smtp_server_message_received
# (so every reception takes a Lua state), and a requeue_message handler that loops forever. In the
# "runaway" run, 8 messages to stuck.example (a closed port, retried every 1 s) keep triggering it,
# so it holds both delivery-lane states (pool_size = 2, handler_timeout 5 s) throughout.
# Usage: bench/runaway.sh [messages]   default 5000; BIN=target/debug skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin ferry --bin smtp-sink >/dev/null
  BIN=$PWD/target/release
fi
work=$(mktemp -d /tmp/ferry-runaway.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

. bench/lib.sh

for mode in none runaway; do
  run="$work/$mode"
  start_relay_sink "$BIN" "$run/sink"
  cat > "$run/policy.lua" <<LUA
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'stuck.example' then
    return kumo.make_queue_config { retry_interval = '1s', protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } }
  end
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[${SINK%:*}]:${SINK##*:}' } } } }
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen', true) end)
kumo.on('requeue_message', function(msg)
  kumo.log_warn('RUNAWAY-STARTED')
  while true do end
end)
LUA
  start_ferry "$BIN/ferry" "$run" "$run/policy.lua" "pool_size = 2"
  if [ "$mode" = runaway ]; then
    "$BIN/ferry" bench-smtp --target "$FERRY_SMTP" --messages 8 --concurrency 1 --domain stuck.example >/dev/null
    until [ "$(grep -c RUNAWAY-STARTED "$run/ferry.log")" -ge 2 ]; do sleep 0.05; done
  fi
  echo "== $mode: $messages messages, 50 connections, 4 KB"
  "$BIN/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size 4096
  echo "runaway handlers started: $(grep -c RUNAWAY-STARTED "$run/ferry.log" || true)," \
    "interrupted: $(grep -c 'handler exceeded its time limit' "$run/ferry.log" || true)"
done
