# Client identity and key hygiene: realip decides who the client is, IPv6
# clients can be grouped by prefix, IPv4-mapped addresses count as IPv4,
# and no client-controlled bytes make a key unbounded, ambiguous or harmful.

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

sub keys_sorted { join ' ', sort split /\n/, redis_cli('keys', '*') }

run_tests();
done_testing();

__DATA__

=== TEST 1: ipv6_prefix=64: one host rotating through its /64 shares one bucket
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        rate_limit signature requests=2 window=1h ipv6_prefix=64;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 4 ]
--- more_headers eval
[ "X-Real-IP: 2001:db8:1:2::1", "X-Real-IP: 2001:db8:1:2:dead:beef::9",
  "X-Real-IP: 2001:db8:1:2:ffff::1", "X-Real-IP: 2001:db8:1:3::1" ]
--- error_code eval
[ 200, 200, 429, 200 ]
--- check
is(main::keys_sorted(),
   'rate_limit:2001:db8:1:2::/64:signature rate_limit:2001:db8:1:3::/64:signature',
   'one key per /64');
--- error_log
Rate limit exceeded for IP 2001:db8:1:2::/64 on signature endpoint



=== TEST 2: without ipv6_prefix every IPv6 address has its own bucket
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
[ "X-Real-IP: 2001:db8:1:2::1", "X-Real-IP: 2001:db8:1:2::2",
  "X-Real-IP: 2001:db8:1:2::1" ]
--- error_code eval
[ 200, 200, 429 ]



=== TEST 3: an IPv4-mapped IPv6 address counts as the IPv4 address
--- http_config eval: $::HttpConfig
--- config
    location /signature/ {
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- more_headers eval
[ "X-Real-IP: 198.51.100.7", "X-Real-IP: ::ffff:198.51.100.7" ]
--- error_code eval
[ 200, 429 ]
--- check
is(main::keys_sorted(), 'rate_limit:198.51.100.7:signature', 'one bucket');



=== TEST 4: an 8 KB key is stored as its SHA-1, bounded, and still limits
--- http_config eval: $::HttpConfig
--- config
    large_client_header_buffers 4 16k;
    location /login {
        rate_limit login requests=1 window=1h key=$http_x_user;
        empty_gif;
    }
--- more_headers eval
"X-User: " . ("u" x 8192)
--- request eval
[ "GET /login", "GET /login" ]
--- error_code eval
[ 200, 429 ]
--- check
my @k = split /\n/, redis_cli('keys', '*');
is(scalar @k, 1, 'one key');
like($k[0], qr/^rate_limit:sha1:[0-9a-f]{40}:login$/, 'hashed');
cmp_ok(length $k[0], '<', 80, 'short');



=== TEST 5: CR, LF and non-UTF-8 bytes in a key are stored as bytes, in their own bucket
--- http_config eval: $::HttpConfig
--- config
    location /k/ {
        rate_limit raw requests=1 window=1h key=$uri;
        empty_gif;
    }
--- request eval
[ "GET /k/a%0D%0Ab%FF", "GET /k/a%0D%0Ab%FF", "GET /k/a%0D%0Ab" ]
--- error_code eval
[ 200, 429, 200 ]
--- check
open my $fh, '-|', 'redis-cli', '-p', $ENV{TEST_NGINX_REDIS_PORT}, '--no-raw',
    'keys', '*' or die $!;
my $out = do { local $/; <$fh> };
like($out, qr/"rate_limit:\/k\/a\\r\\nb\\xff:raw"/, 'exact bytes, escaped by redis-cli');
like($out, qr/"rate_limit:\/k\/a\\r\\nb:raw"/, 'a distinct key without the byte');



=== TEST 6: a key with colons cannot collide with another NAME: NAMEs have none
--- http_config eval: $::HttpConfig
--- config
    location /a {
        rate_limit b requests=1 window=1h key=$arg_k;
        empty_gif;
    }
    location /c {
        rate_limit c requests=1 window=1h key=$arg_k;
        empty_gif;
    }
--- request eval
[ "GET /a?k=x:c", "GET /c?k=x", "GET /c?k=x:b", "GET /a?k=x" ]
--- error_code eval
[ 200, 200, 200, 200 ]
--- check
is(main::keys_sorted(),
   join(' ', sort qw(rate_limit:x:c:b rate_limit:x:c rate_limit:x:b:c
                     rate_limit:x:b)),
   'four distinct keys: the NAME is what follows the last colon');



=== TEST 7: limiting never touches keys outside the prefix
--- http_config eval
$::HttpConfig . q{
    rate_limit_key_prefix school_asset:rate_limit;
}
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h key=$arg_k;
        empty_gif;
    }
--- init
redis_cli('set', 'school_asset:other', 'keep');
redis_cli('set', 'school_asset:rate_limit', 'keep too');
--- request eval
[ "GET /signature/x?k=*", "GET /signature/x?k=%2A", "GET /signature/x?k=..",
  "GET /signature/x?k=school_asset:other" ]
--- error_code eval
[ 200, 200, 200, 200 ]
--- check
is(redis_cli('get', 'school_asset:other'), "keep\n", 'untouched');
is(redis_cli('get', 'school_asset:rate_limit'), "keep too\n", 'untouched');
is(scalar(grep { /^school_asset:rate_limit:/ } split /\n/, redis_cli('keys', '*')),
   4, 'four keys of our own');
