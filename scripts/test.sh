#!/usr/bin/env bash
# Runs Ferry's whole test suite: unit, property, fuzz-corpus regression and
# integration tests. Installs what the tests need. Usage: scripts/test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$(ferry_root)"
ensure_rust

log "cargo test (workspace)"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
