# Shared helpers for Ferry's scripts. Source it; do not run it.
# Every script installs what it needs itself, so that a fresh machine works.

ferry_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt_install PKG...: installs the Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: the pinned toolchain must be there (rust-toolchain.toml).
ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
}

# contained CMD...: runs CMD in a session of its own, stopped after
# $FERRY_TEST_PHASE_LIMIT seconds (default 3000), and kills whatever it
# leaves running, naming it. A process a test leaves behind (a client that
# retries forever, say) would otherwise hold the output pipe open and the
# run would never end; a test that hangs is stopped, with its output, well
# before a CI limit hides both. Interrupting the script stops CMD too.
contained() {
  local pidfile status=0 limit="${FERRY_TEST_PHASE_LIMIT:-3000}"
  pidfile=$(mktemp)
  trap 'contained_kill "$pidfile"; exit 130' INT TERM HUP
  # In the background, so that `wait` (unlike a foreground command) lets
  # the trap run at once; with SIGINT and SIGQUIT back to their defaults,
  # which a script's background commands would otherwise ignore.
  setsid -w env --default-signal=INT,QUIT bash -c 'echo $$ > "$0"; exec timeout --kill-after=30 "$1" "${@:2}"' \
    "$pidfile" "$limit" "$@" &
  wait "$!" || status=$?
  trap - INT TERM HUP
  [ "$status" -eq 124 ] && log "${1##*/} ran past $limit s (FERRY_TEST_PHASE_LIMIT) and was stopped"
  contained_kill "$pidfile"
  return "$status"
}

# contained_kill PIDFILE: kills the session whose leader's pid is in PIDFILE.
contained_kill() {
  local pgid left
  pgid=$(cat "$1" 2>/dev/null || true)
  rm -f "$1"
  [ -n "$pgid" ] || return 0
  left=$(pgrep -a -g "$pgid" | grep -v '<defunct>' || true)
  [ -n "$left" ] || return 0
  log "left running, now killed:"
  sed 's/^/  /' <<< "$left" >&2
  pkill -KILL -g "$pgid" || true
}
