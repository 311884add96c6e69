#!/usr/bin/env bash
# Builds the ferry-agent .deb for one Debian architecture from a cross-built
# binary (hand-rolled dpkg-deb layout: no debhelper, no cargo-deb), then
# lints it with lintian. Prints the path of the .deb on stdout.
#
# Usage: images/deb/build.sh ARCH [PROFILE]
#   ARCH     amd64 (x86_64-unknown-linux-musl, static) |
#            arm64 (aarch64-unknown-linux-gnu, glibc >= 2.28) |
#            armhf (armv7-unknown-linux-gnueabihf, glibc >= 2.28; ARMv7+)
#   PROFILE  gateway (default: what releases ship) | cross-ci
# Environment:
#   FERRY_AGENT_BIN  use this binary instead of running cross/build.sh
#   FERRY_DEB_OUT    output directory (default: target/deb, or
#                    $CARGO_TARGET_DIR/deb when set)
#   FERRY_LINT       1 (default): run lintian and fail on any error
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/lib/common.sh"
source "$here/../../cross/lib.sh"
cd "$(ferry_root)"

[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
arch=$1
profile="${2:-gateway}"
case "$arch" in
  amd64) target=x86_64-unknown-linux-musl depends="adduser" ;;
  arm64) target=aarch64-unknown-linux-gnu depends="libc6 (>= 2.28), adduser" ;;
  armhf) target=armv7-unknown-linux-gnueabihf depends="libc6 (>= 2.28), adduser" ;;
  *) echo "ARCH must be amd64, arm64 or armhf, not $arch" >&2; exit 2 ;;
esac
apt_install dpkg-dev lintian

bin="${FERRY_AGENT_BIN:-}"
[ -n "$bin" ] || bin=$(cross/build.sh "$target" "$profile")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out="${FERRY_DEB_OUT:-${CARGO_TARGET_DIR:-target}/deb}"
mkdir -p "$out"
deb="$out/ferry-agent_${version}_${arch}.deb"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
pkg="$root/ferry-agent"
doc="$pkg/usr/share/doc/ferry-agent"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/ferry" "$pkg/lib/systemd/system" \
  "$doc" "$pkg/usr/share/lintian/overrides"
install -m 0755 "$bin" "$pkg/usr/bin/ferry-agent"
install -m 0644 systemd/ferry-agent.service "$pkg/lib/systemd/system/"
install -m 0644 docs/agent.md "$doc/agent.md"
install -m 0644 images/deb/copyright "$doc/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")/" \
  images/deb/changelog | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
# Overrides, with their reasons; the static-binary one only for the musl build.
if [ "$arch" = amd64 ]; then
  cp images/deb/lintian-overrides "$pkg/usr/share/lintian/overrides/ferry-agent"
else
  sed '/amd64 ships the static musl build/,/statically-linked-binary/d' images/deb/lintian-overrides \
    >"$pkg/usr/share/lintian/overrides/ferry-agent"
fi
chmod 0644 "$pkg/usr/share/lintian/overrides/ferry-agent"

# The default config is the binary's own generate-config output, with the
# state directory the unit creates (StateDirectory=ferry-agent).
read -r -a runner <<<"$(cross_runner "$target")"
cross_install_runner "$target"
"${runner[@]}" "$bin" generate-config |
  sed 's|^data_dir = .*|data_dir = "/var/lib/ferry-agent"|' >"$pkg/etc/ferry/agent.toml"
chmod 0644 "$pkg/etc/ferry/agent.toml"
grep -q '^data_dir = "/var/lib/ferry-agent"' "$pkg/etc/ferry/agent.toml" ||
  { echo "generate-config output has no data_dir key" >&2; exit 1; }

for script in postinst prerm postrm; do
  install -m 0755 "images/deb/$script" "$pkg/DEBIAN/$script"
done
echo /etc/ferry/agent.toml >"$pkg/DEBIAN/conffiles"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
  -e "s/@SIZE@/$(du -k -s --exclude=DEBIAN "$pkg" | cut -f1)/" images/deb/control >"$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
log "built $deb ($(stat -c %s "$deb") bytes)"
if [ "${FERRY_LINT:-1}" = 1 ]; then
  lint=$(lintian --fail-on none --info "$deb" 2>&1 || true)
  [ -z "$lint" ] || echo "$lint" >&2
  if grep -q '^E:' <<<"$lint"; then
    echo "lintian: errors in $deb" >&2
    exit 1
  fi
  log "lintian: $(grep -c '^E:' <<<"$lint" || true) errors, $(grep -c '^W:' <<<"$lint" || true) warnings"
fi
echo "$deb"
