#!/usr/bin/env bash
# Runs Confab. Until the desktop app lands (issue 3) this is the server on 127.0.0.1:7373;
# talk to it with confab-cli (see README). Installs the system packages it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
command -v cargo >/dev/null || { echo "cargo not found: install Rust from rustup.rs" >&2; exit 1; }
cargo build --release --locked -p confab-server -p confab-client
exec cargo run --release --locked -q -p confab-server -- "$@"
