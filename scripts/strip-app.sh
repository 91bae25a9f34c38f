#!/usr/bin/env bash
# Tauri's beforeBundleCommand: strips the debug info (kept by the release profile for
# backtraces) from the binary that goes into the .deb, which makes it about a quarter the size.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${TAURI_ENV_DEBUG:-false}" = true ]; then profile=debug; fi
strip --strip-debug "${CARGO_TARGET_DIR:-target}/$profile/confab"
