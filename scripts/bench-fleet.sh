#!/usr/bin/env bash
# Many jobs over one stream in one process: `osprey replay` of JOBS jobs at once (they share one
# read and one decode, src/fleet) against one of them alone, over the same file, interleaved
# rounds. Three fleets: JOBS copies of a count/sum/min/max per service job, JOBS copies of
# http_red (the query job, with p50/p99 per service), and a mix of the bundled kinds over the
# http-requests stream (RED, availability and latency SLOs, error burst, anomaly).
# The ratio is the fleet's events/s over the single job's: 1/JOBS if nothing were shared.
#   EVENTS=1000000 JOBS=20 ROUNDS=3 ./scripts/bench-fleet.sh
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
EVENTS="${EVENTS:-1000000}"
JOBS="${JOBS:-20}"
ROUNDS="${ROUNDS:-3}"
INPUT="$DATA/http-$EVENTS.jsonl"
[ -f "$INPUT" ] || "$OSPREY" generate --events "$EVENTS" --rate 2000 --output "$INPUT" 2>/dev/null
FLEET="$DATA/fleet"
rm -rf "$FLEET"
mkdir -p "$FLEET/plain" "$FLEET/red" "$FLEET/mix"
# job SOURCE NAME DIR: the bundled job SOURCE reading $INPUT, renamed NAME, into DIR.
job() {
  sed -e "s#^kind = \"generator\"#kind = \"file\"\npath = \"$(realpath "$INPUT")\"#" -e '/^stream =/d;/^rate =/d;/^format = "json"/d' \
      -e "s#^name = .*#name = \"$2\"#" -e "s#sql_file = \"\\.\\./#sql_file = \"$PWD/#" "jobs/$1.toml" > "$3/$2.toml"
}
# plain NAME DIR: http_red's source and schema; a count, sum, min and max per service and minute.
plain() {
  job http_red "$1" "$2"
  sed -i '/^sql = """/,/^"""/c\sql = """\nSELECT window_start, service, count(*) AS requests, sum(status) AS statuses,\n       min(duration_ms) AS fastest, max(duration_ms) AS slowest\nFROM events GROUP BY window_start, service\n"""' "$2/$1.toml"
}
kinds=(http_red api_availability api_latency http_error_burst http_anomaly)
plain plain "$FLEET"
for i in $(seq "$JOBS"); do
  plain "plain_$i" "$FLEET/plain"
  job http_red "red_$i" "$FLEET/red"
  k=${kinds[$(( (i - 1) % ${#kinds[@]} ))]}
  job "$k" "${k}_$i" "$FLEET/mix"
done
for k in "${kinds[@]}"; do job "$k" "$k" "$FLEET"; done
seconds() { # seconds of one whole `replay` of the job files given
  local s e; s=$(date +%s.%N)
  "$OSPREY" replay "$@" --output-dir "$FLEET/out" --quiet --max-dead-letter-ratio 1 2>"$FLEET/err" >/dev/null || { cat "$FLEET/err" >&2; exit 1; }
  e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN { print b - a }'
}
: > "$FLEET/rounds.txt"
for r in $(seq "$ROUNDS"); do
  base=$(seconds "$FLEET/plain.toml")
  plains=$(seconds "$FLEET"/plain/*.toml)
  one=$(seconds "$FLEET/http_red.toml")
  reds=$(seconds "$FLEET"/red/*.toml)
  alone=0
  for k in "${kinds[@]}"; do alone=$(awk -v a="$alone" -v b="$(seconds "$FLEET/$k.toml")" 'BEGIN { print a + b }'); done
  mix=$(seconds "$FLEET"/mix/*.toml)
  echo "$base $plains $one $reds $alone $mix" >> "$FLEET/rounds.txt"
  echo "round $r of $ROUNDS: $(tail -1 "$FLEET/rounds.txt") seconds (count/sum/min/max alone, $JOBS x it, http_red alone, $JOBS x it, the ${#kinds[@]} kinds one after another, $JOBS mixed)" >&2
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$FLEET/rounds.txt" | median; }
rate() { awk -v n="$EVENTS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
base=$(col 1); plains=$(col 2); one=$(col 3); reds=$(col 4); alone=$(col 5); mix=$(col 6)
per_kind=$(awk -v a="$alone" -v k="${#kinds[@]}" 'BEGIN { print a / k }')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $EVENTS, medians of $ROUNDS interleaved rounds; 1/$JOBS = $(awk -v j="$JOBS" 'BEGIN { printf "%.2f", 1 / j }') if nothing were shared"
echo "count/sum/min/max alone:          $(rate "$base") events/s"
echo "$JOBS x count/sum/min/max, one process: $(rate "$plains") events/s through all of them; ratio $(ratio "$base" "$plains") (target >= 0.3)"
echo "http_red alone:                   $(rate "$one") events/s"
echo "$JOBS x http_red, one process:      $(rate "$reds") events/s through all of them; ratio $(ratio "$one" "$reds")"
echo "the ${#kinds[@]} kinds alone, mean:          $(rate "$per_kind") events/s per job"
echo "$JOBS mixed jobs, one process:      $(rate "$mix") events/s through all of them; ratio $(ratio "$per_kind" "$mix")"
