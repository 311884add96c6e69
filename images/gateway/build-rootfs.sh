#!/usr/bin/env bash
# A generic arm64 (Raspberry Pi 3/4/5, industrial arm64) Debian root
# filesystem with ferry-agent installed and enabled, built with mmdebstrap
# under qemu-user-static; then the agent is started inside it (emulated)
# and must accept an MQTT publish. Run manually (root, a few minutes); not
# part of CI. See docs/cross-build.md, "Gateway image".
#
# Usage: images/gateway/build-rootfs.sh [OUT_DIR]   (default /var/tmp/ferry-rootfs)
# Environment:
#   FERRY_DEB     the arm64 .deb to install (default: build it, gateway profile)
#   FERRY_SUITE   Debian suite (default bookworm)
#   FERRY_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# Needs binfmt_misc (qemu-user-static registers qemu-aarch64 there); in a
# container, binfmt_misc must be mountable.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/lib/common.sh"
cd "$(ferry_root)"
out="${1:-/var/tmp/ferry-rootfs}"
suite="${FERRY_SUITE:-bookworm}"
mirror="${FERRY_MIRROR:-http://deb.debian.org/debian}"
[ "$(id -u)" -eq 0 ] || { echo "run as root (mmdebstrap, chroot)" >&2; exit 1; }

apt_install mmdebstrap qemu-user-static binfmt-support arch-test mosquitto-clients
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
arch-test arm64 >/dev/null || { echo "this host cannot run arm64 binaries (binfmt_misc + qemu-user-static)" >&2; exit 1; }

deb="${FERRY_DEB:-}"
[ -n "$deb" ] || deb=$(images/deb/build.sh arm64 gateway)
deb=$(realpath "$deb")

rm -rf "$out"
mkdir -p "$out"
log "mmdebstrap $suite arm64 into $out"
start=$(date +%s)
# The package's postinst creates the user and enables the unit; inside the
# chroot it must not start anything (no /run/systemd/system, and chroot).
mmdebstrap --arch=arm64 --variant=minbase \
  --include=systemd,systemd-sysv,adduser,ca-certificates,iproute2,netbase,ifupdown,openssh-server,systemd-timesyncd \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook="chroot \"\$1\" apt-get install -y --no-install-recommends /tmp/$(basename "$deb")" \
  --customize-hook="rm \"\$1\"/tmp/$(basename "$deb")" \
  --customize-hook="copy-in images/gateway/ferry-firstboot /usr/local/sbin" \
  --customize-hook="copy-in images/gateway/ferry-firstboot.service /etc/systemd/system" \
  --customize-hook="chroot \"\$1\" systemctl enable ferry-firstboot.service" \
  "$suite" "$out/rootfs" "$mirror"
log "rootfs built in $(( $(date +%s) - start )) s"

r="$out/rootfs"
log "checks inside the rootfs"
chroot "$r" dpkg -s ferry-agent | sed -n 's/^\(Version\|Architecture\|Status\): /  \1: /p'
chroot "$r" systemctl is-enabled ferry-agent.service ferry-firstboot.service
chroot "$r" id ferry
grep -q '^/etc/ferry/agent.toml$' "$r/var/lib/dpkg/info/ferry-agent.conffiles"
[ ! -e "$r/var/lib/ferry-agent/buffer.db" ] || { echo "the agent ran during install" >&2; exit 1; }
chroot "$r" /usr/bin/ferry-agent check-config --config /etc/ferry/agent.toml

log "running the installed agent in the rootfs (as user ferry, under qemu)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)
sed -e "s|^listen = \"0.0.0.0:1883\"|listen = \"127.0.0.1:$port\"|" \
  -e "s|^listen = \"127.0.0.1:9180\"|listen = \"127.0.0.1:$http_port\"|" \
  -e 's|^data_dir = .*|data_dir = "/tmp/ferry-agent"|' "$r/etc/ferry/agent.toml" >"$r/tmp/agent.toml"
chroot "$r" setpriv --reuid=ferry --regid=ferry --init-groups /usr/bin/ferry-agent run --config /tmp/agent.toml \
  >"$out/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
deadline=$(( $(date +%s) + 60 ))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { cat "$out/agent.log"; echo "the agent did not start" >&2; exit 1; }
  sleep 0.5
done
mosquitto_pub -p "$port" -q 1 -t sensors/rootfs/temperature -m '{"celsius": 20.5}'
sleep 1
chroot "$r" /usr/bin/ferry-agent status --http "127.0.0.1:$http_port" | tee "$out/status.txt"
grep -q . "$out/status.txt"
kill -TERM $agent
wait $agent || { cat "$out/agent.log"; echo "the agent did not stop cleanly" >&2; exit 1; }
ls -l "$r/tmp/ferry-agent/"
rm -rf "$r/tmp/ferry-agent" "$r/tmp/agent.toml"

log "packing $out/ferry-gateway-arm64-rootfs.tar.zst"
tar --numeric-owner -C "$r" -I 'zstd -T0 -12' -cf "$out/ferry-gateway-arm64-rootfs.tar.zst" .
du -sh "$r" "$out/ferry-gateway-arm64-rootfs.tar.zst"
