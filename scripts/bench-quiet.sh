#!/usr/bin/env bash
# False alerts on quiet traffic: the generator's http-requests with no incident, DAYS days of
# event time at RATE events/s, through `jobs/http_anomaly.toml`'s query (p99 latency per
# service and endpoint, one-minute windows) with each detector in turn and a job's default
# warm-up. Every firing alert here is a false one: prints them per series per day.
#   DAYS=3 RATE=20 DETECTORS="likelihood mad seasonal" ./scripts/bench-quiet.sh
source "$(dirname "$0")/lib/bench.sh"   # OSPREY_BIN=path runs a binary already built
DAYS="${DAYS:-3}"
RATE="${RATE:-20}"
DETECTORS="${DETECTORS:-likelihood mad ks isolation_forest cad seasonal artime}"
EVENTS=$(python3 -c "print(int($DAYS * 86400 * $RATE))")
FILE="$DATA/quiet-$DAYS-$RATE.jsonl"
if [ ! -f "$FILE" ]; then
  echo "generating $DAYS days of quiet traffic at $RATE events/s ($EVENTS events) into $FILE"
  "$OSPREY" generate --events "$EVENTS" --rate "$RATE" --output "$FILE" --quiet 2>/dev/null || "$OSPREY" generate --events "$EVENTS" --rate "$RATE" --output "$FILE"
fi
SERIES=$(python3 - "$FILE" <<'PY'
import json, sys
seen = set()
with open(sys.argv[1]) as f:
    for i, line in enumerate(f):
        e = json.loads(line)
        seen.add((e["service"], e["endpoint"]))
        if i > 200000:
            break
print(len(seen))
PY
)
printf '%-18s %8s %14s\n' detector alerts per-series-day
for det in $DETECTORS; do
  # The bundled job's query and series, over the file, with one detector.
  sed -e '/^\[source\]/,/^\[source.schema\]/c\[source]\nkind = "file"\npath = "'"$(basename "$FILE")"'"\n[source.schema]' \
      -e 's/^detectors = .*/detectors = ["'"$det"'"]/' -e '/^warmup = /d' -e 's/^stdout = true/file = "quiet-'"$det"'.alerts.jsonl"/' \
      jobs/http_anomaly.toml > "$DATA/quiet-$det.toml"
  rm -f "$DATA/quiet-$det.alerts.jsonl"
  "$OSPREY" replay "$DATA/quiet-$det.toml" --quiet > /dev/null 2> "$DATA/quiet-$det.err" || { cat "$DATA/quiet-$det.err"; exit 1; }
  firing=$( (grep -c '"status":"firing"' "$DATA/quiet-$det.alerts.jsonl" 2>/dev/null || true) | head -1)
  firing=${firing:-0}
  python3 -c "print('%-18s %8d %14.3f' % ('$det', $firing, $firing / ($SERIES * $DAYS)))"
done
echo "($SERIES series, $DAYS days; the first 32 windows of each series are its warm-up)"
