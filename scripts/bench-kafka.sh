#!/usr/bin/env bash
# Kafka benchmark: produce EVENTS generated telemetry events (JSON) to a topic, then read the
# whole topic three ways in the same script: a plain rdkafka consumer (consume and discard),
# an Osprey replay of a tumbling job, and the same job run live (`osprey run`, a fresh consumer
# group each round) catching up on the topic as a backlog. Prints the rates and the ratios to
# the plain consumer. The live run is timed until it has written every window the replay
# writes but the last (which only the end of a replay closes).
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
name = "bench_kafka_$$"
sql_file = "$PWD/sql/bench_tumbling.sql"
[source]
kind = "kafka"
topic = "$TOPIC"
key = ["service"]                 # osprey generate keys by service: one stage when scaled out
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
live_ratios=()
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
  # Live: the same job in a consumer group of its own, until it has every window the replay has.
  last=$(grep -o '"window_start":"[^"]*"' "$DATA/bench-kafka.out.jsonl" | sort | tail -1)
  want=$(grep -vc "$last" "$DATA/bench-kafka.out.jsonl")
  sed "s/^name = .*/name = \"bench_kafka_live_$$_$round\"/" "$DATA/bench-kafka.toml" > "$DATA/bench-kafka-live.toml"
  rm -f "$DATA/bench-kafka-live.out.jsonl"
  start=$(date +%s.%N)
  "$OSPREY" run "$DATA/bench-kafka-live.toml" --brokers "$OSPREY_BENCH_BROKERS" --output "$DATA/bench-kafka-live.out.jsonl" 2>"$DATA/bench-kafka-live.err" &
  live_pid=$!
  deadline=$((SECONDS + 300))
  while [ "$(cat "$DATA/bench-kafka-live.out.jsonl" 2>/dev/null | wc -l)" -lt "$want" ]; do
    if [ $SECONDS -gt $deadline ] || ! kill -0 "$live_pid" 2>/dev/null; then
      echo "the live run did not write the replay's $want windows rows; see $DATA/bench-kafka-live.err" >&2
      kill "$live_pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.02
  done
  end=$(date +%s.%N)
  kill "$live_pid"
  wait "$live_pid" || true
  live_rate=$(awk -v n="$EVENTS" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  live_ratio=$(awk -v a="$live_rate" -v b="$raw_rate" 'BEGIN { printf "%.2f", a / b }')
  live_ratios+=("$live_ratio")
  echo "round $round: raw rdkafka consume $raw_rate messages/s (read loop alone $loop_rate), osprey kafka replay $osprey_rate events/s, ratio $ratio; osprey run (live catch-up) $live_rate events/s, ratio $live_ratio"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); broker Apache Kafka at $OSPREY_BENCH_BROKERS"
echo "events: $EVENTS"
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio osprey/raw: $median (target >= 0.8)"
live_median=$(printf '%s\n' "${live_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio osprey run (live catch-up)/raw: $live_median (target >= 0.8)"
