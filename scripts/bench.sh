#!/bin/bash
# Benchmarks of ngx_http_rate_limit_module against a baseline and its peers,
# over loopback, on this machine (see docs/benchmarks.md).  Not a test: it
# prints PASS/MISS next to each target and never fails on a miss.
#
#   scripts/bench.sh                  (make bench builds the module first)
#
# Configurations, each its own nginx (own prefix, worker_processes
# BENCH_WORKERS) on its own loopback port, content always empty_gif (a
# content-phase handler: "return 200" would answer in the rewrite phase,
# before any access-phase limit runs):
#   baseline    stock nginx, empty_gif
#   limit_req   nginx limit_req, zone in shared memory keyed on the client
#               address, a rate nothing reaches
#   openresty   stock nginx + Debian's lua module and lua-resty-redis running
#               an equivalent sliding-log script (scripts/bench/
#               openresty_peer.lua) with EVALSHA on a keepalive pool, in
#               access_by_lua (skipped, with the reason printed, if the lua
#               module cannot be installed or loaded)
#   for each algorithm the built module accepts (probed with nginx -t):
#     ALG/pass      requests=1000000000 window=1h, the client address: one hot key
#     ALG/distinct  the same limit with key=$request_id: a new key per request
#     ALG/attack    requests=1 window=1h after one warm-up request: all rejected
#                   (with rate_limit_local_cache on, when the module has it)
#     ALG/down      rate_limit_redis on a closed port, rate_limit_fallback open
#
# BENCH_ROUNDS rounds; in each round every configuration gets one wrk run,
# the order rotated from round to round; figures are given as ratios to the
# baseline of the same round, then as medians over the rounds.  Redis
# commands per request come from INFO commandstats deltas (commands run
# inside scripts included) over wrk's request count.
#
# Environment:
#   BENCH_DURATION=3         seconds per wrk run
#   BENCH_ROUNDS=3
#   BENCH_CONNECTIONS=32     wrk -c
#   BENCH_THREADS=1          wrk -t
#   BENCH_WORKERS=1          worker_processes of every nginx
#   BENCH_ALGORITHMS="sliding_log sliding_window gcra fixed_window"
#   BENCH_MEMORY=1           0 skips the memory part: Redis bytes per key of
#                            each algorithm, and nginx worker RSS around
#                            BENCH_MEMORY_REQUESTS requests with distinct keys
#                            (for the first algorithm; all: for each)
#   BENCH_MEMORY_REQUESTS=1000000
#   BENCH_OUT=build/bench    where the raw results and the summary go
#   BENCH_ONLY=REGEX         only the configurations whose id matches (and
#                            the baseline), e.g. '^gcra/|openresty'
#   BENCH_KEEP_TMP=1         keep the nginx prefixes and logs in /tmp
#   NGINX=/usr/sbin/nginx  MODULE=build/ngx_http_rate_limit_module.so
#
# Needs wrk (installed with apt-get when missing); the OpenResty-style peer
# needs libnginx-mod-http-lua and lua-nginx-redis (which pulls nginx-extras).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
here=$top/scripts/bench

nginx=${NGINX:-/usr/sbin/nginx}
module=${MODULE:-$top/build/ngx_http_rate_limit_module.so}
duration=${BENCH_DURATION:-3}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNECTIONS:-32}
threads=${BENCH_THREADS:-1}
workers=${BENCH_WORKERS:-1}
algorithms=${BENCH_ALGORITHMS:-sliding_log sliding_window gcra fixed_window}
memory=${BENCH_MEMORY:-1}
mem_requests=${BENCH_MEMORY_REQUESTS:-1000000}
out=$(realpath -m "${BENCH_OUT:-$top/build/bench}")

[ -f "$module" ] || { echo "bench: no $module, run 'make build'" >&2; exit 1; }
case $memory in 0|1|all) ;; *) echo "bench: BENCH_MEMORY is 0, 1 or all" >&2; exit 2 ;; esac
for v in "$duration" "$rounds" "$conns" "$threads" "$workers" "$mem_requests"
do
    case $v in
    ''|*[!0-9]*|0) echo "bench: bad number \"$v\" in BENCH_*" >&2; exit 2 ;;
    esac
done

# ---- Debian packages: wrk is needed, the lua peer's are optional ---------

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "not root and no sudo"; return 1; }
        sudo=sudo
    fi
    echo "bench: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${apt_updated:-}" ]; then
        $sudo apt-get update -qq >&2 || return 1
        apt_updated=1
    fi
    $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

installed wrk || apt_install wrk || { echo "bench: cannot install wrk" >&2; exit 1; }

lua_skip=""
lua_pkgs="libnginx-mod-http-ndk libnginx-mod-http-lua lua-nginx-redis"
missing=""
for p in $lua_pkgs; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
    # lua-nginx-redis depends on nginx-extras, which brings many modules
    # along; none of them is loaded by these benchmarks
    # shellcheck disable=SC2086
    apt_install $missing || lua_skip="cannot install:$missing"
fi

# ---- the workplace ---------------------------------------------------------

tmp=$(mktemp -d /tmp/rl-bench.XXXXXX)
chmod 755 "$tmp"                       # workers run as nobody
mkdir -p "$out"
redis_dir=$tmp/redis
started=()                             # nginx prefixes to stop

stop_nginx() {
    local pidfile=$1/logs/nginx.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -QUIT "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
}

cleanup() {
    local d
    for d in "${started[@]}"; do stop_nginx "$d"; done
    "$top/scripts/redis.sh" stop "$redis_dir"
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
        echo "bench: left $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0) or die "$!\n";
        print $s->sockport, "\n";'
}

# a private copy: "make build" elsewhere rewrites build/*.so in place, and a
# running nginx that mapped it would crash
cp "$module" "$tmp/ngx_http_rate_limit_module.so"
module=$tmp/ngx_http_rate_limit_module.so

redis_port=$("$top/scripts/redis.sh" start "$redis_dir")
redis_pid=$(cat "$redis_dir/redis.pid")
rcli() { redis-cli -p "$redis_port" "$@"; }
# nobody listens there: the "Redis down" configurations point at it
closed_port=$(free_port)

# ---- nginx configurations ---------------------------------------------------

# write_conf DIR PORT TOP_LINES HTTP_LINES LOCATION_LINES [MORE_LOCATIONS]
write_conf() {
    local dir=$1 port=$2
    mkdir -p "$dir/conf" "$dir/logs" "$dir/temp"
    cat > "$dir/conf/nginx.conf" <<CONF
$3
worker_processes $workers;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }

http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
$4
    server {
        listen 127.0.0.1:$port;
        location / {
$5
            empty_gif;
        }
${6:-}
    }
}
CONF
}

# probe_module RATE_LIMIT_PARAMS [HTTP_LINES]: does nginx -t accept it?
probe_module() {
    local dir=$tmp/probe
    rm -rf "$dir"
    write_conf "$dir" 1 "load_module $module;" "
    rate_limit_redis 127.0.0.1:$redis_port;
    ${2:-}" "            rate_limit probe $1;"
    "$nginx" -t -q -p "$dir/" -c conf/nginx.conf > "$dir/err" 2>&1
}

probe_error() {
    grep -m1 -E "emerg|error" "$tmp/probe/err" | sed 's/^.*\] //' || true
}

ids=()
declare -A port kind alg desc dir note up

add_config() {   # ID KIND ALG DESCRIPTION NOTE
    ids+=("$1")
    kind[$1]=$2 alg[$1]=$3 desc[$1]=$4 note[$1]=${5:--}
    port[$1]=$(free_port)
    dir[$1]=$tmp/nginx/${1//\//-}
}

add_config baseline baseline - "baseline: stock nginx, empty_gif"
write_conf "${dir[baseline]}" "${port[baseline]}" "" "" ""

add_config limit_req limit_req - "nginx limit_req (shm zone, per address)"
write_conf "${dir[limit_req]}" "${port[limit_req]}" "" "
    limit_req_zone \$binary_remote_addr zone=bench:1m rate=100000000r/s;" "
            limit_req zone=bench burst=100000 nodelay;"

# the OpenResty-style peer, from Debian's packages
lua_load=""
if [ -z "$lua_skip" ]; then
    for f in /usr/share/nginx/modules-available/mod-http-ndk.conf \
             /usr/share/nginx/modules-available/mod-http-lua.conf; do
        if [ -f "$f" ]; then
            lua_load="$lua_load$(sed -n 's/^\s*\(load_module .*;\)/\1/p' "$f")
"
        fi
    done
    # the package's lines name modules/ relative to Debian's prefix
    lua_load=$(printf '%s' "$lua_load" | sed 's#load_module modules/#load_module /usr/share/nginx/modules/#')
    [ -n "$lua_load" ] || lua_skip="no load_module lines in /usr/share/nginx/modules-available/"
fi
if [ -z "$lua_skip" ]; then
    # the cosocket pool keeps an idle connection for every client connection
    # (64 at least): with fewer, wrk's connections beyond the pool would make
    # the peer close and open a Redis connection per request
    peer_pool=$(( conns > 64 ? conns : 64 ))
    add_config openresty peer - "OpenResty-style: lua-resty-redis EVALSHA"
    mkdir -p "${dir[openresty]}/lua"
    cp "$here/openresty_peer.lua" "${dir[openresty]}/lua/bench_peer.lua"
    write_conf "${dir[openresty]}" "${port[openresty]}" "$lua_load" "
    lua_package_path \"${dir[openresty]}/lua/?.lua;/usr/share/lua/5.1/?.lua;;\";
    init_by_lua_block { require \"bench_peer\" }" "
            access_by_lua_block {
                require(\"bench_peer\").access(\"127.0.0.1\", $redis_port,
                    \"bench_lua:\" .. ngx.var.remote_addr .. \":peer\",
                    1000000000, 3600000, $peer_pool)
            }"
    if ! "$nginx" -t -q -p "${dir[openresty]}/" -c conf/nginx.conf \
            > "$tmp/lua.err" 2>&1; then
        lua_skip="nginx -t with the lua module fails: $(grep -m1 -E 'emerg|error' "$tmp/lua.err" | sed 's/^.*\] //')"
        unset 'ids[${#ids[@]}-1]'
    fi
fi
[ -z "$lua_skip" ] || echo "bench: OpenResty-style peer skipped: $lua_skip"

# what the built module accepts
cache_line=""
cache_note="rate_limit_local_cache not accepted by this build"
if probe_module "requests=10 window=1m" "rate_limit_local_cache on;"; then
    cache_line="rate_limit_local_cache on;"
    cache_note="-"
else
    echo "bench: $cache_note: $(probe_error)"
fi

algs=()
declare -A alg_param
for a in $algorithms; do
    if probe_module "requests=10 window=1m algorithm=$a"; then
        alg_param[$a]="algorithm=$a"
    elif [ "$a" = sliding_log ] && probe_module "requests=10 window=1m"; then
        alg_param[$a]=""
        echo "bench: algorithm= not accepted; sliding_log is the default, benchmarked without it"
    else
        echo "bench: algorithm $a skipped: nginx -t says: $(probe_error)"
        continue
    fi
    algs+=("$a")
done
[ ${#algs[@]} -gt 0 ] || { echo "bench: the module accepts no algorithm" >&2; exit 1; }

common="
    rate_limit_key_prefix bench;"

for a in "${algs[@]}"; do
    p=${alg_param[$a]}

    add_config "$a/pass" pass "$a" "$a: nothing rejected, hot key"
    write_conf "${dir[$a/pass]}" "${port[$a/pass]}" "load_module $module;" "
    rate_limit_redis 127.0.0.1:$redis_port;$common" "
            rate_limit bench_${a}_pass requests=1000000000 window=1h $p;" "
        # the memory part: bytes per key after N requests of one client
        location /memkey {
            rate_limit bench_${a}_memkey requests=1000 window=1h $p;
            empty_gif;
        }"

    add_config "$a/distinct" distinct "$a" "$a: nothing rejected, \$request_id keys"
    write_conf "${dir[$a/distinct]}" "${port[$a/distinct]}" "load_module $module;" "
    rate_limit_redis 127.0.0.1:$redis_port;$common" "
            rate_limit bench_${a}_distinct requests=1000000000 window=1h key=\$request_id $p;" "
        # the memory part: a key per request that expires within a second
        location /mem {
            rate_limit bench_${a}_mem requests=1000000000 window=1s key=\$request_id $p;
            empty_gif;
        }"

    add_config "$a/attack" attack "$a" "$a: under attack, all rejected" "$cache_note"
    write_conf "${dir[$a/attack]}" "${port[$a/attack]}" "load_module $module;" "
    rate_limit_redis 127.0.0.1:$redis_port;$common
    $cache_line" "
            rate_limit bench_${a}_attack requests=1 window=1h $p;"

    add_config "$a/down" down "$a" "$a: Redis down, fallback open"
    write_conf "${dir[$a/down]}" "${port[$a/down]}" "load_module $module;" "
    rate_limit_redis 127.0.0.1:$closed_port;$common
    rate_limit_fallback open;" "
            rate_limit bench_${a}_down requests=1000000000 window=1h $p;"
done

# BENCH_ONLY: a regex of the ids to run (the baseline always runs)
if [ -n "${BENCH_ONLY:-}" ]; then
    kept=()
    for id in "${ids[@]}"; do
        if [ "$id" = baseline ] || [[ $id =~ $BENCH_ONLY ]]; then
            kept+=("$id")
        fi
    done
    ids=("${kept[@]}")
fi

for id in "${ids[@]}"; do
    if ! "$nginx" -t -q -p "${dir[$id]}/" -c conf/nginx.conf > "$tmp/t.err" 2>&1; then
        echo "bench: nginx -t fails for $id:" >&2
        cat "$tmp/t.err" >&2
        exit 1
    fi
    "$nginx" -q -p "${dir[$id]}/" -c conf/nginx.conf
    started+=("${dir[$id]}")
    up[$id]=1
done

# up when each answers
for id in "${ids[@]}"; do
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:${port[$id]}/" && break
        sleep 0.05
    done
done

# ---- helpers of the runs ------------------------------------------------------

# "TOTAL EVALS": commands Redis ran (inside scripts too) and scripts called,
# less what this script sends itself
cmdstats() {
    rcli info commandstats | tr -d '\r' | awk -F'[:,=]' '
        /^cmdstat_/ {
            name = substr($1, 9)
            if (name ~ /^(info|flushall|memory\||scan|dbsize|ping)/) next
            total += $3
            if (name ~ /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/)
                evals += $3
        }
        END { print total + 0, evals + 0 }'
}

# worker pids of the nginx in DIR (children of its master)
worker_pids() {
    pgrep -P "$(cat "$1/logs/nginx.pid")" | tr '\n' ' '
}

rss_kib() {   # summed VmRSS of the workers of the nginx in DIR
    local pid sum=0 v
    for pid in $(worker_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# lines of the error log at warn and above, rejections left out
errlog_lines() {
    grep -E '\[(warn|error|crit|alert|emerg)\]' "$1/logs/error.log" 2>/dev/null \
        | grep -vc "Rate limit exceeded" || true
}

wrk_field() {   # NAME LINE
    sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" <<< " $2"
}

configs_tsv=$out/configs.tsv
results_tsv=$out/results.tsv
: > "$results_tsv"
: > "$configs_tsv"
for id in "${ids[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "${kind[$id]}" "${alg[$id]}" \
        "${note[$id]}" "${desc[$id]}" >> "$configs_tsv"
done

# CPU time, in clock ticks, of the given pids (utime + stime)
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

hz=$(getconf CLK_TCK)

# busy CPU ticks of the whole machine: user nice system irq softirq steal
machine_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

run_one() {   # ROUND ID
    local r=$1 id=$2 url="http://127.0.0.1:${port[$2]}/" line before after
    local log0 log1 cmds evals req wpids ng0 ng1 rd0 rd1 wrkcpu d p50 p99 nx
    local all0 all1 other

    rcli flushall > /dev/null
    # warm-up: the Redis connection is up, the script loaded; for attack,
    # the one request that passes
    curl -s -o /dev/null "$url"
    log0=$(errlog_lines "${dir[$id]}")
    before=$(cmdstats)
    wpids=$(worker_pids "${dir[$id]}")
    # shellcheck disable=SC2086
    ng0=$(cpu_ticks $wpids)
    rd0=$(cpu_ticks "$redis_pid")
    all0=$(machine_ticks)

    # bash's time gives wrk's own CPU time (user + system)
    line=$( { TIMEFORMAT='WRKCPU %3U %3S'; time wrk -t"$threads" -c"$conns" \
                -d"${duration}s" --latency -s "$here/wrk.lua" "$url"; } 2>&1 \
            | grep -E '^(WRK|WRKCPU) ' | tr '\n' ' ' || true)

    # shellcheck disable=SC2086
    ng1=$(cpu_ticks $wpids)
    rd1=$(cpu_ticks "$redis_pid")
    all1=$(machine_ticks)
    after=$(cmdstats)
    log1=$(errlog_lines "${dir[$id]}")

    if ! grep -q 'WRK ' <<< "$line"; then
        echo "bench: wrk gave no result for $id: $line" >&2
        return
    fi

    cmds=$(( ${after% *} - ${before% *} ))
    evals=$(( ${after#* } - ${before#* } ))
    req=$(wrk_field requests "$line")
    d=$(wrk_field duration_us "$line")
    p50=$(wrk_field p50 "$line")
    p99=$(wrk_field p99 "$line")
    nx=$(wrk_field status "$line")
    wrkcpu=$(sed -n 's/.*WRKCPU \([0-9.]*\) \([0-9.]*\).*/\1 \2/p' <<< "$line" \
             | awk '{printf "%d", ($1 + $2) * 1000}')

    # the rest of the machine's CPU time: other processes, and the kernel's
    # loopback work outside any process (softirq)
    other=$(( (all1 - all0 - (ng1 - ng0) - (rd1 - rd0)) * 1000 / hz - ${wrkcpu:-0} ))
    [ "$other" -ge 0 ] || other=0

    # round id requests duration_us non2xx sockerr p50_us p99_us cmds evals
    # errlog nginx_cpu_ms redis_cpu_ms wrk_cpu_ms other_cpu_ms
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$r" "$id" "$req" "$d" "$nx" \
        "$(( $(wrk_field connect "$line") + $(wrk_field read "$line") \
             + $(wrk_field write "$line") + $(wrk_field timeout "$line") ))" \
        "$p50" "$p99" "$cmds" "$evals" "$((log1 - log0))" \
        "$(( (ng1 - ng0) * 1000 / hz ))" "$(( (rd1 - rd0) * 1000 / hz ))" \
        "${wrkcpu:-0}" "$other" >> "$results_tsv"

    awk -v r="$r" -v id="$id" -v req="$req" -v d="$d" -v p50="$p50" \
        -v p99="$p99" -v c="$cmds" -v nx="$nx" \
        -v ng="$(( (ng1 - ng0) * 1000 / hz ))" \
        -v rd="$(( (rd1 - rd0) * 1000 / hz ))" -v wk="${wrkcpu:-0}" \
        -v ot="$other" 'BEGIN {
        s = d / 1e6
        printf "  round %s %-22s %8.0f req/s  p50 %6.3f  p99 %6.3f ms  %5.2f cmds/req  %6d non-2xx  CPU%% nginx %3.0f redis %3.0f wrk %3.0f other %3.0f\n",
            r, id, req / s, p50 / 1000, p99 / 1000, req ? c / req : 0, nx,
            ng / s / 10, rd / s / 10, wk / s / 10, ot / s / 10 }'
}

# ---- the rounds -------------------------------------------------------------

n=${#ids[@]}
step=$(( (n + rounds - 1) / rounds ))
[ "$step" -gt 0 ] || step=1

cpu_model=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
redis_version=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git -C "$top" status --porcelain -- src config 2>/dev/null)" ]; then
    rev="$rev (src/ with uncommitted changes)"
fi

cat <<TXT
== ngx_http_rate_limit_module benchmark, source $rev
   $(nproc) CPUs ($cpu_model), $(uname -r), load average $load0
   nginx $("$nginx" -v 2>&1 | sed 's/.*\///'), worker_processes $workers each; redis-server $redis_version on 127.0.0.1:$redis_port
   wrk -t$threads -c$conns -d${duration}s --latency; $rounds round(s) of ${#ids[@]} configurations; algorithms: ${algs[*]}
TXT

for r in $(seq "$rounds"); do
    off=$(( ((r - 1) * step) % n ))
    order=("${ids[@]:off}" "${ids[@]:0:off}")
    echo "-- round $r/$rounds: ${order[*]}"
    for id in "${order[@]}"; do
        run_one "$r" "$id"
    done
done

summary=$out/summary.txt
{
    echo "== ngx_http_rate_limit_module benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), source $rev"
    echo "   $(nproc) CPUs ($cpu_model), load average at start $load0"
    echo "   nginx $("$nginx" -v 2>&1 | sed 's/.*\///') worker_processes $workers, redis-server $redis_version, wrk -t$threads -c$conns -d${duration}s, $rounds round(s)"
    perl "$here/report.pl" "$configs_tsv" "$results_tsv"
} > "$summary"

# ---- memory -------------------------------------------------------------------

if [ "$memory" != 0 ]; then
    {
        echo
        echo "== Redis memory per key: MEMORY USAGE (SAMPLES 0) and PTTL after N requests"
        echo "   of one client (requests=1000 window=1h, so that every key stays)"
        printf '%-16s %6s %6s %10s %8s %10s\n' algorithm N keys bytes/key type "ttl s"
    } >> "$summary"

    for a in "${algs[@]}"; do
        [ -n "${up[$a/pass]:-}" ] || continue
        for nreq in 10 100; do
            rcli flushall > /dev/null
            curl -s "http://127.0.0.1:${port[$a/pass]}/memkey?[1-$nreq]" > /dev/null
            keys=$(rcli --scan --pattern 'bench:*')
            nkeys=0 bytes=0 type=- ttl=-
            for k in $keys; do
                nkeys=$((nkeys + 1))
                bytes=$((bytes + $(rcli memory usage "$k" samples 0)))
                type=$(rcli type "$k")
                ttl=$(rcli pttl "$k" | awk '{printf "%.1f", $1 / 1000}')
            done
            printf '%-16s %6s %6s %10s %8s %10s\n' "$a" "$nreq" "$nkeys" \
                "$([ $nkeys -gt 0 ] && echo $((bytes / nkeys)) || echo -)" \
                "$type" "$ttl" >> "$summary"
        done
    done

    {
        echo
        echo "== nginx worker RSS around $mem_requests requests with distinct keys (key=\$request_id, window=1s)"
        printf '%-16s %10s %12s %12s %10s %12s %12s\n' algorithm requests \
            "RSS before" "RSS after" "growth" "Redis keys" "Redis mem"
    } >> "$summary"

    # nginx keeps no per-key state of its own but the over-limit cache (a
    # fixed-size zone): one algorithm shows a leak per request or per key,
    # unless BENCH_MEMORY=all
    mem_algs=("${algs[0]}")
    [ "$memory" = all ] && mem_algs=("${algs[@]}")

    for a in "${mem_algs[@]}"; do
        [ -n "${up[$a/distinct]:-}" ] || continue
        d=${dir[$a/distinct]}
        url="http://127.0.0.1:${port[$a/distinct]}/mem"
        echo "-- memory: $a, $mem_requests requests with distinct keys"
        rcli flushall > /dev/null
        curl -s -o /dev/null "$url"
        rss0=$(rss_kib "$d")
        line=$(BENCH_STOP_AFTER=$mem_requests \
               wrk -t1 -c"$conns" -d600s -s "$here/wrk.lua" "$url" \
               | grep '^WRK ' || true)
        rss1=$(rss_kib "$d")
        dbsize=$(rcli dbsize)
        used=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory_human://p')
        printf '%-16s %10s %9s KiB %9s KiB %6s KiB %12s %12s\n' "$a" \
            "$(wrk_field requests "$line")" "$rss0" "$rss1" \
            "$((rss1 - rss0))" "$dbsize" "$used" >> "$summary"
        rcli flushall > /dev/null
    done
fi

echo
cat "$summary"
echo
echo "raw results: $results_tsv, summary: $summary"
