#!/usr/bin/env bash
# Many jobs over one stream in one process: `osprey replay` of JOBS jobs at once (they share one
# read and one decode, src/fleet) against one of them alone, over the same file, interleaved
# rounds. Two fleets: JOBS copies of http_red (the query job), and a mix of the bundled kinds
# over the http-requests stream (RED, availability and latency SLOs, error burst, anomaly).
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
mkdir -p "$FLEET/same" "$FLEET/mix"
# job SOURCE NAME DIR: the bundled job SOURCE reading $INPUT, renamed NAME, into DIR.
job() {
  sed -e "s#^kind = \"generator\"#kind = \"file\"\npath = \"$(realpath "$INPUT")\"#" -e '/^stream =/d;/^rate =/d;/^format = "json"/d;/^incident/d' \
      -e "s#^name = .*#name = \"$2\"#" -e "s#sql_file = \"\\.\\./#sql_file = \"$PWD/#" "jobs/$1.toml" > "$3/$2.toml"
}
kinds=(http_red api_availability api_latency http_error_burst http_anomaly)
for i in $(seq "$JOBS"); do
  job http_red "red_$i" "$FLEET/same"
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
  one=$(seconds "$FLEET/http_red.toml")
  same=$(seconds "$FLEET"/same/*.toml)
  alone=0
  for k in "${kinds[@]}"; do alone=$(awk -v a="$alone" -v b="$(seconds "$FLEET/$k.toml")" 'BEGIN { print a + b }'); done
  mix=$(seconds "$FLEET"/mix/*.toml)
  echo "$one $same $alone $mix" >> "$FLEET/rounds.txt"
  echo "round $r of $ROUNDS: $(tail -1 "$FLEET/rounds.txt") seconds (http_red alone, $JOBS x http_red, the ${#kinds[@]} kinds one after another, $JOBS mixed)" >&2
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$FLEET/rounds.txt" | median; }
rate() { awk -v n="$EVENTS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
one=$(col 1); same=$(col 2); alone=$(col 3); mix=$(col 4)
per_kind=$(awk -v a="$alone" -v k="${#kinds[@]}" 'BEGIN { print a / k }')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $EVENTS, medians of $ROUNDS interleaved rounds"
echo "http_red alone:              $(rate "$one") events/s"
echo "$JOBS x http_red, one process: $(rate "$same") events/s through all of them; ratio $(awk -v a="$one" -v b="$same" 'BEGIN { printf "%.2f", a / b }') of one job (target >= 0.3; 1/$JOBS = $(awk -v j="$JOBS" 'BEGIN { printf "%.2f", 1 / j }') unshared)"
echo "the ${#kinds[@]} kinds alone, mean:     $(rate "$per_kind") events/s per job"
echo "$JOBS mixed jobs, one process: $(rate "$mix") events/s through all of them; ratio $(awk -v a="$per_kind" -v b="$mix" 'BEGIN { printf "%.2f", a / b }') of one job's mean"
