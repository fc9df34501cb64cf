#!/bin/bash
# The test suites under AddressSanitizer and UBSan (make test-asan).
#
#   scripts/test-asan.sh BUILD_DIR [t/FILE.t ...]
#
# BUILD_DIR holds a sanitized build: the module (scripts/build-module.sh
# with NGX_CC_OPT=-fsanitize=...), the unit tests (make SANITIZE=1) and the
# test peers; make test-asan builds all three in build/asan.  With no files
# given, the whole t/ suite runs.
#
# The stock nginx is not instrumented, so the sanitizer runtimes must be in
# the process before the module is loaded: TEST_NGINX_BINARY is a wrapper
# that execs nginx with the gcc runtimes in LD_PRELOAD and the sanitizer
# options in the environment.  The master and the workers it forks inherit
# them.  Reports are written to files in BUILD_DIR/asan-logs (asan.PID and
# ubsan.PID, per process); the run fails when any counts (below), when a
# unit test fails or when a request test fails.
#
# Options (see the wrapper below):
#   abort_on_error=1   an ASan error kills the worker with SIGABRT, which
#                      the master logs as an [alert]: the test block fails
#                      at once, and the report says where
#   detect_leaks=1     LeakSanitizer at every process exit, nginx's too.
#                      A leak counts only when the module, its core or
#                      hiredis allocated it: nginx keeps per-process arrays
#                      until exit, and the stock binary has no symbols to
#                      suppress those by name.  Memory the module takes
#                      from a pool is the pool's (its stack goes through
#                      ngx_alloc, ngx_calloc or ngx_memalign, which the
#                      module never calls itself): when nginx exits without
#                      destroying a cycle's pool (seen once in CI, a
#                      directive's array from cf->pool), that is nginx's
#   exitcode=0         a leak report at exit is not an abort
#   UBSan              reports and goes on (halt_on_error=0), so one run
#                      shows all of them; each report fails the run
# scripts/sanitize/asan-preload.c, preloaded too, keeps the module mapped
# until exit (for the leak stacks) and gets UBSan's reports into files.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: test-asan.sh BUILD_DIR [t/FILE.t ...]}
shift
case $build in /*) ;; *) build=$top/$build ;; esac
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(t/)

module=$build/ngx_http_rate_limit_module.so
nginx=${NGINX_BINARY:-/usr/sbin/nginx}

for f in "$module" "$build/tools/rl-fault-proxy"; do
    [ -e "$f" ] || { echo "test-asan: $f is missing (make test-asan)" >&2; exit 1; }
done
ldd "$module" | grep libasan > /dev/null || {
    echo "test-asan: $module is not built with -fsanitize=address" >&2
    exit 1
}

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for f in "$libasan" "$libubsan"; do
    [ -f "$f" ] || { echo "test-asan: gcc has no $f (libasan/libubsan)" >&2; exit 1; }
done

# workers run as nobody and write their reports here too: a directory in
# /tmp, which they can reach whatever the permissions of the work tree
# (a CI clone may sit under a 0700 directory); moved into the build when done
logs=$(mktemp -d /tmp/rl-asan-logs.XXXXXX)
chmod 1777 "$logs"

gcc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$build/asan-preload.so" \
    "$top/scripts/sanitize/asan-preload.c" || exit 1

# The common flags (log_path, abort_on_error, ...) are the same in all three
# variables: the two runtimes set each other's report path.
common="log_path=$logs/asan:abort_on_error=1:exitcode=0:detect_leaks=1"
common="$common:fast_unwind_on_malloc=0:malloc_context_size=30"
wrapper=$build/nginx-asan
cat > "$wrapper" << EOF
#!/bin/sh
# nginx with AddressSanitizer and UBSan (scripts/test-asan.sh)
export LD_PRELOAD="$libasan $build/asan-preload.so $libubsan"
export ASAN_OPTIONS="$common:strict_init_order=1"
# LeakSanitizer reads its suppressions in each exiting worker, as nobody:
# the copy in the log directory is readable where the work tree may not be
cp "$top/scripts/sanitize/lsan.supp" "$logs/lsan.supp"
chmod 644 "$logs/lsan.supp"
export LSAN_OPTIONS="$common:suppressions=$logs/lsan.supp"
export UBSAN_OPTIONS="$common:print_stacktrace=1:halt_on_error=0"
export RL_UBSAN_LOG_PATH="$logs/ubsan"
exec "$nginx" "\$@"
EOF
chmod 755 "$wrapper"

"$wrapper" -V > "$build/nginx-asan.out" 2>&1 || {
    echo "test-asan: $wrapper does not run:" >&2
    cat "$build/nginx-asan.out" >&2
    exit 1
}

tmp=$(mktemp -d /tmp/rl-asan.XXXXXX)
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
export TEST_NGINX_LOAD_MODULE=$module
export TEST_NGINX_TOOLS_DIR=$build/tools
export TEST_NGINX_BINARY=$wrapper

status=0
start=$(date +%s)

echo "== unit tests (cmocka, -fsanitize=address,undefined), redis on 127.0.0.1:$port"
n=0
for t in "$build"/unit/test_*; do
    [ -x "$t" ] || continue
    n=$((n + 1))
    ldd "$t" | grep libasan > /dev/null || {
        echo "test-asan: $t is not built with SANITIZE=1 (remove $build/unit)" >&2
        status=1
        continue
    }
    u="log_path=$logs/unit:detect_leaks=1"
    ASAN_OPTIONS=$u LSAN_OPTIONS=$u UBSAN_OPTIONS="$u:print_stacktrace=1" \
        "$t" || status=1
done
[ $n -gt 0 ] || { echo "test-asan: no unit tests in $build/unit" >&2; status=1; }

echo "== request tests under ASan/UBSan: ${tests[*]}"
cd "$top" && prove -r "${tests[@]}" || status=1

# the leak filter below takes whatever went through nginx's allocators for
# pool memory: it holds only while the module never calls them itself
if grep -nE '\bngx_(alloc|calloc|memalign|create_pool)\(' "$top"/src/*.c; then
    echo "test-asan: the module calls nginx's allocators (above): the leak" \
         "filter would hide its leaks; update it" >&2
    status=1
fi

echo "== sanitizer reports ($(($(date +%s) - start)) s)"
perl -e '
    my ($bad, $core) = (0, 0);
    for my $f (sort glob "$ARGV[0]/*") {
        open my $fh, "<", $f or next;
        my $text = do { local $/; <$fh> };
        my $other = $text =~ /ERROR: AddressSanitizer|runtime error:|WARNING: AddressSanitizer|ERROR: LeakSanitizer: (?!detected memory leaks)/;
        my @leaks;
        for my $part (split /\n\s*\n/, $text) {
            next unless $part =~ /^(Direct|Indirect) leak of/;
            if ($part =~ /rate_limit|\brl_|rl::|hiredis|redis[A-Z]/
                && $part !~ /^\s*#1 0x[0-9a-f]+ in ngx_(?:alloc|calloc|memalign) /m)
            {
                push @leaks, $part;
            } else {
                $core++;
            }
        }
        next unless $other || @leaks;
        $bad++;
        print "--- $f\n", ($other ? $text : join("\n\n", @leaks)), "\n\n";
    }
    print "($core leak(s) of nginx itself or of its pools: not counted)\n"
        if $core;
    if ($bad) {
        print "test-asan: sanitizer reports in $bad file(s), above (all in $ARGV[0])\n";
        exit 1;
    }
    print "no sanitizer reports\n";
' "$logs" || status=1

rm -rf "$build/asan-logs"
mv "$logs" "$build/asan-logs"

exit $status
