#!/usr/bin/env bash
# Set up a machine to build and run Osprey: checks the Rust toolchain, then builds the release binary.
# Usage: ./scripts/setup.sh            (then: cargo run --release -- demo)
#        ./scripts/setup.sh --tests    (only what the test suite needs; no release build)
set -euo pipefail
cd "$(dirname "$0")/.."

need_rust="1.94"
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed. Install Rust $need_rust or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have" | sort -V | head -n1)" != "$need_rust" ]; then
  echo "setup: rustc $have is older than $need_rust; run 'rustup update stable'." >&2
  exit 1
fi
# C compiler for the few crates that build C (zstd in Parquet).
if ! command -v cc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing a C compiler (build-essential)"
    (apt-get update -qq && apt-get install -y -qq build-essential) >/dev/null
  else
    echo "setup: no C compiler found; install gcc or clang." >&2
    exit 1
  fi
fi

if [ "${1:-}" = "--tests" ]; then
  exit 0
fi
echo "setup: building the release binary (about 15 minutes on 2 cores the first time; incremental after)"
cargo build --release --locked
echo "setup: done. Run: cargo run --release -- demo"
