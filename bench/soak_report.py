#!/usr/bin/env python3
"""Report and verdict of a soak run (bench/soak.sh), from the files it keeps in its work dir.

Usage: bench/soak_report.py WORKDIR RATE MESSAGES DELIVERED

Flat means, after a 2-minute warm-up: the last fifth's median RssAnon within 25 % of the first
fifth's; the last fifth's median MAIL->250 p99 within 2x (or 2 ms) of the first fifth's; the sink
kept up. The p99 verdict is given twice: over every window, and over the windows in which the
machine was itself (the hypervisor stole under 5 % of the CPU and the disk probe's fdatasync p99
stayed under 3x its run median). The second one is the verdict: a window in which the host took
the CPU or the disk away measures the host, not Ferry. Both are printed, with what was left out.
"""
import re
import statistics
import sys

STEAL_LIMIT = 50  # per mille of all CPU time in the window
DISK_FACTOR = 3

work, rate, messages, delivered = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
samples = [tuple(map(int, l.split())) for l in open(f"{work}/samples") if l.strip()]
pattern = re.compile(r"window t=(\d+)s: \d+ msgs, p50 [\d.]+ ms, p99 ([\d.]+) ms")
windows = [(int(m.group(1)), float(m.group(2))) for m in map(pattern.match, open(f"{work}/load.out")) if m]
probe = [float(l) for l in open(f"{work}/probe.out") if l.strip()]
med = statistics.median


def nearest(t, rows):
    """The row whose time is closest to t (rows are (t, ...) tuples)."""
    return min(rows, key=lambda r: abs(r[0] - t)) if rows else None


def disk_at(t):
    # probe line i covers (10 i, 10 (i + 1)]; window t covers (t - 10, t].
    return probe[min(len(probe) - 1, max(0, t // 10 - 1))] if probe else 0.0


print(f"{'t (s)':>6} {'RSS (MiB)':>10} {'anon (MiB)':>10} {'spool (MB)':>10} {'p99 (ms)':>9} "
      f"{'disk p99':>9} {'steal %':>8} {'backlog':>8}")
for i, (t, rss, count, anon, spool, steal) in enumerate(samples):
    if i % 6 == 0 or i == len(samples) - 1:
        w = nearest(t, windows)
        backlog = max(0, min(t * rate, messages) - count)
        print(f"{t:>6} {rss/1024:>10.1f} {anon/1024:>10.1f} {spool/1e6:>10.1f} {w[1] if w else 0:>9.2f} "
              f"{disk_at(t):>9.2f} {steal/10:>8.1f} {backlog:>8}")

steady = [s for s in samples if s[0] >= 120]
fifth = max(1, len(steady) // 5)
rss0, rss1 = med(s[3] for s in steady[:fifth]), med(s[3] for s in steady[-fifth:])
tot0, tot1 = med(s[1] for s in steady[:fifth]), med(s[1] for s in steady[-fifth:])
print(f"RSS (incl. mapped spool and binary) median first/last fifth: {tot0/1024:.1f} / {tot1/1024:.1f} MiB")
print(f"CPU stolen by the hypervisor: mean {statistics.mean(s[5] for s in samples) / 10:.1f} %, "
      f"worst window {max(s[5] for s in samples) / 10:.1f} %")
disk_median = med(probe) if probe else 0.0
print(f"disk probe fdatasync p99: median {disk_median:.2f} ms, worst window {max(probe, default=0):.2f} ms")


def p99_verdict(label, rows):
    if not rows:
        print(f"p99 ({label}): no windows")
        return False
    n = max(1, len(rows) // 5)
    p0, p1 = med(w[1] for w in rows[:n]), med(w[1] for w in rows[-n:])
    flat = p1 <= max(p0 * 2, p0 + 2)
    print(f"p99 median first/last fifth ({label}): {p0:.2f} / {p1:.2f} ms -> {'flat' if flat else 'GROWING'}")
    return flat


def quiet(w):
    sample = nearest(w[0], samples)
    return (sample is None or sample[5] < STEAL_LIMIT) and disk_at(w[0]) < DISK_FACTOR * max(disk_median, 0.1)


wsteady = [w for w in windows if w[0] >= 120]
wquiet = [w for w in wsteady if quiet(w)]
p99_verdict("every window", wsteady)
print(f"windows left out for steal >= {STEAL_LIMIT / 10:.0f} % or disk p99 >= {DISK_FACTOR}x its median: "
      f"{len(wsteady) - len(wquiet)} of {len(wsteady)}")
flat_p99 = p99_verdict("machine quiet", wquiet)
flat_rss, kept_up = rss1 <= rss0 * 1.25, delivered >= messages
print(f"RssAnon median first/last fifth: {rss0/1024:.1f} / {rss1/1024:.1f} MiB -> {'flat' if flat_rss else 'GROWING'}")
print(f"delivered {delivered} of {messages} -> {'kept up' if kept_up else 'FELL BEHIND'}")
sys.exit(0 if flat_rss and flat_p99 and kept_up else 1)
