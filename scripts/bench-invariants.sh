#!/usr/bin/env bash
# Invariant benchmark: 5 million trading events (the generator's desk) replayed by the bundled
# overfill (cumulative, ttl 10m: about 120,000 orders held at once) and order_deadline (every
# order's timer; the desk closes them within seconds) checks, next to a plain query job over
# the same file, in the same script. Prints events/s, the ratios, and state bytes per open
# order (peak memory over the query job's, divided by the peak of groups held).
#   EVENTS=5000000 ./scripts/bench-invariants.sh
source "$(dirname "$0")/lib/bench.sh"   # OSPREY_BIN=path runs a binary already built
EVENTS="${EVENTS:-5000000}"
FILE="$DATA/trading-$EVENTS.jsonl"
if [ ! -f "$FILE" ]; then
  echo "generating $EVENTS trading events into $FILE"
  "$OSPREY" generate --stream trading-events --events "$EVENTS" --rate 200 --output "$FILE"
fi
sed -e 's/ttl = "6h"/ttl = "10m"/' jobs/knight/overfill.toml > "$DATA/overfill.toml"
cp jobs/knight/order_deadline.toml "$DATA/order_deadline.toml"
cat > "$DATA/plain.toml" <<TOML
name = "plain"
sql = "SELECT symbol, count(*) AS events, sum(qty) AS qty FROM events WHERE event IN ('order', 'fill') GROUP BY symbol"
$(sed -n '/^\[source\]/,/^watermark_delay/p' jobs/knight/overfill.toml)
[window]
kind = "tumbling"
size = "10s"
TOML
read -r p_s p_kib < <(timed_replay plain --input "$FILE")
read -r o_s o_kib < <(timed_replay overfill --input "$FILE")
read -r d_s d_kib < <(timed_replay order_deadline --input "$FILE")
lines=$(wc -l < "$FILE")
o_keys=$(figure overfill "peak groups")
d_keys=$(figure order_deadline "peak open")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $lines"
awk -v n="$lines" -v p="$p_s" -v o="$o_s" -v d="$d_s" 'BEGIN {
  printf "plain query job:                 %8.0f events/s (%.2fs)\n", n / p, p
  printf "overfill (cumulative, ttl 10m):  %8.0f events/s (%.2fs), ratio %.2f\n", n / o, o, p / o
  printf "order_deadline (within 30s):     %8.0f events/s (%.2fs), ratio %.2f\n", n / d, d, p / d }'
awk -v a="$o_kib" -v b="$p_kib" -v k="$o_keys" 'BEGIN { printf "overfill: peak %d groups, %.0f MiB over the plain job: %.0f bytes per group\n", k, (a-b)/1024, (a-b)*1024/k }'
echo "order_deadline: $(grep -o 'opened [0-9]*.*' "$DATA/order_deadline.err" | tail -1)"
