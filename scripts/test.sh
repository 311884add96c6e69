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

# Each step below runs `contained` (scripts/lib/common.sh): in a session of
# its own, stopped after FERRY_TEST_PHASE_LIMIT seconds (default 3000), with
# whatever it leaves running killed and named, so that a leftover process
# cannot keep the run from ending.
out=$(mktemp)
bench_out=$(mktemp -d)
trap 'rm -rf "$out" "$bench_out"' EXIT
log "cargo test (workspace, doc tests)"
contained cargo test --workspace --locked --doc 2>&1 | tee -a "$out"
log "cargo test (workspace, all targets)"
contained cargo test --workspace --locked --all-targets 2>&1 | tee -a "$out"
# The broker's tests once more on the fallback engine (mqtt.engine =
# "rumqttd", decision 0023); the run above used the default, Ferry's own.
# `--workspace` keeps the features of the build above: no recompilation.
log "cargo test (broker tests on mqtt.engine = \"rumqttd\")"
FERRY_TEST_MQTT_ENGINE=rumqttd contained cargo test --workspace --locked \
  --test broker_ack_gate --test broker_mosquitto --test broker_memory 2>&1 | tee -a "$out"

# The benchmark runner at --quick scale: every scenario end to end against
# the real peers (Mosquitto, DuckDB), with the debug build the tests just
# made, so the harness cannot rot. Figures from a debug build mean nothing;
# the report is thrown away. A failed scenario (or DuckDB and the hub
# disagreeing on a query's answer) fails the suite. The binary is the one the
# workspace build above made (hil-tests/bench/tests/cli.rs has it built);
# `cargo run -p ferry-bench` would compile DataFusion and delta-rs again.
log "ferry-bench all --quick (debug build)"
bench_status=0
contained "${CARGO_TARGET_DIR:-target}/debug/ferry-bench" all --quick --out "$bench_out" 2>&1 | tee -a "$out" || bench_status=1

log "systemd units (verify, security exposure)"
units_status=0
contained scripts/check-units.sh 2>&1 | tee -a "$out" || units_status=1

log "Kubernetes manifests (images/k8s: schemas, references, hub configs)"
k8s_status=0
FERRY_HUB_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/debug/ferry-hub")" contained scripts/validate-k8s.sh 2>&1 | tee -a "$out" || k8s_status=1

log "gateway builds: four cross targets, end-to-end smoke tests under qemu-user, .debs + lintian"
cross_status=0
FERRY_HUB_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/debug/ferry-hub")" contained scripts/cross-ci.sh 2>&1 | tee -a "$out" || cross_status=1

# One closing line for the whole suite.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
exit $(( units_status | cross_status | bench_status | k8s_status ))
