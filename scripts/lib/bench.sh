# Shared by the end-to-end benchmark scripts (sourced): the repository as the working folder,
# the release binary (built, or OSPREY_BIN=path to run one already built), DATA for inputs and
# outputs, and `timed_replay`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/osprey/target}"
DATA="${DATA:-bench-data}"
mkdir -p "$DATA"
if [ -z "${OSPREY_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin osprey
fi
OSPREY="${OSPREY_BIN:-$CARGO_TARGET_DIR/release/osprey}"

# timed_replay JOB [ARGS...]: replay $DATA/JOB.toml with its output in $DATA/JOB.out.jsonl and
# its messages in $DATA/JOB.err; prints "<seconds> <peak KiB>".
timed_replay() {
  local job="$1"
  shift
  /usr/bin/time -f '%e %M' -o "$DATA/$job.time" "$OSPREY" replay "$DATA/$job.toml" "$@" --output "$DATA/$job.out.jsonl" 2> "$DATA/$job.err" >/dev/null
  cat "$DATA/$job.time"
}

# figure JOB NAME: the number after NAME in the job's run summary.
figure() { grep -o "$2 [0-9]*" "$DATA/$1.err" | tail -1 | awk '{print $NF}'; }

# bench_broker: OSPREY_BENCH_BROKERS, or a broker of the benchmark's own on port 29092,
# stopped when the script exits.
bench_broker() {
  if [ -z "${OSPREY_BENCH_BROKERS:-}" ]; then
    export OSPREY_BROKER_PORT=29092
    ./scripts/broker.sh start
    trap './scripts/broker.sh stop' EXIT
    OSPREY_BENCH_BROKERS="127.0.0.1:29092"
  fi
}
