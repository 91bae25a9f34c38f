#!/usr/bin/env bash
# Prints the audio engine's figures of issue 5 in one run (at most about 5 minutes): mouth-to-ear
# latency p50/p95 on a clean loopback and under 40 +- 10 ms jitter with 1 % loss, client CPU
# (a speaker's path without and with noise suppression, a listener of 3 speakers), PESQ
# wideband MOS at 0 % and 5 % loss and of noisy speech with noise suppression on and off, each
# against its target. Needs root for the network namespaces (unshare --net) and the impairment
# (iptables NFQUEUE); without root the impaired figures are reported as not measured.
# Usage: scripts/bench-audio.sh [confab-bench audio options, e.g. --keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

# System tools: PulseAudio for the virtual devices, espeak-ng for real speech, iptables and
# iproute2 for the impaired network, python3-venv for PESQ.
need=(pulseaudio:pulseaudio paplay:pulseaudio-utils parec:pulseaudio-utils espeak-ng:espeak-ng
  iptables:iptables ip:iproute2 unshare:util-linux cmake:cmake)
missing=()
for pair in "${need[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing: ${missing[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  else
    echo "Missing Debian packages: ${missing[*]} (install them as root, or run scripts/deps.sh test)" >&2
    exit 1
  fi
fi

# PESQ (the PyPI package `pesq`, which builds a C extension) in a venv beside the build.
venv=${CONFAB_PESQ_VENV:-$target/pesq-venv}
if ! "$venv/bin/python" -c 'import pesq, numpy' 2>/dev/null; then
  echo "== making $venv with pesq and numpy" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pesq numpy >&2
fi

echo "== building confab-bench (release)" >&2
cargo build --release -p confab-tests --bin confab-bench >&2
CONFAB_PESQ_PYTHON="$venv/bin/python" exec "$target/release/confab-bench" audio "$@"
