#!/usr/bin/env bash
# Chat UI budget (bundle size, load to interactive, opening a long conversation):
# the release binary, then bench/web/bench.mjs in headless Chromium. Same as `make bench-web`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --bin hearth
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH_BIN=$TARGET/release/hearth node bench/web/bench.mjs
