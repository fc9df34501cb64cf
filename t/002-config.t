# Configuration: every mistake fails "nginx -t" with a message that names the
# directive (or parameter) and the bad value; secrets are never echoed; a
# full configuration at every level is accepted and works.

use lib 't/lib';
use POSIX ();
use Test::Nginx::Socket;

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

# A redis-server on a unix socket only, for the unix: address block.
our $UnixRedisPid;

sub start_unix_redis {
    my $sock = shift;
    unlink $sock;
    $UnixRedisPid = fork;
    die "fork: $!" unless defined $UnixRedisPid;
    if (!$UnixRedisPid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec';
          exec 'redis-server', '--port', '0', '--unixsocket', $sock,
               '--unixsocketperm', '777', '--save', '', '--appendonly', 'no',
               '--daemonize', 'no'; }
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        return if -S $sock;
        select(undef, undef, undef, 0.05);
    }
    die "redis-server did not create $sock\n";
}

sub stop_unix_redis {
    return unless $UnixRedisPid;
    kill 'TERM', $UnixRedisPid;
    waitpid $UnixRedisPid, 0;
    $UnixRedisPid = undef;
}

# Both outlive their block's check, which runs while nginx is still connected.
END {
    stop_unix_redis();
    eval { redis_cli('acl', 'deluser', 'rl_cfgtest') };
}

# Blocks that start nginx begin with an empty Redis and log no [error].
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->must_die;
    $block->set_value(init => "redis_cli('flushall');\n"
                              . (defined $block->init ? $block->init : ''));
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

run_tests();
done_testing();

__DATA__

=== TEST 1: requests=0 is refused: requests is 1 to 10^9
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=0 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "requests=0" in "rate_limit" directive, requests must be a number from 1 to 1000000000



=== TEST 2: requests=abc is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=abc window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "requests=abc" in "rate_limit" directive, requests must be a number from 1 to 1000000000



=== TEST 3: requests=1000000001 is refused: above 10^9
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=1000000001 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "requests=1000000001" in "rate_limit" directive, requests must be a number from 1 to 1000000000



=== TEST 4: window=0s is refused: window is 1s to 365d
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=0s;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "window=0s" in "rate_limit" directive, window must be a time from 1s to 365d



=== TEST 5: window=500ms is refused: below 1s
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=500ms;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "window=500ms" in "rate_limit" directive, window must be a time from 1s to 365d



=== TEST 6: window=abc is refused: not nginx time syntax
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=abc;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "window=abc" in "rate_limit" directive, window must be a time from 1s to 365d



=== TEST 7: window=366d is refused: above 365d
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=366d;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "window=366d" in "rate_limit" directive, window must be a time from 1s to 365d



=== TEST 8: the bounds themselves (requests=1 and 10^9, window=1s and 365d) are accepted
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit low requests=1 window=1s;
        rate_limit high requests=1000000000 window=365d;
        empty_gif;
    }
--- request
GET /x
--- response_body_like: ^GIF89a



=== TEST 9: requests= defaults to the operators' guide's 10
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature window=1h;
        empty_gif;
    }
--- request eval
[ map { "GET /x" } 1 .. 11 ]
--- error_code eval
[ (200) x 10, 429 ]



=== TEST 10: window= defaults to the operators' guide's hour
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=1;
        empty_gif;
    }
--- request eval
[ "GET /x", "GET /x" ]
--- error_code eval
[ 200, 429 ]
--- response_headers_like eval
[ 'RateLimit-Policy: "signature";q=1;w=3600', 'Retry-After: 3(599|600)' ]



=== TEST 11: a rate_limit without a NAME is refused: the first parameter is the NAME
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit requests=10 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid name "requests=10" in "rate_limit" directive



=== TEST 12: an unknown rate_limit parameter is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h burst_size=3;
        empty_gif;
    }
--- must_die
--- error_log
invalid parameter "burst_size=3" in "rate_limit" directive



=== TEST 13: requests= given twice is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h requests=5;
        empty_gif;
    }
--- must_die
--- error_log
duplicate parameter "requests=5" in "rate_limit" directive



=== TEST 14: window= given twice is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h window=2h;
        empty_gif;
    }
--- must_die
--- error_log
duplicate parameter "window=2h" in "rate_limit" directive



=== TEST 15: key= given twice is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h key=$arg_a key=$arg_b;
        empty_gif;
    }
--- must_die
--- error_log
duplicate parameter "key=$arg_b" in "rate_limit" directive



=== TEST 16: an empty key= is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h key=;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "key=" in "rate_limit" directive, key must not be empty



=== TEST 17: a key= with an unknown variable is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h key=$no_such_variable;
        empty_gif;
    }
--- must_die
--- error_log
unknown "no_such_variable" variable



=== TEST 18: a NAME with ":" is refused: PREFIX:KEY:NAME must split unambiguously
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit sig:nature requests=10 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid name "sig:nature" in "rate_limit" directive, it may contain letters, digits, "_", "-" and "." only, 64 at most



=== TEST 19: a NAME with "/" is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature/x requests=10 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid name "signature/x" in "rate_limit" directive, it may contain letters, digits, "_", "-" and "." only, 64 at most



=== TEST 20: a NAME longer than 64 bytes is refused
--- http_config eval: $::HttpConfig
--- config eval
"    location /x {
        rate_limit " . ('n' x 65) . " requests=10 window=1h;
        empty_gif;
    }"
--- must_die
--- error_log eval
'invalid name "' . ('n' x 65) . '" in "rate_limit" directive'



=== TEST 21: a NAME of letters, digits, "_", "-" and "." up to 64 bytes is accepted
--- http_config eval: $::HttpConfig
--- config eval
"    location /x {
        rate_limit Sig_na-ture.v2 requests=10 window=1h;
        rate_limit " . ('n' x 64) . " requests=10 window=1h;
        empty_gif;
    }"
--- request
GET /x
--- response_body_like: ^GIF89a



=== TEST 22: the same NAME twice in one location is refused
--- http_config eval: $::HttpConfig
--- config
    location /x {
        rate_limit signature requests=10 window=1h;
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
rate limit "signature" is duplicate



=== TEST 23: the same NAME with other requests in another location is refused, naming the first definition's file:line
--- http_config eval: $::HttpConfig
--- user_files
>>> first.conf
location /a {
    rate_limit signature requests=10 window=1h;
    empty_gif;
}
--- config
    include $TEST_NGINX_SERVROOT/html/first.conf;
    location /b {
        rate_limit signature requests=20 window=1h;
        empty_gif;
    }
--- must_die
--- error_log
rate limit "signature" is already defined with requests=10 window=3600s algorithm=sliding_log in $TEST_NGINX_SERVROOT/html/first.conf:2



=== TEST 24: the same NAME with another window in another location is refused
--- http_config eval: $::HttpConfig
--- config
    location /a {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
    location /b {
        rate_limit signature requests=10 window=1d;
        empty_gif;
    }
--- must_die
--- error_log eval
qr{rate limit "signature" is already defined with requests=10 window=3600s algorithm=sliding_log in \S+/conf/nginx\.conf:\d+}



=== TEST 25: a NAME at http level and in a location must agree too
--- http_config eval
$::HttpConfig . q{
    rate_limit signature requests=10 window=1h;
}
--- config
    location /b {
        rate_limit signature requests=5 window=1h;
        empty_gif;
    }
--- must_die
--- error_log eval
qr{rate limit "signature" is already defined with requests=10 window=3600s algorithm=sliding_log in \S+/conf/nginx\.conf:\d+}



=== TEST 26: the same NAME with the same requests and window (written 1h, 60m, 3600) in three locations is accepted and shares one budget
--- http_config eval: $::HttpConfig
--- config
    location /a {
        rate_limit signature requests=2 window=1h;
        empty_gif;
    }
    location /b {
        rate_limit signature requests=2 window=60m;
        empty_gif;
    }
    location /c {
        rate_limit signature requests=2 window=3600 key=$remote_addr;
        empty_gif;
    }
--- request eval
[ "GET /a", "GET /b", "GET /c" ]
--- error_code eval
[ 200, 200, 429 ]



=== TEST 27: 16 rate_limit in one location are accepted
--- http_config eval: $::HttpConfig
--- config eval
"    location /x {\n"
. CORE::join('', map { "        rate_limit n$_ requests=10 window=1h;\n" } 1 .. 16)
. "        empty_gif;\n    }\n"
--- request
GET /x
--- response_body_like: ^GIF89a
--- check
is(scalar(() = redis_cli('keys', 'rate_limit:127.0.0.1:n*') =~ /\n/g), 16,
   'all 16 limits counted the request');



=== TEST 28: more than 16 rate_limit in one location are refused
--- http_config eval: $::HttpConfig
--- config eval
"    location /x {\n"
. CORE::join('', map { "        rate_limit n$_ requests=10 window=1h;\n" } 1 .. 17)
. "        empty_gif;\n    }\n"
--- must_die
--- error_log
too many "rate_limit" directives on one level, 16 at most



=== TEST 29: rate_limit at http level without rate_limit_redis is refused
--- http_config
    rate_limit signature requests=10 window=1h;
--- config
    location /x {
        empty_gif;
    }
--- must_die
--- error_log eval
qr{"rate_limit" is used in \S+/conf/nginx\.conf:\d+ but no "rate_limit_redis" is set in the http block}



=== TEST 30: rate_limit at server level without rate_limit_redis is refused
--- config
    rate_limit signature requests=10 window=1h;
    location /x {
        empty_gif;
    }
--- must_die
--- error_log eval
qr{"rate_limit" is used in \S+/conf/nginx\.conf:\d+ but no "rate_limit_redis" is set in the http block}



=== TEST 31: rate_limit at location level without rate_limit_redis is refused, naming where it is used
--- user_files
>>> limited.conf
location /x {
    rate_limit signature requests=10 window=1h;
    empty_gif;
}
--- config
    include $TEST_NGINX_SERVROOT/html/limited.conf;
--- must_die
--- error_log
"rate_limit" is used in $TEST_NGINX_SERVROOT/html/limited.conf:2 but no "rate_limit_redis" is set in the http block



=== TEST 32: without any rate_limit, the module needs no rate_limit_redis
--- config
    location /x {
        rate_limit_fallback closed;
        rate_limit_status 503;
        empty_gif;
    }
--- request
GET /x
--- response_body_like: ^GIF89a



=== TEST 33: rate_limit_redis twice is refused
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    rate_limit_redis 127.0.0.1:6379;
--- must_die
--- error_log
"rate_limit_redis" directive is duplicate



=== TEST 34: rate_limit_redis in a server block is refused: its context is http
--- config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- must_die
--- error_log
"rate_limit_redis" directive is not allowed here



=== TEST 35: rate_limit_redis with a port out of range is refused
--- http_config
    rate_limit_redis 127.0.0.1:99999;
--- must_die
--- error_log
invalid address "127.0.0.1:99999" in "rate_limit_redis" directive: invalid port



=== TEST 36: rate_limit_redis with a host name that does not resolve is refused at nginx -t
--- http_config
    rate_limit_redis no-such-host.invalid:6379;
--- must_die
--- error_log
invalid address "no-such-host.invalid:6379" in "rate_limit_redis" directive: host not found



=== TEST 37: rate_limit_redis with an empty unix: path is refused
--- http_config
    rate_limit_redis unix:;
--- must_die
--- error_log
invalid address "unix:" in "rate_limit_redis" directive: no path in the unix domain socket



=== TEST 38: db=abc is refused
--- http_config
    rate_limit_redis 127.0.0.1 db=abc;
--- must_die
--- error_log
invalid value "db=abc" in "rate_limit_redis" directive, db must be a database number



=== TEST 39: db=-1 is refused
--- http_config
    rate_limit_redis 127.0.0.1 db=-1;
--- must_die
--- error_log
invalid value "db=-1" in "rate_limit_redis" directive, db must be a database number



=== TEST 40: timeout=0 is refused: timeouts are 1ms to 60s
--- http_config
    rate_limit_redis 127.0.0.1 timeout=0;
--- must_die
--- error_log
invalid value "timeout=0" in "rate_limit_redis" directive, it must be a time from 1ms to 60s



=== TEST 41: timeout=61s is refused
--- http_config
    rate_limit_redis 127.0.0.1 timeout=61s;
--- must_die
--- error_log
invalid value "timeout=61s" in "rate_limit_redis" directive, it must be a time from 1ms to 60s



=== TEST 42: connect_timeout=abc is refused
--- http_config
    rate_limit_redis 127.0.0.1 connect_timeout=abc;
--- must_die
--- error_log
invalid value "connect_timeout=abc" in "rate_limit_redis" directive, it must be a time from 1ms to 60s



=== TEST 43: an unknown rate_limit_redis parameter is refused, naming the parameter
--- http_config
    rate_limit_redis 127.0.0.1 pool_size=4;
--- must_die
--- error_log
invalid parameter "pool_size=" in "rate_limit_redis" directive



=== TEST 44: a misspelt password= is refused without echoing its value
--- http_config
    rate_limit_redis 127.0.0.1 passwrd=s3cret;
--- must_die
--- error_log
invalid parameter "passwrd=" in "rate_limit_redis" directive
--- no_error_log
s3cret



=== TEST 45: an error in another parameter never echoes the password
--- http_config
    rate_limit_redis 127.0.0.1 password=s3cret timeout=abc;
--- must_die
--- error_log
invalid value "timeout=abc" in "rate_limit_redis" directive
--- no_error_log
s3cret



=== TEST 46: username= without password= is refused
--- http_config
    rate_limit_redis 127.0.0.1 username=bob;
--- must_die
--- error_log
"rate_limit_redis" directive has "username=" without "password="



=== TEST 47: an empty rate_limit_key_prefix is refused
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    rate_limit_key_prefix "";
--- must_die
--- error_log
invalid value "" in "rate_limit_key_prefix" directive, it must be 1 to 128 bytes long



=== TEST 48: a rate_limit_key_prefix longer than 128 bytes is refused
--- http_config eval
'    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;' . "\n"
. '    rate_limit_key_prefix ' . ('p' x 129) . ";\n"
--- must_die
--- error_log eval
'invalid value "' . ('p' x 129) . '" in "rate_limit_key_prefix" directive, it must be 1 to 128 bytes long'



=== TEST 49: rate_limit_key_prefix in a server block is refused: its context is http
--- http_config eval: $::HttpConfig
--- config
    rate_limit_key_prefix school_asset:rate_limit;
--- must_die
--- error_log
"rate_limit_key_prefix" directive is not allowed here



=== TEST 50: rate_limit_fallback with an unknown mode is refused, listing the modes
--- http_config eval: $::HttpConfig
--- config
    rate_limit_fallback bogus;
--- must_die
--- error_log
invalid value "bogus" in "rate_limit_fallback" directive, it must be one of "open", "closed", "local"



=== TEST 51: rate_limit_fallback twice on one level is refused
--- http_config eval: $::HttpConfig
--- config
    rate_limit_fallback open;
    rate_limit_fallback closed;
--- must_die
--- error_log
"rate_limit_fallback" directive is duplicate



=== TEST 52: rate_limit_status 200 is refused: the code is 400 to 599
--- http_config eval: $::HttpConfig
--- config
    rate_limit_status 200;
--- must_die
--- error_log
invalid value "200" in "rate_limit_status" directive, it must be a status code from 400 to 599



=== TEST 53: rate_limit_status 600 is refused
--- http_config eval: $::HttpConfig
--- config
    rate_limit_status 600;
--- must_die
--- error_log
invalid value "600" in "rate_limit_status" directive, it must be a status code from 400 to 599



=== TEST 54: rate_limit_status abc is refused
--- http_config eval: $::HttpConfig
--- config
    rate_limit_status abc;
--- must_die
--- error_log
invalid value "abc" in "rate_limit_status" directive, it must be a status code from 400 to 599



=== TEST 55: rate_limit_status twice on one level is refused
--- http_config eval: $::HttpConfig
--- config
    rate_limit_status 429;
    rate_limit_status 503;
--- must_die
--- error_log
"rate_limit_status" directive is duplicate



=== TEST 56: rate_limit_log_level with an unknown level is refused, listing the levels
--- http_config eval: $::HttpConfig
--- config
    rate_limit_log_level bogus;
--- must_die
--- error_log
invalid value "bogus" in "rate_limit_log_level" directive, it must be one of "info", "notice", "warn", "error"



=== TEST 57: rate_limit_dry_run takes on or off only
--- http_config eval: $::HttpConfig
--- config
    rate_limit_dry_run maybe;
--- must_die
--- error_log
invalid value "maybe" in "rate_limit_dry_run" directive, it must be "on" or "off"



=== TEST 58: a full configuration at every level (host name, db=, prefix, timeouts in ms and s, several names, key=) passes and is used
--- http_config
    rate_limit_redis localhost:$TEST_NGINX_REDIS_PORT db=3 connect_timeout=200ms timeout=1s;
    rate_limit_key_prefix school_asset:rate_limit;
    rate_limit_fallback open;
    rate_limit_status 503;
    rate_limit_log_level notice;
    rate_limit_dry_run on;
    rate_limit global requests=1000 window=1d;
--- config
    rate_limit_fallback closed;
    rate_limit_status 429;
    rate_limit_log_level info;
    rate_limit_dry_run off;
    rate_limit site requests=100 window=1h;

    location /x {
        rate_limit signature requests=10 window=3600 key=$arg_user;
        rate_limit login requests=1 window=60m;
        rate_limit_fallback closed;
        rate_limit_status 429;
        rate_limit_log_level warn;
        rate_limit_dry_run off;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request eval
[ "GET /x?user=alice", "GET /x?user=alice" ]
--- error_code eval
[ 200, 429 ]
--- response_headers eval
[ "X-RL-Status: PASSED", "X-RL-Status: REJECTED" ]
--- check
is(join(' ', sort split /\n/, redis_cli('-n', 3, 'keys', 'school_asset:rate_limit:*')),
   'school_asset:rate_limit:127.0.0.1:login school_asset:rate_limit:alice:signature',
   'the location\'s limits were counted in db 3 under the prefix')
    or diag(redis_cli('-n', 3, 'keys', '*'));
is(redis_cli('dbsize'), "0\n", 'nothing was written to db 0');



=== TEST 59: username= and password= authenticate to Redis (ACL user)
--- init
redis_cli('acl', 'setuser', 'rl_cfgtest', 'reset', 'on', '>s3cret-pw', '~*', '+@all');
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT username=rl_cfgtest password=s3cret-pw;
    rate_limit_fallback closed;
--- config
    location /x {
        rate_limit signature requests=10 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /x
--- response_headers
X-RL-Status: PASSED



=== TEST 60: a wrong password fails at Redis, not at nginx -t, and is never logged
--- init
redis_cli('acl', 'setuser', 'rl_cfgtest', 'reset', 'on', '>s3cret-pw', '~*', '+@all');
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT username=rl_cfgtest password=wr0ng-pw;
    rate_limit_fallback closed;
--- config
    location /x {
        rate_limit signature requests=10 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /x
--- error_code: 503
--- response_headers
X-RL-Status: ERROR_REJECTED
--- error_log
WRONGPASS
--- no_error_log
wr0ng-pw



=== TEST 61: a unix:PATH address talks to Redis over the unix socket
--- init
main::start_unix_redis(servroot() . '/redis.sock');
--- http_config
    rate_limit_redis unix:$TEST_NGINX_SERVROOT/redis.sock;
    rate_limit_fallback closed;
--- config
    location /x {
        rate_limit signature requests=10 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
--- request
GET /x
--- response_headers
X-RL-Status: PASSED
--- check
my $sock = servroot() . '/redis.sock';
is(`redis-cli -s $sock zcard rate_limit:127.0.0.1:signature`, "1\n", 'the check was counted in the unix-socket Redis');
is(redis_cli('dbsize'), "0\n", 'and not in the TCP one');



=== TEST 62: a password given where the address belongs is never echoed
--- http_config
    rate_limit_redis password=s3cret;
--- must_die
--- error_log
"rate_limit_redis" directive needs an address (host:port, host or unix:path) or sentinel= before "password="
--- no_error_log
s3cret



=== TEST 63: a parameter repeated in rate_limit_redis is refused
--- http_config
    rate_limit_redis 127.0.0.1 db=1 db=2;
--- must_die
--- error_log
duplicate parameter "db=" in "rate_limit_redis" directive



=== TEST 64: a repeated password= is refused without echoing either
--- http_config
    rate_limit_redis 127.0.0.1 password=first-secret password=second-secret;
--- must_die
--- error_log
duplicate parameter "password=" in "rate_limit_redis" directive
--- no_error_log
first-secret
second-secret



=== TEST 65: an empty password= is refused
--- http_config
    rate_limit_redis 127.0.0.1 username=bob password=;
--- must_die
--- error_log
empty "password=" in "rate_limit_redis" directive



=== TEST 66: an empty rate_limit_key_prefix is refused where it is written
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    rate_limit_key_prefix "";
--- must_die
--- error_log eval
qr/invalid value "" in "rate_limit_key_prefix" directive, it must be 1 to 128 bytes long in \S+nginx\.conf:\d+/



=== TEST 67: window parts out of nginx's order are refused, as nginx does
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /x {
        rate_limit x requests=1 window=1s1h;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "window=1s1h" in "rate_limit" directive



=== TEST 68: algorithm=sliding_log, the default, may be spelt out
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /x {
        rate_limit x requests=1 window=1h algorithm=sliding_log;
        empty_gif;
    }
--- request eval
[ "GET /x", "GET /x" ]
--- error_code eval
[ 200, 429 ]



=== TEST 69: an unknown algorithm is refused, naming the ones there are
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /x {
        rate_limit x requests=1 window=1h algorithm=leaky;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "algorithm=leaky" in "rate_limit" directive, algorithm must be "sliding_log", "sliding_window", "gcra" or "fixed_window"



=== TEST 70: sentinel= needs master=
--- http_config
    rate_limit_redis sentinel=127.0.0.1:26379;
--- must_die
--- error_log
"rate_limit_redis" directive has "sentinel=" without "master="



=== TEST 70a: master= needs sentinel=
--- http_config
    rate_limit_redis 127.0.0.1 master=mymaster;
--- must_die
--- error_log
"rate_limit_redis" directive has "master=" without "sentinel="



=== TEST 70b: an address and sentinel= together are refused
--- http_config
    rate_limit_redis 127.0.0.1 sentinel=127.0.0.1:26379 master=m;
--- must_die
--- error_log
"rate_limit_redis" directive takes an address or sentinel=, not both



=== TEST 70c: a sentinel_password= is never echoed
--- http_config
    rate_limit_redis sentinel=127.0.0.1:26379,127.0.0.1 master=m sentinel_password=top-secret sentinel_password=other-secret;
--- must_die
--- error_log
duplicate parameter "sentinel_password=" in "rate_limit_redis" directive
--- no_error_log
top-secret
other-secret



=== TEST 71: burst= needs algorithm=gcra
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /x {
        rate_limit x requests=10 window=1m burst=5;
        empty_gif;
    }
--- must_die
--- error_log
"burst=" in "rate_limit" directive "x" needs algorithm=gcra



=== TEST 72: burst=0 is refused
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /x {
        rate_limit x requests=10 window=1m algorithm=gcra burst=0;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "burst=0" in "rate_limit" directive, burst must be a number from 1 to 1000000000



=== TEST 73: one NAME with two algorithms is a conflict
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /a {
        rate_limit x requests=10 window=1m;
        empty_gif;
    }
    location /b {
        rate_limit x requests=10 window=1m algorithm=gcra;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/rate limit "x" is already defined with requests=10 window=60s algorithm=sliding_log in \S+nginx\.conf:\d+/



=== TEST 74: a gcra conflict names the first definition's burst
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /a {
        rate_limit x requests=10 window=1m algorithm=gcra burst=4;
        empty_gif;
    }
    location /b {
        rate_limit x requests=10 window=1m algorithm=gcra burst=5;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/rate limit "x" is already defined with requests=10 window=60s algorithm=gcra burst=4 in \S+nginx\.conf:\d+/



=== TEST 75: ipv6_prefix out of range is refused
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /a {
        rate_limit x ipv6_prefix=129;
        empty_gif;
    }
--- must_die
--- error_log
invalid value "ipv6_prefix=129" in "rate_limit" directive, ipv6_prefix must be a number from 1 to 128



=== TEST 76: rate_limit_body takes text or json
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    rate_limit_body xml;
--- must_die
--- error_log
invalid value "xml" in "rate_limit_body" directive, it must be one of "text", "json"



=== TEST 77: a gcra limit without burst= and one with burst= equal to requests agree
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /a {
        rate_limit x requests=10 window=1m algorithm=gcra;
        empty_gif;
    }
    location /b {
        rate_limit x requests=10 window=1m algorithm=gcra burst=10;
        empty_gif;
    }
--- request
GET /a
--- error_code: 200



=== TEST 78: sentinels are reached over TCP, not unix sockets
--- http_config
    rate_limit_redis sentinel=unix:/tmp/sentinel.sock master=m;
--- must_die
--- error_log
invalid value "sentinel=unix:/tmp/sentinel.sock" in "rate_limit_redis" directive, sentinels are reached over TCP



=== TEST 79: rate_limit_status refuses nginx's special 444 and 499
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    rate_limit_status 444;
--- must_die
--- error_log
invalid value "444" in "rate_limit_status" directive, it must be a status code from 400 to 599, not 444 or 499



=== TEST 80: a unix socket path longer than sun_path is refused
--- http_config eval
"    rate_limit_redis unix:/tmp/" . ("a" x 120) . ".sock;\n"
--- must_die
--- error_log
the socket path is too long
