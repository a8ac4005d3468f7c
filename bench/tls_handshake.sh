#!/usr/bin/env bash
# Reception by one-message-per-connection clients, with and without STARTTLS: every message is
# a new TCP connection (and, with TLS, a full handshake on Ferry's self-signed certificate). The
# node takes messages into the null queue (spooled with fsync, then discarded), so what differs
# between the two runs is the handshake. Rounds alternate plain and TLS.
# Usage: bench/tls_handshake.sh [messages] [rounds]      default: 10000 messages, 2 rounds, 4 KB
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-10000}
rounds=${2:-2}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-tls-handshake.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

echo "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)" > "$work/policy.lua"
start_ferry "$bin/ferry" "$work/node" "$work/policy.lua"
for r in $(seq 1 "$rounds"); do
  for mode in plain tls; do
    flag=""
    [ "$mode" = tls ] && flag=--starttls
    printf '%-5s round %s: ' "$mode" "$r"
    "$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages "$messages" --concurrency 50 --size 4096 \
      --per-connection 1 $flag | grep connections/s
  done
done
