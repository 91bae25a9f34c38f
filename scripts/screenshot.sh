#!/usr/bin/env bash
# Takes the README's screenshot (docs/screenshots/home.png, and notification.png, space.png,
# settings.png beside it): the real app under Xvfb at
# 1280x800 with a scratch profile, live demo spaces (src-tauri/examples/demo.rs) and a few
# followed hosts. Needs xvfb, dbus, dunst, xdotool, pulseaudio, sox and ImageMagick
# (scripts/deps.sh test installs them).
# Usage: scripts/screenshot.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-docs/screenshots}")
mkdir -p "$out"
if ! [ node_modules/.package-lock.json -nt package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run --silent build
cargo build -q -p confab --bin confab --example demo
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cat > "$scratch/inner.sh" <<INNER
set -euo pipefail
# A scratch profile: nothing of the user's is read or written.
export XDG_DATA_HOME=$scratch/data XDG_CONFIG_HOME=$scratch/config XDG_CACHE_HOME=$scratch/cache
dunst >/dev/null 2>&1 & dunst=\$!
# Virtual audio devices (a private PulseAudio): a microphone that hears a soft tone, so the
# settings page's level meter moves, and a speaker nobody hears.
export XDG_RUNTIME_DIR=$scratch/run; mkdir -m 0700 "\$XDG_RUNTIME_DIR"
printf '%s\n' 'load-module module-native-protocol-unix auth-anonymous=1' \
  'load-module module-null-sink sink_name=speaker sink_properties=device.description=Headphones' \
  'load-module module-null-sink sink_name=micfeed' \
  'load-module module-virtual-source source_name=vmic master=micfeed.monitor source_properties=device.description=USB_Microphone' \
  'set-default-sink speaker' 'set-default-source vmic' > "$scratch/test.pa"
pulseaudio --daemonize=no --exit-idle-time=-1 -n -F "$scratch/test.pa" >/dev/null 2>&1 & pulse=\$!
sleep 1
sox -n -r 48000 -c 1 "$scratch/tone.wav" synth 120 sine 220 tremolo 3 60 vol 0.4
paplay -d micfeed "$scratch/tone.wav" & tone=\$!
"$target/debug/confab" --profile shot > "$scratch/app.log" 2>&1 & app=\$!
for _ in \$(seq 100); do curl -fs http://127.0.0.1:7373/healthz >/dev/null 2>&1 && break; sleep 0.2; done
"$target/debug/examples/demo" http://127.0.0.1:7373 \
  --seed-profile "$scratch/data/confab/profiles/shot/confab.sqlite3" > "$scratch/demo.log" 2>&1 & demo=\$!
for _ in \$(seq 100); do grep -q ready "$scratch/demo.log" && break; sleep 0.2; done
sleep 5
# The followed hosts' "is live" notifications are on screen now: keep one picture of them.
import -window root "$out/notification.png"
dunstctl close-all; sleep 0.5
import -window root "$out/home.png"
# A live space, opened the way a clicked link would: a second confab of the profile hands
# the link to the running one. Then Settings (third in the menu once in a space).
space=\$(sed -n 's/^space \([a-z2-7]*\) .*/\1/p' "$scratch/demo.log" | head -n 1)
"$target/debug/confab" --profile shot "confab://space/\$space" >/dev/null 2>&1; sleep 2
import -window root "$out/space.png"
xdotool mousemove 87 171 click 1; sleep 1.5 # the third menu item at 1280x800
import -window root "$out/settings.png"
kill \$demo \$app; wait \$demo \$app 2>/dev/null || true
kill \$tone \$pulse \$dunst 2>/dev/null || true
INNER
xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash "$scratch/inner.sh"
echo "wrote $out/{home,notification,space,settings}.png"
