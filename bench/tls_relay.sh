#!/usr/bin/env bash
# End-to-end relay with and without STARTTLS on both legs: bench-smtp -> Ferry A -> Ferry B.
# B takes every message into the null queue (accepted, counted, discarded), so the sink is Ferry's
# own listener with its self-signed certificate; A delivers with enable_tls = OpportunisticInsecure
# (TLS) or Disabled (plain); the client uses --starttls or not. Rounds alternate plain and TLS.
# Usage: bench/tls_relay.sh [messages] [rounds]      default: 20000 messages, 2 rounds, 4 KB
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
rounds=${2:-2}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-tls-relay.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

received() { curl -s "http://$1/metrics" | awk '$1 == "total_messages_received" {print $2}'; }

run() {
  local mode=$1 round=$2 dir=$work/$1-$2 tls client_flag=""
  [ "$mode" = tls ] && tls=OpportunisticInsecure && client_flag=--starttls || tls=Disabled
  mkdir -p "$dir/b" "$dir/a"
  echo "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)" > "$dir/b/policy.lua"
  start_ferry "$bin/ferry" "$dir/b" "$dir/b/policy.lua"
  local b_smtp=$FERRY_SMTP b_http=$FERRY_HTTP
  cat > "$dir/a/policy.lua" <<LUA
kumo.on('get_queue_config', function() return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[${b_smtp%:*}]:${b_smtp##*:}' } } } } end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path { enable_tls = '$tls', max_ready = 100000 } end)
LUA
  start_ferry "$bin/ferry" "$dir/a" "$dir/a/policy.lua"
  local start end
  start=$(date +%s.%N)
  "$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size 4096 $client_flag >/dev/null
  until [ "$(received "$b_http")" -ge "$messages" ] 2>/dev/null; do sleep 0.05; done
  end=$(date +%s.%N)
  python3 -c "import sys; n=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[4]:5}: {n} x 4 KB relayed in {t:.2f}s: {n/t:.0f} msgs/s')" "$messages" "$start" "$end" "$mode"
  kill -TERM "${pids[@]: -2}"; wait "${pids[@]: -2}" 2>/dev/null || true
}

for r in $(seq 1 "$rounds"); do
  run plain "$r"
  run tls "$r"
done
