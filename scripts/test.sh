#!/usr/bin/env bash
# Run every test: unit tests, integration tests (tests/), and a compile check of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
./scripts/setup.sh --tests
# Benchmarks must keep compiling; they run with `cargo bench`, not here.
cargo test --locked --benches --no-run --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
