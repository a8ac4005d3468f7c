#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI) against the OpenAPI description of a running node
# (GET /api-docs/openapi.json). Pass: no 5xx, every response conforms to its schema, and nothing
# accepted is lost — every message held on the node before the run is still spooled afterwards
# or was bounced on purpose (an AdminBounce record: the fuzzer may call POST /api/admin/bounce/v1).
# Usage: bench/api-fuzz.sh [max-examples per operation]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-200}
cargo build --release --bin ferry >/dev/null
bin=$PWD/target/release/ferry
work=$(mktemp -d /tmp/ferry-apifuzz.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
if [ ! -x "$work/../ferry-st-venv/bin/schemathesis" ] && ! command -v schemathesis >/dev/null; then
  python3 -m venv /tmp/ferry-st-venv >/dev/null && /tmp/ferry-st-venv/bin/pip install -q schemathesis
fi
st=$(command -v schemathesis || echo /tmp/ferry-st-venv/bin/schemathesis)
cat > "$work/policy.lua" <<'LUA'
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } } end)
LUA
. bench/lib.sh
start_ferry "$bin" "$work" "$work/policy.lua"
smtp=$FERRY_SMTP
http=$FERRY_HTTP
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
"$bin" bench-smtp --target "$smtp" --messages 50 --concurrency 5 --size 1000 --domains 5 \
  --header 'X-Schedule: {"first_attempt":"2099-01-01T00:00:00Z","expires":"2099-01-02T00:00:00Z"}' | tail -1
sleep 1
"$bin" spool list --config "$work/ferry.toml" | sort > "$work/before"
echo "held before the run: $(wc -l < "$work/before") messages"
set +e
# Excluded: positive_data_acceptance, because Ferry refuses some schema-valid requests on purpose
# (an xfer target that is not a URL, a queue that is not an xfer queue, duration and expires both
# given, a rebind with nothing to do: rules a JSON schema cannot state); and the batch inject
# endpoint, whose media type schemathesis cannot serialise (cargo-fuzz's xfer_frame covers it).
"$st" run "http://$http/api-docs/openapi.json" --checks all --exclude-checks positive_data_acceptance \
  --exclude-path /api/xfer/inject-batch/v1 --max-examples "$examples" --workers 2 \
  --suppress-health-check all --report junit --report-dir "$work/report" 2>&1 | tee "$work/st.out" | tail -40
status=${PIPESTATUS[0]}
set -e
"$bin" spool list --config "$work/ferry.toml" | sort > "$work/after"
"$bin" logs --dir "$work/data/logs" | python3 -c "import json,sys; [print(r['id']) for r in map(json.loads, sys.stdin) if r['type']=='AdminBounce']" | sort > "$work/bounced"
lost=$(comm -23 "$work/before" "$work/after" | comm -23 - "$work/bounced" | wc -l)
echo "after the run: $(wc -l < "$work/after") spooled, $(wc -l < "$work/bounced") bounced by the fuzzer's admin calls, lost $lost"
echo "node still alive: $(curl -s "http://$http/api/check-liveness/v1")"
[ "$lost" -eq 0 ] && [ "$status" -eq 0 ]
