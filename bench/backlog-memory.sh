#!/usr/bin/env bash
# Does memory follow a backlog back down? Relays 3,300 msgs/s of 4 KB (work dir on /dev/shm, so
# the disk stays out of it) and, three times, freezes one process for a few seconds
# (kill -STOP / -CONT) so that messages pile up and then drain: `ferry` itself (as when the
# hypervisor steals its CPU) or `sink` (a stalled destination). Prints Ferry's RssAnon (heap)
# at each step; at the end, if gdb is installed, once more after asking glibc to return all
# free memory (malloc_trim), which shows how much of the heap was live.
# Usage: bench/backlog-memory.sh [ferry|sink] [pause seconds] [run seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
who=${1:-ferry}
pause=${2:-4}
secs=${3:-100}
cargo build --release --bin ferry --bin smtp-sink >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /dev/shm/ferry-mem.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh
start_relay_sink "$bin" "$work/sink"
start_ferry "$bin/ferry" "$work" "$work/sink/policy.lua"
victim=$SINK_PID
[ "$who" = ferry ] && victim=$FERRY_PID
anon() { echo "$1: RssAnon $(awk '/RssAnon/ {print $2}' "/proc/$FERRY_PID/status") KiB, delivered $(cat "$work/sink/count")"; }
anon start
"$bin/ferry" bench-smtp --target "$FERRY_SMTP" --messages $((3300 * secs)) --rate 3300 --concurrency 50 \
  --size 4096 > "$work/load.out" &
load=$!
sleep 20; anon "t=20 s, steady"
sleep 10; anon "t=30 s, steady"
for i in 1 2 3; do
  kill -STOP "$victim"; sleep "$pause"; kill -CONT "$victim"
  anon "$who paused ${pause} s ($i)"
  sleep 15; anon "15 s after resuming ($i)"
done
wait "$load"
for _ in $(seq 1 300); do [ "$(cat "$work/sink/count")" -ge $((3300 * secs)) ] && break; sleep 0.1; done
anon "load done"
if command -v gdb >/dev/null; then
  gdb -p "$FERRY_PID" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 && anon "after malloc_trim(0)"
fi
tail -1 "$work/load.out"
