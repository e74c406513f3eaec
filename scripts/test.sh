#!/usr/bin/env bash
# Run every test: unit tests, integration tests (tests/, the Kafka ones through a real broker),
# and a compile check of the benchmarks.
# Uses the broker at OSPREY_TEST_BROKERS when set; otherwise starts Apache Kafka with
# scripts/broker.sh (installed once into ~/.cache/osprey) on port 19092 and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
./scripts/setup.sh --tests

# The Alertmanager tests run Debian's prometheus-alertmanager (started by the tests themselves);
# the SLO tests check Osprey's alerts with promtool (Debian's prometheus).
missing=()
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then
  missing+=(prometheus-alertmanager)
fi
if ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
# The server's page is checked in a real headless browser.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests: installing ${missing[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq "${missing[@]}" || (apt-get update -qq && apt-get install -y -qq "${missing[@]}")) >/dev/null
  else
    echo "tests: install ${missing[*]} (Alertmanager, promtool, chromium) and run this again" >&2
    exit 1
  fi
fi

# The server's OpenAPI document is checked with schemathesis (PyPI), in a venv in the cache.
if [ -z "${OSPREY_SCHEMATHESIS:-}" ]; then
  venv="$HOME/.cache/osprey/test-venv"
  if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "tests: installing schemathesis into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis
  fi
  export OSPREY_SCHEMATHESIS="$venv/bin/schemathesis"
fi

# The OpenTelemetry tests run the real Collector (built from its Go modules, once) fed by the
# official Python SDK.
if [ -z "${OSPREY_OTELCOL:-}" ]; then
  ./scripts/otelcol.sh install
  eval "$(./scripts/otelcol.sh env)"
  export OSPREY_OTELCOL OSPREY_OTEL_PYTHON
fi

if [ -z "${OSPREY_TEST_BROKERS:-}" ]; then
  export OSPREY_BROKER_PORT="${OSPREY_BROKER_PORT:-19092}"
  # Stop the broker at the end only if this run started it.
  if ./scripts/broker.sh status >/dev/null 2>&1; then
    ./scripts/broker.sh start
  else
    ./scripts/broker.sh start
    trap './scripts/broker.sh stop' EXIT
  fi
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
