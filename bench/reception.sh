#!/usr/bin/env bash
# SMTP acceptance rate: 20,000 messages over 50 connections at 4 KB and 100 KB, with fsync on and off.
# Usage: bench/reception.sh [messages]   (prints one result block per run)
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release/ferry
work=$(mktemp -d /tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # name fsync; sets $addr to the SMTP address once ready
  local name=$1 fsync=$2
  cat > "$work/$name.toml" <<TOML
[node]
data_dir = "$work/$name"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[spool]
fsync = $fsync
[policy]
script = "$PWD/examples/policy.lua"
TOML
  "$bin" serve --config "$work/$name.toml" >/dev/null 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -f "$work/$name/listeners.json" ] && break; sleep 0.1; done
  addr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['smtp'])" "$work/$name/listeners.json")
}

for fsync in true false; do
  start "fsync-$fsync" "$fsync"
  for size in 4096 102400; do
    echo "== fsync=$fsync size=$size"
    "$bin" bench-smtp --target "$addr" --messages "$messages" --concurrency 50 --size "$size"
  done
done
