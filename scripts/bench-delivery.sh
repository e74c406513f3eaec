#!/usr/bin/env bash
# What each delivery mode costs: the same live Kafka job (tumbling 10 s windows, a Kafka sink
# keyed by service) over a backlog larger than it can read in DURATION seconds, run with
#  - at-least-once and no checkpoints (offsets committed after acknowledged output),
#  - at-least-once with --state-dir checkpoints every INTERVAL,
#  - exactly-once (one transaction per checkpoint, offsets inside it),
# each for DURATION seconds from the start of the topic in a fresh consumer group; prints the
# records each read per second and the ratio to the first.
#   EVENTS=3000000 DURATION=15 INTERVAL=1s ./scripts/bench-delivery.sh   (OSPREY_BENCH_BROKERS=host:port)
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
EVENTS="${EVENTS:-3000000}"
DURATION="${DURATION:-15}"
INTERVAL="${INTERVAL:-1s}"
bench_broker
TOPIC="bench-delivery-$EVENTS-$$"
"$OSPREY" generate --events "$EVENTS" --rate 2000 --brokers "$OSPREY_BENCH_BROKERS" --topic "$TOPIC" --partitions 3
job() { # name delivery
  cat > "$DATA/$1.toml" <<TOML
name = "$1"
sql = "SELECT window_start, service, count(*) AS n, sum(bytes) AS bytes FROM events GROUP BY window_start, window_end, service"
[source]
kind = "kafka"
topic = "$TOPIC"
group = "$1-$$"
[source.schema]
ts = "timestamp"
service = "string"
bytes = "int64"
[event_time]
column = "ts"
watermark_delay = "5s"
[window]
kind = "tumbling"
size = "10s"
[sink]
kind = "kafka"
topic = "$1-out-$$"
key = "service"
delivery = "$2"
TOML
}
rate() { # name [run args...]: records per second read in DURATION seconds
  local name="$1"
  shift
  rm -rf "$DATA/state-$name"
  "$OSPREY" run "$DATA/$name.toml" --brokers "$OSPREY_BENCH_BROKERS" "$@" 2> "$DATA/$name.err" &
  local pid=$!
  sleep "$DURATION"
  kill -TERM "$pid"
  wait "$pid" || true
  local n
  n=$(grep -o '[0-9]* records in' "$DATA/$name.err" | tail -1 | awk '{print $1}')
  awk -v n="$n" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }'
}
job alo at-least-once
job alo_state at-least-once
job eos exactly-once
plain=$(rate alo)
checkpointed=$(rate alo_state --state-dir "$DATA/state-alo_state" --checkpoint-interval "$INTERVAL")
exactly=$(rate eos --state-dir "$DATA/state-eos" --checkpoint-interval "$INTERVAL")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "backlog: $EVENTS events over 3 partitions; each mode runs ${DURATION}s; checkpoints every $INTERVAL"
echo "at-least-once, no checkpoints:    $plain records/s"
awk -v a="$checkpointed" -v b="$plain" 'BEGIN { printf "at-least-once, checkpoints:       %d records/s (%.2f)\n", a, a / b }'
awk -v a="$exactly" -v b="$plain" 'BEGIN { printf "exactly-once:                     %d records/s (%.2f)\n", a, a / b }'
