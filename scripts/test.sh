#!/usr/bin/env bash
# Runs every Confab test: formatting, lints, unit, integration and whole-system tests.
# Installs the system packages it needs first (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
command -v cargo >/dev/null || { echo "cargo not found: install Rust from rustup.rs" >&2; exit 1; }
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# Audio-over-WebRTC tests are real-time: run test binaries' tests two at a time at most.
cargo test --workspace --locked -- --test-threads=2
