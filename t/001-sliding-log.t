# The sliding-log limit end to end: the operators' own check, Retry-After,
# the variables, dry run, several limits on one request.

use lib 't/lib';
use Test::Nginx::Socket;

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n"
                              . (defined $block->init ? $block->init : ''));
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

run_tests();
done_testing();

__DATA__

=== TEST 1: 15 requests on a 10-per-hour limit: 10 pass, then 5 get 429
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/checkout?token=t" } 1 .. 15 ]
--- error_code eval
[ (200) x 10, (429) x 5 ]
--- response_body_like eval
[ (qr/^GIF89a/) x 10, (qr/^Rate limit exceeded$/m) x 5 ]
--- response_headers_like eval
[ ("Content-Type: image/gif") x 10, ("Retry-After: 3(599|600)") x 5 ]
--- error_log
rate limit check passed for 127.0.0.1. Attempts: 1/10, Remaining: 9
rate limit check passed for 127.0.0.1. Attempts: 10/10, Remaining: 0
[warn]
Rate limit exceeded for IP 127.0.0.1 on signature endpoint. Attempts: 10/10



=== TEST 2: a passed request carries no Retry-After
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 200
--- response_headers
!Retry-After



=== TEST 3: a retry after Retry-After seconds passes, and only one does
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=2 window=3s;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 200
--- check
select(undef, undef, undef, 1);
is(http_get('/signature/x')->{status}, 200, 'second request passes');
my $r = http_get('/signature/x');
is($r->{status}, 429, 'third request is rejected');
my $retry = $r->{headers}{'retry-after'};
is($retry, 2, 'Retry-After: when the first entry leaves the window');
select(undef, undef, undef, $retry + 0.05);
is(http_get('/signature/x')->{status}, 200, 'passes after Retry-After');
is(http_get('/signature/x')->{status}, 429,
   'then the second entry still fills the budget');



=== TEST 4: rate_limit_status changes the rejection code
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_status 503;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 503 ]
--- response_body_like eval
[ qr/GIF/, qr/Rate limit exceeded/ ]



=== TEST 5: $rate_limit_status, _remaining and _reset in headers and the access log
--- http_config eval
$::HttpConfig . q{
    log_format rl '$uri $status $rate_limit_status $rate_limit_remaining';
}
--- config
    access_log logs/rl.log rl;
    location /signature/ {
        rate_limit signature requests=2 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        add_header X-RL-Remaining $rate_limit_remaining always;
        add_header X-RL-Reset $rate_limit_reset always;
        empty_gif;
    }
    location /free/ {
        add_header X-RL-Status "[$rate_limit_status]" always;
        empty_gif;
    }
--- request eval
[ "GET /signature/1", "GET /signature/2", "GET /signature/3", "GET /free/" ]
--- error_code eval
[ 200, 200, 429, 200 ]
--- response_headers_like eval
[ "X-RL-Status: PASSED\nX-RL-Remaining: 1\nX-RL-Reset: 3(599|600)",
  "X-RL-Status: PASSED\nX-RL-Remaining: 0",
  "X-RL-Status: REJECTED\nX-RL-Remaining: 0\nX-RL-Reset: 3(599|600)",
  "X-RL-Status: \\[\\]" ]
--- check
my $log = '';
for (1 .. 20) {
    open my $fh, '<', servroot() . '/logs/rl.log' or die $!;
    $log = do { local $/; <$fh> };
    last if $log =~ tr/\n// >= 4;
    select(undef, undef, undef, 0.05);
}
like($log, qr{^/signature/1 200 PASSED 1$}m, 'access log: passed');
like($log, qr{^/signature/3 429 REJECTED 0$}m, 'access log: rejected');
like($log, qr{^/free/ 200 - -$}m, 'access log: not limited');



=== TEST 6: dry run decides and logs but never rejects
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_dry_run on;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 200, 200 ]
--- response_headers eval
[ "X-RL-Status: PASSED", "X-RL-Status: REJECTED_DRY_RUN",
  "X-RL-Status: REJECTED_DRY_RUN" ]
--- check
like(redis_cli('zcard', 'rate_limit:127.0.0.1:signature'), qr/^1$/,
     'a dry-run rejection consumes nothing');
--- error_log
Rate limit exceeded for IP 127.0.0.1 on signature endpoint. Attempts: 1/1, dry run



=== TEST 7: rate_limit_log_level sets the level of rejection lines
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_log_level notice;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- error_log
[notice]
Rate limit exceeded for IP 127.0.0.1 on signature endpoint
--- no_error_log
[warn]
[error]



=== TEST 8: several limits on a request: all must pass, a rejection counts in none
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=2 window=1h;
        rate_limit signature_day requests=5 window=1d;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 4 ]
--- error_code eval
[ 200, 200, 429, 429 ]
--- check
is(redis_cli('zcard', 'rate_limit:127.0.0.1:signature'), "2\n",
   'the tight limit holds 2 entries');
is(redis_cli('zcard', 'rate_limit:127.0.0.1:signature_day'), "2\n",
   'the loose limit did not count the rejected requests');



=== TEST 9: one NAME in two locations shares one budget
--- http_config eval: $::HttpConfig
--- config
    location /signature/a {
        rate_limit signature requests=3 window=1h;
        empty_gif;
    }
    location /signature/b {
        rate_limit signature requests=3 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/a", "GET /signature/b", "GET /signature/a",
  "GET /signature/b" ]
--- error_code eval
[ 200, 200, 200, 429 ]



=== TEST 10: a custom key limits per value of the key
--- http_config eval: $::HttpConfig
--- config
    location /login {
        rate_limit login requests=1 window=1h key=$arg_user;
        empty_gif;
    }
--- request eval
[ "GET /login?user=alice", "GET /login?user=bob", "GET /login?user=alice" ]
--- error_code eval
[ 200, 200, 429 ]



=== TEST 11: an empty key is not limited
--- http_config eval: $::HttpConfig
--- config
    location /login {
        rate_limit login requests=1 window=1h key=$arg_user;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request eval
[ "GET /login", "GET /login", "GET /login" ]
--- error_code eval
[ 200, 200, 200 ]
--- response_headers
X-RL-Status: SKIPPED
--- check
is(redis_cli('dbsize'), "0\n", 'nothing was written to Redis');



=== TEST 12: HEAD requests are limited and get no body
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "HEAD /signature/x", "HEAD /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- response_body eval
[ "", "" ]



=== TEST 13: an inner level with its own rate_limit replaces the outer ones
--- http_config eval
$::HttpConfig . q{
    rate_limit outer requests=1 window=1h;
}
--- config
    location /inner {
        rate_limit inner requests=3 window=1h;
        empty_gif;
    }
    location /plain {
        empty_gif;
    }
--- request eval
[ "GET /inner", "GET /inner", "GET /plain", "GET /plain" ]
--- error_code eval
[ 200, 200, 200, 429 ]



=== TEST 14: the proxied page comes through on a pass
--- http_config eval
$::HttpConfig . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
        location / { return 200 "odoo says hi\n"; }
    }
}
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- response_body eval
[ "odoo says hi\n", "Rate limit exceeded\n" ]
