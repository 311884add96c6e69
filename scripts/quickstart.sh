#!/usr/bin/env bash
# Starts Ferry on embedded defaults: a hub with its tables on local disk and an
# agent with its MQTT broker, publishes a first reading, queries it back, and
# shows how to do the same by hand. Ctrl-C stops both.
#
# Usage: scripts/quickstart.sh   (state goes to ./ferry-data; ports 1883, 8000, 8001, 9180)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$(ferry_root)"
ensure_rust
apt_install mosquitto-clients curl

# The quickstart profile compiles fast (no optimisation of Ferry's own code,
# no debug info); FERRY_PROFILE=release builds what a gateway or a production
# hub runs (slower to build: LTO).
profile="${FERRY_PROFILE:-quickstart}"
log "building ferry-hub and ferry-agent ($profile profile; the first build takes a few minutes)"
cargo build --profile "$profile" --locked -p ferry-hub -p ferry-agent
dir=$profile; [ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-target}/$dir"
data="$(pwd)/ferry-data"
mkdir -p "$data"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The hub: tables in ferry-data/tables, metadata in ferry-data/hub.db.
if [ ! -f "$data/hub.toml" ]; then
  "$bin/ferry-hub" generate-config > "$data/hub.toml"
  sed -i "s|\"./ferry-data/tables\"|\"$data/tables\"|; s|\"./ferry-data/hub.db\"|\"$data/hub.db\"|" "$data/hub.toml"
fi
log "starting ferry-hub on :8000"
"$bin/ferry-hub" serve --config "$data/hub.toml" > "$data/hub.out" 2> "$data/hub.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf localhost:8000/ready >/dev/null && break; sleep 0.2; done
curl -sf localhost:8000/ready >/dev/null || { cat "$data/hub.log"; echo "the hub did not start" >&2; exit 1; }

# First start prints an admin token once; keep it for this demo.
token=$(grep -o 'ferry_[0-9a-f]*' "$data/hub.out" | head -1 || true)
if [ -n "$token" ]; then echo "$token" > "$data/admin.token"; chmod 600 "$data/admin.token"; fi
admin=$(cat "$data/admin.token")

# The agent: a write token bound to its id (ferry-agent), the default route sensors/{device}/{measurement}.
if [ ! -f "$data/agent.toml" ]; then
  agent_token=$(curl -sf -X POST localhost:8000/api/v1/auth/tokens -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d '{"name": "quickstart-gateway", "role": "write", "agents": "ferry-agent"}' \
    | sed 's/.*"token":"\([^"]*\)".*/\1/')
  "$bin/ferry-agent" generate-config > "$data/agent.toml"
  sed -i "s|^data_dir = .*|data_dir = \"$data/agent\"|; s|^# token = \"ferry_...\"|token = \"$agent_token\"|; s|^max_age = \"5s\"|max_age = \"1s\"|" "$data/agent.toml"
fi
log "starting ferry-agent (MQTT on :1883, status on 127.0.0.1:9180)"
"$bin/ferry-agent" run --config "$data/agent.toml" 2> "$data/agent.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf 127.0.0.1:9180/health >/dev/null && break; sleep 0.2; done

log "publishing a reading and querying it back"
mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t sensors/boiler-1/temperature -m '{"celsius": 21.5}'
for _ in $(seq 50); do
  answer=$(curl -s localhost:8000/api/v1/query -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d '{"sql": "SELECT * FROM sensors.temperature ORDER BY time DESC LIMIT 5"}')
  case "$answer" in *'"row_count":0'*|*'"error"'*) sleep 0.5 ;; *) break ;; esac
done
echo "$answer"

cat <<MSG

Ferry is running: the hub on http://localhost:8000, the agent's broker on
localhost:1883. Your admin token is in $data/admin.token.

Publish (any MQTT client; QoS 1 is acknowledged only once stored):
  mosquitto_pub -p 1883 -q 1 -t sensors/pump-7/pressure -m '{"bar": 2.4}'

Query:
  curl -s localhost:8000/api/v1/query -H "Authorization: Bearer \$(cat $data/admin.token)" \\
    -d '{"sql": "SELECT device, avg(bar) FROM sensors.pressure GROUP BY device"}'
  or over Arrow Flight SQL (ADBC, Grafana) on localhost:8001 with the same token.

Control Center (fleet, hub metrics, queries, tokens, alerts):
  http://localhost:8000/ui   (log in with the admin token)

Agent status:  $bin/ferry-agent status
Logs:          $data/hub.log, $data/agent.log
Press Ctrl-C to stop both.
MSG
wait
