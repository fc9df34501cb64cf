# When Redis cannot answer: fail open (log and pass) or closed (503), never
# wait on a Redis known to be down, and resume limiting on its own when
# Redis is back, without a reload.

use lib 't/lib';
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

# a redis-server of this file's own, to stop, restart and pause
our ($OwnRedisDir, $OwnRedisPort);
use OwnRedis;

use Test::Nginx::Socket;

# a loopback port nothing listens on
our $ClosedPort = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1);
    my $p = $s->sockport;
    close $s;
    $p;
};
$ENV{TEST_NGINX_CLOSED_PORT} = $ClosedPort;

sub own_cli { `redis-cli -p $OwnRedisPort @_` }

sub redis_restart {
    system('scripts/redis.sh', 'stop', "$OwnRedisDir/r") == 0 or die;
}

sub redis_start {
    my $p = `scripts/redis.sh start $OwnRedisDir/r $OwnRedisPort`;
    chomp $p;
    die "redis did not come back on $OwnRedisPort\n" unless $p;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "main::own_cli('flushall');\n");
});

run_tests();
done_testing();

__DATA__

=== TEST 1: Redis down, fallback open: the request passes and the outage is logged
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 200, 200 ]
--- response_headers
X-RL-Status: ERROR_ALLOWED
--- error_log
[error]
Failed to connect to Redis: Connection refused. Using fallback mode.
[warn]
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1



=== TEST 2: Redis down, fallback closed: 503, never a fake 429
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_fallback closed;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 503, 503 ]
--- response_headers
X-RL-Status: ERROR_REJECTED
!Retry-After
--- response_body_like: 503 Service Temporarily Unavailable
--- error_log
Rate limiting unavailable (Redis down). Rejecting request from 127.0.0.1



=== TEST 3: the fallback is chosen per location
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
    rate_limit_fallback closed;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
    location /public/ {
        rate_limit public requests=1 window=1h;
        rate_limit_fallback open;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /public/x" ]
--- error_code eval
[ 503, 200 ]
--- error_log
Failed to connect to Redis



=== TEST 4: lines repeated per request during an outage are throttled
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 30 ]
--- error_code: 200
--- check
select(undef, undef, undef, 1.1);
is(http_get('/signature/x')->{status}, 200, 'one more, a second later');
my $log = main::error_log_text();
my $lines = () = $log =~ /Rate limiting unavailable/g;
my $connect = () = $log =~ /Failed to connect to Redis/g;
cmp_ok($lines, '<=', 4, "31 requests, $lines lines");
like($log, qr/\d+ similar lines suppressed/, 'the count of the others');
is($connect, 1, 'the connection failure is logged once');



=== TEST 5: Redis restarted: limiting resumes by itself, without a reload
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /signature/x
--- response_headers
X-RL-Status: PASSED
--- check
main::redis_restart();
my $r = http_get('/signature/x');
is($r->{status}, 200, 'fail open while Redis is down');
is($r->{headers}{'x-rl-status'}, 'ERROR_ALLOWED', 'and says so');
main::redis_start();
my $status = '';
for (1 .. 80) {
    $r = http_get('/signature/x');
    last if ($status = $r->{headers}{'x-rl-status'}) eq 'PASSED';
    select(undef, undef, undef, 0.1);
}
is($status, 'PASSED', 'Redis answers again');
my @codes = map { http_get('/signature/x')->{status} } 1 .. 3;
is_deeply(\@codes, [ 200, 200, 429 ], 'and limits exactly again');
--- error_log
Redis connection lost
Redis connection restored, rate limiting resumed



=== TEST 6: SCRIPT FLUSH: the script is loaded again, counts go on
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code: 200
--- check
main::own_cli('script', 'flush');
my @codes = map { http_get('/signature/x')->{status} } 1 .. 2;
is_deeply(\@codes, [ 200, 429 ], 'third passes, fourth is rejected');
--- no_error_log
[error]
Rate limiting unavailable



=== TEST 7: a stalled Redis costs a request the timeout, not the stall
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=100ms;
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /signature/x
--- response_headers
X-RL-Status: PASSED
--- check
main::own_cli('client', 'pause', 3000, 'write');
my $t0 = Time::HiRes::time();
my $r = http_get('/signature/x');
my $took = Time::HiRes::time() - $t0;
is($r->{status}, 200, 'fail open');
is($r->{headers}{'x-rl-status'}, 'ERROR_ALLOWED', 'on the timeout');
cmp_ok($took, '<', 2, 'answered long before the 3 s stall ended');
main::own_cli('client', 'unpause');
--- error_log
Allowing request from 127.0.0.1 (timeout: timed out)



=== TEST 8: a client that hangs up mid-check leaves nothing dangling, and its attempt counts
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=2s;
    log_format rl '$request_uri $status "$rate_limit_status"';
--- config
    access_log logs/rl.log rl;
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
--- request
GET /signature/first
--- check
main::own_cli('client', 'pause', 1000, 'write');
for my $i (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port()) or die $!;
    print $s "GET /signature/gone$i HTTP/1.1\r\nHost: localhost\r\n\r\n";
    select(undef, undef, undef, 0.05);
    close $s;
}
select(undef, undef, undef, 1.5);
is(http_get('/signature/after')->{status}, 200, 'the worker still serves');
my $log = '';
for (1 .. 20) {
    open my $fh, '<', servroot() . '/logs/rl.log' or die $!;
    $log = do { local $/; <$fh> };
    last if $log =~ m{/signature/after};
    select(undef, undef, undef, 0.05);
}
like($log, qr{^/signature/gone1 499 "-"$}m, 'no verdict for a client gone');
is(main::own_cli('zcard', 'rate_limit:127.0.0.1:signature'), "7\n",
   'Redis ran the abandoned checks all the same: they count');
--- error_log
client prematurely closed connection
--- no_error_log
[alert]
[crit]
