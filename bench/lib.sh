# Shared by the bench scripts. Source it after `pids=()` is declared; every process started here
# is added to `pids` so the caller's cleanup stops it.

# json FILE KEY: one top-level value of a JSON file.
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# start_ferry BIN DIR POLICY [EXTRA_TOML]: write DIR/ferry.toml (ephemeral loopback ports, data in
# DIR/data, fsync on, the policy file, then EXTRA_TOML, which may add sections the base lacks),
# start `ferry serve` logging to DIR/ferry.log, and wait until it listens.
# Sets FERRY_PID, FERRY_SMTP and FERRY_HTTP.
start_ferry() {
  local bin=$1 dir=$2 policy=$3 extra=${4:-}
  mkdir -p "$dir"
  cat > "$dir/ferry.toml" <<TOML
[node]
data_dir = "$dir/data"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[spool]
fsync = true
[policy]
script = "$policy"
$extra
TOML
  rm -f "$dir/data/listeners.json"
  "$bin" serve --config "$dir/ferry.toml" >/dev/null 2>"$dir/ferry.log" &
  FERRY_PID=$!
  pids+=("$FERRY_PID")
  until [ -f "$dir/data/listeners.json" ]; do
    kill -0 "$FERRY_PID" 2>/dev/null || { echo "ferry failed to start: $(tail -3 "$dir/ferry.log")" >&2; return 1; }
    sleep 0.05
  done
  FERRY_SMTP=$(json "$dir/data/listeners.json" smtp)
  FERRY_HTTP=$(json "$dir/data/listeners.json" http)
}

# start_relay_sink BIN DIR: start the counting test sink in DIR (it keeps its count in DIR/count)
# and write DIR/policy.lua, a policy that relays every queue to it.
# Sets SINK (host:port) and SINK_PID.
start_relay_sink() {
  local bin=$1 dir=$2
  mkdir -p "$dir"
  "$bin/smtp-sink" --dir "$dir" --count-only >/dev/null 2>&1 &
  SINK_PID=$!
  pids+=("$SINK_PID")
  until [ -f "$dir/sink.json" ]; do sleep 0.05; done
  SINK=$(json "$dir/sink.json" smtp)
  cat > "$dir/policy.lua" <<LUA
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[${SINK%:*}]:${SINK##*:}' } } } }
end)
LUA
}
