# The O(1) algorithms: each admits its budget, rejects with an exact
# Retry-After after which a request passes, and behaves at window
# boundaries as documented.

use lib 't/lib';
use Test::Nginx::Socket;
use Time::HiRes ();

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n");
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

# sleeps until $offset seconds after the next multiple of $window on the
# Redis clock, the clock the windows are aligned to
sub sleep_to_boundary {
    my ($window, $offset) = @_;
    my ($s, $us) = split /\n/, redis_cli('time');
    my $now = $s + $us / 1e6;
    my $next = (int($now / $window) + 1) * $window;
    Time::HiRes::sleep($next - $now + $offset);
}

sub get { http_get(@_)->{status} }

run_tests();
done_testing();

__DATA__

=== TEST 1: fixed_window: the budget, then 429 until the window ends
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=3 window=1h algorithm=fixed_window;
        empty_gif;
    }
--- request eval
[ map { "GET /x" } 1 .. 4 ]
--- error_code eval
[ 200, 200, 200, 429 ]
--- response_headers_like eval
[ 'RateLimit: "x";r=2;t=\d+', 'RateLimit: "x";r=1;t=\d+',
  'RateLimit: "x";r=0;t=\d+', 'RateLimit: "x";r=0;t=\d+' ]
--- check
my ($t) = $responses->[3]{headers}{ratelimit} =~ /t=(\d+)/;
is($responses->[3]{headers}{'retry-after'}, $t,
   'Retry-After is the end of the window');
is(redis_cli('get', 'rate_limit:127.0.0.1:x'), "3\n", 'a counter at 3');



=== TEST 2: fixed_window admits up to twice the limit around a boundary, as documented
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=2 window=2s algorithm=fixed_window;
        empty_gif;
    }
    location = /warmup {
        empty_gif;
    }
--- request
GET /warmup
--- error_code: 200
--- check
main::sleep_to_boundary(2, 1.5);
my @a = map { main::get('/x') } 1 .. 3;
main::sleep_to_boundary(2, 0.05);
my @b = map { main::get('/x') } 1 .. 3;
is_deeply(\@a, [ 200, 200, 429 ], 'the end of one window');
is_deeply(\@b, [ 200, 200, 429 ], 'the start of the next: 4 within ~0.6 s');



=== TEST 3: gcra: a burst at once, then one request per window/requests
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=60 window=1m algorithm=gcra burst=3;
        empty_gif;
    }
--- request eval
[ map { "GET /x" } 1 .. 4 ]
--- error_code eval
[ 200, 200, 200, 429 ]
--- response_headers eval
[ ("!Retry-After") x 3, "Retry-After: 1" ]
--- check
Time::HiRes::sleep(1.05);
is(main::get('/x'), 200, 'one interval later, one passes');
is(main::get('/x'), 429, 'and only one');



=== TEST 4: gcra without burst= may spend its whole budget at once
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=5 window=1h algorithm=gcra;
        empty_gif;
    }
--- request eval
[ map { "GET /x" } 1 .. 6 ]
--- error_code eval
[ (200) x 5, 429 ]
--- response_headers_like eval
[ ('RateLimit-Policy: "x";q=5;w=3600') x 6 ]
--- check
like($responses->[5]{headers}{'retry-after'}, qr/^7(19|20)$/,
     'the next one comes back after an emission interval (720 s)');



=== TEST 5: sliding_window: the budget, then a Retry-After after which one passes
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=3 window=2s algorithm=sliding_window;
        empty_gif;
    }
    location = /warmup {
        empty_gif;
    }
--- request
GET /warmup
--- error_code: 200
--- check
main::sleep_to_boundary(2, 0.1);
my @a = map { main::get('/x') } 1 .. 4;
is_deeply(\@a, [ 200, 200, 200, 429 ], 'three pass in a window');
my $r = http_get('/x');
my $retry = $r->{headers}{'retry-after'};
ok($retry >= 1 && $retry <= 4, "Retry-After $retry s");
Time::HiRes::sleep($retry + 0.05);
is(main::get('/x'), 200, 'after Retry-After one passes');



=== TEST 6: a request under mixed algorithms counts in all or in none
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit tight requests=2 window=1h algorithm=fixed_window;
        rate_limit loose requests=10 window=1h algorithm=gcra;
        rate_limit log requests=10 window=1h;
        rate_limit est requests=10 window=1h algorithm=sliding_window;
        empty_gif;
    }
--- request eval
[ map { "GET /x" } 1 .. 4 ]
--- error_code eval
[ 200, 200, 429, 429 ]
--- check
is(redis_cli('zcard', 'rate_limit:127.0.0.1:log'), "2\n", 'sliding_log: 2');
is(redis_cli('hget', 'rate_limit:127.0.0.1:est', 'c'), "2\n",
   'sliding_window: 2');
like($responses->[2]{headers}{ratelimit}, qr/"loose";r=8;/,
     'gcra: 8 left');



=== TEST 7: each algorithm's key expires when it stops mattering: the log one window after its newest entry, the fixed counter at its window's end, the sliding counters at the end of the next window, gcra at its theoretical arrival time
--- http_config eval: $::HttpConfig
--- config
    location /l { rate_limit l requests=10 window=60s key=k; empty_gif; }
    location /f { rate_limit f requests=10 window=60s key=k algorithm=fixed_window; empty_gif; }
    location /s { rate_limit s requests=10 window=60s key=k algorithm=sliding_window; empty_gif; }
    location /g { rate_limit g requests=10 window=60s key=k algorithm=gcra; empty_gif; }
--- request
GET /l
--- error_code: 200
--- check
# not within a second of a 60 s boundary, so that one request and the
# readings below fall in the same window
my ($s, $us) = split /\n/, redis_cli('time');
Time::HiRes::sleep(1.5) if ($s % 60) > 58 || ($s % 60) < 1;
is(main::get("/$_"), 200, "/$_ passes") for qw(l f s g);
($s, $us) = split /\n/, redis_cli('time');
my $now = $s * 1000 + int($us / 1000);
my $end = (int($now / 60000) + 1) * 60000;
my %want = (l => 60000, f => $end - $now, s => $end - $now + 60000, g => 6000);
for my $a (qw(l f s g)) {
    my $pttl = redis_cli('pttl', "rate_limit:k:$a");
    chomp $pttl;
    ok(abs($pttl - $want{$a}) < 500, "$a: PTTL $pttl ms, want about $want{$a}");
}
