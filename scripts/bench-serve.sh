#!/usr/bin/env bash
# Window-close to output latency in one `osprey serve` under steady live traffic: a generator
# produces RATE events/s to a 3-partition topic, JOBS jobs (1-second tumbling windows over
# it, each in its own consumer group) run in the server for DURATION seconds, and /metrics'
# window-output histogram (from the watermark passing a window's end to its output written)
# gives p50 and p99 as the bucket they fall in. The baseline is one job alone, same traffic.
# Steady state: the histogram is read after WARMUP seconds and again DURATION seconds later,
# and the windows in between are counted (the server's jobs over one topic read it together:
# each job submitted re-forms their share, and the first windows after come out of a backlog).
# The whole round is printed too.
#   JOBS=20 RATE=50000 WARMUP=10 DURATION=30 ./scripts/bench-serve.sh   (OSPREY_BENCH_BROKERS=host:port)
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
JOBS="${JOBS:-20}"
RATE="${RATE:-50000}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-10}"
bench_broker
export OSPREY_TOKEN="bench-$$"
port=$((7400 + $$ % 500))

# quantile METRICS Q [BEFORE]: the Q quantile of the histogram in METRICS summed over jobs
# (less what BEFORE, an earlier scrape, held): the upper bound of the bucket it falls in.
quantile() {
  awk -v q="$2" -v before="${3:-}" '
    /^osprey_job_window_output_seconds_bucket/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      sign = (before != "" && FILENAME == before) ? -1 : 1
      n[le] += sign * $NF; if (!(le in seen)) { order[++k] = le; seen[le] = 1 }
    }
    END {
      total = n["+Inf"]; if (total == 0) { print "none"; exit }
      for (i = 1; i <= k; i++) if (n[order[i]] >= q * total) { print order[i] " s (" total " windows)"; exit }
    }' ${3:+"$3"} "$1"
}

round() { # jobs: start the generator and a server, submit the jobs, wait, scrape
  local jobs="$1" topic="bench-serve-$1-$$" data="$DATA/serve-$1"
  rm -rf "$data"
  mkdir -p "$data"
  "$OSPREY" generate --live --rate "$RATE" --brokers "$OSPREY_BENCH_BROKERS" --topic "$topic" --partitions 3 2> "$data.generate.err" &
  local gen=$!
  "$OSPREY" serve --listen "127.0.0.1:$port" --data-dir "$data" --brokers "$OSPREY_BENCH_BROKERS" --registry-topic "registry-$1-$$" 2> "$data.serve.err" &
  local srv=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  for i in $(seq "$jobs"); do
    curl -sf -X POST -H "Authorization: Bearer $OSPREY_TOKEN" --data-binary @- "http://127.0.0.1:$port/v1/jobs" >/dev/null <<TOML
name = "j$i"
sql = "SELECT window_start, service, count(*) AS n, sum(bytes) AS bytes FROM events GROUP BY window_start, window_end, service"
[source]
kind = "kafka"
topic = "$topic"
group = "bench-serve-$1-$$-$i"
key = ["service"]                 # osprey generate keys by service: one stage
[source.schema]
ts = "timestamp"
service = "string"
bytes = "int64"
[event_time]
column = "ts"
watermark_delay = "1s"
idle_timeout = "5s"
[window]
kind = "tumbling"
size = "1s"
[sink]
kind = "file"
path = "../out-$i.jsonl"
TOML
  done
  sleep "$WARMUP"
  curl -sf "http://127.0.0.1:$port/metrics" > "$data.metrics0"
  sleep "$DURATION"
  curl -sf "http://127.0.0.1:$port/metrics" > "$data.metrics"
  curl -sf "http://127.0.0.1:$port/v1/jobs" > "$data.jobs.json"
  kill -TERM "$srv" "$gen" 2>/dev/null || true
  wait "$srv" "$gen" 2>/dev/null || true
  echo "$jobs job(s), steady ${DURATION}s: p50 $(quantile "$data.metrics" 0.5 "$data.metrics0"), p99 $(quantile "$data.metrics" 0.99 "$data.metrics0"); lag at the end $(grep -o '"lag":{[^}]*}' "$data.jobs.json" | head -3 | tr '\n' ' ')"
  echo "   whole round from the first submission: p50 $(quantile "$data.metrics" 0.5), p99 $(quantile "$data.metrics" 0.99)"
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "traffic: $RATE events/s live into 3 partitions; ${DURATION}s per round; 1 s windows"
round 1
round "$JOBS"
