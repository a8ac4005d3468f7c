#!/usr/bin/env bash
# Ferry vs Postfix, side by side, on this machine. Both relay to the same sink (Ferry's test sink,
# counting only); Postfix's own smtp-source drives both with the same message count, size and
# concurrency. Reports msgs/s accepted (until smtp-source finishes), msgs/s end to end (until the
# sink has every message; a count short of it is an error), and peak memory sampled every 0.2 s,
# two ways: RSS (Ferry's whole resident set, mapped spool included; Postfix's summed over all its
# processes, so a page they share counts once per process) and PSS (shared pages split fairly, so
# Postfix's shared libraries count once; Ferry's less its mapped spool, since spool pages are page
# cache, as Postfix's queue files are). fsync on for both (Postfix always fsyncs its queue files).
# Installs postfix from Debian if missing (needs root), and reconfigures the local Postfix
# instance: run it on a machine meant for benchmarks.
# Usage: bench/compare.sh [messages-at-4KB] [messages-at-100KB] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
n4=${1:-20000}
n100=${2:-4000}
sessions=${3:-50}
if ! command -v smtp-source >/dev/null 2>&1; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
cargo build --release --bin ferry --bin smtp-sink >/dev/null
bin=$PWD/target/release
work=$(mktemp -d /tmp/ferry-compare.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  postfix stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh
now() { date +%s.%N; }

# The body smtp-source sends is -l bytes; it adds its own headers.
drive() { # host port count size -> seconds to inject
  local t0 t1
  t0=$(now)
  # -d: keep each session's connection for its next message, as a sending application would.
  smtp-source -d -s "$sessions" -m "$3" -l "$4" -f bench@ferry.test -t bench@example.com "$1:$2" >/dev/null
  t1=$(now)
  python3 -c "print(float('$t1') - float('$t0'))"
}

wait_sink() { # dir count t0 -> seconds until the sink has count messages (or fails after 600 s)
  for _ in $(seq 1 60000); do
    [ "$(cat "$1/count" 2>/dev/null || echo 0)" -ge "$2" ] && break
    sleep 0.01
  done
  local got
  got=$(cat "$1/count" 2>/dev/null || echo 0)
  [ "$got" -ge "$2" ] || { echo "only $got of $2 messages reached the sink" >&2; return 1; }
  python3 -c "print(float('$(now)') - float('$3'))"
}

postfix_mem() { # "PSS RSS" in KiB, each summed over Postfix's processes (PSS splits shared pages
  # fairly between them; the RSS sum counts a shared page once per process that maps it)
  local pss=0 rss=0 pid p r
  for pid in $(ps -e -o pid=,comm= | awk '$2 ~ /^(master|smtpd|cleanup|qmgr|smtp|trivial-rewrite|pickup|tlsmgr|anvil|bounce|scache|proxymap|postlogd)$/ {print $1}'); do
    read -r p r < <(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print p+0, r+0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo "0 0")
    pss=$((pss + ${p:-0})) rss=$((rss + ${r:-0}))
  done
  echo "$pss $rss"
}

peaks() { # file of "PSS RSS" lines -> "peak-PSS peak-RSS"
  awk '$1 > p {p = $1} $2 > r {r = $2} END {print p + 0, r + 0}' "$1"
}

run_ferry() { # size count -> "accepted e2e peak_pss_mib peak_rss_mib"
  local dir="$work/ferry-$1"
  start_relay_sink "$bin" "$dir/sink"
  start_ferry "$bin/ferry" "$dir" "$dir/sink/policy.lua"
  local pid=$FERRY_PID smtp=$FERRY_SMTP t0 inject e2e sampler
  # Ferry's PSS, like Postfix's below, but without its spool mapping: LMDB pages are the page
  # cache Postfix's queue files also use, which PSS does not count for Postfix either.
  ( while :; do awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print p+0, r+0}' "/proc/$pid/smaps_rollup" 2>/dev/null; sleep 0.2; done ) > "$dir/mem" &
  sampler=$!
  t0=$(now)
  inject=$(drive "${smtp%:*}" "${smtp##*:}" "$2" "$1")
  e2e=$(wait_sink "$dir/sink" "$2" "$t0")
  kill "$sampler" 2>/dev/null || true
  local spool_pss pss rss
  spool_pss=$(awk '/data\.mdb/ {f=1} f && /^Pss:/ {print $2; exit}' "/proc/$pid/smaps" 2>/dev/null || echo 0)
  read -r pss rss < <(peaks "$dir/mem")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  python3 -c "n=$2; print(f'{n/$inject:.0f} {n/$e2e:.0f} {max(0, $pss - ${spool_pss:-0})/1024:.1f} {$rss/1024:.1f}')"
}

run_postfix() { # size count -> "accepted e2e peak_pss_mib peak_rss_mib"
  local dir="$work/postfix-$1"
  start_relay_sink "$bin" "$dir/sink"
  local sink=$SINK
  postfix stop >/dev/null 2>&1 || true
  # Debian's "No configuration" install leaves no main.cf/master.cf: start from the shipped ones.
  [ -f /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
  [ -f /etc/postfix/master.cf ] || cp /usr/share/postfix/master.cf.dist /etc/postfix/master.cf
  postconf -e "inet_interfaces = 127.0.0.1" "inet_protocols = ipv4" "mydestination =" \
    "mynetworks = 127.0.0.0/8" "relayhost = [${sink%:*}]:${sink##*:}" "message_size_limit = 20971520" \
    "default_process_limit = 200" "smtp_destination_concurrency_limit = $sessions" \
    "default_destination_concurrency_limit = $sessions" "smtpd_client_connection_count_limit = 0" \
    "smtp_connection_cache_on_demand = yes" "maillog_file_prefixes = /var, /dev/stdout, /tmp" "maillog_file = $dir/maillog" \
    "compatibility_level = 3.6" "myhostname = bench.ferry.test" \
    "smtpd_recipient_restrictions = permit_mynetworks, reject" "biff = no" "smtp_tls_security_level = none"
  postconf -M "127.0.0.1:2526/inet=127.0.0.1:2526 inet n - y - - smtpd"
  postfix start >/dev/null 2>&1 || { echo "postfix did not start (it logs to syslog only at this point)" >&2; return 1; }
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/2526) 2>/dev/null && break; sleep 0.1; done
  local t0 inject e2e pss rss sampler
  ( while :; do postfix_mem; sleep 0.2; done ) > "$dir/mem" &
  sampler=$!
  t0=$(now)
  inject=$(drive 127.0.0.1 2526 "$2" "$1")
  e2e=$(wait_sink "$dir/sink" "$2" "$t0")
  kill "$sampler" 2>/dev/null || true
  read -r pss rss < <(peaks "$dir/mem")
  postfix stop >/dev/null 2>&1 || true
  python3 -c "n=$2; print(f'{n/$inject:.0f} {n/$e2e:.0f} {$pss/1024:.1f} {$rss/1024:.1f}')"
}

printf '%-8s %-8s %9s %14s %13s %14s %14s\n' size mta messages "accepted/s" "end-to-end/s" "peak PSS MiB" "peak RSS MiB"
declare -A e2e
for spec in "4096 $n4" "102400 $n100"; do
  set -- $spec
  for mta in ferry postfix; do
    "run_$mta" "$1" "$2" > "$work/result"
    read -r acc end pss rss < "$work/result"
    e2e[$mta-$1]=$end
    printf '%-8s %-8s %9s %14s %13s %14s %14s\n' "$(( $1 / 1024 ))KB" "$mta" "$2" "$acc" "$end" "$pss" "$rss"
  done
done
python3 -c "print(f'end to end, Ferry / Postfix: {${e2e[ferry-4096]}/${e2e[postfix-4096]}:.1f}x at 4 KB, {${e2e[ferry-102400]}/${e2e[postfix-102400]}:.1f}x at 100 KB')"
