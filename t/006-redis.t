# What the module leaves in Redis, and how it talks to it: the key layout
# operators inspect with redis-cli, db= and AUTH.

use lib 't/lib';

# a redis-server of this file's own, with a password and an ACL user
our ($OwnRedisDir, $OwnRedisPort);
use OwnRedis;
BEGIN {
    # what the module needs: the script and the commands it runs
    my $cmds = "+ping +evalsha +eval +select +time +del +zremrangebyscore"
               . " +zcard +zadd +pexpire +zrange +get +set +incr +pexpireat"
               . " +hmget +hset";
    system("redis-cli -p $OwnRedisPort acl setuser limiter on '>limiter-pw'"
           . " '~rate_limit:*' $cmds >/dev/null") == 0 or die;
    system("redis-cli -p $OwnRedisPort acl setuser noscript on '>ns-pw'"
           . " '~rate_limit:*' +ping >/dev/null") == 0 or die;
    system("redis-cli -p $OwnRedisPort acl setuser readonly on '>ro-pw'"
           . " '~rate_limit:*' +ping +evalsha +eval +time +zremrangebyscore +zcard"
           . " >/dev/null") == 0 or die;
    system("redis-cli -p $OwnRedisPort config set requirepass"
           . " default-pw >/dev/null") == 0 or die;
}

use Test::Nginx::Socket;

sub own_cli { `redis-cli -p $OwnRedisPort --no-auth-warning -a default-pw @_` }

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushall');\n"
                              . "main::own_cli('flushall');\n");
});

run_tests();
done_testing();

__DATA__

=== TEST 1: the key is PREFIX:KEY:NAME, a sorted set of request times with a TTL of one window
--- http_config eval
$::HttpConfig . q{
    rate_limit_key_prefix school_asset:rate_limit;
}
--- config
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /signature/x" } 1 .. 3 ]
--- error_code: 200
--- check
my $key = 'school_asset:rate_limit:127.0.0.1:signature';
is(redis_cli('keys', 'school_asset:rate_limit:*'), "$key\n", 'one key');
is(redis_cli('type', $key), "zset\n", 'a sorted set');
my @z = split /\n/, redis_cli('zrange', $key, 0, -1, 'withscores');
is(scalar @z, 6, 'three members with their scores');
my $now = Time::HiRes::time();
for (my $i = 0; $i < @z; $i += 2) {
    like($z[$i], qr/^\d{10}\.\d{6}(-\d+)?$/, "member $z[$i]: seconds.micro");
    cmp_ok(abs($z[$i + 1] - $now), '<', 60, 'score: epoch seconds, now');
    cmp_ok(abs($z[$i + 1] - substr($z[$i], 0, 17)), '<', 1e-5,
           'score and member name the same instant');
}
my $ttl = redis_cli('ttl', $key);
chomp $ttl;
ok($ttl > 3590 && $ttl <= 3600, "TTL $ttl: one window");



=== TEST 2: a key longer than 256 bytes is stored as its SHA-1
--- http_config eval: $::HttpConfig
--- config
    location /login {
        rate_limit login requests=1 window=1h key=$http_x_user;
        empty_gif;
    }
--- more_headers eval
"X-User: " . ("a" x 257)
--- request eval
[ "GET /login", "GET /login" ]
--- error_code eval
[ 200, 429 ]
--- check
is(redis_cli('keys', '*'),
   "rate_limit:sha1:0c1038883670f8a0203e053eaf67dc2dec280b42:login\n",
   'bounded key');



=== TEST 3: db= selects the database
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=3;
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
is(redis_cli('-n', 3, 'zcard', 'rate_limit:127.0.0.1:signature'), "1\n",
   'in db 3');
is(redis_cli('dbsize'), "0\n", 'nothing in db 0');
--- no_error_log
[error]



=== TEST 4: password= authenticates with requirepass
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT password=default-pw;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- no_error_log
[error]
default-pw



=== TEST 5: username= and password= authenticate an ACL user
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT username=limiter password=limiter-pw;
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
is(main::own_cli('zcard', 'rate_limit:127.0.0.1:signature'), "1\n",
   'counted as the ACL user');
--- no_error_log
[error]
limiter-pw



=== TEST 6: a wrong password: a clear error, the fallback, and no secret in the log
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT password=wrong-secret;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_fallback closed;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 503, 503 ]
--- error_log
Redis refused the connection setup: WRONGPASS
Using fallback mode.
--- no_error_log
wrong-secret



=== TEST 7: no password against requirepass: the fallback applies
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 200
--- error_log
Redis refused the connection setup: NOAUTH Authentication required. Using fallback mode.
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1 (auth: NOAUTH



=== TEST 8: a host name is resolved at configuration time
--- http_config
    rate_limit_redis localhost:$TEST_NGINX_REDIS_PORT;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request eval
[ "GET /signature/x", "GET /signature/x" ]
--- error_code eval
[ 200, 429 ]
--- no_error_log
[error]



=== TEST 9: an ACL user that may not write gets the fallback, with Redis's reason
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT username=readonly password=ro-pw;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 200
--- error_log
Rate limiting unavailable (Redis down). Allowing request from 127.0.0.1 (reply:
can't run this command
--- no_error_log
ro-pw



=== TEST 10: an ACL user that may not run scripts gets the fallback, with Redis's reason
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT username=noscript password=ns-pw;
--- config
    location /signature/ {
        rate_limit signature requests=1 window=1h;
        rate_limit_fallback closed;
        empty_gif;
    }
--- request
GET /signature/x
--- error_code: 503
--- error_log
Rate limiting unavailable (Redis down). Rejecting request from 127.0.0.1 (reply: NOPERM
--- no_error_log
ns-pw
