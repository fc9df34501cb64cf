# Faults between the module and Redis, injected by t/tools/rl-fault-proxy
# (a proxy in front of a redis-server of this file's own): whatever Redis
# does, a request gets the fallback answer (open: 200 ERROR_ALLOWED, closed:
# 503 ERROR_REJECTED) within the timeout, at once while Redis is known to
# be down, and limiting resumes exactly when Redis answers again, without a
# reload.  Time bounds are behaviour bounds with wide margins, not
# benchmarks.

use lib 't/lib';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

# a redis-server of this file's own, and the fault proxy in front of it
our ($OwnRedisDir, $OwnRedisPort, $ProxyPid, $ProxyPort, $ProxyCtl);
sub stop_own {
    if ($ProxyPid) {
        kill 'TERM', $ProxyPid;
        waitpid $ProxyPid, 0;
        $ProxyPid = undef;
    }
    system('scripts/redis.sh', 'stop', "$OwnRedisDir/r") if $OwnRedisDir;
}
BEGIN {
    my $tool = ($ENV{TEST_NGINX_TOOLS_DIR} || 'build/tools')
               . '/rl-fault-proxy';
    die "$tool is missing: make tools\n" unless -x $tool;

    $OwnRedisDir = tempdir('rl-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $OwnRedisPort = `scripts/redis.sh start $OwnRedisDir/r`;
    chomp $OwnRedisPort;
    die "cannot start redis-server\n" unless $OwnRedisPort;
    $ENV{TEST_NGINX_OWN_REDIS_PORT} = $OwnRedisPort;

    my $out = "$OwnRedisDir/proxy.out";
    $ProxyPid = fork;
    if (defined $ProxyPid && !$ProxyPid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>', "$OwnRedisDir/proxy.err";
        exec $tool, ($ENV{TEST_NGINX_VERBOSE} ? ('-v') : ()),
             '-p', "$OwnRedisDir/proxy.pid", '0', $OwnRedisPort;
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        last unless $ProxyPid;
        if (waitpid($ProxyPid, POSIX::WNOHANG()) == $ProxyPid) {
            $ProxyPid = undef;
            last;
        }
        if (open my $fh, '<', $out) {
            ($ProxyPort, $ProxyCtl) = do { local $/; <$fh> }
                                      =~ /^(\d+)\n(\d+)\n/;
            last if $ProxyCtl;
        }
        sleep 0.05;
    }
    if (!$ProxyCtl) {
        stop_own();
        die "rl-fault-proxy did not start\n";
    }
    $ENV{TEST_NGINX_PROXY_PORT} = $ProxyPort;
}
# after the harness' own END, which stops nginx
END { stop_own() }

use Test::Nginx::Socket;

# one worker, so its descriptors can be counted and its log read as one
master_on();
workers(1);

sub own_cli { `redis-cli -p $OwnRedisPort @_` }

# a loopback port nothing listens on
our $ClosedPort = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1);
    my $p = $s->sockport;
    close $s;
    $p;
};

# one line to the proxy's control port, its one-line answer
sub control {
    my $line = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ProxyCtl) or die "ctl: $!\n";
    print $s "$line\n";
    my $answer = <$s>;
    close $s;
    $answer = '' unless defined $answer;
    chomp $answer;
    return $answer;
}

sub fault {
    my $answer = control("mode @_");
    die "proxy: mode @_: $answer\n" unless $answer eq 'OK';
}

sub proxy_stats { my %s = control('stats') =~ /(\w+) (\d+)/g; \%s }

# (response, seconds it took)
sub timed_get {
    my $t0 = time;
    my $r = http_get(@_, timeout => 8);
    return ($r, time - $t0);
}

sub rl_status { $_[0]{headers}{'x-rl-status'} // '' }

# n requests in a row: (seconds in all, the statuses, the X-RL-Status values)
sub burst {
    my ($n, $path) = @_;
    my (@codes, @st);
    my $t0 = time;
    for (1 .. $n) {
        my $r = http_get($path, timeout => 8);
        push @codes, $r->{status} // 'none';
        push @st, rl_status($r);
    }
    return (time - $t0, \@codes, \@st);
}

sub uniq { my %s; grep { !$s{$_}++ } @_ }

# Redis answers again: poll (up to ~8 s: the backoff caps at 5 s) until a
# check gets Redis' verdict, then show exact limiting on a fresh key
# (requests=3: 3 pass, then 429).  Each phase has its own key (?k=), so
# neither the checks that timed out but ran in Redis all the same (they
# count) nor the over-limit cache blur the count.
sub limiting_resumes {
    my $loc = shift;
    my $st = '';
    my $t0 = time;
    while (time - $t0 < 8) {
        last if ($st = rl_status(http_get("$loc?k=poll"))) =~ /^(PASSED|REJECTED)$/;
        sleep 0.1;
    }
    like($st, qr/^(PASSED|REJECTED)$/,
         sprintf('Redis decides again (%s after %.2f s)', $st, time - $t0));
    my @got = map { my $r = http_get("$loc?k=exact"); "$r->{status} " . rl_status($r) }
              1 .. 4;
    is_deeply(\@got, [ '200 PASSED', '200 PASSED', '200 PASSED',
                       '429 REJECTED' ], 'and limits exactly: 3 pass, then 429');
}

# a flooding proxy was cut off well before its flood ended (32 MB), then
# Redis is passed through again and limits as before
sub flood_was_cut {
    my $flooded = proxy_stats()->{flooded};
    cmp_ok($flooded, '<', 32 * 1024 * 1024,
           "the proxy got to send $flooded bytes only");
    fault('pass');
    limiting_resumes('/open/x');
}

# sockets in CLOSE_WAIT towards the proxy (only the worker talks to it)
sub close_wait {
    my @l = `ss -tanH state close-wait '( dport = :$ProxyPort )'`;
    die "ss failed: $?\n" if $?;
    return scalar grep { /:$ProxyPort\s*$/ } @l;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "main::own_cli('config set maxmemory 0');\n"
                              . "main::own_cli('replicaof no one');\n"
                              . "main::own_cli('flushall');\n"
                              . "main::fault('pass');\n"
                              . (defined $block->init ? $block->init : ''));
});

our $Http = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=100ms;
_EOC_

# the key is ?k=, so that each phase of a block counts on its own
our $Config = <<'_EOC_';
    location /open/ {
        rate_limit signature requests=3 window=1h key=$arg_k;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
    location /closed/ {
        rate_limit signature requests=3 window=1h key=$arg_k;
        rate_limit_fallback closed;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
_EOC_

run_tests();
done_testing();

__DATA__

=== TEST 1: a Redis that never answers from the start, fallback open: a check waits the setup's timeout, then answers come at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('stall');
--- request
GET /open/x?k=f
--- error_code: 200
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
for my $i (2, 3) {
    my ($r, $took) = main::timed_get('/open/x?k=f');
    is("$r->{status} " . main::rl_status($r), '200 ERROR_ALLOWED',
       "timeout $i: fail open");
    cmp_ok($took, '<', 2, "timeout $i: answered in ${took}s, not after the stall");
}
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "3 timeouts opened the breaker: 20 requests in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1 (timeout: no reply to the connection setup)
Redis not answering: no reply to the connection setup. Using fallback mode.



=== TEST 2: a Redis that never answers from the start, fallback closed: 503 after the setup's timeout, then at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('stall');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
!Retry-After
--- check
for my $i (2, 3) {
    my ($r, $took) = main::timed_get('/closed/x?k=f');
    is("$r->{status} " . main::rl_status($r), '503 ERROR_REJECTED',
       "timeout $i: fail closed");
    cmp_ok($took, '<', 2, "timeout $i: answered in ${took}s, not after the stall");
}
my ($took, $codes, $st) = main::burst(20, '/closed/x?k=f');
cmp_ok($took, '<', 1, "3 timeouts opened the breaker: 20 requests in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 503 ], 'all 503');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_REJECTED' ], 'all ERROR_REJECTED');
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rate limiting unavailable (Redis down). Rejecting request from 127.0.0.1 (timeout: no reply to the connection setup)
Redis not answering: no reply to the connection setup. Using fallback mode.



=== TEST 3: concurrent checks against a Redis that never answers all get the fallback after one timeout
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('stall');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my $t0 = Time::HiRes::time();
my $rs = http_parallel(10, 'GET /closed/x?k=f', timeout => 8);
my $took = Time::HiRes::time() - $t0;
is_deeply([ main::uniq(map { $_->{status} // 'none' } @$rs) ], [ 503 ],
          '10 at once: all 503');
cmp_ok($took, '<', 2, "all answered in ${took}s");
main::fault('pass');
main::limiting_resumes('/open/x');



=== TEST 4: a Redis 5 s slow, timeout 100ms, fallback open: the timeout, then at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('delay 5000');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
for my $i (2, 3) {
    my ($r, $took) = main::timed_get('/open/x?k=f');
    is("$r->{status} " . main::rl_status($r), '200 ERROR_ALLOWED',
       "timeout $i: fail open");
    cmp_ok($took, '<', 2, "timeout $i: answered in ${took}s, not after 5 s");
}
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "breaker open: 20 requests in ${took}s");
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (timeout: no reply to the connection setup)



=== TEST 5: a Redis 5 s slow, timeout 100ms, fallback closed: 503 within the timeout
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('delay 5000');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
my ($r, $took) = main::timed_get('/closed/x?k=f');
is($r->{status}, 503, 'fail closed');
cmp_ok($took, '<', 2, "answered in ${took}s, not after 5 s");
--- error_log
Rejecting request from 127.0.0.1 (timeout: no reply to the connection setup)



=== TEST 6: a Redis slower than usual but within the timeout: requests are limited normally
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=1s;
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- init
main::fault('delay 100');
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- response_headers
X-RL-Status: PASSED
--- check
my ($r, $took) = main::timed_get('/signature/x');
is("$r->{status} " . main::rl_status($r), '429 REJECTED', 'the fourth is rejected');
cmp_ok($took, '>=', 0.09, "Redis' reply waited the delay (${took}s)");
cmp_ok($took, '<', 1, 'and no more than the timeout');
--- error_log
rate limit check passed for 127.0.0.1. Attempts: 1/3, Remaining: 2
rate limit check passed for 127.0.0.1. Attempts: 3/3, Remaining: 0
Rate limit exceeded for IP 127.0.0.1 on signature endpoint. Attempts: 3/3
--- no_error_log
[error]
Rate limiting unavailable



=== TEST 7: a slow Redis under concurrent checks: replies in order, limits exact
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=1s;
--- config eval: $::Config
--- init
main::fault('delay 100');
--- request
GET /closed/x?k=warm
--- response_headers
X-RL-Status: PASSED
--- check
my $rs = http_parallel(20, 'GET /closed/x?k=f', timeout => 8);
my %n;
$n{ ($_->{status} // 'none') . ' ' . main::rl_status($_) }++ for @$rs;
is_deeply(\%n, { '200 PASSED' => 3, '429 REJECTED' => 17 },
          '20 at once: 3 pass, 17 rejected');
--- no_error_log
[error]



=== TEST 8: clients that leave while their checks wait on a Redis that never answers leave nothing behind
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
my $pid = main::worker_pid();
my $before = main::fd_count($pid);
main::fault('stall');
for my $i (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port()) or die $!;
    print $s "GET /open/x?k=gone$i HTTP/1.1\r\nHost: localhost\r\n\r\n";
    Time::HiRes::sleep(0.02);
    close $s;
}
Time::HiRes::sleep(0.3);
main::fault('pass');
main::limiting_resumes('/open/x');
my $after = main::fd_count($pid);
cmp_ok($after, '<=', $before + 1, "descriptors: $before before, $after after");
--- error_log
Redis not answering: 3 checks timed out in a row. Using fallback mode.



=== TEST 9: a Redis that closes each connection on its first command, fallback open: 200 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('drop');
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Redis connection lost: Server closed the connection. Using fallback mode.
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1



=== TEST 10: a Redis that closes each connection on its first command, fallback closed: 503 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('drop');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
my ($took, $codes, $st) = main::burst(20, '/closed/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 503 ], 'all 503');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_REJECTED' ], 'all ERROR_REJECTED');
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Redis connection lost: Server closed the connection. Using fallback mode.
Rejecting request from 127.0.0.1



=== TEST 11: a Redis that closes every connection it accepts, fallback open: 200 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('close-on-accept');
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Redis connection lost: Server closed the connection. Using fallback mode.
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1



=== TEST 12: a Redis that closes every connection it accepts, fallback closed: 503 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('close-on-accept');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
my ($took, $codes, $st) = main::burst(20, '/closed/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 503 ], 'all 503');
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1



=== TEST 13: a Redis that refuses connections: the outage is logged as promised, requests pass at once
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('refuse');
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
my $r = http_get('/closed/x?k=f');
is("$r->{status} " . main::rl_status($r), '503 ERROR_REJECTED', 'closed: 503');
Time::HiRes::sleep(0.5);
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Failed to connect to Redis: Connection refused. Using fallback mode.
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1
Redis connection restored, rate limiting resumed



=== TEST 14: a peer that answers garbage, fallback open: 200 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('garbage');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Redis protocol error: Protocol error, got "?" as reply type byte. Using fallback mode.
Allowing request from 127.0.0.1 (reply: Protocol error



=== TEST 15: a peer that answers garbage, fallback closed: 503 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('garbage');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
my ($took, $codes, $st) = main::burst(20, '/closed/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 503 ], 'all 503');
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1 (reply: Protocol error



=== TEST 16: NOSCRIPT on every command, fallback open: EVAL is tried once, then 200, no loop
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('error NOSCRIPT No matching script. Please use EVAL.');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my $before = main::proxy_stats()->{commands};
my ($took, $codes, $st) = main::burst(10, '/open/x?k=f');
my $sent = main::proxy_stats()->{commands} - $before;
is($sent, 20, 'EVALSHA and one EVAL per request');
cmp_ok($took, '<', 1, "no request waits: 10 in ${took}s");
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1 (reply: NOSCRIPT No matching script. Please use EVAL.)



=== TEST 17: NOSCRIPT on every command, fallback closed: 503
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('error NOSCRIPT No matching script. Please use EVAL.');
--- request eval
[ "GET /closed/x?k=f", "GET /closed/x?k=f" ]
--- error_code eval
[ 503, 503 ]
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1 (reply: NOSCRIPT No matching script. Please use EVAL.)



=== TEST 18: a read-only replica, fallback open: 200 with the reason logged
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault(q{error READONLY You can't write against a read only replica.});
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: READONLY You can't write against a read only replica.)



=== TEST 19: a read-only replica, fallback closed: 503
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault(q{error READONLY You can't write against a read only replica.});
--- request eval
[ "GET /closed/x?k=f", "GET /closed/x?k=f" ]
--- error_code eval
[ 503, 503 ]
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1 (reply: READONLY You can't write against a read only replica.)



=== TEST 20: a Redis out of memory, fallback open: 200 with the reason logged
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault(q{error OOM command not allowed when used memory > 'maxmemory'.});
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: OOM command not allowed



=== TEST 21: a Redis out of memory, fallback closed: 503
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault(q{error OOM command not allowed when used memory > 'maxmemory'.});
--- request eval
[ "GET /closed/x?k=f", "GET /closed/x?k=f" ]
--- error_code eval
[ 503, 503 ]
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1 (reply: OOM command not allowed



=== TEST 22: a well-formed reply of the wrong type, fallback open: 200 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('wrong-type');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: unexpected reply from the limit script)
Redis protocol error: unexpected reply. Using fallback mode.



=== TEST 23: a well-formed reply of the wrong type, fallback closed: 503 at once
--- http_config eval: $::Http
--- config eval: $::Config
--- init
main::fault('wrong-type');
--- request
GET /closed/x?k=f
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- check
my ($took, $codes, $st) = main::burst(20, '/closed/x?k=f');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
is_deeply([ main::uniq(@$codes) ], [ 503 ], 'all 503');
main::fault('pass');
main::limiting_resumes('/closed/x');
--- error_log
Rejecting request from 127.0.0.1 (reply: unexpected reply from the limit script)



=== TEST 24: the worker's descriptors stay flat through 200 requests against a Redis that closes on accept
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
my $pid = main::worker_pid();
main::fault('close-on-accept');
main::burst(20, '/open/x?k=f');
my $before = main::fd_count($pid);
my ($took, $codes, $st) = main::burst(200, '/open/x?k=f');
Time::HiRes::sleep(0.2);
my $after = main::fd_count($pid);
cmp_ok($after, '<=', $before + 1, "descriptors: $before before, $after after");
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'all 200');
my $max = 0;
for (1 .. 5) {
    my $n = main::close_wait();
    $max = $n if $n > $max;
    Time::HiRes::sleep(0.1);
}
cmp_ok($max, '<=', 1, "no CLOSE_WAIT piles up towards the proxy (at most $max)");
cmp_ok(main::proxy_stats()->{accepted}, '>', 2, 'the module kept reconnecting');



=== TEST 25: the worker's descriptors stay flat through 200 requests against a Redis that never answers
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
my $pid = main::worker_pid();
my $before = main::fd_count($pid);
main::fault('stall');
my $a0 = main::proxy_stats()->{accepted};
my @codes;
my $t0 = Time::HiRes::time();
for (1 .. 200) {
    push @codes, http_get('/open/x?k=f', timeout => 8)->{status} // 'none';
    Time::HiRes::sleep(0.005);
}
my $took = Time::HiRes::time() - $t0;
my $tries = main::proxy_stats()->{accepted} - $a0;
main::fault('close-on-accept');
Time::HiRes::sleep(0.3);
my $after = main::fd_count($pid);
cmp_ok($after, '<=', $before + 1,
       "descriptors: $before before, $after after ($took s, $tries reconnects)");
is_deeply([ main::uniq(@codes) ], [ 200 ], 'all 200');
cmp_ok($tries, '>', 1, 'through several reconnects');



=== TEST 26: Redis kills the module's connection (CLIENT KILL): limiting resumes by itself
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=100ms;
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
cmp_ok(main::own_cli('client kill type normal'), '>=', 1, 'killed the module\'s connection');
my ($took, $codes, $st) = main::burst(5, '/open/x?k=f');
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'no request fails meanwhile');
main::limiting_resumes('/open/x');
--- error_log
Redis connection lost: Server closed the connection. Using fallback mode.
Redis connection restored, rate limiting resumed



=== TEST 27: a Redis over maxmemory (noeviction) refuses sliding_log's ZADD: the fallback with the reason, nothing counted, then limiting resumes
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=100ms;
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
# the script reads before it writes, so its first write, ZADD (deny-oom),
# is refused and nothing is half done
main::own_cli(q{eval "for i = 1, 3000 do redis.call('set', 'junk:' .. i, string.rep('x', 1000)) end" 0});
main::own_cli('config set maxmemory-policy noeviction');
main::own_cli('config set maxmemory 1mb');
like(main::own_cli('set probe 1'), qr/^OOM command not allowed/,
     'Redis is out of memory for plain writes');
my $r = http_get('/open/x?k=f');
is("$r->{status} " . main::rl_status($r), '200 ERROR_ALLOWED', 'open: 200');
$r = http_get('/closed/x?k=f');
is("$r->{status} " . main::rl_status($r), '503 ERROR_REJECTED', 'closed: 503');
is(main::own_cli('zcard', 'rate_limit:f:signature'), "1\n", 'nothing counted meanwhile');
main::own_cli('flushall');
main::own_cli('config set maxmemory 0');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: OOM command not allowed when used memory > 'maxmemory'
Rejecting request from 127.0.0.1 (reply: OOM command not allowed when used memory > 'maxmemory'



=== TEST 28: a Redis over maxmemory (noeviction) refuses fixed_window's INCR: the fallback with the reason, then limiting resumes
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=100ms;
--- config
    location /open/ {
        rate_limit fw requests=3 window=1h key=$arg_k algorithm=fixed_window;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
    location /closed/ {
        rate_limit fw requests=3 window=1h key=$arg_k algorithm=fixed_window;
        rate_limit_fallback closed;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::own_cli(q{eval "for i = 1, 3000 do redis.call('set', 'junk:' .. i, string.rep('x', 1000)) end" 0});
main::own_cli('config set maxmemory-policy noeviction');
main::own_cli('config set maxmemory 1mb');
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
is_deeply([ main::uniq(@$codes) ], [ 200 ], 'open: all 200');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
cmp_ok($took, '<', 1, "no request waits: 20 in ${took}s");
my $r = http_get('/closed/x?k=f');
is("$r->{status} " . main::rl_status($r), '503 ERROR_REJECTED', 'closed: 503');
is(main::own_cli('get', 'rate_limit:f:fw'), "1\n", 'nothing counted meanwhile');
main::own_cli('flushall');
main::own_cli('config set maxmemory 0');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: OOM command not allowed when used memory > 'maxmemory'
Rejecting request from 127.0.0.1 (reply: OOM command not allowed when used memory > 'maxmemory'



=== TEST 29: a master demoted to a read-only replica: READONLY, the fallback with the reason, then limiting resumes
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=100ms;
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::own_cli("replicaof 127.0.0.1 $main::ClosedPort");
my $r = http_get('/open/x?k=f');
is("$r->{status} " . main::rl_status($r), '200 ERROR_ALLOWED', 'open: 200');
$r = http_get('/closed/x?k=f');
is("$r->{status} " . main::rl_status($r), '503 ERROR_REJECTED', 'closed: 503');
main::own_cli('replicaof no one');
main::limiting_resumes('/open/x');
--- error_log
Allowing request from 127.0.0.1 (reply: READONLY You can't write against a read only replica.



=== TEST 30: a peer that accepts connections and closes them: reconnects back off, and the log does not flood
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('close-on-accept');
my $a0 = main::proxy_stats()->{accepted};
Time::HiRes::sleep(3);
my $tries = main::proxy_stats()->{accepted} - $a0;
my $restored = () = main::error_log_text() =~ /Redis connection restored/g;
main::fault('pass');
# first within 100 ms, then doubling: about 5 tries in 3 s
cmp_ok($tries, '<=', 10, "reconnects in 3 s: $tries");
cmp_ok($restored, '<=', 2, "'restored' logged $restored times");



=== TEST 31: a Redis that never answers: the module does not report it restored, and retries back off
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('stall');
my $a0 = main::proxy_stats()->{accepted};
my ($n, $waited) = (0, 0);
my $t0 = Time::HiRes::time();
while (Time::HiRes::time() - $t0 < 3) {
    my ($r, $took) = main::timed_get('/open/x?k=f');
    $n++;
    $waited++ if $took > 0.09;
    Time::HiRes::sleep(0.01);
}
my $tries = main::proxy_stats()->{accepted} - $a0;
my $restored = () = main::error_log_text() =~ /Redis connection restored/g;
main::fault('pass');
is($restored, 0, "'restored' logged $restored times while Redis never answered");
# 3 timeouts, then at most 3 per reconnect, reconnects backing off
cmp_ok($waited, '<=', 15,
       "$waited of $n requests waited the timeout ($tries reconnects)");



=== TEST 32: with db=1, a Redis that stops answering costs 3 timeouts, then reconnects back off
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT db=1 timeout=100ms;
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('stall');
my $a0 = main::proxy_stats()->{accepted};
my ($n, $waited, %st) = (0, 0);
my $t0 = Time::HiRes::time();
while (Time::HiRes::time() - $t0 < 3) {
    my ($r, $took) = main::timed_get('/open/x?k=f');
    $n++;
    $waited++ if $took > 0.09;
    $st{ main::rl_status($r) }++;
    Time::HiRes::sleep(0.01);
}
my $tries = main::proxy_stats()->{accepted} - $a0;
my $restored = () = main::error_log_text() =~ /Redis connection restored/g;
main::fault('pass');
is($restored, 0, 'never reported restored meanwhile');
is_deeply([ keys %st ], [ 'ERROR_ALLOWED' ], "$n requests, all ERROR_ALLOWED");
cmp_ok($waited, '<=', 6, "$waited waited the timeout");
cmp_ok($tries, '<=', 6, "reconnects in 3 s: $tries");
main::limiting_resumes('/open/x');
--- error_log
Redis not answering: 3 checks timed out in a row. Using fallback mode.
Redis not answering: no reply to the connection setup. Using fallback mode.



=== TEST 33: replies later than the timeout (150ms, timeout 100ms): the timeouts pile up and requests stop waiting
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('delay 150');
my ($took, $codes, $st) = main::burst(20, '/open/x?k=f');
is_deeply([ main::uniq(@$st) ], [ 'ERROR_ALLOWED' ], 'all ERROR_ALLOWED');
main::fault('pass');
# 3 timeouts, then at once (and 3 more per reconnect)
cmp_ok($took, '<', 1.2, "20 requests in ${took}s");
like(main::error_log_text(), qr/Redis not answering: 3 checks timed out in a row/,
     'the breaker opened');



=== TEST 34: Redis closes the connection while a check waits on it: the check answers at once, with the reason
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=5s;
--- config eval: $::Config
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: PASSED
--- check
main::fault('stall');
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => server_port()) or die $!;
print $s "GET /open/x?k=f HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
Time::HiRes::sleep(0.2);
my $t0 = time;
main::fault('drop');
my $resp = do { local $/; <$s> };
my $took = time - $t0;
like($resp, qr{^HTTP/1\.1 200 .*^X-RL-Status: ERROR_ALLOWED}ms,
     'the waiting check gets the fallback answer');
cmp_ok($took, '<', 1, sprintf('at once (%.2f s), not at its deadline', $took));
main::fault('pass');
main::limiting_resumes('/open/x');
--- error_log
Redis connection lost: Server closed the connection. Using fallback mode.
Allowing request from 127.0.0.1 (connect: Server closed the connection)
--- no_error_log
(connect: connection lost



=== TEST 35: a reply whose wait is 2^63 ms is cut to two windows: Retry-After 2, and the key leaves the over-limit cache 2 s later
--- http_config eval: $::Http
--- config
    location /short/ {
        rate_limit signature requests=3 window=1s key=$arg_k;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- init
main::fault('raw *4\r\n:4\r\n:0\r\n'
            . ':9223372036854775807\r\n:9223372036854775807\r\n');
--- request
GET /short/x?k=p
--- error_code: 429
--- response_headers
Retry-After: 2
X-RL-Status: REJECTED
--- check
main::fault('pass');
is(http_get('/short/x?k=p')->{status}, 429, 'still in the over-limit cache');
Time::HiRes::sleep(2.3);
is(http_get('/short/x?k=p')->{status}, 200,
   'out of it once the two windows are over');
--- error_log
Rate limit exceeded for IP p on signature endpoint. Attempts: 4/3



=== TEST 36: a string of 1 GB trickling in as a reply: the connection fails once 4 MB wait, the worker does not buffer the rest
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=5s;
--- config eval: $::Config
--- init
main::fault('flood');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
main::flood_was_cut();
--- error_log
Redis protocol error: a reply of more than 4194304 bytes. Using fallback mode.
Allowing request from 127.0.0.1 (reply: a reply of more than 4194304 bytes)



=== TEST 37: an array of 65536 strings of 256 KB trickling in: each string is under 4 MB, the reply is not, and it is refused once it is
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT timeout=5s;
--- config eval: $::Config
--- init
main::fault('flood-array');
--- request
GET /open/x?k=f
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- check
main::flood_was_cut();
--- error_log
Redis protocol error: a reply of more than 4194304 bytes. Using fallback mode.
Allowing request from 127.0.0.1 (reply: a reply of more than 4194304 bytes)
