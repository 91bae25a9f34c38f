#!/usr/bin/env bash
# Prints the desktop app's idle memory (PSS of the app and every process it started, WebKit's
# included) and the size of its .deb, against the targets (<= 120 MB, <= 15 MB).
# Usage: scripts/bench-app.sh [seconds-idle]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-15}
scripts/deps.sh test
[ -d node_modules ] || npm ci --no-audit --no-fund
echo "== building the release app and its .deb (a few minutes the first time)" >&2
npx --no-install tauri build --bundles deb >&2
target=${CARGO_TARGET_DIR:-target}
deb=$(ls -t "$target"/release/bundle/deb/*.deb | head -n 1)
app="$target/release/confab"

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# A fresh profile in a throwaway data directory, on a private X server and session bus.
XDG_DATA_HOME="$data" xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- \
  "$app" --profile bench >"$data/app.log" 2>&1 &
runner=$!
sleep "$idle"

# The app is the process running $app; sum it and all its descendants.
root=$(pgrep -n -f "^$app --profile bench" || true)
if [ -z "$root" ]; then
  echo "the app did not start; its log:" >&2; cat "$data/app.log" >&2; exit 1
fi
pids=$(ps -e -o pid=,ppid= | awk -v root="$root" '
  { parent[$1] = $2 } END {
    for (p in parent) { q = p; while (q != "" && q != 0 && q != 1) { if (q == root) { print p; break } q = parent[q] } }
  }')
# CPU while idle: clock ticks (utime + stime) of all of them over 10 s.
ticks() { for p in $pids; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0; done | awk '{ s += $1 } END { print s + 0 }'; }
t0=$(ticks); sleep 10; t1=$(ticks)
cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz / 10 * 100 }')
total_kb=0
for p in $pids; do
  kb=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
  name=$(cat "/proc/$p/comm" 2>/dev/null || echo "?")
  awk -v n="$name" -v p="$p" -v kb="${kb:-0}" 'BEGIN { printf "  %-24s pid %-7s %7.1f MB\n", n, p, kb / 1024 }'
  total_kb=$((total_kb + ${kb:-0}))
done
kill "$root" 2>/dev/null || true
wait "$runner" 2>/dev/null || true

deb_bytes=$(stat -c %s "$deb")
awk -v s="$idle" -v kb="$total_kb" 'BEGIN {
  printf "idle memory (PSS, app + WebKit, after %s s): %.1f MB   target <= 120 MB   ratio %.2f\n", s, kb / 1024, kb / 1024 / 120 }'
echo "idle CPU (app + WebKit, over 10 s): ${cpu} % of one core"
awk -v f="$(basename "$deb")" -v b="$deb_bytes" 'BEGIN {
  printf ".deb size (%s): %.1f MB   target <= 15 MB   ratio %.2f\n", f, b / 1048576, b / 1048576 / 15 }'
