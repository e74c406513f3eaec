#!/usr/bin/env bash
# The real OpenTelemetry Collector (OTLP receiver, Kafka exporter) and the official Python SDK,
# for the OpenTelemetry tests: `install` builds the Collector from its published Go modules
# (collector v0.165.0, contrib v0.165.1; about 3 minutes the first time) into the cache and
# installs the SDK into a venv there; `env` prints the variables the tests read.
#   ./scripts/otelcol.sh install && eval "$(./scripts/otelcol.sh env)"
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${OSPREY_CACHE:-$HOME/.cache/osprey}"
VERSION=0.165.0
CONTRIB=0.165.1
BIN="$CACHE/otelcol-$VERSION/otelcol-osprey"
VENV="$CACHE/otel-venv"

install_collector() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null || { echo "otelcol: Go is needed to build the Collector (go 1.24 or later)" >&2; exit 1; }
  local src="$CACHE/otelcol-$VERSION/src"
  rm -rf "$src" && mkdir -p "$src"
  cp scripts/otelcol/main.go "$src/"
  echo "otelcol: building the OpenTelemetry Collector $VERSION (OTLP receiver, Kafka exporter $CONTRIB) into $BIN"
  (
    cd "$src"
    go mod init osprey/otelcol >/dev/null 2>&1
    go get go.opentelemetry.io/collector/otelcol@v$VERSION go.opentelemetry.io/collector/receiver/otlpreceiver@v$VERSION \
      github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter@v$CONTRIB >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    go build -o "$BIN" .
  )
}

install_sdk() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import opentelemetry.exporter.otlp.proto.http" 2>/dev/null && return 0
  echo "otelcol: installing the OpenTelemetry Python SDK into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
}

case "${1:-}" in
  install) install_collector; install_sdk ;;
  env) echo "export OSPREY_OTELCOL=$BIN OSPREY_OTEL_PYTHON=$VENV/bin/python" ;;
  *) echo "usage: $0 install|env" >&2; exit 2 ;;
esac
