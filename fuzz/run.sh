#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 600), two at a time, keeping the corpora in
# fuzz/corpus/<target> and any crash in fuzz/artifacts/<target>. Needs nightly and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: fuzz/run.sh [seconds] [target...]
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(smtp_command smtp_data smtp_wire xfer_frame queue_name x_schedule toml_config)
cargo +nightly fuzz build >/dev/null 2>&1 || { echo "cargo +nightly fuzz build failed"; exit 1; }
run() {
  local t=$1
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"logs/$t.log" 2>&1
  local rc=$?
  local stats
  stats=$(grep -E "^#[0-9]+.*(DONE|pulse|NEW)" "logs/$t.log" | tail -1 | sed -E 's/^#([0-9]+).*cov: ([0-9]+).*corp: ([0-9]+).*/\1 runs, cov \2, corpus \3/')
  if [ $rc -eq 0 ]; then echo "$t: ok, ${seconds}s, $stats"; else echo "$t: FINDING (exit $rc), see fuzz/logs/$t.log and fuzz/artifacts/$t"; fi
}
mkdir -p logs
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  a=$!
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i+1]}" & b=$!; wait $b || status=1; fi
  wait $a || status=1
done
exit $status
