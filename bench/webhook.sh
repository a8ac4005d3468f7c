#!/usr/bin/env bash
# Relay with and without a log hook that POSTs every Delivery to a webhook in batches of 100
# (KumoMTA's batched-hook pattern: configure_log_hook -> should_enqueue_log_record -> a custom_lua
# queue with kumo.http). Reports the relay rate of both and the rate the webhook received events.
# The webhook is `webhook-sink` (integration-tests), which counts the records in each POSTed JSON
# array (a Python server did this until 2026-12-02; it took a tenth of the two cores).
# Usage: bench/webhook.sh [messages] [rounds]      default: 20000 messages, 2 rounds, 4 KB
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
rounds=${2:-2}
cargo build --release --bin ferry --bin smtp-sink --bin webhook-sink >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-webhook.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

HOOK='
kumo.on("init", function()
  kumo.configure_log_hook { name = "webhook", per_record = { Delivery = { enable = true }, Any = { enable = false } } }
end)
-- Ferry never hooks the records of hook messages, so no loop check is needed here.
kumo.on("should_enqueue_log_record", function(msg)
  msg:set_meta("queue", "webhook")
  return true
end)
kumo.on("make.webhook", function()
  local connection = {}
  local client = kumo.http.build_client {}
  function connection:send_batch(messages)
    -- Each body is already the record as JSON: join them into an array.
    local records = {}
    for i, msg in ipairs(messages) do records[i] = msg:get_data() end
    local r = client:post("URL"):header("Content-Type", "application/json"):body("[" .. table.concat(records, ",") .. "]"):send()
    if r:status_is_success() then return "ok" end
    kumo.reject(400, r:text())
  end
  return connection
end)
'

run() {
  local label=$1 round=$2 dir=$work/$1-$2
  rm -f "$work/port"
  "$bin/webhook-sink" --port-file "$work/port" & pids+=("$!")
  local hook_pid=$!
  until [ -s "$work/port" ]; do sleep 0.05; done
  local url="http://127.0.0.1:$(cat "$work/port")/events"
  start_relay_sink "$bin" "$dir/sink"
  if [ "$label" = hooked ]; then
    # The webhook queue first, so the relay's catch-all handler does not claim it.
    { echo "kumo.on('get_queue_config', function(domain) if domain == 'webhook' then return kumo.make_queue_config { protocol = { custom_lua = { constructor = 'make.webhook', batch_size = 100, min_batch_size = 100, max_batch_latency = '20ms' } } } end end)";
      cat "$dir/sink/policy.lua"; echo "${HOOK//URL/$url}"; } > "$dir/policy.lua"
  else
    cp "$dir/sink/policy.lua" "$dir/policy.lua"
  fi
  start_ferry "$bin/ferry" "$dir" "$dir/policy.lua"
  local start end
  start=$(date +%s.%N)
  "$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size 4096 >/dev/null
  until [ "$(cat "$dir/sink/count" 2>/dev/null || echo 0)" -ge "$messages" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  local events=""
  if [ "$label" = hooked ]; then
    until [ "$(curl -s "$url" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')" -ge "$messages" ]; do sleep 0.05; done
    events=$(curl -s "$url" | python3 -c 'import json,sys; s=json.load(sys.stdin); n=s["events"]; t=max(s["last"]-s["first"],1e-9); print("; webhook: %d events at %.0f events/s, %.0f per POST" % (n, n/t, n/max(s["requests"],1)))')
  fi
  python3 -c "import sys; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[4]:7}: {n} x 4 KB relayed in {t:.2f}s: {n/t:.0f} msgs/s{sys.argv[5]}')" "$messages" "$start" "$end" "$label" "$events"
  if [ -n "${METRICS:-}" ]; then curl -s "http://$FERRY_HTTP/metrics" > "$METRICS.$label.$round"; fi
  kill -TERM "$FERRY_PID" "$SINK_PID" "$hook_pid"; wait "$FERRY_PID" "$SINK_PID" "$hook_pid" 2>/dev/null || true
}

# ONLY=plain or ONLY=hooked runs just that side (for profiling one of them).
for r in $(seq 1 "$rounds"); do
  if [ "${ONLY:-plain}" = plain ]; then run plain "$r"; fi
  if [ "${ONLY:-hooked}" = hooked ]; then run hooked "$r"; fi
done
