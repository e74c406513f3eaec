#!/usr/bin/env bash
# End-to-end replay benchmark: Osprey's `replay` of a tumbling count + sum + p99 job against
# DataFusion's one-shot batch query (explicit window column) over the same JSON-lines file,
# in the same script. Prints both rates and their ratio.
#   EVENTS=5000000 ./scripts/bench-replay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
EVENTS="${EVENTS:-5000000}"
DATA="${DATA:-bench-data}"
mkdir -p "$DATA"
cargo build --release --locked --quiet --bin osprey --example datafusion_batch
OSPREY="$CARGO_TARGET_DIR/release/osprey"
FILE="$DATA/requests-$EVENTS.jsonl"
if [ ! -f "$FILE" ]; then
  echo "generating $EVENTS events into $FILE"
  "$OSPREY" generate --events "$EVENTS" --rate 2000 --output "$FILE"
fi
cat > "$DATA/bench.toml" <<TOML
name = "bench"
sql_file = "$PWD/sql/bench_tumbling.sql"
[source]
kind = "file"
path = "requests-$EVENTS.jsonl"
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
TOML
lines=$(wc -l < "$FILE")
start=$(date +%s.%N)
"$OSPREY" replay "$DATA/bench.toml" --output "$DATA/bench.out.jsonl" --quiet
end=$(date +%s.%N)
osprey_rate=$(awk -v n="$lines" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
df_line=$("$CARGO_TARGET_DIR/release/examples/datafusion_batch" "$FILE")
df_rate=$(echo "$df_line" | sed -E 's/.*events_per_s=([0-9]+).*/\1/')
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $lines ($(du -h "$FILE" | cut -f1))"
echo "osprey replay:         $osprey_rate events/s"
echo "datafusion one-shot:   $df_rate events/s"
awk -v a="$osprey_rate" -v b="$df_rate" 'BEGIN { printf "ratio osprey/datafusion: %.2f (target >= 0.5)\n", a / b }'
