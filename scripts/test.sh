#!/usr/bin/env bash
# Run every test: unit tests, integration tests (tests/, the Kafka ones through a real broker),
# and a compile check of the benchmarks.
# Uses the broker at OSPREY_TEST_BROKERS when set; otherwise starts Apache Kafka with
# scripts/broker.sh (installed once into ~/.cache/osprey) on port 19092 and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
./scripts/setup.sh --tests

# The Alertmanager tests run Debian's prometheus-alertmanager (started by the tests themselves).
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then
  echo "tests: installing prometheus-alertmanager"
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq prometheus-alertmanager || (apt-get update -qq && apt-get install -y -qq prometheus-alertmanager)) >/dev/null
  else
    echo "tests: install Alertmanager (prometheus-alertmanager) and run this again" >&2
    exit 1
  fi
fi

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
