#!/usr/bin/env bash
# CI for the gateway builds: cross-builds ferry-agent for the four targets,
# runs the end-to-end smoke test of each (ARM under qemu-user), builds the
# three .deb packages and lints them. Installs what it needs.
#
# Usage: scripts/cross-ci.sh [PROFILE]
#   PROFILE  cross-ci (default: fast to build, same code and features) |
#            gateway (what releases ship: fat LTO, opt-level "z")
# Environment: FERRY_HUB_BIN (the host hub the smoke tests upload to; default:
# the debug build in ${CARGO_TARGET_DIR:-target}), FERRY_CROSS_TARGET_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../cross/lib.sh"
cd "$(ferry_root)"
profile="${1:-cross-ci}"

if [ -z "${FERRY_HUB_BIN:-}" ]; then
  nice -n "${FERRY_NICE:-10}" cargo build --locked -q -p ferry-hub --bin ferry-hub
  FERRY_HUB_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/debug/ferry-hub")"
fi
export FERRY_HUB_BIN
export FERRY_DEB_OUT="${FERRY_CROSS_TARGET_DIR:-/var/tmp/ferry-cross-target}/deb"

status=0
summary=()
declare -A bins
for target in "${CROSS_TARGETS[@]}"; do
  start=$(date +%s)
  if ! bin=$(cross/build.sh "$target" "$profile"); then
    summary+=("cross: $target: BUILD FAILED")
    status=1
    continue
  fi
  bins[$target]=$bin
  built=$(( $(date +%s) - start ))
  # Test-only fault injection (agent/src/supervise/fault.rs) is never shipped.
  if grep -aq -e "/debug/fault/" -e "injected fault in" "$bin"; then
    summary+=("cross: $target: the shipped binary contains the test-only fault injection")
    status=1
  fi
  start=$(date +%s)
  if line=$(cross/smoke.sh "$target" "$bin"); then
    summary+=("cross: $target: $(stat -c %s "$bin") bytes ($profile), built in ${built} s; smoke test in $(( $(date +%s) - start )) s: ${line#cross smoke "$target": }")
  else
    summary+=("cross: $target: SMOKE TEST FAILED")
    status=1
  fi
done

for pair in amd64:x86_64-unknown-linux-musl arm64:aarch64-unknown-linux-gnu armhf:armv7-unknown-linux-gnueabihf; do
  arch=${pair%%:*} target=${pair#*:}
  [ -n "${bins[$target]:-}" ] || { summary+=("deb: $arch: no binary"); status=1; continue; }
  if deb=$(FERRY_AGENT_BIN="${bins[$target]}" images/deb/build.sh "$arch" "$profile"); then
    summary+=("deb: $arch: $(basename "$deb"), $(stat -c %s "$deb") bytes, lintian: no errors")
  else
    summary+=("deb: $arch: BUILD OR LINT FAILED")
    status=1
  fi
done

printf '%s\n' "${summary[@]}"
exit $status
