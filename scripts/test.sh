#!/usr/bin/env bash
# Run every test: unit tests, integration tests (tests/, the Kafka ones through a real broker),
# and a compile check of the benchmarks.
# Uses the broker at OSPREY_TEST_BROKERS when set; otherwise starts one with
# scripts/broker.sh on a free port and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
./scripts/setup.sh --tests

if [ -z "${OSPREY_TEST_BROKERS:-}" ]; then
  export OSPREY_BROKER_PORT="${OSPREY_BROKER_PORT:-19092}"
  ./scripts/broker.sh start
  trap './scripts/broker.sh stop' EXIT
  export OSPREY_TEST_BROKERS="127.0.0.1:$OSPREY_BROKER_PORT"
fi
echo "tests: broker at $OSPREY_TEST_BROKERS"

# Benchmarks must keep compiling; they run with `cargo bench`, not here.
cargo test --locked --benches --no-run --quiet
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast || status=$?
else
  cargo test --locked --no-fail-fast || status=$?
fi
exit $status
