#!/usr/bin/env bash
# Kafka benchmark: produce EVENTS generated telemetry events (JSON) to a topic, then read the
# whole topic three ways in the same script: a plain rdkafka consumer (consume and discard),
# an Osprey replay of a tumbling job, and the same job run live (`osprey run`, a fresh consumer
# group each round) catching up on the topic as a backlog. Prints the rates and the ratios to
# the plain consumer. The live run is timed until it has written every window the replay
# writes but the last (which only the end of a replay closes). Then the same live job without
# its `[source] key`, so it runs in two stages through the internal topic in the one process:
# its rate against the one-stage run's, and the internal topic's bytes per event on disk; the
# bench job's p99 sends each record through it, so a count/sum/max job (whose aggregates merge,
# so the first stage sends pane partials) is run both ways too.
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
# The same windows and groups without the percentile: every aggregate merges.
sed 's|^sql_file = .*|sql = "SELECT window_start, window_end, service, count(*) AS requests, sum(bytes) AS bytes, max(duration_ms) AS slowest FROM events GROUP BY window_start, window_end, service"|' "$DATA/bench-kafka.toml" > "$DATA/bench-kafka-count.toml"
# Alternate the two readers ROUNDS times (the broker shares the machine, so single runs are
# noisy) and report each pair and the median ratio. Both are timed the same way, as whole
# processes from outside (start-up, metadata and offsets included); the plain consumer's own
# figure for its read loop alone is printed beside it.
ROUNDS="${ROUNDS:-5}"
ratios=()
live_ratios=()
shuffle_ratios=()
partial_ratios=()

# time_live NAME: run $DATA/NAME.toml live until it has written the replay's $want window rows;
# prints its rate in events/s (start-up, group join and, with two stages, the internal topic's
# creation included).
time_live() {
  local name="$1" start end pid out="$DATA/$1.out.jsonl"
  rm -f "$out"
  start=$(date +%s.%N)
  "$OSPREY" run "$DATA/$name.toml" --brokers "$OSPREY_BENCH_BROKERS" --output "$out" 2>"$DATA/$name.err" &
  pid=$!
  # Woken by the output file's growth (`tail -F` follows it with inotify, looks for it and the
  # run every 20 ms without a fork, and ends once `head` has its lines, or the run ended), not
  # by a loop forking `cat` and `wc` 50 times a second: that took a share of the two cores
  # from the run it timed, and the replay and the plain consumer it is compared with are timed
  # without one.
  if ! timeout 300 sh -c "tail -n +1 -F -s 0.02 --pid=$pid '$out' 2>/dev/null | head -n $want > /dev/null" \
    || [ "$(wc -l < "$out" 2>/dev/null || echo 0)" -lt "$want" ]; then
    echo "the live run did not write the replay's $want windows rows; see $DATA/$name.err" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  end=$(date +%s.%N)
  kill "$pid"
  wait "$pid" || true
  awk -v n="$EVENTS" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }'
}

# topic_bytes TOPIC: the bytes of the topic's log segments on the benchmark broker's disk
# (not its index files, which the broker sizes ahead); empty for a broker of the user's own,
# whose disk this script cannot see.
topic_bytes() {
  local dir="$HOME/.cache/osprey/broker-${OSPREY_BROKER_PORT:-none}/data"
  [ -d "$dir" ] || return 0
  cat "$dir/$1"-*/*.log 2>/dev/null | wc -c
}
# through_shuffle BASE NAME [SED]: $DATA/BASE.toml (run live already) without its `key`, so in
# two stages in the one process, renamed NAME (and SED applied), run live; its windows must be
# the one-stage run's (a duplicated or lost record would show here). Sets shuffled_rate and
# shuffled_bytes (the internal topic's on disk).
through_shuffle() {
  local base="$1" name="$2" extra="${3:-}"
  grep -v '^key = ' "$DATA/$base.toml" | sed -e "s/^name = .*/name = \"$name\"/" ${extra:+-e "$extra"} > "$DATA/$base-shuffled.toml"
  shuffled_rate=$(time_live "$base-shuffled")
  shuffled_bytes=$(topic_bytes "osprey-$name-shuffle")
  if ! cmp -s <(grep -v "$last" "$DATA/$base.out.jsonl" | sort) <(grep -v "$last" "$DATA/$base-shuffled.out.jsonl" | sort); then
    echo "round $round: the run through the shuffle differs from the one-stage run: $DATA/$base-shuffled.out.jsonl" >&2
    exit 1
  fi
}
source_bytes=$(topic_bytes "$TOPIC")
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
  live_rate=$(time_live bench-kafka-live)
  live_ratio=$(awk -v a="$live_rate" -v b="$raw_rate" 'BEGIN { printf "%.2f", a / b }')
  live_ratios+=("$live_ratio")
  # The same job without its `key`: two stages in the one process, joined by the internal topic.
  through_shuffle bench-kafka-live "bench_kafka_shuffle_$$_$round"
  shuffle_rate=$shuffled_rate shuffle_bytes=$shuffled_bytes
  shuffle_ratio=$(awk -v a="$shuffle_rate" -v b="$live_rate" 'BEGIN { printf "%.2f", a / b }')
  shuffle_ratios+=("$shuffle_ratio")
  # The count/sum/max job in one stage, and through the shuffle as pane partials.
  sed "s/^name = .*/name = \"bench_kafka_count_$$_$round\"/" "$DATA/bench-kafka-count.toml" > "$DATA/bench-kafka-count1.toml"
  count_rate=$(time_live bench-kafka-count1)
  through_shuffle bench-kafka-count1 "bench_kafka_partials_$$_$round" '/^kind = "kafka"/a shuffle = "partials"'
  partial_rate=$shuffled_rate partial_bytes=$shuffled_bytes
  partial_ratio=$(awk -v a="$partial_rate" -v b="$count_rate" 'BEGIN { printf "%.2f", a / b }')
  partial_ratios+=("$partial_ratio")
  echo "round $round: count/sum/max job live $count_rate events/s in one stage, $partial_rate through the shuffle as pane partials: $partial_ratio of one stage, internal topic $(awk -v b="$partial_bytes" -v n="$EVENTS" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f", b / n }') bytes per event on disk"
  echo "round $round: raw rdkafka consume $raw_rate messages/s (read loop alone $loop_rate), osprey kafka replay $osprey_rate events/s, ratio $ratio; osprey run (live catch-up) $live_rate events/s, ratio $live_ratio; through the shuffle $shuffle_rate events/s, $shuffle_ratio of one stage, internal topic $(awk -v b="$shuffle_bytes" -v n="$EVENTS" 'BEGIN { if (b == "") print "n/a"; else printf "%.0f", b / n }') bytes per event on disk (source topic $(awk -v b="$source_bytes" -v n="$EVENTS" 'BEGIN { if (b == "") print "n/a"; else printf "%.0f", b / n }'))"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); broker Apache Kafka at $OSPREY_BENCH_BROKERS"
echo "events: $EVENTS"
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio osprey/raw: $median (target >= 0.8)"
live_median=$(printf '%s\n' "${live_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio osprey run (live catch-up)/raw: $live_median (target >= 0.8)"
shuffle_median=$(printf '%s\n' "${shuffle_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio through the shuffle/one stage, live catch-up: $shuffle_median (target >= 0.6)"
partial_median=$(printf '%s\n' "${partial_ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio through the shuffle as pane partials/one stage (count/sum/max job), live catch-up: $partial_median (target >= 0.6)"
