#!/usr/bin/env bash
# A Kafka-protocol broker on 127.0.0.1 for the tests and for users without Docker:
# Tansu 0.6.0 (an Apache-Kafka-compatible broker in Rust) with its sqlite storage engine.
#   ./scripts/broker.sh install   build Tansu once into ~/.cache/osprey/tansu (about 11 minutes on 2 cores)
#   ./scripts/broker.sh start     start it (installing first if needed) and wait until it answers
#   ./scripts/broker.sh stop      stop it by its PID and remove its data
#   ./scripts/broker.sh status
# OSPREY_BROKER_PORT (default 9092) picks the port. With Docker, `docker compose up -d` runs
# Apache Kafka on the same port instead.
set -euo pipefail
CACHE="${OSPREY_CACHE:-$HOME/.cache/osprey}"
ROOT="$CACHE/tansu"
BIN="$ROOT/bin/tansu"
PORT="${OSPREY_BROKER_PORT:-9092}"
RUN="$CACHE/broker-$PORT"

running() {
  [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null
}

answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

install() {
  if [ ! -x "$BIN" ]; then
    echo "broker: installing Tansu 0.6.0 into $ROOT (about 11 minutes on 2 cores, once)" >&2
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$ROOT" --quiet
  fi
}

start() {
  install
  if running; then
    echo "broker: already running (pid $(cat "$RUN/pid")) on 127.0.0.1:$PORT" >&2
    return 0
  fi
  if answers; then
    echo "broker: something already listens on 127.0.0.1:$PORT; using it" >&2
    return 0
  fi
  mkdir -p "$RUN"
  # The sqlite URL is relative: Tansu runs in a fresh working directory (an absolute path does not work).
  work=$(mktemp -d "${TMPDIR:-/tmp}/osprey-broker.XXXXXX")
  echo "$work" > "$RUN/workdir"
  (
    cd "$work"
    nohup "$BIN" broker \
      --storage-engine "sqlite://tansu.db" \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      > "$RUN/broker.log" 2>&1 &
    echo $! > "$RUN/pid"
  )
  for _ in $(seq 1 150); do
    if answers; then
      echo "broker: Tansu on 127.0.0.1:$PORT (pid $(cat "$RUN/pid"), log $RUN/broker.log)" >&2
      return 0
    fi
    if ! running; then
      echo "broker: Tansu exited at start; its log:" >&2
      cat "$RUN/broker.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "broker: Tansu did not answer on 127.0.0.1:$PORT within 30 s; log: $RUN/broker.log" >&2
  return 1
}

stop() {
  if running; then
    pid=$(cat "$RUN/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "broker: stopped (pid $pid)" >&2
  fi
  rm -f "$RUN/pid"
  if [ -f "$RUN/workdir" ]; then
    rm -rf "$(cat "$RUN/workdir")"
    rm -f "$RUN/workdir"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status)
    if running; then echo "running (pid $(cat "$RUN/pid")) on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
