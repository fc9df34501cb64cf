#!/bin/bash
# Runs the libFuzzer targets of t/fuzz/ (make fuzz, and briefly make test).
#
#   scripts/fuzz.sh FUZZ_DIR SECONDS [NAME ...]
#
# FUZZ_DIR holds the built targets (FUZZ_DIR/fuzz_NAME, see the Makefile).
# Each runs for SECONDS, one after the other, from the committed seeds in
# t/fuzz/corpus/NAME/ plus what earlier runs found (FUZZ_DIR/corpus/NAME/:
# new inputs go there, never into the committed seeds).  A crash, a failed
# check, a leak, a timeout (10 s per input) or an out-of-memory (2 GB)
# fails the run; the input is kept as FUZZ_DIR/artifacts/NAME-crash-...
# and replays with:  FUZZ_DIR/fuzz_NAME FILE
#
# FUZZ_SEED=N: libFuzzer's -seed (default: a new random one each run).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: fuzz.sh FUZZ_DIR SECONDS [NAME ...]}
secs=${2:?usage: fuzz.sh FUZZ_DIR SECONDS [NAME ...]}
shift 2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$top"/t/fuzz/fuzz_*.cpp; do
        f=${f##*/fuzz_}
        names+=("${f%.cpp}")
    done
fi

mkdir -p "$dir/artifacts"
status=0

for name in "${names[@]}"; do
    bin=$dir/fuzz_$name
    seeds=$top/t/fuzz/corpus/$name
    work=$dir/corpus/$name
    log=$dir/fuzz_$name.log

    [ -x "$bin" ] || { echo "fuzz: $bin is missing (make fuzz-build)" >&2; exit 1; }
    [ -d "$seeds" ] || { echo "fuzz: no seeds in $seeds" >&2; exit 1; }
    mkdir -p "$work"

    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
            -max_len=4096 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/$name-" \
            "$work" "$seeds" > "$log" 2>&1
    then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "fuzz_$name: ${runs:-?} inputs in ${secs}s, $cov, no failure"
    else
        status=1
        echo "fuzz_$name: FAILED (whole output: $log)"
        grep -E -A40 '^==[0-9]+==|check failed|runtime error|SUMMARY' "$log" \
            | head -80
        for a in "$dir/artifacts/$name-"*; do
            [ -e "$a" ] && echo "  input: $a"
        done
    fi
done

exit $status
