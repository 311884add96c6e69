#!/usr/bin/env bash
# Installs the amd64 .deb into a fresh Debian chroot (mmdebstrap, native: no
# emulation) and walks the package's life: install (user, dialout, enabled
# unit, conffile, nothing started), reinstall keeping an edited conffile,
# remove, purge. Manual (root, about a minute; needs a Debian mirror).
# Usage: images/deb/test-install.sh [DEB]   (default: build the amd64 .deb)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/lib/common.sh"
cd "$(ferry_root)"
[ "$(id -u)" -eq 0 ] || { echo "run as root (mmdebstrap, chroot)" >&2; exit 1; }
apt_install mmdebstrap
deb="${1:-$(images/deb/build.sh amd64)}"
r=$(mktemp -d)
trap 'umount "$r/proc" 2>/dev/null || true; rm -rf "$r"' EXIT
mmdebstrap --quiet --variant=minbase --include=init-system-helpers,adduser bookworm "$r" \
  "${FERRY_MIRROR:-http://deb.debian.org/debian}"
cp "$deb" "$r/tmp/ferry-agent.deb"
cp /etc/resolv.conf "$r/etc/resolv.conf"
mount --bind /proc "$r/proc"
chroot "$r" sh -eu <<'IN'
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; exit 1; fi; }
cd /
apt-get install -y -qq /tmp/ferry-agent.deb >/dev/null
check "user ferry in dialout" 'id -nG ferry | grep -qw dialout'
check "unit enabled" '[ -L /etc/systemd/system/multi-user.target.wants/ferry-agent.service ]'
check "conffile" 'grep -qx /etc/ferry/agent.toml /var/lib/dpkg/info/ferry-agent.conffiles'
check "nothing started in the chroot" '[ ! -e /var/lib/ferry-agent/buffer.db ]'
check "the packaged config passes check-config" 'ferry-agent check-config --config /etc/ferry/agent.toml >/dev/null'
sed -i 's/^id = .*/id = "gw-7"/' /etc/ferry/agent.toml
dpkg -i --force-confold /tmp/ferry-agent.deb >/dev/null
check "reinstall keeps the edited conffile" 'grep -qx "id = \"gw-7\"" /etc/ferry/agent.toml'
dpkg -r ferry-agent >/dev/null
check "remove keeps the conffile" '[ -f /etc/ferry/agent.toml ] && [ ! -e /usr/bin/ferry-agent ]'
dpkg -P ferry-agent >/dev/null
check "purge removes config and unit links" '[ ! -e /etc/ferry ] && ! ls /etc/systemd/system/*/ferry-agent.service 2>/dev/null'
IN
