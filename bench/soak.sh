#!/usr/bin/env bash
# Soak: relay at a steady rate (default 3,300 msgs/s of 4 KB: half the measured end-to-end
# maximum in BENCHMARKS.md) for a while (default 30 minutes), fsync on. Every 10 s: the engine's
# RSS (and its anonymous part, RssAnon: heap, not mapped spool or binary pages), the sink's count,
# and the window's MAIL->250 p99 from bench-smtp. Flat means: after a 2-minute warm-up, the last
# fifth's median RssAnon is within 25 % of the first fifth's, the last fifth's median p99 within
# 2x of the first fifth's, and the sink keeps up (nothing piles up).
# Usage: bench/soak.sh [rate] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-3300}
seconds=${2:-1800}
messages=$((rate * seconds))
cargo build --release --bin ferry --bin smtp-sink >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-soak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh
mkdir -p "$work/sink"
"$bin/smtp-sink" --dir "$work/sink" --count-only 2>/dev/null &
pids+=($!)
until [ -f "$work/sink/sink.json" ]; do sleep 0.05; done
sink=$(json "$work/sink/sink.json" smtp)
cat > "$work/policy.lua" <<LUA
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[${sink%:*}]:${sink##*:}' } } } }
end)
LUA
start_ferry "$bin/ferry" "$work" "$work/policy.lua"
ferry=$FERRY_PID
smtp=$FERRY_SMTP
echo "soak: $rate msgs/s of 4 KB for ${seconds}s ($messages messages), fsync on; samples every 10 s"
"$bin/ferry" bench-smtp --target "$smtp" --messages "$messages" --rate "$rate" --concurrency 50 --size 4096 \
  --report-every 10 > "$work/load.out" &
load=$!
start=$(date +%s)
: > "$work/samples"
while kill -0 "$load" 2>/dev/null; do
  sleep 10
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$ferry/status")
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$ferry/status")
  echo "$(( $(date +%s) - start )) $rss $(cat "$work/sink/count" 2>/dev/null || echo 0) $anon" >> "$work/samples"
done
wait "$load"
for _ in $(seq 1 600); do [ "$(cat "$work/sink/count")" -ge "$messages" ] && break; sleep 0.1; done
tail -2 "$work/load.out"
python3 - "$work/samples" "$work/load.out" "$rate" "$messages" "$(cat "$work/sink/count")" <<'PY'
import re, statistics, sys
samples = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
windows = [(int(m.group(1)), float(m.group(2))) for m in
           (re.match(r"window t=(\d+)s: \d+ msgs, p50 [\d.]+ ms, p99 ([\d.]+) ms", l) for l in open(sys.argv[2])) if m]
rate, messages, delivered = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"{'t (s)':>6} {'RSS (MiB)':>10} {'anon (MiB)':>10} {'p99 (ms)':>9} {'backlog':>8}")
p99 = dict(windows)
for i, (t, rss, count, anon) in enumerate(samples):
    if i % 6 == 0 or i == len(samples) - 1:
        w = min(p99, key=lambda k: abs(k - t)) if p99 else None
        backlog = max(0, min(t * rate, messages) - count)
        print(f"{t:>6} {rss/1024:>10.1f} {anon/1024:>10.1f} {p99.get(w, 0):>9.2f} {backlog:>8}")
steady = [s for s in samples if s[0] >= 120]
wsteady = [w for w in windows if w[0] >= 120]
fifth = max(1, len(steady) // 5)
wfifth = max(1, len(wsteady) // 5)
rss0, rss1 = statistics.median(s[3] for s in steady[:fifth]), statistics.median(s[3] for s in steady[-fifth:])
tot0, tot1 = statistics.median(s[1] for s in steady[:fifth]), statistics.median(s[1] for s in steady[-fifth:])
print(f"RSS (incl. mapped spool and binary) median first/last fifth: {tot0/1024:.1f} / {tot1/1024:.1f} MiB")
p0, p1 = statistics.median(w[1] for w in wsteady[:wfifth]), statistics.median(w[1] for w in wsteady[-wfifth:])
flat_rss, flat_p99, kept_up = rss1 <= rss0 * 1.25, p1 <= max(p0 * 2, p0 + 2), delivered >= messages
print(f"RssAnon median first/last fifth: {rss0/1024:.1f} / {rss1/1024:.1f} MiB -> {'flat' if flat_rss else 'GROWING'}")
print(f"p99 median first/last fifth: {p0:.2f} / {p1:.2f} ms -> {'flat' if flat_p99 else 'GROWING'}")
print(f"delivered {delivered} of {messages} -> {'kept up' if kept_up else 'FELL BEHIND'}")
sys.exit(0 if flat_rss and flat_p99 and kept_up else 1)
PY
