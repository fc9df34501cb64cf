# Clients that go away while their check is in flight, over HTTP/1.1 and
# HTTP/2 (cleartext, prior knowledge): a closed connection, a reset
# connection, RST_STREAM on some of the streams of a connection, a
# connection closed with several streams waiting.  Redis is paused (CLIENT
# PAUSE ... WRITE stops the limit script), so every check is still waiting
# for its reply when the client leaves, and the reply comes back after the
# request is gone.  Nothing may crash, leak a descriptor, log an alert or
# give the gone requests a verdict; the streams that stay get theirs.
#
# The HTTP/2 client is a minimal one written here (the harness speaks
# HTTP/1.x only): HPACK without Huffman or dynamic table on the way out,
# and only the :status of a response on the way in (nginx sends it first).

use lib 't/lib';
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

# a redis-server of this file's own, to pause
our ($OwnRedisDir, $OwnRedisPort);
use OwnRedis;

use Test::Nginx::Socket;

# one worker, so that its descriptors can be counted
master_on();
workers(1);

# a port for the HTTP/2 server block
$ENV{TEST_NGINX_H2_PORT} = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "no port: $!\n";
    my $p = $s->sockport;
    close $s;
    $p;
};

# valgrind and the like (scripts/test-valgrind.sh) make everything slower
our $Slow = $ENV{TEST_NGINX_SLOW} ? 5 : 1;

sub own_cli { `redis-cli -p $OwnRedisPort @_` }

# the worker's descriptors at rest: the connection of the request before
# may still be closing (lingering close)
sub fd_baseline {
    my $pid = shift;
    my $min = fd_count($pid);
    for (1 .. 6) {
        sleep 0.05;
        my $n = fd_count($pid);
        $min = $n if $n < $min;
    }
    return $min;
}

# the access log (format "rl" below) once it has a line for $uri
sub access_log_until {
    my $uri = shift;
    my $log = '';
    for (1 .. 50 * $Slow) {
        open my $fh, '<', servroot() . '/logs/rl.log' or die "rl.log: $!\n";
        $log = do { local $/; <$fh> };
        last if $log =~ /^\Q$uri\E /m;
        sleep 0.1;
    }
    return $log;
}

# until the worker's descriptors are back to $want (replies of cancelled
# checks may still be on their way when Redis resumes)
sub fd_settles {
    my ($pid, $want) = @_;
    my $n;
    for (1 .. 50 * $Slow) {
        last if ($n = fd_count($pid)) == $want;
        sleep 0.1;
    }
    return $n;
}

# ------------------------------------------------- a minimal HTTP/2 client

sub h2_frame {
    my ($type, $flags, $sid, $payload) = @_;
    $payload //= '';
    my $len = length $payload;
    return pack('CnCCN', $len >> 16, $len & 0xffff, $type, $flags,
                $sid & 0x7fffffff) . $payload;
}

# HPACK integer with an n-bit prefix, and a string without Huffman coding
sub hpack_int {
    my ($v, $bits, $first) = @_;
    my $max = (1 << $bits) - 1;
    return chr($first | $v) if $v < $max;
    my $out = chr($first | $max);
    $v -= $max;
    while ($v >= 128) { $out .= chr(($v & 0x7f) | 0x80); $v >>= 7 }
    return $out . chr($v);
}
sub hpack_str { hpack_int(length $_[0], 7, 0) . $_[0] }

# GET path: :method GET (static 2), :scheme http (6), :path and :authority
# as literals without indexing, with the static table's names (4, 1)
sub h2_get_block {
    my $path = shift;
    return "\x82\x86" . hpack_int(4, 4, 0) . hpack_str($path)
           . hpack_int(1, 4, 0) . hpack_str('localhost');
}

sub h2_connect {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_H2_PORT},
                                  Proto => 'tcp') or die "h2 connect: $!\n";
    binmode $s;
    my $c = { sock => $s, buf => '', streams => {}, goaway => 0, eof => 0 };
    h2_send($c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . h2_frame(4, 0, 0));
    return $c;
}

sub h2_send {
    my ($c, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite $c->{sock}, $data, length($data) - $off, $off;
        die "h2 write: $!\n" unless $n;
        $off += $n;
    }
}

# HEADERS with END_STREAM | END_HEADERS: a GET on stream $sid
sub h2_get_frame { h2_frame(1, 0x5, $_[0], h2_get_block($_[1])) }

# RST_STREAM CANCEL (8)
sub h2_rst_frame { h2_frame(3, 0, $_[0], pack('N', 8)) }

sub h2_status_of {
    my $block = shift;
    my $b = ord substr $block, 0, 1;
    my %indexed = (8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400,
                   13 => 404, 14 => 500);
    return $indexed{ $b & 0x7f } if $b & 0x80;
    # a literal with the name :status (index 8), then a raw value
    my $len = ord(substr $block, 1, 1) & 0x7f;
    return substr $block, 2, $len;
}

# reads frames for up to $timeout seconds or until every stream in
# @$want ended; answers SETTINGS and PING as a client must
sub h2_read {
    my ($c, $timeout, @want) = @_;
    my $sel = IO::Select->new($c->{sock});
    my $deadline = time + $timeout;
    while (!$c->{eof}) {
        last if @want && !grep { !$c->{streams}{$_}{done} } @want;
        my $left = $deadline - time;
        last if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $c->{sock}, my $chunk, 65536;
        if (!$n) { $c->{eof} = 1; last }
        $c->{buf} .= $chunk;
        while (length $c->{buf} >= 9) {
            my ($l1, $l2, $type, $flags, $sid) = unpack 'CnCCN', $c->{buf};
            my $len = ($l1 << 16) | $l2;
            last if length $c->{buf} < 9 + $len;
            my $payload = substr $c->{buf}, 9, $len;
            substr($c->{buf}, 0, 9 + $len) = '';
            $sid &= 0x7fffffff;
            my $st = $c->{streams}{$sid} ||= {};
            if ($type == 1) {
                $st->{status} = h2_status_of($payload);
                $st->{done} = 1 if $flags & 0x1;
            } elsif ($type == 0) {
                $st->{body} .= $payload;
                $st->{done} = 1 if $flags & 0x1;
                # give the window back, nginx may have more to send
                h2_send($c, h2_frame(8, 0, 0, pack('N', $len))
                            . h2_frame(8, 0, $sid, pack('N', $len))) if $len;
            } elsif ($type == 3) {
                $st->{reset} = unpack 'N', $payload;
                $st->{done} = 1;
            } elsif ($type == 4 && !($flags & 0x1)) {
                h2_send($c, h2_frame(4, 0x1, 0));
            } elsif ($type == 6 && !($flags & 0x1)) {
                h2_send($c, h2_frame(6, 0x1, 0, $payload));
            } elsif ($type == 7) {
                $c->{goaway} = 1;
            }
        }
    }
    return $c;
}

sub h2_close { close $_[0]{sock} }

# an HTTP/1.1 request that leaves: 'close', or 'reset' (RST, SO_LINGER 0)
sub h1_gone {
    my ($path, $how) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port()) or die $!;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    sleep 0.1;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $how eq 'reset';
    close $s;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "main::own_cli('client', 'unpause');\n"
                              . "main::own_cli('flushall');\n");
});

# timeout=5s: longer than every pause below, so each check in flight gets
# Redis' reply, after its client left
our $Http = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s;
    log_format rl '$request_uri $status "$rate_limit_status" $server_protocol';
    access_log logs/rl.log rl;

    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        server_name localhost;

        location /signature/ {
            rate_limit signature requests=100 window=1h;
            empty_gif;
        }
    }
_EOC_

our $Config = <<'_EOC_';
    location /signature/ {
        rate_limit signature requests=100 window=1h;
        empty_gif;
    }
_EOC_

run_tests();
done_testing();

__DATA__

=== TEST 1: HTTP/2 answers with a verdict when nobody leaves
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $c = main::h2_connect();
main::h2_send($c, main::h2_get_frame(1, '/signature/h2-a')
                  . main::h2_get_frame(3, '/signature/h2-b'));
main::h2_read($c, 5 * $main::Slow, 1, 3);
main::h2_close($c);
is($c->{streams}{1}{status}, 200, 'stream 1: 200');
is($c->{streams}{3}{status}, 200, 'stream 3: 200');
my $log = main::access_log_until('/signature/h2-b');
like($log, qr{^/signature/h2-a 200 "PASSED" HTTP/2\.0$}m, 'stream 1 passed');
like($log, qr{^/signature/h2-b 200 "PASSED" HTTP/2\.0$}m, 'stream 3 passed');
--- no_error_log
[error]



=== TEST 2: HTTP/1.1 clients that close or reset the connection mid-check get no verdict, and the worker is unharmed
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $pid = main::worker_pid();
my $before = main::fd_baseline($pid);
main::own_cli('client', 'pause', 1500, 'write');
main::h1_gone('/signature/closed1', 'close');
main::h1_gone('/signature/reset1', 'reset');
main::h1_gone('/signature/closed2', 'close');
main::h1_gone('/signature/reset2', 'reset');
sleep 2;
is(http_get('/signature/after', timeout => 5 * $main::Slow)->{status}, 200,
   'the worker still serves');
my $log = main::access_log_until('/signature/after');
for my $uri (qw(closed1 reset1 closed2 reset2)) {
    like($log, qr{^/signature/$uri 499 "-" HTTP/1\.1$}m, "$uri: 499, no verdict");
}
like($log, qr{^/signature/after 200 "PASSED" }m, 'the next one passes');
is(main::worker_pid(), $pid, 'the same worker');
is(main::fd_settles($pid, $before), $before, 'no descriptor left behind');
is(main::own_cli('zcard', 'rate_limit:127.0.0.1:signature'), "6\n",
   'Redis ran the abandoned checks all the same: they count');
--- error_log
client prematurely closed connection
--- no_error_log
[alert]
[crit]



=== TEST 3: HTTP/2: RST_STREAM on two of three streams in flight; the third gets its verdict
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $pid = main::worker_pid();
my $before = main::fd_baseline($pid);
main::own_cli('client', 'pause', 1500, 'write');
my $c = main::h2_connect();
main::h2_send($c, main::h2_get_frame(1, '/signature/rst1')
                  . main::h2_get_frame(3, '/signature/kept')
                  . main::h2_get_frame(5, '/signature/rst5'));
main::h2_read($c, 0.3);
ok(!grep({ defined $c->{streams}{$_}{status} } 1, 3, 5),
   'all three are waiting for Redis');
main::h2_send($c, main::h2_rst_frame(1) . main::h2_rst_frame(5));
main::h2_read($c, 5 * $main::Slow, 3);
is($c->{streams}{3}{status}, 200, 'the stream that stayed: 200 after the pause');
ok(!defined $c->{streams}{1}{status} && !defined $c->{streams}{5}{status},
   'no response on the reset streams');
# the connection is still usable
main::h2_send($c, main::h2_get_frame(7, '/signature/again'));
main::h2_read($c, 5 * $main::Slow, 7);
is($c->{streams}{7}{status}, 200, 'a new stream on the same connection: 200');
main::h2_close($c);
my $log = main::access_log_until('/signature/again');
like($log, qr{^/signature/rst1 499 "-" HTTP/2\.0$}m, 'stream 1: 499, no verdict');
like($log, qr{^/signature/rst5 499 "-" HTTP/2\.0$}m, 'stream 5: 499, no verdict');
like($log, qr{^/signature/kept 200 "PASSED" HTTP/2\.0$}m, 'stream 3: PASSED');
is(main::worker_pid(), $pid, 'the same worker');
is(main::fd_settles($pid, $before), $before, 'no descriptor left behind');
--- error_log
client canceled stream 1
client canceled stream 5
--- no_error_log
[alert]
[crit]



=== TEST 4: HTTP/2: RST_STREAM in the same packet as the request
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $pid = main::worker_pid();
my $before = main::fd_baseline($pid);
main::own_cli('client', 'pause', 1000, 'write');
my $c = main::h2_connect();
main::h2_send($c, join '', map { main::h2_get_frame($_, "/signature/at-once$_")
                                 . main::h2_rst_frame($_) } 1, 3, 5, 7);
main::h2_read($c, 0.5);
main::h2_close($c);
sleep 1.5;
is(http_get('/signature/after', timeout => 5 * $main::Slow)->{status}, 200,
   'the worker still serves');
my $log = main::access_log_until('/signature/after');
my $gone = () = $log =~ m{^/signature/at-once\d 499 "-" HTTP/2\.0$}mg;
is($gone, 4, 'four streams: 499, no verdict');
is(main::worker_pid(), $pid, 'the same worker');
is(main::fd_settles($pid, $before), $before, 'no descriptor left behind');
--- no_error_log
[alert]
[crit]



=== TEST 5: HTTP/2: the connection closed with eight streams waiting
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $pid = main::worker_pid();
my $before = main::fd_baseline($pid);
main::own_cli('client', 'pause', 1500, 'write');
my $c = main::h2_connect();
main::h2_send($c, join '', map { main::h2_get_frame(2 * $_ - 1, "/signature/s$_") } 1 .. 8);
main::h2_read($c, 0.3);
main::h2_close($c);
# and one more connection reset (RST) with streams waiting
my $r = main::h2_connect();
main::h2_send($r, join '', map { main::h2_get_frame(2 * $_ - 1, "/signature/r$_") } 1 .. 4);
main::h2_read($r, 0.3);
setsockopt($r->{sock}, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0));
main::h2_close($r);
sleep 2;
my $h = main::h2_connect();
main::h2_send($h, main::h2_get_frame(1, '/signature/after'));
main::h2_read($h, 5 * $main::Slow, 1);
main::h2_close($h);
is($h->{streams}{1}{status}, 200, 'the worker still serves HTTP/2');
my $log = main::access_log_until('/signature/after');
my $gone = () = $log =~ m{^/signature/[sr]\d 499 "-" HTTP/2\.0$}mg;
is($gone, 12, 'twelve streams: 499, no verdict');
unlike($log, qr{^/signature/[sr]\d .*"(PASSED|REJECTED|ERROR_\w+)"}m,
       'none of them has a verdict');
is(main::worker_pid(), $pid, 'the same worker');
is(main::fd_settles($pid, $before), $before, 'no descriptor left behind');
is(main::own_cli('zcard', 'rate_limit:127.0.0.1:signature'), "14\n",
   'Redis ran the abandoned checks all the same: they count');
--- no_error_log
[alert]
[crit]



=== TEST 6: a graceful stop with HTTP/2 streams in flight: they get their verdict first
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
main::own_cli('client', 'pause', 1000, 'write');
my $c = main::h2_connect();
main::h2_send($c, join '', map { main::h2_get_frame(2 * $_ - 1, "/signature/q$_") } 1 .. 3);
main::h2_read($c, 0.3);
open my $fh, '<', servroot() . '/logs/nginx.pid' or die $!;
my ($master) = <$fh> =~ /(\d+)/;
kill 'QUIT', $master;
main::h2_read($c, 5 * $main::Slow, 1, 3, 5);
main::h2_close($c);
is_deeply([ map { $c->{streams}{$_}{status} // 'none' } 1, 3, 5 ],
          [ 200, 200, 200 ], 'the three streams: 200');
--- no_error_log
[alert]
[crit]



=== TEST 7: resets racing the replies: streams and connections dropped one by one as Redis resumes
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $pid = main::worker_pid();
my $before = main::fd_baseline($pid);
for my $round (1 .. 3) {
    main::own_cli('client', 'pause', 400, 'write');
    my @h2 = map { main::h2_connect() } 1 .. 3;
    for my $i (0 .. $#h2) {
        main::h2_send($h2[$i], join '', map {
            main::h2_get_frame(2 * $_ - 1, "/signature/race$round-$i-$_")
        } 1 .. 10);
    }
    my @h1 = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => server_port()) or die $!;
        print $s "GET /signature/race$round-h1-$_ HTTP/1.1\r\nHost: localhost\r\n\r\n";
        $s;
    } 1 .. 10;
    # one leaves every 15 ms around the end of the pause: some replies are
    # in, some are not, some are decided and not yet sent
    my @leave = ((map { my $sid = 2 * $_ - 1;
                        sub { main::h2_send($h2[0], main::h2_rst_frame($sid)) } } 1 .. 10),
                 sub { main::h2_close($h2[1]) },
                 sub { setsockopt($h2[2]{sock}, Socket::SOL_SOCKET(),
                                  Socket::SO_LINGER(), pack('ii', 1, 0));
                       main::h2_close($h2[2]) },
                 map { my $s = $_; sub { close $s } } @h1);
    sleep 0.3;
    for my $j (0 .. $#leave) {
        $leave[($j * 7) % @leave]->();
        sleep 0.015;
    }
    main::h2_read($h2[0], 0.5);
    main::h2_close($h2[0]);
}
sleep 0.5;
# 100 requests allowed: the rounds used them up, those that Redis ran
like(http_get('/signature/after', timeout => 5 * $main::Slow)->{status},
     qr/^(200|429)$/, 'the worker still serves');
is(main::worker_pid(), $pid, 'the same worker');
is(main::fd_settles($pid, $before), $before, 'no descriptor left behind');
my $log = main::access_log_until('/signature/after');
my $lines = () = $log =~ m{^/signature/race}mg;
is($lines, 120, 'every request of the three rounds was logged once');
--- no_error_log
[alert]
[crit]
