#!/usr/bin/env bash
# Runs every Confab test: formatting, the web UI's type check, build and unit tests, lints,
# then the Rust unit, integration and whole-system tests.
# Installs the system packages it needs first (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer" >&2; exit 1; }
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The desktop end-to-end test drives the real app through tauri-driver (WebDriver).
if ! command -v tauri-driver >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]; then
  echo "== installing tauri-driver (about a minute, once)"
  cargo install tauri-driver --locked --version 2.1.0
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "== cargo fmt --check"
cargo fmt --all -- --check
# The app embeds ui/dist when it compiles, so the UI is built before clippy and the tests.
echo "== web UI: npm ci, type check and build, unit tests"
if ! [ node_modules/.package-lock.json -nt package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run --silent build
NO_COLOR=1 npm run --silent test 2>&1 | tee -a "$log" || status=$?
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# Audio-over-WebRTC tests run in real time: at most two tests of a binary at once.
cargo test --workspace --locked -- --test-threads=2 2>&1 | tee -a "$log" || status=$?
# One closing line over every test binary: cargo prints one per binary (doc tests last),
# vitest one "Tests  N failed | N passed (N)" line.
awk '/^test result:/ || /^ *Tests +[0-9]/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
