#!/bin/sh
# A throwaway redis-server on loopback for tests and the demo.
#
#   scripts/redis.sh start DIR [PORT]   start one in DIR (a free port when
#                                        none is given); prints the port
#   scripts/redis.sh stop DIR           stop the one started in DIR, by pid
set -eu

cmd=${1:?usage: redis.sh start|stop DIR [PORT]}
dir=${2:?usage: redis.sh start|stop DIR [PORT]}

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0, Proto => "tcp")
            or die "no free port: $!\n";
        print $s->sockport, "\n";'
}

case $cmd in
start)
    mkdir -p "$dir"
    port=${3:-$(free_port)}
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    # up when it answers
    i=0
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "redis.sh: redis-server did not start, see $dir/redis.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "$port" > "$dir/redis.port"
    echo "$port"
    ;;
stop)
    [ -f "$dir/redis.pid" ] || exit 0
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/redis.pid"
    ;;
*)
    echo "usage: redis.sh start|stop DIR [PORT]" >&2
    exit 2
    ;;
esac
