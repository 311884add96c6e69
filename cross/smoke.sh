#!/usr/bin/env bash
# End-to-end smoke test of a cross-built agent, run under qemu-user on this
# host: the target's own `generate-config` writes the config, the agent's
# embedded broker takes QoS 1 publishes from a host MQTT client
# (mosquitto_pub), commits them to its SQLite buffer, uploads a Parquet
# segment to a host ferry-hub, and the readings are queried back over SQL.
# Then the agent is stopped with SIGTERM and must exit cleanly.
#
# Usage: cross/smoke.sh TARGET AGENT_BINARY
# Environment:
#   FERRY_HUB_BIN  the host ferry-hub to upload to (default: build the debug
#                  hub in ${CARGO_TARGET_DIR:-target})
# Prints one summary line: target, readings, idle RSS of the agent process
# (under qemu, the emulator's RSS: a rough figure).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(ferry_root)"

[ $# -eq 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
target=$(cross_triple "$1")
agent_bin=$(realpath "$2")
cross_install_runner "$target"
apt_install mosquitto-clients curl jq
read -r -a runner <<<"$(cross_runner "$target")"

hub_bin="${FERRY_HUB_BIN:-}"
if [ -z "$hub_bin" ]; then
  nice -n "${FERRY_NICE:-10}" cargo build --locked -q -p ferry-hub --bin ferry-hub >&2
  hub_bin="${CARGO_TARGET_DIR:-target}/debug/ferry-hub"
fi

dir=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $status -ne 0 ]; then
    for f in "$dir"/*.log; do echo "--- $f" >&2; tail -n 40 "$f" >&2; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "cross smoke $target: FAILED: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 deadline=$(( $(date +%s) + $2 )); shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The host hub, on local disk, without auth.
hub_port=$(free_port)
# Flight SQL gets a free port of its own (by default it takes the HTTP
# port + 1, which another process may hold: CI saw that once).
flight_port=$(free_port)
cat >"$dir/hub.toml" <<EOF
[server]
listen = "127.0.0.1:$hub_port"
[flight]
listen = "127.0.0.1:$flight_port"
[storage]
backend = "fs"
path = "$dir/tables"
[tables]
commit_interval = "50ms"
[metadata]
path = "$dir/hub.db"
[auth]
enabled = false
EOF
"$hub_bin" serve --config "$dir/hub.toml" >"$dir/hub.log" 2>&1 &
pids+=($!)

# The agent's config: the target binary's own generate-config, with the
# ports, paths and hub URL of this test.
mqtt_port=$(free_port)
http_port=$(free_port)
"${runner[@]}" "$agent_bin" generate-config >"$dir/agent.toml"
sed -i \
  -e "s|^id = .*|id = \"smoke-${target%%-*}\"|" \
  -e "s|^data_dir = .*|data_dir = \"$dir/agent\"|" \
  -e "s|^listen = \"0.0.0.0:1883\"|listen = \"127.0.0.1:$mqtt_port\"|" \
  -e "s|^listen = \"127.0.0.1:9180\"|listen = \"127.0.0.1:$http_port\"|" \
  -e "s|^max_age = .*|max_age = \"200ms\"|" \
  -e "s|^hub_url = .*|hub_url = \"http://127.0.0.1:$hub_port\"|" \
  -e "s|^backoff_initial = .*|backoff_initial = \"100ms\"|" \
  -e "s|^backoff_max = .*|backoff_max = \"1s\"|" \
  "$dir/agent.toml"
grep -q "127.0.0.1:$mqtt_port" "$dir/agent.toml" || fail "generate-config output changed: no MQTT listen key"
"${runner[@]}" "$agent_bin" check-config --config "$dir/agent.toml" >"$dir/check.log" 2>&1 ||
  fail "check-config rejected the generated config"

started=$(date +%s.%N)
# Without mimalloc's options, as a user starting it by hand would.
env -u MIMALLOC_ARENA_EAGER_COMMIT -u MIMALLOC_PURGE_DELAY -u FERRY_AGENT_ALLOCATOR_OPTIONS \
  "${runner[@]}" "$agent_bin" run --config "$dir/agent.toml" >"$dir/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
wait_for "the hub on port $hub_port" 60 port_open "$hub_port"
wait_for "the agent's broker on port $mqtt_port" 60 port_open "$mqtt_port"
ready_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# Three readings at QoS 1 (acknowledged only once committed to the buffer).
for i in 1 2 3; do
  mosquitto_pub -p "$mqtt_port" -q 1 -i "smoke-$i" -t "sensors/board-$i/temperature" \
    -m "{\"celsius\": $i.5}" || fail "mosquitto_pub $i"
done

sql='{"sql": "SELECT count(*) AS n, sum(celsius) AS s FROM sensors.temperature"}'
query() { curl -sf -X POST -H 'Content-Type: application/json' -d "$sql" "http://127.0.0.1:$hub_port/api/v1/query"; }
arrived() { [ "$(query | jq -c '.data[0]')" = "[3,7.5]" ]; }
wait_for "the 3 readings at the hub" 120 arrived

# Idle footprint, once the upload is done.
sleep 2
rss_kib=$(awk '/^VmRSS/ { print $2 }' "/proc/$agent_pid/status")
# An agent started without mimalloc's options restarts itself with them
# (agent/src/main.rs). Natively, check that it did: under qemu-user the
# restart needs binfmt_misc, and the agent runs on with the defaults.
if [[ ${#runner[@]} -eq 0 ]]; then
  for option in MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0; do
    tr '\0' '\n' <"/proc/$agent_pid/environ" | grep -qx "$option" ||
      fail "the agent runs without $option (idle RSS $rss_kib KiB)"
  done
fi
status=$(curl -sf "http://127.0.0.1:$http_port/api/v1/status" || true)

kill -TERM "$agent_pid"
wait_for "the agent to exit after SIGTERM" 30 bash -c "! kill -0 $agent_pid"
agent_status=0
wait "$agent_pid" || agent_status=$?
[ "$agent_status" -eq 0 ] || fail "the agent exited with $agent_status after SIGTERM"
[ -z "$status" ] || echo "$status" | jq -c . >"$dir/status.json"

printf 'cross smoke %s: ok: 3 readings published over MQTT, uploaded and queried back; broker up in %s s; idle RSS %d KiB%s\n' \
  "$target" "$ready_s" "$rss_kib" "${runner[*]:+ (under ${runner[-1]})}"
