#!/bin/bash
# Checks the Debian package built by "make deb" (scripts/deb.sh):
#
#  1. its contents and its Depends (shlibs and the nginx ABI from dh_nginx);
#  2. in a scratch root (dpkg -x): the stock nginx loads the packaged .so
#     through the packaged modules-available snippet ("nginx -t"), then
#     serves 12 requests to a location limited to 10, with a throwaway
#     redis-server: 10 pass, 2 get 429;
#  3. on the machine itself, when it is safe (root, no system nginx running,
#     the package and the module not installed already): apt-get installs the
#     .deb, the system configuration passes "nginx -t" and loads the module
#     through /etc/nginx/modules-enabled/50-mod-http-rate-limit.conf, then
#     dpkg --remove and dpkg --purge leave nothing behind and "nginx -t"
#     still passes. Set RL_DEB_SYSTEM=no to skip this part, RL_DEB_SYSTEM=yes
#     to fail instead of skipping when it is not safe.
#
#   scripts/test-deb.sh [BUILD_DIR]
#
# Everything it starts is stopped by pid and everything it installs is
# purged, also when a check fails.
set -uo pipefail
# the bash -c '...' checks get their values as arguments, on purpose
# shellcheck disable=SC2016

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$top/build}")
pkg=libnginx-mod-http-rate-limit
nginx=${NGINX:-/usr/sbin/nginx}
system=${RL_DEB_SYSTEM:-auto}

cd "$top" || exit 1
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$out/${pkg}_${version}_${arch}.deb

failures=0
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
check() {   # check "description" command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# the system configuration passes "nginx -t" (its output only on failure)
system_nginx_t() {
    "$nginx" -t -q >/dev/null 2>&1 && return 0
    "$nginx" -t 2>&1 | sed 's/^/     /'
    return 1
}

[ -f "$deb" ] || { echo "test-deb: no $deb; run 'make deb'" >&2; exit 1; }

tmp=$(mktemp -d /tmp/rl-test-deb.XXXXXX)
chmod 755 "$tmp"
nginx_pid=""
installed_by_us=no

cleanup() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$nginx_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$nginx_pid" 2>/dev/null
    fi
    "$top/scripts/redis.sh" stop "$tmp/redis"
    if [ $installed_by_us = yes ]; then
        dpkg --purge "$pkg" >/dev/null 2>&1
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== $deb"

# 1. contents and metadata
contents=$(dpkg-deb -c "$deb" | awk '{print $NF}')
for f in ./usr/lib/nginx/modules/ngx_http_rate_limit_module.so \
         ./usr/share/nginx/modules-available/mod-http-rate-limit.conf \
         ./usr/share/doc/$pkg/copyright; do
    check "the package holds $f" grep -qx "$f" <<< "$contents"
done
check "the package holds nothing under /etc (dh_nginx makes the symlink)" \
    bash -c '! grep -q "^\./etc/" <<< "$1"' _ "$contents"

depends=$(dpkg-deb -f "$deb" Depends)
echo "     Depends: $depends"
abi=$(sed -n 's/^nginx:abi=//p' \
      /usr/share/nginx/src/debian/libnginx-mod.abisubstvars)
check "Depends names the nginx ABI ($abi)" grep -qw -- "$abi" <<< "$depends"
check "Depends names libhiredis (from shlibs)" grep -q "libhiredis" <<< "$depends"
check "Depends names libstdc++ (from shlibs)" grep -q "libstdc++6" <<< "$depends"
check "the nginx binary provides that ABI" \
    bash -c 'dpkg-query -W -f="\${Provides}" nginx | grep -qw -- "$1"' _ "$abi"

# 2. scratch root: the packaged files, loaded by the stock nginx
root=$tmp/root
dpkg -x "$deb" "$root"
snippet=$root/usr/share/nginx/modules-available/mod-http-rate-limit.conf
check "the snippet is the load_module line" \
    grep -qx 'load_module modules/ngx_http_rate_limit_module.so;' "$snippet"

prefix=$tmp/prefix
mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/temp" "$prefix/html"
# like /usr/share/nginx/modules -> /usr/lib/nginx/modules
ln -s "$root/usr/lib/nginx/modules" "$prefix/modules"
echo "ok" > "$prefix/html/index.html"

port=$(perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                  LocalPort => 0) or die "$!\n";
    print $s->sockport, "\n";')
redis_port=$("$top/scripts/redis.sh" start "$tmp/redis") || {
    fail "redis-server starts"
    exit 1
}

cat > "$prefix/conf/nginx.conf" <<CONF
include $snippet;

worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 128; }

http {
    access_log off;
    client_body_temp_path $prefix/temp/body;
    proxy_temp_path $prefix/temp/proxy;
    fastcgi_temp_path $prefix/temp/fastcgi;
    uwsgi_temp_path $prefix/temp/uwsgi;
    scgi_temp_path $prefix/temp/scgi;

    rate_limit_redis 127.0.0.1:$redis_port;

    server {
        listen 127.0.0.1:$port;
        location /signature/ {
            rate_limit signature requests=10 window=1h;
            alias html/;
        }
    }
}
CONF

t_out=$("$nginx" -t -p "$prefix/" -c conf/nginx.conf 2>&1)
t_rc=$?
echo "$t_out" | sed 's/^/     /'
check "nginx -t loads the packaged module through its snippet" [ $t_rc -eq 0 ]

if [ $t_rc -eq 0 ]; then
    "$nginx" -p "$prefix/" -c conf/nginx.conf
    for _ in $(seq 50); do
        [ -s "$prefix/logs/nginx.pid" ] && break
        sleep 0.1
    done
    nginx_pid=$(cat "$prefix/logs/nginx.pid" 2>/dev/null)
    codes=""
    for _ in $(seq 12); do
        codes="$codes $(curl -s -o /dev/null -w '%{http_code}' \
                        "http://127.0.0.1:$port/signature/index.html")"
    done
    codes=${codes# }
    echo "     12 requests: $codes"
    check "10 requests pass, then 429" \
        [ "$codes" = "200 200 200 200 200 200 200 200 200 200 429 429" ]
fi

# 3. the real thing: apt-get install, nginx -t, remove, purge
run_system=$system
reason=""
if [ "$system" != no ]; then
    if [ "$(id -u)" -ne 0 ]; then
        reason="not root"
    elif dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
            | grep -q "installed"; then
        reason="$pkg is installed already"
    elif [ -e /usr/lib/nginx/modules/ngx_http_rate_limit_module.so ] \
         || [ -e /etc/nginx/modules-enabled/50-mod-http-rate-limit.conf ]; then
        reason="the module is installed already (make install?)"
    elif [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null
    then
        reason="a system nginx is running (the package's trigger would reload it)"
    elif ! "$nginx" -t -q >/dev/null 2>&1; then
        reason="the system configuration fails nginx -t already"
    fi
    if [ -n "$reason" ]; then
        if [ "$system" = yes ]; then
            fail "install on this machine: $reason"
        else
            echo "skip - install on this machine: $reason"
        fi
        run_system=no
    fi
fi

if [ "$run_system" != no ]; then
    enabled=/etc/nginx/modules-enabled/50-mod-http-rate-limit.conf
    installed_by_us=yes
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "$deb" > "$tmp/apt.log" 2>&1; then
        ok "apt-get install ./$(basename "$deb")"
    else
        sed 's/^/     /' "$tmp/apt.log"
        fail "apt-get install ./$(basename "$deb")"
    fi
    check "the module is in /usr/lib/nginx/modules" \
        [ -f /usr/lib/nginx/modules/ngx_http_rate_limit_module.so ]
    check "$enabled links to the snippet" \
        [ "$(readlink "$enabled")" = \
          /usr/share/nginx/modules-available/mod-http-rate-limit.conf ]
    t_out=$("$nginx" -t 2>&1)
    t_rc=$?
    echo "$t_out" | grep -v '^\S* \S* \[info\]' | sed 's/^/     /'
    check "nginx -t passes with the system configuration" [ $t_rc -eq 0 ]
    check "nginx -T shows the module's load_module line" \
        bash -c '"$1" -T 2>/dev/null | grep -qx "load_module modules/ngx_http_rate_limit_module.so;"' \
        _ "$nginx"

    dpkg --remove "$pkg" > "$tmp/dpkg.log" 2>&1
    check "dpkg --remove" [ $? -eq 0 ]
    check "the module is gone after remove" \
        [ ! -e /usr/lib/nginx/modules/ngx_http_rate_limit_module.so ]
    check "the snippet is gone after remove" \
        [ ! -e /usr/share/nginx/modules-available/mod-http-rate-limit.conf ]
    check "modules-enabled has no live link after remove" [ ! -e "$enabled" ]
    check "nginx -t passes after remove" system_nginx_t
    dpkg --purge "$pkg" >> "$tmp/dpkg.log" 2>&1
    check "dpkg --purge" [ $? -eq 0 ]
    installed_by_us=no
    check "no link is left in modules-enabled after purge" \
        bash -c '! ls /etc/nginx/modules-enabled/ | grep -q rate-limit'
    check "the package is not installed any more" \
        bash -c '! dpkg-query -W -f="\${Status}" "$1" 2>/dev/null | grep -q installed' \
        _ "$pkg"
    check "nginx -t passes after purge" system_nginx_t
fi

if [ $failures -gt 0 ]; then
    echo "test-deb: $failures check(s) failed"
    [ -f "$prefix/logs/error.log" ] && tail -20 "$prefix/logs/error.log"
    exit 1
fi
echo "test-deb: all checks passed"
