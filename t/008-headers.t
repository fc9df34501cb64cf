# RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10) on
# passed and rejected responses, the legacy trio, and Retry-After.

use lib 't/lib';
use Test::Nginx::Socket;

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n");
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

run_tests();
done_testing();

__DATA__

=== TEST 1: a passed response carries the policy and what is left of it
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
RateLimit-Policy: "signature";q=10;w=3600
!RateLimit-Limit
!Retry-After
--- response_headers_like
RateLimit: "signature";r=9;t=3(599|600)



=== TEST 2: a rejection carries r=0 and a t that Retry-After never undercuts
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
my $h = $responses->[1]{headers};
like($h->{ratelimit}, qr/^"signature";r=0;t=(\d+)$/, 'RateLimit on the 429');
my ($t) = $h->{ratelimit} =~ /t=(\d+)/;
cmp_ok($h->{'retry-after'}, '>=', $t, 'Retry-After is not earlier than t');
is($h->{'ratelimit-policy'}, '"signature";q=1;w=3600', 'policy');



=== TEST 3: one list item per limit, in configuration order
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        rate_limit burst requests=3 window=1m;
        rate_limit daily requests=100 window=1d;
        empty_gif;
    }
--- request
GET /signature/x
--- response_headers
RateLimit-Policy: "signature";q=10;w=3600, "burst";q=3;w=60, "daily";q=100;w=86400
--- response_headers_like
RateLimit: "signature";r=9;t=3\d{3}, "burst";r=2;t=60, "daily";r=99;t=864\d\d



=== TEST 4: with two limits, the rejecting one's t is the Retry-After
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        rate_limit burst requests=2 window=1m;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 200, 429 ]
--- check
my $h = $responses->[2]{headers};
like($h->{ratelimit}, qr/^"signature";r=8;t=\d+, "burst";r=0;t=(59|60)$/,
     'both limits reported');
like($h->{'retry-after'}, qr/^(59|60)$/, 'Retry-After from the burst limit');



=== TEST 5: rate_limit_headers off sends only Retry-After on a rejection
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_headers off;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- response_headers
!RateLimit
!RateLimit-Policy
--- response_headers_like eval
[ "Content-Type: image/gif", "Retry-After: 3(599|600)" ]



=== TEST 6: legacy adds RateLimit-Limit, -Remaining and -Reset of the tightest limit
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        rate_limit burst requests=3 window=1m;
        rate_limit_headers legacy;
        empty_gif;
    }
--- request
GET /signature/x
--- response_headers
RateLimit-Limit: 3
RateLimit-Remaining: 2
RateLimit-Policy: "signature";q=10;w=3600, "burst";q=3;w=60
--- response_headers_like
RateLimit-Reset: (59|60)



=== TEST 7: the headers ride on the upstream's own responses
--- http_config eval
$::HttpConfig . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
        location / { return 200 "odoo\n"; }
    }
}
--- config
    location /signature/ {
        rate_limit signature requests=5 window=1h;
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    }
--- request
GET /signature/x
--- response_body
odoo
--- response_headers
RateLimit-Policy: "signature";q=5;w=3600
--- response_headers_like
RateLimit: "signature";r=4;t=\d+



=== TEST 8: no RateLimit fields when Redis could not answer
--- http_config
    rate_limit_redis 127.0.0.1:1;
--- config
    location /signature/ {
        rate_limit signature requests=5 window=1h;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 200
--- response_headers
!RateLimit
!RateLimit-Policy
--- no_error_log
[alert]



=== TEST 9: a dry-run rejection shows the spent budget but passes
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_dry_run on;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 200 ]
--- response_headers_like eval
[ 'RateLimit: "signature";r=0;t=\d+', 'RateLimit: "signature";r=0;t=\d+' ]
--- response_headers
!Retry-After



=== TEST 10: rate_limit_body json answers with RFC 9457 problem details
--- http_config eval: $::HttpConfig
--- config
    location /api/ {
        rate_limit api requests=1 window=1h;
        rate_limit burst requests=5 window=1m;
        rate_limit_body json;
        empty_gif;
    }
--- request eval
[ "GET /api/x", "GET /api/x" ]
--- error_code eval
[ 200, 429 ]
--- response_headers eval
[ "Content-Type: image/gif", "Content-Type: application/problem+json" ]
--- check
my $r = $responses->[1];
like($r->{body}, qr/^\{"type":"https:\/\/iana\.org\/assignments\/http-problem-types#quota-exceeded",/,
     'problem type');
like($r->{body}, qr/"status":429,/, 'status');
my ($ra) = $r->{body} =~ /"retry-after":(\d+)/;
is($ra, $r->{headers}{'retry-after'}, 'retry-after as in the header');
like($r->{body}, qr/"violated-policies":\["api"\]\}\n$/,
     'only the limit that rejected');
is(length $r->{body}, $r->{headers}{'content-length'}, 'Content-Length');



=== TEST 11: the default body stays the plain text operators grep for
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit x requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /x", "GET /x" ]
--- error_code eval
[ 200, 429 ]
--- response_body_like eval
[ qr/^GIF/, qr/\ARate limit exceeded\n\z/ ]
--- response_headers eval
[ "Content-Type: image/gif", "Content-Type: text/plain" ]
