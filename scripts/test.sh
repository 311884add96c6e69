#!/usr/bin/env bash
# Runs Ferry's whole test suite: unit, property, fuzz-corpus replay and
# integration tests against real peers (Mosquitto, moto S3, Azurite, Python
# clients). Installs what it needs. Usage: scripts/test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/peers.sh"
cd "$(ferry_root)"
ensure_rust
install_peers

# Missing peers fail tests instead of skipping them.
export FERRY_REQUIRE_PEERS=1

log "cargo test (workspace)"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
