#!/usr/bin/env bash
# Installs (as root, with apt) or names (otherwise) the system packages Confab needs to build
# and test on Debian/Ubuntu. Usage: scripts/deps.sh [build|test]
set -euo pipefail
what=${1:-test}

# Audio stack (libopus via cmake, ALSA/PulseAudio), then the desktop app (Tauri v2: WebKitGTK,
# GTK, the tray's appindicator, librsvg for icons, libxdo; `file` and patchelf for bundling);
# libdbus for the device key in the Secret Service.
build_pkgs=(build-essential pkg-config cmake libssl-dev libasound2-dev libpulse-dev
  file libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev
  patchelf libdbus-1-dev)
# Virtual audio devices; a virtual display, a session bus and a notification daemon for the
# app's window and notifications (a scripted one in python3-dbus for the unit test);
# ImageMagick and xdotool for screenshots; python3-xlib to close a window as a user would;
# WebKitWebDriver, which tauri-driver drives for the end-to-end test; gnome-keyring, a real
# Secret Service for the device-key test; an emoji font, so the reactions the UI test clicks and
# screenshots are drawn (every desktop has one; a bare server does not). For the audio benchmark
# (scripts/bench-audio.sh): espeak-ng speaks its PESQ speech, iproute2 and iptables make its
# impaired network (this kernel has no netem: NFQUEUE instead), python3-venv holds PESQ.
# nats-server is the bus the multi-node test (tests/cluster) starts for its server nodes.
test_pkgs=(pulseaudio pulseaudio-utils sox xvfb xauth dbus dbus-x11 dunst libnotify-bin imagemagick xdotool
  python3-dbus python3-gi python3-xlib webkit2gtk-driver gnome-keyring fonts-noto-color-emoji
  espeak-ng iproute2 iptables python3-venv nats-server)
pkgs=("${build_pkgs[@]}")
if [ "$what" = test ]; then pkgs+=("${test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "Confab needs these Debian/Ubuntu packages (or your system's equivalents): ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "Missing packages: ${missing[*]}. Install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "Installing: ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
