#!/usr/bin/env bash
# End-to-end replay benchmark on the http_red shape (1-minute tumbling RED per service):
#  - Osprey's whole `replay` process over a clean file, and over the same file with 1% and 10%
#    of the records carrying a wrong-typed field ("status": "x200"), side by side;
#  - DuckDB (read_json with typed columns, 2 threads) and DataFusion's Python package running
#    the same query over the clean file, and Osprey's rate as a ratio of DuckDB's;
#  - a count/sum/min/max per service and minute (no percentile), Osprey against DuckDB.
#   EVENTS=2000000 ROUNDS=5 ./scripts/bench-replay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
EVENTS="${EVENTS:-2000000}"
ROUNDS="${ROUNDS:-5}"
VENV="${OSPREY_BENCH_VENV:-$HOME/.cache/osprey/bench-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "installing duckdb and datafusion (PyPI) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q duckdb datafusion
fi
CLEAN="$DATA/http-$EVENTS.jsonl"
if [ ! -f "$CLEAN" ]; then
  echo "generating $EVENTS events into $CLEAN"
  "$OSPREY" generate --events "$EVENTS" --rate 2000 --output "$CLEAN"
fi
for pct in 1 10; do
  every=$((100 / pct))
  dirty="$DATA/http-$EVENTS-dirty$pct.jsonl"
  [ -f "$dirty" ] || awk -v n="$every" 'NR % n == 0 { sub(/"status":[0-9]+/, "\"status\":\"x200\"") } { print }' "$CLEAN" > "$dirty"
done
job() { # job file reading $1; with a second argument `basic`, the count/sum/min/max query
  local out="$DATA/${2:-red}-$(basename "$1" .jsonl).toml"
  sed -e "s#^kind = \"generator\"#kind = \"file\"\npath = \"$(basename "$1")\"#" -e '/^stream =/d;/^rate =/d;/^format = "json"/d' \
      -e 's/^format = "table"/format = "json"/' jobs/http_red.toml > "$out"
  if [ "${2:-}" = basic ]; then
    awk -v sql="$BASIC_SQL" 'BEGIN { q = 0 }
         /^sql = """/ { print "sql = \"" sql "\""; q = 1; next }
         q && /^"""/ { q = 0; next }
         !q { print }' "$out" > "$out.tmp" && mv "$out.tmp" "$out"
  fi
  echo "$out"
}
BASIC_SQL="SELECT window_start, window_end, service, count(*) AS requests, sum(duration_ms) AS total_ms, min(duration_ms) AS min_ms, max(duration_ms) AS max_ms FROM events GROUP BY window_start, window_end, service"
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
osprey_once() { # seconds of one whole `replay` process over $1 (of the query $2: see `job`)
  local j s e; j=$(job "$1" "${2:-}"); s=$(date +%s.%N)
  "$OSPREY" replay "$j" --output "$DATA/${2:-red}.out.jsonl" --dead-letters "$DATA/${2:-red}.dlq.jsonl" --quiet 2>/dev/null
  e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN { print b - a }'
}
py_once() { "$VENV/bin/python" benches/py/red_query.py "$1" "$CLEAN" "$EVENTS" | sed -E 's/.*seconds=([0-9.]+).*/\1/'; }
# Rounds interleave every run, so a burst of noise on this shared machine hits one round of
# each, not all runs of one; figures are medians, the ratio the median of each round's.
: > "$DATA/replay-rounds.txt"
for r in $(seq "$ROUNDS"); do
  echo "$(osprey_once "$CLEAN") $(py_once duckdb) $(osprey_once "$DATA/http-$EVENTS-dirty1.jsonl") $(osprey_once "$DATA/http-$EVENTS-dirty10.jsonl") $(py_once datafusion) $(osprey_once "$CLEAN" basic) $(py_once duckdb-basic)" >> "$DATA/replay-rounds.txt"
  echo "round $r of $ROUNDS: $(tail -1 "$DATA/replay-rounds.txt") seconds (osprey clean, duckdb, 1% bad, 10% bad, datafusion, osprey count/sum/min/max, duckdb count/sum/min/max)" >&2
done
rate() { awk -v n="$EVENTS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
col() { awk -v c="$1" '{ print $c }' "$DATA/replay-rounds.txt" | median; }
clean=$(col 1); duck=$(col 2); dirty1=$(col 3); dirty10=$(col 4); df=$(col 5); basic=$(col 6); duck_basic=$(col 7)
ratio=$(awk '{ print $2 / $1 }' "$DATA/replay-rounds.txt" | median)
ratio_basic=$(awk '{ print $7 / $6 }' "$DATA/replay-rounds.txt" | median)
dead=$(wc -l < "$DATA/red.dlq.jsonl")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $EVENTS ($(du -h "$CLEAN" | cut -f1)), medians of $ROUNDS interleaved rounds"
echo "osprey replay, clean:        $(rate "$clean") events/s"
echo "osprey replay, 1% bad:       $(rate "$dirty1") events/s ($(awk -v a="$dirty1" -v b="$clean" 'BEGIN { printf "%.2f", b / a }') of clean)"
echo "osprey replay, 10% bad:      $(rate "$dirty10") events/s ($(awk -v a="$dirty10" -v b="$clean" 'BEGIN { printf "%.2f", b / a }') of clean; $dead dead letters)"
echo "duckdb $("$VENV/bin/python" -c 'import duckdb; print(duckdb.__version__)'), 2 threads:   $(rate "$duck") events/s"
echo "datafusion-python $("$VENV/bin/python" -c 'import datafusion; print(datafusion.__version__)'): $(rate "$df") events/s"
echo "ratio osprey/duckdb: $(awk -v r="$ratio" 'BEGIN { printf "%.2f", r }') (median of the rounds' ratios; target >= 1; DuckDB timed inside Python, Osprey as a whole process)"
echo "count/sum/min/max per service: osprey $(rate "$basic") events/s, duckdb $(rate "$duck_basic") events/s, ratio osprey/duckdb $(awk -v r="$ratio_basic" 'BEGIN { printf "%.2f", r }') (target >= 1)"
