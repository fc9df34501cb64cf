#!/bin/bash
# Redis' cost per check of the module's script, alone (no nginx): for each
# algorithm, redis-benchmark sends the EVALSHA of a batch of 1 and of 8
# checks on one hot key, 16 commands pipelined on 4 connections, and this
# prints the time Redis spent inside the script (INFO commandstats) and the
# CPU time of redis-server (/proc), per check.  See docs/benchmarks.md.
#
#   scripts/bench/script-cost.sh            CALLS=200000 by default
#   SOURCE=old.cpp BATCHES="1 8 32" scripts/bench/script-cost.sh
#                                           another revision's rl_script.cpp,
#                                           other batch sizes
#   KEYS_PER_BATCH=distinct scripts/bench/script-cost.sh
#                                           a key of its own for each check
#                                           of a batch (default: one key)
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
calls=${CALLS:-200000}
dir=$(mktemp -d /tmp/rl-script-cost.XXXXXX)
trap '"$top/scripts/redis.sh" stop "$dir"; rm -rf "$dir"' EXIT

port=$("$top/scripts/redis.sh" start "$dir")
pid=$(cat "$dir/redis.pid")
rcli() { redis-cli -p "$port" "$@"; }

# the script, as the module sends it
sed -n '/R"lua(/,/)lua"/p' "${SOURCE:-$top/src/rl_script.cpp}" | sed '1s/.*R"lua(//; $d' \
    > "$dir/script.lua"
sha=$(rcli script load "$(cat "$dir/script.lua")")

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)

printf '%-15s %6s %18s %18s\n' algorithm batch "in script us/check" "Redis CPU us/check"
for alg in ${ALGS:-l:sliding_log s:sliding_window g:gcra f:fixed_window}; do
    code=${alg%%:*}
    for batch in ${BATCHES:-1 8}; do
        # the plan (see src/rl_script.cpp): one limit; the checks alike as
        # one group with its key once, or a group of one per distinct key
        keys=()
        if [ "${KEYS_PER_BATCH:-one}" = distinct ]; then
            plan='\x01'
            for i in $(seq "$batch"); do
                keys+=("cost:$code:$i")
                plan+='\x01\x01\x01'
            done
        else
            keys=("cost:$code")
            plan="\\x01\\x$(printf %02x "$batch")\\x01\\x01"
        fi
        plan=$(printf "$plan")
        rcli flushall > /dev/null
        rcli config resetstat > /dev/null
        t0=$(ticks)
        redis-benchmark -p "$port" -n "$calls" -P 16 -c 4 \
            EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "$plan" \
            "$code" 1000000000 3600000 1000000000 > /dev/null
        t1=$(ticks)
        usec=$(rcli info commandstats | tr -d '\r' \
               | sed -n 's/^cmdstat_evalsha:calls=[0-9]*,usec=\([0-9]*\),.*/\1/p')
        awk -v a="${alg#*:}" -v b="$batch" -v u="$usec" -v t=$((t1 - t0)) \
            -v hz="$hz" -v n="$calls" 'BEGIN {
                printf "%-15s %6d %18.2f %18.2f\n", a, b, u / (n * b),
                       t * 1e6 / hz / (n * b) }'
    done
done
