#!/usr/bin/env bash
# A Kafka broker on 127.0.0.1 for the tests, the benchmarks and users without Docker.
#
# Default: Apache Kafka 4.4.0, one JVM in KRaft mode (broker and controller), run from its
# published jars (scripts/kafka/pom.xml lists them; Maven copies them, Java 17 runs them).
# OSPREY_BROKER=tansu: Tansu 0.6.0 (a Kafka-protocol broker in Rust, sqlite engine) for a
# machine without Java; built once with cargo (about 11 minutes on 2 cores).
#
#   ./scripts/broker.sh install   install once into ~/.cache/osprey/kafka (or .../tansu)
#   ./scripts/broker.sh start     start (installing first if needed); ready when a metadata
#                                 request answers with a live broker and a controller
#   ./scripts/broker.sh stop      stop it by its PID and remove its data
#   ./scripts/broker.sh halt      kill it (SIGKILL) but keep its data: the next start brings its topics back
#   ./scripts/broker.sh status
# OSPREY_BROKER_PORT (default 9092) picks the port; Kafka's controller listens on the port + 1.
#
# What running Apache Kafka from its jars takes, checked here (Kafka 4.4.0, OpenJDK 17, Maven 3.8):
# - org.apache.kafka:kafka_2.13:4.4.0 at runtime scope brings the server, storage, raft,
#   metadata, the coordinators, scala-library, jackson and slf4j-api 1.7.36, but no SLF4J
#   binding: the pom adds log4j-slf4j-impl (the binding for SLF4J 1.x; log4j-slf4j2-impl would
#   need slf4j-api 2) with log4j-core/api 2.25.3, configured by scripts/kafka/log4j2.properties.
# - The log directory is formatted at every start (StorageTool format with a fixed cluster id
#   and controller.quorum.voters), so each start is an empty cluster.
# - Single node: replication factor 1 and min ISR 1 for the offsets, transaction state and
#   share coordinator topics (defaults of 3 fail), a 16 MiB cleaner dedupe buffer (the 128 MiB
#   default does not fit a 512 MiB heap), no initial rebalance delay (group joins in
#   milliseconds instead of 3 s).
# - No time-based retention (log.retention.ms=-1): test and benchmark data carries event times
#   months in the past as message timestamps, and the default 7 days would delete a rolled
#   segment of it minutes after it was written.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${OSPREY_CACHE:-$HOME/.cache/osprey}"
KIND="${OSPREY_BROKER:-kafka}"
PORT="${OSPREY_BROKER_PORT:-9092}"
RUN="$CACHE/broker-$PORT"
KAFKA_VERSION=4.4.0
KAFKA_ROOT="$CACHE/kafka-$KAFKA_VERSION"
TANSU_ROOT="$CACHE/tansu"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

case "$KIND" in
  kafka|tansu) ;;
  *) echo "broker: OSPREY_BROKER=$KIND is not known; use kafka (default) or tansu" >&2; exit 2 ;;
esac

running() {
  [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null
}

listens() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

ready() {
  if [ "$(cat "$RUN/kind" 2>/dev/null || echo "$KIND")" = kafka ]; then
    python3 "$HERE/lib/kafka_ready.py" "127.0.0.1:$PORT"
  else
    listens
  fi
}

install_kafka() {
  if [ -f "$KAFKA_ROOT/installed" ]; then return 0; fi
  for tool in java mvn python3; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "broker: $tool is missing; Apache Kafka needs OpenJDK 17, Maven and Python 3 here (or set OSPREY_BROKER=tansu)" >&2
      exit 1
    }
  done
  echo "broker: installing Apache Kafka $KAFKA_VERSION jars into $KAFKA_ROOT (once)" >&2
  rm -rf "$KAFKA_ROOT" && mkdir -p "$KAFKA_ROOT"
  cp "$HERE/kafka/pom.xml" "$HERE/kafka/log4j2.properties" "$KAFKA_ROOT/"
  if ! (cd "$KAFKA_ROOT" && mvn -B -q dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime) > "$KAFKA_ROOT/maven.log" 2>&1; then
    echo "broker: Maven could not fetch Apache Kafka's jars; its output:" >&2
    cat "$KAFKA_ROOT/maven.log" >&2
    exit 1
  fi
  touch "$KAFKA_ROOT/installed"
}

install_tansu() {
  if [ ! -x "$TANSU_BIN" ]; then
    echo "broker: installing Tansu 0.6.0 into $TANSU_ROOT (about 11 minutes on 2 cores, once)" >&2
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$TANSU_ROOT" --quiet
  fi
}

install() {
  if [ "$KIND" = kafka ]; then install_kafka; else install_tansu; fi
}

launch_kafka() {
  local cport=$((PORT + 1)) data="$RUN/data"
  # After `halt` the log directory is kept and the broker comes back with its topics.
  local keep=0
  [ -f "$data/meta.properties" ] && [ -f "$RUN/halted" ] && keep=1
  rm -f "$RUN/halted"
  [ "$keep" = 1 ] || rm -rf "$data"
  cat > "$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
log.retention.ms=-1
PROPS
  local log4j="-Dlog4j2.configurationFile=$KAFKA_ROOT/log4j2.properties"
  if [ "$keep" = 0 ]; then
    java "$log4j" -cp "$KAFKA_ROOT/lib/*" kafka.tools.StorageTool format \
      -t OspreyTestCluster0001A -c "$RUN/server.properties" > "$RUN/format.log" 2>&1 || {
      echo "broker: formatting Kafka's log directory failed:" >&2
      cat "$RUN/format.log" >&2
      return 1
    }
  fi
  nohup java -Xmx512m -Xms512m "$log4j" -cp "$KAFKA_ROOT/lib/*" kafka.Kafka "$RUN/server.properties" \
    > "$RUN/broker.log" 2>&1 &
  echo $! > "$RUN/pid"
}

launch_tansu() {
  # The sqlite URL is relative: Tansu runs in a fresh working directory (an absolute path does not work).
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/osprey-broker.XXXXXX")
  echo "$work" > "$RUN/workdir"
  (
    cd "$work"
    nohup "$TANSU_BIN" broker \
      --storage-engine "sqlite://tansu.db" \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      > "$RUN/broker.log" 2>&1 &
    echo $! > "$RUN/pid"
  )
}

start() {
  install
  if running; then
    echo "broker: already running (pid $(cat "$RUN/pid")) on 127.0.0.1:$PORT" >&2
    return 0
  fi
  if listens; then
    echo "broker: something already listens on 127.0.0.1:$PORT; using it" >&2
    return 0
  fi
  mkdir -p "$RUN"
  echo "$KIND" > "$RUN/kind"
  if [ "$KIND" = kafka ]; then launch_kafka; else launch_tansu; fi
  for _ in $(seq 1 300); do
    if ready; then
      echo "broker: $KIND on 127.0.0.1:$PORT (pid $(cat "$RUN/pid"), log $RUN/broker.log)" >&2
      return 0
    fi
    if ! running; then
      echo "broker: $KIND exited at start; its log:" >&2
      cat "$RUN/broker.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "broker: $KIND did not answer a metadata request on 127.0.0.1:$PORT within 60 s; log: $RUN/broker.log" >&2
  return 1
}

stop() {
  if running; then
    pid=$(cat "$RUN/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "broker: stopped (pid $pid)" >&2
  fi
  rm -f "$RUN/pid"
  rm -rf "$RUN/data"
  if [ -f "$RUN/workdir" ]; then
    rm -rf "$(cat "$RUN/workdir")"
    rm -f "$RUN/workdir"
  fi
}

# Stop the broker like a crash of its host (SIGKILL) but keep its data: the next `start`
# brings it back with its topics and offsets (the broker-restart test).
halt() {
  if running; then
    pid=$(cat "$RUN/pid")
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "broker: halted (pid $pid), data kept" >&2
  fi
  rm -f "$RUN/pid"
  touch "$RUN/halted"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  halt) halt ;;
  status)
    if running; then echo "$(cat "$RUN/kind" 2>/dev/null || echo "$KIND") running (pid $(cat "$RUN/pid")) on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|halt|status   (OSPREY_BROKER=kafka|tansu, OSPREY_BROKER_PORT)" >&2; exit 2 ;;
esac
