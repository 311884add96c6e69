#!/usr/bin/env bash
# Cross-builds ferry-agent for a gateway. Installs what it needs (rustup
# target, Debian cross packages, zig + cargo-zigbuild) and prints the path of
# the built binary on stdout (everything else goes to stderr).
#
# Usage: cross/build.sh TARGET [PROFILE]
#   TARGET   aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf |
#            aarch64-unknown-linux-musl | x86_64-unknown-linux-musl
#            (short forms: aarch64-gnu, armv7-gnu, aarch64-musl, x86_64-musl)
#   PROFILE  gateway (default: small, what packages ship) |
#            cross-ci (CI: same code at opt-level 0, builds in half the CPU time)
#
# Environment:
#   FERRY_CROSS_TOOL   zig (default) | gcc   which C compiler and linker
#   FERRY_CROSS_GLIBC  oldest glibc the gnu builds run on with zig (2.28)
#   FERRY_CROSS_TARGET_DIR  the cargo target directory for cross builds,
#                      default /var/tmp/ferry-cross-target: kept between runs,
#                      created when absent, separate from the host builds'
#                      CARGO_TARGET_DIR
#
# See docs/cross-build.md and docs/decisions/0003-cross-toolchain.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(ferry_root)"

[ $# -ge 1 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
target=$(cross_triple "$1")
profile="${2:-gateway}"
tool="${FERRY_CROSS_TOOL:-zig}"
glibc="${FERRY_CROSS_GLIBC:-2.28}"
export CARGO_TARGET_DIR="${FERRY_CROSS_TARGET_DIR:-/var/tmp/ferry-cross-target}"
mkdir -p "$CARGO_TARGET_DIR"

ensure_rust
cross_install_target "$target" "$tool"

# The C parts (bundled SQLite, zstd, ring) are built by the cc crate, which
# reads CC_<triple>/AR_<triple>; rustc links with CARGO_TARGET_<TRIPLE>_LINKER.
triple_env=${target//-/_}
TRIPLE_ENV=${triple_env^^}
cargo_cmd=(build)
cargo_target="$target"
case "$tool" in
  zig)
    cargo_cmd=(zigbuild)
    # cargo-zigbuild picks the glibc version from the target suffix.
    case "$target" in *-gnu*) cargo_target="$target.$glibc" ;; esac
    ;;
  gcc)
    case "$target" in
      aarch64-unknown-linux-gnu) cc=aarch64-linux-gnu-gcc ar=aarch64-linux-gnu-ar ;;
      armv7-unknown-linux-gnueabihf) cc=arm-linux-gnueabihf-gcc ar=arm-linux-gnueabihf-ar ;;
      x86_64-unknown-linux-musl) cc=musl-gcc ar=ar ;;
      *) echo "FERRY_CROSS_TOOL=gcc cannot build $target (Debian has no aarch64 musl gcc): use zig" >&2; exit 2 ;;
    esac
    export "CC_${triple_env}=$cc" "AR_${triple_env}=$ar"
    [ "$cc" = musl-gcc ] || export "CARGO_TARGET_${TRIPLE_ENV}_LINKER=$cc"
    ;;
  *) echo "FERRY_CROSS_TOOL must be zig or gcc, not $tool" >&2; exit 2 ;;
esac

log "building ferry-agent for $cargo_target (profile $profile, $tool, target dir $CARGO_TARGET_DIR)"
start=$(date +%s)
nice -n "${FERRY_NICE:-10}" cargo "${cargo_cmd[@]}" --locked -p ferry-agent --bin ferry-agent \
  --profile "$profile" --target "$cargo_target" >&2
bin="$CARGO_TARGET_DIR/$target/$profile/ferry-agent"
log "built $bin in $(( $(date +%s) - start )) s: $(stat -c %s "$bin") bytes"
echo "$bin"
