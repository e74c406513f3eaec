#!/usr/bin/env bash
# Kafka replay benchmark: produce EVENTS generated telemetry events (JSON) to a topic, then
# replay a tumbling job over the whole topic with Osprey, and read the same topic with a plain
# rdkafka consumer (consume and discard) in the same script. Prints both rates and the ratio.
#   EVENTS=5000000 ./scripts/bench-kafka.sh      (OSPREY_BENCH_BROKERS=host:port to use a running broker;
#                                                 ROUNDS=5 alternating pairs of runs)
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
EVENTS="${EVENTS:-2000000}"
cargo build --release --locked --quiet --bin osprey --example kafka_consume
bench_broker
TOPIC="bench-requests-$EVENTS-$$"
DATA="${DATA:-bench-data}"
mkdir -p "$DATA"
"$OSPREY" generate --events "$EVENTS" --rate 2000 --brokers "$OSPREY_BENCH_BROKERS" --topic "$TOPIC" --partitions 3
cat > "$DATA/bench-kafka.toml" <<TOML
name = "bench_kafka"
sql_file = "$PWD/sql/bench_tumbling.sql"
[source]
kind = "kafka"
topic = "$TOPIC"
[source.schema]
ts = "timestamp"
service = "string"
duration_ms = "float64"
bytes = "int64"
[event_time]
column = "ts"
watermark_delay = "5s"
[window]
kind = "tumbling"
size = "1m"
[dead_letter]
kind = "file"
path = "bench-kafka.dlq.jsonl"
[late]
kind = "file"
path = "bench-kafka.late.jsonl"
TOML
# Alternate the two readers ROUNDS times (the broker shares the machine, so single runs are
# noisy) and report each pair and the median ratio. Both are timed the same way, as whole
# processes from outside (start-up, metadata and offsets included); the plain consumer's own
# figure for its read loop alone is printed beside it.
ROUNDS="${ROUNDS:-5}"
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  start=$(date +%s.%N)
  raw=$("$CARGO_TARGET_DIR/release/examples/kafka_consume" "$OSPREY_BENCH_BROKERS" "$TOPIC")
  end=$(date +%s.%N)
  loop_rate=$(echo "$raw" | sed -E 's/.*messages_per_s=([0-9]+).*/\1/')
  raw_rate=$(awk -v n="$EVENTS" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  start=$(date +%s.%N)
  "$OSPREY" replay "$DATA/bench-kafka.toml" --brokers "$OSPREY_BENCH_BROKERS" --output "$DATA/bench-kafka.out.jsonl" --quiet 2>/dev/null
  end=$(date +%s.%N)
  osprey_rate=$(awk -v n="$EVENTS" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  ratio=$(awk -v a="$osprey_rate" -v b="$raw_rate" 'BEGIN { printf "%.2f", a / b }')
  ratios+=("$ratio")
  echo "round $round: raw rdkafka consume $raw_rate messages/s (read loop alone $loop_rate), osprey kafka replay $osprey_rate events/s, ratio $ratio"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); broker Apache Kafka at $OSPREY_BENCH_BROKERS"
echo "events: $EVENTS"
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio osprey/raw: $median (target >= 0.8)"
