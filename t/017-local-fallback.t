# rate_limit_fallback local: while Redis cannot answer, the same limits per
# host in shared memory, exact across the host's workers; Redis takes over
# again when it is back.

use lib 't/lib';

our ($OwnRedisDir, $OwnRedisPort);
use OwnRedis;

use Test::Nginx::Socket;

master_on();
workers(4);

sub redis_stop { system('scripts/redis.sh', 'stop', "$OwnRedisDir/r") }
sub redis_start { system("scripts/redis.sh start $OwnRedisDir/r $OwnRedisPort >/dev/null") }

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(no_error_log => "[alert]\n")
        unless defined $block->no_error_log;
});

run_tests();
done_testing();

__DATA__

=== TEST 1: Redis down: the limit holds per host, exactly across 4 workers
--- http_config
    rate_limit_redis 127.0.0.1:1;
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        rate_limit_fallback local;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /signature/warmup
--- error_code: 200
--- response_headers
X-RL-Status: LOCAL_PASSED
--- check
my $r = http_parallel(40, "GET /signature/x");
my %n;
$n{ $_->{status} }++ for @$r;
is_deeply(\%n, { 200 => 9, 429 => 31 }, '10 pass on this host, all told');
my ($rej) = grep { $_->{status} == 429 } @$r;
is($rej->{headers}{'x-rl-status'}, 'LOCAL_REJECTED', 'said so');
like($rej->{headers}{'retry-after'}, qr/^\d+$/, 'with a Retry-After');
like($rej->{body}, qr/Rate limit exceeded/, 'and the usual body');
--- error_log
Rate limiting unavailable (Redis down). Limiting request from 127.0.0.1 on this host (connect:



=== TEST 2: several limits stay all-or-nothing locally
--- http_config
    rate_limit_redis 127.0.0.1:1;
--- config
    location /signature/ {
        rate_limit tight requests=2 window=1h;
        rate_limit loose requests=3 window=1h;
        rate_limit_fallback local;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 5 ]
--- error_code eval
[ 200, 200, 429, 429, 429 ]
--- response_headers_like eval
[ 'RateLimit: "tight";r=1;t=\d+, "loose";r=2;t=\d+',
  'RateLimit: "tight";r=0;t=\d+, "loose";r=1;t=\d+',
  'RateLimit: "tight";r=0;t=\d+, "loose";r=1;t=\d+',
  'RateLimit: "tight";r=0;t=\d+, "loose";r=1;t=\d+',
  'RateLimit: "tight";r=0;t=\d+, "loose";r=1;t=\d+' ]



=== TEST 3: when Redis comes back it decides again, with its own counts
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        rate_limit_fallback local;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /signature/x
--- response_headers
X-RL-Status: PASSED
--- check
main::redis_stop();
my @local = map { http_get('/signature/x')->{headers}{'x-rl-status'} } 1 .. 4;
is_deeply(\@local, [ ('LOCAL_PASSED') x 3, 'LOCAL_REJECTED' ],
          'down: limited on this host');
main::redis_start();
my $status = '';
for (1 .. 80) {
    $status = http_get('/signature/x')->{headers}{'x-rl-status'};
    last if $status eq 'PASSED';
    select(undef, undef, undef, 0.1);
}
is($status, 'PASSED', 'Redis decides again');
--- error_log
Redis connection restored, rate limiting resumed
