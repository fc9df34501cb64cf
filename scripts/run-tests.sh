#!/bin/bash
# Runs the test suites against a redis-server of their own on loopback.
#
#   scripts/run-tests.sh unit      the cmocka unit tests
#   scripts/run-tests.sh all       unit tests, then prove -r t/
#
# Exits non-zero when any test fails.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
build=${BUILD:-build}
case $build in /*) ;; *) build=$top/$build ;; esac

tmp=$(mktemp -d /tmp/rl-test.XXXXXX)
chmod 755 "$tmp"

cleanup() {
    "$top/scripts/redis.sh" stop "$tmp/redis"
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$("$top/scripts/redis.sh" start "$tmp/redis") || exit 1

export RL_TEST_REDIS_PORT=$port
export TEST_NGINX_REDIS_PORT=$port
export TEST_NGINX_REDIS_HOST=127.0.0.1
export TEST_NGINX_LOAD_MODULE=$build/ngx_http_rate_limit_module.so
export TEST_NGINX_TOOLS_DIR=$build/tools

status=0

echo "== unit tests (cmocka), redis-server on 127.0.0.1:$port"
for t in "$build"/unit/test_*; do
    [ -x "$t" ] || continue
    "$t" || status=1
done

if [ "$what" = all ]; then
    echo "== request tests (prove -r t/)"
    cd "$top" && prove -r t/ || status=1
fi

exit $status
