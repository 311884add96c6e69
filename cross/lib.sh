# shellcheck shell=bash
# Helpers shared by cross/*.sh. Source it after scripts/lib/common.sh.

# The four gateway targets Ferry builds (DESIGN.md, "Cross builds").
CROSS_TARGETS=(
  aarch64-unknown-linux-gnu
  armv7-unknown-linux-gnueabihf
  aarch64-unknown-linux-musl
  x86_64-unknown-linux-musl
)

# Pinned tool versions (checked on these machines, 2026-11-26).
CARGO_ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.1

# cross_triple NAME: the full target triple for a short or full name.
cross_triple() {
  case "$1" in
    aarch64-gnu | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
    armv7-gnu | armv7 | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
    aarch64-musl | aarch64-unknown-linux-musl) echo aarch64-unknown-linux-musl ;;
    x86_64-musl | x86_64-unknown-linux-musl) echo x86_64-unknown-linux-musl ;;
    *) echo "unknown target $1 (one of: ${CROSS_TARGETS[*]})" >&2; return 2 ;;
  esac
}

# cross_install_target TRIPLE TOOL: the rustup target, the C toolchain and
# the target's C library (for qemu-user), installed when missing.
cross_install_target() {
  local target=$1 tool=$2
  rustup target list --installed | grep -qx "$target" || {
    log "rustup target add $target"
    rustup target add "$target" >&2
  }
  case "$target" in
    aarch64-unknown-linux-gnu) apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    armv7-unknown-linux-gnueabihf) apt_install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
    x86_64-unknown-linux-musl) [ "$tool" = zig ] || apt_install musl-tools ;;
  esac
  [ "$tool" = zig ] && cross_install_zig
  return 0
}

# cross_install_zig: zig (PyPI ziglang, in the project venv) and cargo-zigbuild.
cross_install_zig() {
  local venv="${FERRY_VENV:-$(ferry_root)/.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating the Python venv at $venv"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import ziglang" 2>/dev/null; then
    log "installing ziglang $ZIGLANG_VERSION (PyPI)"
    "$venv/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" >&2
  fi
  # cargo-zigbuild runs `python3 -m ziglang` when no zig is on PATH.
  case ":$PATH:" in *":$venv/bin:"*) ;; *) export PATH="$venv/bin:$PATH" ;; esac
  if [ "$(cargo-zigbuild --version 2>/dev/null)" != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]; then
    log "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION (crates.io)"
    nice -n "${FERRY_NICE:-10}" cargo install --locked --quiet "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION" >&2
  fi
}

# cross_runner TRIPLE: the command that runs a binary of TRIPLE on this host
# (qemu-user for ARM, with the target's glibc for gnu builds). The glibc
# prefix goes in the environment, not `-L`: `ferry-agent run` executes
# itself again (agent/src/main.rs), and with binfmt_misc registered the
# kernel starts that second qemu, which sees only the environment.
cross_runner() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo "env QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64" ;;
    armv7-unknown-linux-gnueabihf) echo "env QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf qemu-arm" ;;
    aarch64-unknown-linux-musl) echo "qemu-aarch64" ;;
    x86_64-unknown-linux-musl) echo "" ;;
  esac
}

# cross_install_runner TRIPLE: qemu-user and the target's shared C library.
cross_install_runner() {
  case "$1" in
    aarch64-unknown-linux-gnu) apt_install qemu-user libc6-arm64-cross ;;
    armv7-unknown-linux-gnueabihf) apt_install qemu-user libc6-armhf-cross ;;
    aarch64-unknown-linux-musl) apt_install qemu-user ;;
  esac
}
