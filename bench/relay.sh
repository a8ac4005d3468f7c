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

wait_file() { for _ in $(seq 1 200); do [ -f "$1" ] && return 0; sleep 0.05; done; echo "timed out waiting for $1" >&2; exit 1; }
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

for size in "${sizes[@]}"; do
  run="$work/$size"
  mkdir -p "$run/sink"
  "$bin/smtp-sink" --dir "$run/sink" --count-only 2>/dev/null &
  pids+=($!)
  wait_file "$run/sink/sink.json"
  sink=$(json "$run/sink/sink.json" smtp)
  cat > "$run/policy.lua" <<LUA
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[${sink%:*}]:${sink##*:}' } } } }
end)
LUA
  cat > "$run/ferry.toml" <<TOML
[node]
data_dir = "$run/data"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[spool]
fsync = true
[policy]
script = "policy.lua"
TOML
  "$bin/ferry" serve --config "$run/ferry.toml" >/dev/null 2>"$run/ferry.log" &
  pids+=($!)
  wait_file "$run/data/listeners.json"
  smtp=$(json "$run/data/listeners.json" smtp)
  start=$(date +%s.%N)
  echo "== relay size=$size messages=$messages"
  "$bin/ferry" bench-smtp --target "$smtp" --messages "$messages" --concurrency 50 --size "$size"
  until [ "$(cat "$run/sink/count" 2>/dev/null || echo 0)" -ge "$messages" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  python3 -c "import sys; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'end to end: {n} messages delivered to the sink in {t:.2f}s: {n/t:.0f} msgs/s')" "$messages" "$start" "$end"
  echo "sink connections: $(cat "$run/sink/connections"); left in spool: $("$bin/ferry" spool list --config "$run/ferry.toml" 2>/dev/null | wc -l)"
done
