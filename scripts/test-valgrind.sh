#!/bin/bash
# Request tests with nginx (master and workers) under valgrind's memcheck
# (make test-valgrind).
#
#   scripts/test-valgrind.sh BUILD_DIR [t/FILE.t ...]
#
# BUILD_DIR holds an ordinary (not sanitized) build of the module and the
# test peers; make test-valgrind builds them in build/valgrind.  By default
# the fault tests run: t/005-fallback.t and t/007-faults.t.
#
# TEST_NGINX_BINARY is a wrapper that runs nginx under valgrind; valgrind
# follows the daemon's fork and the workers', one log per process in
# BUILD_DIR/valgrind-logs (vg.PID).  The run fails on any invalid read,
# write or free, any use of uninitialised memory, any mismatched free, and
# any leak ("definitely lost") allocated by the module, its core or hiredis
# (nginx's own allocations live as long as the process does).  Known nginx
# non-issues are suppressed in scripts/sanitize/valgrind.supp.
#
# Under valgrind everything is 20 to 50 times slower: TEST_NGINX_SLOW=1 is
# exported for tests that want to widen their time bounds (t/014, t/015 do).
# A request test that fails is shown but fails the run only with
# VALGRIND_STRICT=1: make test runs the same tests at full speed, and what
# only valgrind can tell is in its reports.  A worker that crashes is a
# report ("Process terminating with default action of signal ...").
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: test-valgrind.sh BUILD_DIR [t/FILE.t ...]}
shift
case $build in /*) ;; *) build=$top/$build ;; esac
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(t/005-fallback.t t/007-faults.t)

module=$build/ngx_http_rate_limit_module.so
nginx=${NGINX_BINARY:-/usr/sbin/nginx}

command -v valgrind > /dev/null || {
    echo "test-valgrind: valgrind is not installed (apt-get install valgrind)" >&2
    exit 1
}
for f in "$module" "$build/tools/rl-fault-proxy"; do
    [ -e "$f" ] || { echo "test-valgrind: $f is missing (make test-valgrind)" >&2; exit 1; }
done
if ldd "$module" | grep libasan > /dev/null; then
    echo "test-valgrind: $module is an ASan build; valgrind needs a plain one" >&2
    exit 1
fi

# workers run as nobody: a log directory in /tmp they can reach whatever
# the permissions of the work tree; moved into the build when done
logs=$(mktemp -d /tmp/rl-valgrind-logs.XXXXXX)
chmod 1777 "$logs"

# --keep-debuginfo: nginx unloads the module at exit, before the leak check
# names the frames.  Leaks of other kinds than "definite" are nginx's pools
# and arrays, alive until exit.
wrapper=$build/nginx-valgrind
cat > "$wrapper" << EOF
#!/bin/sh
# nginx under valgrind (scripts/test-valgrind.sh)
exec valgrind --tool=memcheck --trace-children=yes --child-silent-after-fork=no \\
    --error-exitcode=86 --log-file=$logs/vg.%p --num-callers=40 \\
    --keep-debuginfo=yes --track-origins=yes --leak-check=full \\
    --show-leak-kinds=definite --errors-for-leak-kinds=definite \\
    --suppressions=$top/scripts/sanitize/valgrind.supp \\
    "$nginx" "\$@"
EOF
chmod 755 "$wrapper"

tmp=$(mktemp -d /tmp/rl-valgrind.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    "$top/scripts/redis.sh" stop "$tmp/redis"
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$("$top/scripts/redis.sh" start "$tmp/redis") || exit 1

export TEST_NGINX_REDIS_PORT=$port
export TEST_NGINX_REDIS_HOST=127.0.0.1
export TEST_NGINX_LOAD_MODULE=$module
export TEST_NGINX_TOOLS_DIR=$build/tools
export TEST_NGINX_BINARY=$wrapper
export TEST_NGINX_SLOW=1

status=0
start=$(date +%s)

echo "== request tests under valgrind: ${tests[*]}"
if ! (cd "$top" && prove -r "${tests[@]}"); then
    if [ "${VALGRIND_STRICT:-0}" = 1 ]; then
        status=1
    else
        echo "test-valgrind: request tests failed under valgrind (above); as"
        echo "  long as make test passes, these are time bounds too tight for"
        echo "  a worker 20-50 times slower (VALGRIND_STRICT=1: fail on them)"
    fi
fi

echo "== valgrind reports ($(($(date +%s) - start)) s)"
# a report is a paragraph of lines "==PID== ..." that starts with its kind
perl -e '
    my $bad = 0;
    my $files = 0;
    for my $f (sort glob "$ARGV[0]/vg.*") {
        open my $fh, "<", $f or next;
        $files++;
        my (@out, $cur);
        while (my $line = <$fh>) {
            $line =~ s/^==\d+== ?//;
            if ($line =~ /^\s*$/) {
                push @out, $cur if defined $cur && $cur =~ /\S/;
                undef $cur;
                next;
            }
            $cur .= $line;
        }
        push @out, $cur if defined $cur;
        my @bad = grep {
            /^(FATAL|Process terminating|Invalid (read|write|free)|Mismatched free|Source and destination overlap|Syscall param .* uninitialised|Conditional jump or move depends on uninitialised|Use of uninitialised|.*uninitialised value)/
            || (/definitely lost in loss record/
                && /rate_limit|\brl_|rl::|hiredis|redisAsync|redisReader/)
        } @out;
        next unless @bad;
        $bad++;
        my ($cmd) = map { /^Command: (.*)/ ? $1 : () } @out;
        print "--- $f", ($cmd ? " ($cmd)" : ""), "\n", join("\n", @bad), "\n";
    }
    die "test-valgrind: no valgrind log was written\n" unless $files;
    if ($bad) {
        print "test-valgrind: errors in $bad process(es), above (all in $ARGV[0])\n";
        exit 1;
    }
    print "no valgrind errors in $files process(es)\n";
' "$logs" || status=1

rm -rf "$build/valgrind-logs"
mv "$logs" "$build/valgrind-logs"

exit $status
