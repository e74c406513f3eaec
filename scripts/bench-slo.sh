#!/usr/bin/env bash
# SLO operator benchmark: the same file replayed by an SLO job (10,000 series, the SRE
# workbook's four pairs, 30-day period) and by a plain query job counting the same events per
# series and pane, in the same script. Prints both rates, their ratio, and the SLO's state
# bytes per series (from the operator, and from the two runs' peak memory).
#   EVENTS=2000000 SERIES=10000 ./scripts/bench-slo.sh
source "$(dirname "$0")/lib/bench.sh"   # OSPREY_BIN=path runs a binary already built
EVENTS="${EVENTS:-2000000}"
SERIES="${SERIES:-10000}"
FILE="$DATA/slo-$EVENTS-$SERIES-v2.jsonl"
if [ ! -f "$FILE" ]; then
  echo "generating $EVENTS events over $SERIES series into $FILE"
  python3 - "$EVENTS" "$SERIES" "$FILE" <<'PY'
import random, sys
n, series, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(7)
t0 = 1767571200000
step = 6 * 3600 * 1000 / n           # six hours of event time
with open(path, "w") as f:
    for i in range(n):
        s = random.randrange(series)
        status = 503 if random.random() < (0.2 if s % 1000 == 0 else 0.001) else 200
        f.write('{"ts":%d,"series":"s-%d","status":%d}\n' % (t0 + int(i * step), s, status))
PY
fi
common='[source]
kind = "file"
path = "'"$(basename "$FILE")"'"
[source.schema]
ts = "timestamp"
series = "string"
status = "int64"
[event_time]
column = "ts"'
cat > "$DATA/slo.toml" <<TOML
name = "bench_slo"
kind = "slo"
[slo]
objective = 0.999
good = "status < 500"
labels = ["series"]
max_series = $((SERIES + 1))
$common
[alerts]
file = "slo.alerts.jsonl"
TOML
cat > "$DATA/query.toml" <<TOML
name = "bench_query"
sql = "SELECT series, count(*) AS events, sum(CASE WHEN status < 500 THEN 1 ELSE 0 END) AS good FROM events GROUP BY series"
$common
[window]
kind = "tumbling"
size = "1m"
TOML
read -r q_s q_kib < <(timed_replay query)
read -r s_s s_kib < <(timed_replay slo)
lines=$(wc -l < "$FILE")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $lines, series: $SERIES"
awk -v n="$lines" -v q="$q_s" -v s="$s_s" 'BEGIN {
  printf "query job (count per series and pane): %8.0f events/s (%.2fs)\n", n / q, q
  printf "slo job (4 pairs, 30d period):         %8.0f events/s (%.2fs)\n", n / s, s
  printf "ratio slo/query: %.2f\n", q / s }'
grep -o 'state bytes per series [0-9]*' "$DATA/slo.err" || true
awk -v a="$s_kib" -v b="$q_kib" -v n="$SERIES" 'BEGIN { printf "peak memory: slo %.0f MiB, query %.0f MiB: %.0f bytes per series more\n", a/1024, b/1024, (a-b)*1024/n }'
