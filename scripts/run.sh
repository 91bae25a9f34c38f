#!/usr/bin/env bash
# Builds and runs the Confab desktop app: `scripts/run.sh [--profile NAME] [--server URL]`.
# With no server configured it starts the server embedded in the app on 127.0.0.1:7373.
# Installs the system packages it needs first; needs Rust (rustup) and Node.js 20+ with npm.
# (Only the server: `cargo run --release -p confab-server`.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer" >&2; exit 1; }
# The app embeds the built web UI (ui/dist) when it compiles: build the UI first.
if ! [ node_modules/.package-lock.json -nt package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run --silent build
exec cargo run --release --locked -q -p confab -- "$@"
