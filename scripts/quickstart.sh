#!/usr/bin/env bash
# Starts Ferry on embedded defaults: a hub on local disk and an agent with its
# MQTT broker, then shows how to publish and query. Usage: scripts/quickstart.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$(ferry_root)"
ensure_rust

log "building ferry-agent and ferry-hub (release)"
cargo build --release --locked -p ferry-agent -p ferry-hub
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/ferry-hub"
"$bin/ferry-agent"
cat <<'MSG'

The protocols crate is in place; the agent and the hub are being built.
Once they land, this command starts both and prints how to publish with
mosquitto_pub and query with curl.
MSG
