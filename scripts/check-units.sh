#!/usr/bin/env bash
# Verifies the systemd units in systemd/ and scores their hardening:
# `systemd-analyze verify` must be clean, and `systemd-analyze security`
# must rate each unit at an exposure of 2.0 or less.
# Usage: scripts/check-units.sh [bin-dir]   (default: the debug build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$(ferry_root)"
command -v systemd-analyze >/dev/null || apt_install systemd
bin_dir="${1:-${CARGO_TARGET_DIR:-target}/debug}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for unit in systemd/*.service; do
  name=$(basename "$unit")
  binary=${name%.service}
  [ -x "$bin_dir/$binary" ] || cargo build --locked -q -p "$binary"
  # verify checks that ExecStart exists: point it at the built binary.
  sed "s|/usr/bin/$binary|$(realpath "$bin_dir/$binary")|" "$unit" > "$work/$name"
  if ! out=$(systemd-analyze verify "$work/$name" 2>&1) || [ -n "$out" ]; then
    echo "units: $name: systemd-analyze verify failed:"
    echo "$out"
    status=1
  fi
  score=$(systemd-analyze security --offline=yes "$work/$name" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  if [ -z "$score" ] || awk -v s="$score" 'BEGIN { exit !(s > 2.0) }'; then
    echo "units: $name: exposure ${score:-unknown} is above 2.0"
    status=1
  else
    echo "units: $name: verify clean, exposure $score"
  fi
done
exit $status
