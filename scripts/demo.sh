#!/bin/bash
# The demo: the stock Debian nginx loads the module, a local redis-server
# keeps the counts, a second nginx plays Odoo, and 15 requests to a
# /signature/ location limited to 10 per hour show 10 passes, then 429s.
#
#   scripts/demo.sh          run the demo and stop everything it started
#   scripts/demo.sh --keep   leave the stack running until Ctrl-C
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
keep=no
[ "${1:-}" = "--keep" ] && keep=yes

nginx=${NGINX:-/usr/sbin/nginx}
module=${MODULE:-$top/build/ngx_http_rate_limit_module.so}
[ -f "$module" ] || { echo "demo: no $module, run 'make build'" >&2; exit 1; }

tmp=$(mktemp -d /tmp/rl-demo.XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/front/logs" "$tmp/front/conf" "$tmp/odoo/logs" \
         "$tmp/odoo/conf" "$tmp/temp"

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0) or die "$!\n";
        print $s->sockport, "\n";'
}

stop_nginx() {
    local pidfile=$1/logs/nginx.pid pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -QUIT "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
}

cleanup() {
    stop_nginx "$tmp/front"
    stop_nginx "$tmp/odoo"
    "$top/scripts/redis.sh" stop "$tmp/redis"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

front_port=${DEMO_PORT:-$(free_port)}
odoo_port=$(free_port)
redis_port=$("$top/scripts/redis.sh" start "$tmp/redis")

temp_paths="client_body_temp_path $tmp/temp/body;
    proxy_temp_path $tmp/temp/proxy;
    fastcgi_temp_path $tmp/temp/fastcgi;
    uwsgi_temp_path $tmp/temp/uwsgi;
    scgi_temp_path $tmp/temp/scgi;"

# the stand-in for Odoo: answers every page with 200
cat > "$tmp/odoo/conf/nginx.conf" <<CONF
worker_processes 1;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 128; }
http {
    access_log off;
    $temp_paths
    server {
        listen 127.0.0.1:$odoo_port;
        default_type text/html;
        location / {
            return 200 "<html><body>Odoo: \$request_uri</body></html>\n";
        }
    }
}
CONF

# the front: nginx with the module in front of "Odoo"
cat > "$tmp/front/conf/nginx.conf" <<CONF
load_module $module;

worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 512; }

http {
    log_format ratelimit '\$remote_addr "\$request" \$status \$rate_limit_status';
    access_log logs/access.log ratelimit;
    $temp_paths

    rate_limit_redis 127.0.0.1:$redis_port;
    rate_limit_key_prefix school_asset:rate_limit;

    upstream odoo {
        server 127.0.0.1:$odoo_port;
    }

    server {
        listen 127.0.0.1:$front_port;

        location /signature/ {
            rate_limit signature requests=10 window=1h;
            proxy_pass http://odoo;
        }

        location / {
            proxy_pass http://odoo;
        }
    }
}
CONF

"$nginx" -q -p "$tmp/odoo/" -c conf/nginx.conf
"$nginx" -q -t -p "$tmp/front/" -c conf/nginx.conf
"$nginx" -q -p "$tmp/front/" -c conf/nginx.conf
sleep 0.3

url=http://127.0.0.1:$front_port/signature/checkout?token=demo
key=school_asset:rate_limit:127.0.0.1:signature

cat <<TXT
== ngx_http_rate_limit_module demo
   nginx $("$nginx" -v 2>&1 | sed 's/.*\///') with $module
   redis-server on 127.0.0.1:$redis_port, "Odoo" stand-in on 127.0.0.1:$odoo_port
   location /signature/ { rate_limit signature requests=10 window=1h; }

== 15 requests to $url
TXT

for i in $(seq 1 15); do
    out=$(curl -s -D - -o "$tmp/body" "$url")
    code=$(printf '%s' "$out" | head -1 | awk '{print $2}')
    if grep -q "Rate limit exceeded" "$tmp/body"; then
        retry=$(printf '%s' "$out" | tr -d '\r' | awk -F': ' \
                'tolower($1) == "retry-after" {print $2}')
        printf 'Request %2d: %s Rate limit exceeded (Retry-After: %s)\n' \
               "$i" "$code" "$retry"
    else
        printf 'Request %2d: %s Allowed\n' "$i" "$code"
    fi
done

cat <<TXT

== where the counts live (redis-cli -p $redis_port)
\$ redis-cli keys "school_asset:rate_limit:*"
$(redis-cli -p "$redis_port" keys "school_asset:rate_limit:*")
\$ redis-cli zrange $key 0 -1 WITHSCORES
   (one member per allowed request, named by the time Redis allowed it;
    its score is the same time, as the double Redis stores)
$(redis-cli -p "$redis_port" zrange "$key" 0 -1 WITHSCORES | paste - - | head -12)
\$ redis-cli ttl $key
$(redis-cli -p "$redis_port" ttl "$key")

== what nginx logged (error.log)
$(grep -E "rate limit check passed|Rate limit exceeded" "$tmp/front/logs/error.log" \
    | sed -E 's/^[0-9\/]+ [0-9:]+ //; s/, client:.*//' | sed -n '1p;10,12p')
TXT

if [ $keep = yes ]; then
    cat <<TXT

== the stack is up; press Ctrl-C to stop it
   try:  curl -i http://127.0.0.1:$front_port/signature/checkout
         redis-cli -p $redis_port zrange $key 0 -1 WITHSCORES
         redis-cli -p $redis_port del $key        (resets the budget)
   config: $tmp/front/conf/nginx.conf
   logs:   $tmp/front/logs/error.log, $tmp/front/logs/access.log
TXT
    while :; do sleep 3600; done
fi

echo
echo "== stopped nginx, the Odoo stand-in and redis-server"
