# Where the check runs: before authentication and access, after realip,
# once per request whatever internal redirects follow, never for
# subrequests, and with counts that live in Redis across reloads.

use lib 't/lib';
use Test::Nginx::Socket;

master_on();
workers(2);

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

sub zcard { my $n = redis_cli('zcard', shift); chomp $n; $n }

run_tests();
done_testing();

__DATA__

=== TEST 1: brute force against auth_basic is limited, and passing never grants access (satisfy any)
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=3 window=1h;
        satisfy any;
        allow 192.0.2.1;
        deny all;
        auth_basic "odoo";
        auth_basic_user_file ../html/htpasswd;
        empty_gif;
    }
--- user_files
>>> htpasswd
admin:{PLAIN}s3cret
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x",
  "GET /signature/x" ]
--- more_headers eval
[ "", "Authorization: Basic YWRtaW46d3Jvbmc=",
  "Authorization: Basic YWRtaW46czNjcmV0",
  "Authorization: Basic YWRtaW46czNjcmV0" ]
--- error_code eval
[ 401, 401, 200, 429 ]
--- no_error_log
[alert]



=== TEST 2: with satisfy all, a denied request still counts
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=2 window=1h;
        deny all;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 403, 403, 429 ]
--- no_error_log
[alert]



=== TEST 3: an index redirect does not count again
--- http_config eval: $::HttpConfig
--- config
    location / {
        rate_limit site requests=2 window=1h;
        index index.html;
    }
--- user_files
>>> index.html
home
--- request eval
[ "GET /", "GET /", "GET /" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
is(main::zcard('rate_limit:127.0.0.1:site'), 2, 'two requests, two entries');



=== TEST 4: try_files to a named location does not count again
--- http_config eval: $::HttpConfig
--- config
    location / {
        rate_limit site requests=2 window=1h;
        try_files $uri @app;
    }
    location @app {
        rate_limit site requests=2 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /missing", "GET /missing", "GET /missing" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
is(main::zcard('rate_limit:127.0.0.1:site'), 2, 'two requests, two entries');



=== TEST 5: rewrite ... last to another limited location counts once
--- http_config eval: $::HttpConfig
--- config
    location /old/ {
        rate_limit site requests=2 window=1h;
        rewrite ^ /new/ last;
    }
    location /new/ {
        rate_limit site requests=2 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /old/x", "GET /old/x", "GET /new/x" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
is(main::zcard('rate_limit:127.0.0.1:site'), 2, 'two requests, two entries');



=== TEST 6: error_page from a limited location to a limited location counts once
--- http_config eval: $::HttpConfig
--- config
    location / {
        rate_limit site requests=2 window=1h;
        error_page 404 = /fallback;
    }
    location = /fallback {
        rate_limit site requests=2 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /nothing-here", "GET /nothing-here", "GET /nothing-here" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
is(main::zcard('rate_limit:127.0.0.1:site'), 2, 'two requests, two entries');
--- no_error_log
[alert]



=== TEST 7: error_page 429 serves the operator's page, which is not limited again
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        error_page 429 /busy.html;
        empty_gif;
    }
    location = /busy.html {
        rate_limit signature requests=1 window=1h;
        root html;
    }
--- user_files
>>> busy.html
Too many attempts, come back later.
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429, 429 ]
--- response_body_like eval
[ qr/GIF/, qr/Too many attempts/, qr/Too many attempts/ ]
--- response_headers_like eval
[ "Content-Type: image/gif", "Retry-After: 3(599|600)",
  "Retry-After: 3(599|600)" ]
--- check
is(main::zcard('rate_limit:127.0.0.1:signature'), 1, 'one entry');



=== TEST 8: an auth_request subrequest is never checked
--- http_config eval: $::HttpConfig
--- config
    location /app/ {
        auth_request /auth;
        empty_gif;
    }
    location = /auth {
        internal;
        rate_limit auth requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /app/x", "GET /app/x", "GET /app/x" ]
--- error_code eval
[ 200, 200, 200 ]
--- check
is(redis_cli('dbsize'), "0\n", 'nothing counted');



=== TEST 9: behind a trusted proxy the key is the client address realip found
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- more_headers eval
[ "X-Real-IP: 198.51.100.7", "X-Real-IP: 198.51.100.8",
  "X-Real-IP: 198.51.100.7" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
is(main::zcard('rate_limit:198.51.100.7:signature'), 1, 'first client');
is(main::zcard('rate_limit:198.51.100.8:signature'), 1, 'second client');
--- error_log
Rate limit exceeded for IP 198.51.100.7 on signature endpoint



=== TEST 10: without realip, forwarding headers are ignored
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- more_headers eval
[ "X-Forwarded-For: 198.51.100.7\nX-Real-IP: 198.51.100.7",
  "X-Forwarded-For: 198.51.100.8\nX-Real-IP: 198.51.100.8" ]
--- error_code eval
[ 200, 429 ]
--- check
is(redis_cli('keys', '*'), "rate_limit:127.0.0.1:signature\n",
   'one bucket, the connection address');



=== TEST 11: counts survive nginx -s reload
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=2 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 200 ]
--- check
open my $fh, '<', servroot() . '/logs/nginx.pid' or die $!;
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid or die "kill HUP $pid: $!";
my $status;
for (1 .. 50) {
    select(undef, undef, undef, 0.1);
    last if main::error_log_text() =~ /reconfiguring/
            && ($status = http_get('/signature/x')->{status}) == 429;
}
is($status, 429, 'the budget spent before the reload is still spent');
is(main::zcard('rate_limit:127.0.0.1:signature'), 2, 'two entries');
--- error_log
reconfiguring
