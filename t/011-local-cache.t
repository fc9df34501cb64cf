# The over-limit cache: once Redis says a key is over its limit until T,
# every worker of the host rejects it until T without asking Redis.

use lib 't/lib';
use Test::Nginx::Socket;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n"
                              . "redis_cli('config', 'resetstat');\n");
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

# scripts Redis ran: EVALSHA calls (EVAL only after a script flush)
sub scripts_run {
    my ($n) = redis_cli('info', 'commandstats') =~ /cmdstat_evalsha:calls=(\d+)/;
    return $n || 0;
}

run_tests();
done_testing();

__DATA__

=== TEST 1: under attack, Redis is asked once and the host answers the rest
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 4 ]
--- error_code eval
[ 200, 200, 200, 429 ]
--- check
my $before = main::scripts_run();
is($before, 4, 'four checks reached Redis');
my $r = http_parallel(40, "GET /signature/x");
is(scalar(grep { $_->{status} == 429 } @$r), 40, 'forty rejected');
for (1 .. 20) {
    is(http_get('/signature/x')->{status}, 429, "attack $_ rejected")
        unless $_ % 5;
}
is(main::scripts_run(), $before, 'none of them asked Redis');
like($r->[0]{headers}{'retry-after'}, qr/^3(599|600)$/,
     'the cached rejection still says when to come back');
--- error_log
Rate limit exceeded for IP 127.0.0.1 on signature endpoint. Attempts: 3/3, cached



=== TEST 2: rate_limit_local_cache off asks Redis every time
--- http_config eval
$::HttpConfig . q{
    rate_limit_local_cache off;
}
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 6 ]
--- error_code eval
[ 200, (429) x 5 ]
--- check
is(main::scripts_run(), 6, 'every request asked Redis');



=== TEST 3: with the cache, deleting the key in Redis unblocks only when the cached time ends
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=2s;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- check
redis_cli('del', 'rate_limit:127.0.0.1:signature');
is(http_get('/signature/x')->{status}, 429, 'still rejected by the host');
select(undef, undef, undef, 2.1);
is(http_get('/signature/x')->{status}, 200, 'passes once the time is up');



=== TEST 4: without the cache, deleting the key unblocks at once
--- http_config eval
$::HttpConfig . q{
    rate_limit_local_cache off;
}
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- check
redis_cli('del', 'rate_limit:127.0.0.1:signature');
is(http_get('/signature/x')->{status}, 200, 'unblocked');



=== TEST 5: a cached key does not block the request's other keys
--- http_config eval: $::HttpConfig
--- config
    location /login {
        rate_limit login requests=1 window=1h key=$arg_user;
        empty_gif;
    }
--- request eval
[ "GET /login?user=a", "GET /login?user=a", "GET /login?user=a",
  "GET /login?user=b" ]
--- error_code eval
[ 200, 429, 429, 200 ]
--- response_headers_like eval
[ 'RateLimit: "login";r=0', 'RateLimit: "login";r=0;t=\d+',
  'RateLimit: "login";r=0;t=\d+', 'RateLimit: "login";r=0' ]


=== TEST 6: a flood on a cached key writes at most 10 rejection lines a second per host; the next line counts the ones left out
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- check
use Time::HiRes qw(time sleep);
my $t0 = time;
my $sent = 0;
for (1 .. 3) {
    my $r = http_parallel(100, "GET /signature/x");
    $sent += grep { $_->{status} == 429 } @$r;
}
my $took = time - $t0;
is($sent, 300, 'the flood is rejected');
# the line after a pause reports what was left out
sleep(1.1);
is(http_get('/signature/x')->{status}, 429, 'one more after a pause');
my @lines = grep { /Attempts: 1\/1, cached/ } split /\n/, error_log_text();
my $suppressed = 0;
$suppressed += $_ for map { /\((\d+) similar lines suppressed\)/ ? $1 : () } @lines;
# the flood and the probe went through the cache (the block's 429 was Redis')
is(scalar(@lines) + $suppressed, 300 + 1,
   'every cached rejection is logged or counted in a later line');
my $seconds = int($took) + 2;
cmp_ok(scalar(@lines), '<=', 10 * ($seconds + 1),
       sprintf('%d lines for %d rejections in %.2f s', scalar(@lines), 301, $took));
like($lines[-1], qr/\(\d+ similar lines suppressed\)/,
     'the line after the pause counts the ones left out');



=== TEST 7: when a key's cached time ends, the lines its last second left out are written: lines and counts add up to the rejections
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=2s;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- check
use Time::HiRes qw(sleep);
my $rejected = 1;
for (1 .. 3) {
    $rejected += grep { $_->{status} == 429 } @{ http_parallel(100, "GET /signature/x") };
}
# past the cached time and the window: the next request asks Redis again
sleep(2.5);
$rejected += http_get('/signature/x')->{status} == 429 ? 1 : 0;
my @lines = grep { /Rate limit exceeded for IP 127\.0\.0\.1 on signature endpoint/ }
            split /\n/, error_log_text();
my $suppressed = 0;
$suppressed += $_ for map { /\((\d+) similar lines suppressed\)/ ? $1 : () } @lines;
cmp_ok($suppressed, '>', 0, "lines were left out ($suppressed)");
is(scalar(@lines) + $suppressed, $rejected,
   sprintf('%d lines + %d counted = %d rejections', scalar(@lines), $suppressed, $rejected));
