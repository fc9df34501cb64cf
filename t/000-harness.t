# Self-test of t/lib/Test/Nginx/Socket.pm using stock nginx directives only,
# so it passes without our module.  Run: prove -v t/000-harness.t

use lib 't/lib';

use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

# Redis for the redis_cli block: use the caller's when TEST_NGINX_REDIS_PORT
# is set, else start a private throw-away one on a free loopback port.  This
# must happen before the harness loads, since it defaults the port to 6379.
our ($RedisPid, $HaveRedis);
BEGIN {
    if (!$ENV{TEST_NGINX_REDIS_PORT} && -x '/usr/bin/redis-server') {
        my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                          Listen => 1, ReuseAddr => 1);
        my $port = $probe->sockport;
        close $probe;
        $RedisPid = fork;
        if (defined $RedisPid && !$RedisPid) {
            open STDOUT, '>', '/dev/null';
            open STDERR, '>', '/dev/null';
            exec 'redis-server', '--port', $port, '--bind', '127.0.0.1',
                 '--save', '', '--appendonly', 'no', '--daemonize', 'no';
            POSIX::_exit(127);
        }
        $ENV{TEST_NGINX_REDIS_PORT} = $port;
    }
}

use Test::Nginx::Socket;

# Wait (up to ~3s) until some redis answers; otherwise the redis part skips.
for (1 .. 60) {
    last if $HaveRedis = eval { redis_cli('ping') eq "PONG\n" };
    Time::HiRes::sleep(0.05);
}

END {
    if ($RedisPid) {
        kill 'TERM', $RedisPid;
        waitpid $RedisPid, 0;
    }
}

# Master + 2 workers: workers run as "nobody", which checks servroot perms.
master_on();
workers(2);

# Blocks that say nothing about the log must at least log no [error].
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->error_log || defined $block->no_error_log
              || defined $block->must_die;
    $block->set_value(no_error_log => "[error]\n");
});

run_tests();
done_testing();

__DATA__

=== TEST 1: static file from user_files
--- config
    location / {
    }
--- user_files
>>> hello.txt
Hello, harness!
--- request
GET /hello.txt
--- response_headers
Content-Type: text/plain
Content-Length: 16
--- response_body
Hello, harness!



=== TEST 2: empty_gif and response_headers_like
--- config
    location = /pixel.gif {
        empty_gif;
    }
--- request
    GET /pixel.gif
--- response_headers
Content-Type: image/gif
--- response_headers_like
Content-Length: ^43$
--- response_body_like: ^GIF89a



=== TEST 3: return 403
--- config
    location /deny {
        return 403;
    }
--- request
GET /deny
--- error_code: 403
--- response_body_like
<title>403 Forbidden</title>



=== TEST 4: add_header present, other header absent
--- config
    location /h {
        add_header X-Harness yes;
        return 200 "ok\n";
    }
--- request
GET /h
--- response_headers
X-Harness: yes
!X-Absent
!Transfer-Encoding
--- response_body
ok



=== TEST 5: request eval array with error_code and body arrays
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 403; }
    location = /c { return 200 "c\n"; }
--- request eval
["GET /a", "GET /b", "GET /c", "HEAD /a"]
--- error_code eval
[200, 403, 200, 200]
--- response_body_like eval
[qr/^a$/, qr/403 Forbidden/, "^c", "^\\z"]



=== TEST 6: request eval array, body_like array, scalar error_code
--- config
    location = /a { return 200 "alpha\n"; }
    location = /c { return 200 "gamma\n"; }
--- request eval
["GET /a", "GET /c HTTP/1.0"]
--- error_code: 200
--- response_body_like eval
[qr/^alpha$/, "^gam"]



=== TEST 7: missing static file logs an open() error
--- config
    location / {
        log_not_found on;
    }
--- request
GET /missing.txt
--- error_code: 404
--- error_log eval
[qr/open\(\) "(.*?)missing\.txt" failed/, "No such file or directory"]



=== TEST 8: return 404 logs no error
--- config
    location / {
        return 404;
    }
--- request
GET /nothing
--- error_code: 404
--- no_error_log
[error]
[alert]



=== TEST 9: must_die on an unknown directive
--- config
    harness_no_such_directive on;
--- must_die
--- error_log
unknown directive "harness_no_such_directive"



=== TEST 10: init and check share perl state and see the responses
--- init
$main::Counter = 41;
--- config
    location /t { return 200 "t\n"; }
--- request
GET /t
--- check
$main::Counter++;
is($main::Counter, 42, "init ran before check");
is(scalar @$responses, 1, "one response seen by check");
is($responses->[0]{body}, "t\n", "check sees the body");
is($block->name, "TEST 10: init and check share perl state and see the responses",
   "check sees the block");



=== TEST 11: more_headers, request_body and $TEST_NGINX_ variables
--- config
    location /echo {
        return 200 "$http_x_foo $content_length $server_port\n";
    }
--- more_headers
X-Foo: bar
--- request
POST /echo
--- request_body
hello
--- response_body
bar 5 $TEST_NGINX_SERVER_PORT



=== TEST 12: pipelined requests on one connection
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 200 "b\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["a\n", "b\n"]



=== TEST 13: raw_request and a chunked (sub_filter) response
--- config
    location / {
        sub_filter_types text/plain;
        sub_filter Hello Bye;
    }
--- user_files
>>> s.txt
Hello, chunks!
--- raw_request eval
"GET /s.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- response_headers
Transfer-Encoding: chunked
--- response_body
Bye, chunks!



=== TEST 14: http_parallel and http_get from check
--- config
    location /p { return 200 "p\n"; }
--- timeout: 5
--- wait: 0.1
--- check
my $r = http_parallel(5, "GET /p");
is(scalar @$r, 5, "5 parallel responses");
is(scalar(grep { ($_->{status} || 0) == 200 && $_->{body} eq "p\n" } @$r), 5,
   "all parallel requests succeeded");
$r = http_parallel(2, "GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
is(scalar(grep { ($_->{status} || 0) == 200 } @$r), 2, "raw parallel requests ok");
my $one = http_get('/p', headers => { 'X-A' => 'b' });
is($one->{status}, 200, "http_get status");
is($one->{headers}{'content-length'}, 2, "http_get headers are lower-cased");



=== TEST 15: a second nginx instance
--- config
    location /who { return 200 "main\n"; }
--- check
my $x = start_extra_nginx('location /who { return 200 "extra $server_port\n"; }');
isnt($x->{port}, server_port(), "extra nginx has its own port");
is(http_get('/who', port => $x->{port})->{body}, "extra $x->{port}\n", "extra answers");
is(http_get('/who')->{body}, "main\n", "main still answers");
ok(stop_extra_nginx($x), "extra nginx stopped gracefully");
ok(!kill(0, $x->{pid}) || `ps -o stat= -p $x->{pid}` =~ /Z/, "extra master is gone");



=== TEST 16: redis_cli talks to the test redis
--- init
redis_cli('set', 'harness:key', 'v1') if $main::HaveRedis;
--- config
    location /r { return 204; }
--- request
GET /r
--- error_code: 204
--- check
SKIP: {
    skip "no redis-server answering", 1 unless $main::HaveRedis;
    is(redis_cli('get', 'harness:key'), "v1\n", "redis_cli round trip");
}



=== TEST 17: log_level section switches to debug
--- log_level: debug
--- config
    location /dbg { return 200 "d\n"; }
--- request
GET /dbg
--- error_log
http request line: "GET /dbg HTTP/1.1"
--- no_error_log
[error]



=== TEST 18: an expected [crit] is not reported as an unexpected alert
--- init
my $link = html_dir() . '/loop';
unlink $link;
symlink 'loop', $link or die "symlink: $!";
--- config
    location / {
        try_files $uri =404;
    }
--- request
GET /loop
--- error_code: 404
--- error_log
Too many levels of symbolic links
