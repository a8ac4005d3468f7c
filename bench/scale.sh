#!/usr/bin/env bash
# Scale: memory per waiting message and restart time.
# Injects N small messages (default 1,000,000) into 1,000 queues, each held back by an X-Schedule
# first_attempt six days ahead, then reports the engine's anonymous memory (RssAnon: heap, not the
# LMDB file mapping) per waiting message; then restarts and reports the time until every spooled
# message is scheduled again.
# Usage: bench/scale.sh [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-1000000}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release/ferry
work=$(mktemp -d /tmp/ferry-scale.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
cat > "$work/policy.lua" <<'LUA'
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
LUA
cat > "$work/ferry.toml" <<TOML
[node]
data_dir = "$work/data"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[spool]
fsync = false
[logs]
compression = "zstd"
[policy]
script = "policy.lua"
TOML
rss_anon() { awk '/RssAnon/ {print $2 * 1024}' "/proc/$1/status"; }
start() {
  rm -f "$work/data/listeners.json"
  "$bin" serve --config "$work/ferry.toml" >/dev/null 2>"$work/ferry-$1.log" &
  pid=$!
  until [ -f "$work/data/listeners.json" ]; do sleep 0.05; done
}

# Held back six days: inside the default max_age of 7 days, so a restart keeps every message (E3).
first_attempt=$(date -u -d '+6 days' +%Y-%m-%dT%H:%M:%SZ)
start 1
sleep 1
base=$(rss_anon "$pid")
smtp=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['smtp'])" "$work/data/listeners.json")
"$bin" bench-smtp --target "$smtp" --messages "$messages" --concurrency 50 --size 512 --domains 1000 \
  --header "X-Schedule: {\"first_attempt\":\"$first_attempt\"}"
# Steady state, not the injection's transient garbage: wait (at most 30 s) until RssAnon stops
# falling (Lua's GC and the heap trimmer, every 10 s, hand back what the burst left).
after=$(rss_anon "$pid")
for i in $(seq 1 30); do
  sleep 1
  now=$(rss_anon "$pid")
  if [ "$i" -ge 12 ] && [ "$now" -ge "$after" ]; then break; fi
  after=$now
done
python3 -c "import sys; b,a,n=map(int,sys.argv[1:]); print(f'RssAnon: {b/2**20:.1f} MiB idle, {a/2**20:.1f} MiB with {n} waiting messages in 1000 queues: {(a-b)/n:.0f} bytes per message')" "$base" "$after" "$messages"

kill -TERM "$pid"; wait "$pid" || true; pid=
t0=$(date +%s.%N)
start 2
until grep -q "spooled messages scheduled" "$work/ferry-2.log"; do sleep 0.05; done
t1=$(date +%s.%N)
grep "spooled messages scheduled" "$work/ferry-2.log" | sed 's/^.*INFO //'
python3 -c "import sys; print(f'restart: {float(sys.argv[2])-float(sys.argv[1]):.2f}s from exec to every spooled message scheduled')" "$t0" "$t1"
echo "still spooled after restart: $("$bin" spool list --config "$work/ferry.toml" 2>/dev/null | wc -l)"
sleep 2
echo "RssAnon after restart: $(( $(rss_anon "$pid") / 1048576 )) MiB"
