#!/usr/bin/env bash
# Xfer drain rate: N messages (default 100,000 × 4 KB) waiting on node A are moved to node B with
# `ferry xfer --everything --wait`, fsync on both nodes, over loopback. Runs the batch form
# (Ferry's default) and the single-message form (batch_size = 1) on fresh nodes each; the `two`
# form drains A over two peers B and C at once (`--target B --target C`: each of the 100 queues
# whole on one of them).
# The figure is the CLI's: from the admin request until every message has been accepted by B.
# Usage: bench/xfer.sh [messages] [form...]     forms: batch single two (default batch single)
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-100000}
shift || true
forms=("$@")
[ ${#forms[@]} -gt 0 ] || forms=(batch single)
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release/ferry
work=$(mktemp -d /tmp/ferry-xfer.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

# Held back six days on A (inside the default max_age), so every message waits for the sweep.
first_attempt=$(date -u -d '+6 days' +%Y-%m-%dT%H:%M:%SZ)
cat > "$work/policy.lua" <<'LUA'
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
LUA

node() { # name batch_size
  start_ferry "$bin" "$work/$1" "$work/policy.lua" "[xfer]
batch_size = $2"
}

for form in "${forms[@]}"; do
  batch_size=100
  [ "$form" = single ] && batch_size=1
  node "a-$form" "$batch_size"
  a_smtp=$FERRY_SMTP a_http=$FERRY_HTTP
  node "b-$form" 100
  b_http=$FERRY_HTTP
  targets=(--target "http://$b_http")
  if [ "$form" = two ]; then
    node "c-$form" 100
    c_http=$FERRY_HTTP
    targets+=(--target "http://$c_http")
  fi
  echo "== $form form: $messages messages of 4 KB, A ($a_http) -> ${targets[*]}, fsync on all"
  "$bin" bench-smtp --target "$a_smtp" --messages "$messages" --concurrency 50 --size 4096 --domains 100 \
    --header "X-Schedule: {\"first_attempt\":\"$first_attempt\"}" | tail -1
  sleep 2  # let the last inserts reach their queues
  ${PERF_HOOK:-} "$bin" --endpoint "http://$a_http" xfer --everything --reason bench "${targets[@]}" --wait 2>/dev/null
  counts="A spool: $("$bin" spool list --config "$work/a-$form/ferry.toml" 2>/dev/null | wc -l)  B spool: $("$bin" spool list --config "$work/b-$form/ferry.toml" 2>/dev/null | wc -l)"
  [ "$form" = two ] && counts="$counts  C spool: $("$bin" spool list --config "$work/c-$form/ferry.toml" 2>/dev/null | wc -l)"
  echo "$counts"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()
done
