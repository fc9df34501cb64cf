# Reload (nginx -s reload, SIGHUP) and graceful stop (nginx -s quit,
# SIGQUIT) while checks are in flight: Redis is paused (CLIENT PAUSE ...
# WRITE holds the limit script back) under a steady load.  Every request
# gets a whole response, one of those the configuration allows (200, 429,
# or 503 from rate_limit_fallback closed when the pause outlasts timeout=);
# the old workers finish their checks, close their Redis connections and
# exit; the master keeps no descriptor more than before; nothing logs an
# alert or leaves a socket open.

use lib 't/lib';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

# a redis-server of this file's own: its CLIENT LIST is the workers'
our ($OwnRedisDir, $OwnRedisPort);
use OwnRedis;

use Test::Nginx::Socket;

workers(2);
master_on();

# valgrind and the like (scripts/test-valgrind.sh) make everything slower
our $Slow = $ENV{TEST_NGINX_SLOW} ? 5 : 1;

our $Nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

sub own_cli { `redis-cli -p $OwnRedisPort @_` }

sub master_pid {
    open my $fh, '<', servroot() . '/logs/nginx.pid' or die "nginx.pid: $!\n";
    my ($pid) = <$fh> =~ /(\d+)/ or die "no pid in nginx.pid\n";
    return $pid;
}

sub alive {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    return <$fh> !~ /\)\s+Z\s/;
}

# the live children of the master: its workers
sub workers_of {
    my $master = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $s, '<', $stat or next;
        my $line = <$s> // next;
        my ($pid, $state, $ppid) = $line =~ /^(\d+) .*\) (\S) (\d+) / or next;
        push @kids, $pid if $ppid == $master && $state ne 'Z';
    }
    return sort { $a <=> $b } @kids;
}

# connections on our redis other than redis-cli's own
sub redis_clients {
    return scalar grep { !/cmd=client/ } split /\n/, own_cli('client', 'list');
}

sub wait_until {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs * $Slow;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

sub nginx_signal {
    my $sig = shift;
    my $sr = servroot();
    my $out = `$Nginx -p $sr/ -c conf/nginx.conf -s $sig 2>&1`;
    is($?, 0, "nginx -s $sig") or diag($out);
}

# load processes still running: stopped at the end of a block whatever
# happens (a later block must not see their requests), and at exit
our @LoadPids;
END { kill 'KILL', @LoadPids if @LoadPids }

# $n processes sending requests one after another for $secs seconds; each
# result is a status or the error of a failed exchange
sub start_load {
    my ($n, $secs, $path) = @_;
    my $dir = tempdir('rl-load-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;
        if (!$pid) {
            # the harness' END (which stops nginx) must not run here
            my @res;
            my $end = time + $secs;
            my $j = 0;
            while (time < $end) {
                my $r = http_get("$path?c=$i&n=" . $j++, timeout => 10 * $Slow);
                push @res, $r->{status} // "error: $r->{error}";
            }
            if (open my $fh, '>', "$dir/$i") {
                print $fh "$_\n" for @res;
                close $fh;
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
        push @LoadPids, $pid;
    }
    return { dir => $dir, pids => \@pids };
}

sub wait_load {
    my $load = shift;
    waitpid $_, 0 for @{ $load->{pids} };
    my %done = map { $_ => 1 } @{ $load->{pids} };
    @LoadPids = grep { !$done{$_} } @LoadPids;
    my @res;
    for my $f (glob "$load->{dir}/*") {
        open my $fh, '<', $f or next;
        chomp(my @l = <$fh>);
        push @res, @l;
    }
    return @res;
}

sub tally {
    my %n;
    $n{$_}++ for @_;
    return join ', ', map { "$_: $n{$_}" } sort keys %n;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "main::stop_load();\n"
                              . "main::own_cli('client', 'unpause');\n"
                              . "main::own_cli('flushall');\n");
});

sub stop_load {
    kill 'KILL', @LoadPids if @LoadPids;
    waitpid $_, 0 for @LoadPids;
    @LoadPids = ();
}

# no over-limit cache, so that every request asks Redis, even the rejected
our $Http = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=1s;
    rate_limit_local_cache off;
_EOC_

our $Config = <<'_EOC_';
    location /signature/ {
        rate_limit signature requests=40 window=1h;
        rate_limit_fallback closed;
        empty_gif;
    }
_EOC_

run_tests();
done_testing();

__DATA__

=== TEST 1: three reloads under load with checks in flight: whole responses, old workers and their Redis connections gone
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $master = main::master_pid();
main::wait_until(5, sub { main::redis_clients() == 2 });
is(main::redis_clients(), 2, 'one Redis connection per worker');
my $master_fds = main::fd_count($master);
my @old;

my $load = main::start_load(6, 3 * $main::Slow, '/signature/');
sleep 0.3;
main::own_cli('client', 'pause', 1500, 'write');
for (1 .. 3) {
    push @old, main::workers_of($master);
    main::nginx_signal('reload');
    sleep 0.6 * $main::Slow;
}
my @res = main::wait_load($load);
my @bad = grep { !/^(200|429|503)$/ } @res;
cmp_ok(scalar @res, '>', 20, 'the load ran: ' . main::tally(@res));
is_deeply(\@bad, [], 'every request got a whole 200, 429 or 503');

ok(main::wait_until(5, sub { !grep { main::alive($_) } @old }),
   'the old workers exited') or diag("left: @{[ grep { main::alive($_) } @old ]}");
my @now = main::workers_of($master);
is(scalar @now, 2, 'two workers now');
ok(!grep({ my $p = $_; grep { $_ == $p } @old } @now), 'all of them new');
ok(main::wait_until(5, sub { main::redis_clients() == 2 }),
   'their Redis connections closed: one per current worker')
    or diag(main::own_cli('client', 'list'));
is(main::fd_count($master), $master_fds, 'the master has no descriptor more');
is(http_get('/signature/after')->{status}, 429, 'the new workers answer');
my $log = main::error_log_text();
my $reloads = () = $log =~ /signal 1 \(SIGHUP\) received/g;
is($reloads, 3, 'three reloads');
--- no_error_log
[alert]
[crit]
open socket



=== TEST 2: nginx -s quit with checks in flight: each gets its answer, then nginx exits and closes its Redis connections
--- http_config eval: $::Http
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $master = main::master_pid();
main::wait_until(5, sub { main::redis_clients() == 2 });
my @workers = main::workers_of($master);
main::own_cli('client', 'pause', 700, 'write');
my @socks = map {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port()) or die $!;
    print $s "GET /signature/q$_ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    $s;
} 1 .. 8;
sleep 0.3;
main::nginx_signal('quit');
my @status;
my $sel = IO::Select->new(@socks);
my %buf;
my $deadline = time + 10 * $main::Slow;
while ($sel->count && time < $deadline) {
    for my $s ($sel->can_read(1)) {
        my $n = sysread $s, my $chunk, 4096;
        if ($n) { $buf{$s} .= $chunk; next }
        $sel->remove($s);
    }
}
@status = map { ($buf{$_} // '') =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none' } @socks;
is_deeply([ grep { !/^(200|503)$/ } @status ], [],
          'the eight in flight: 200 or 503 (' . main::tally(@status) . ')');
ok(main::wait_until(5, sub { !main::alive($master) && !grep { main::alive($_) } @workers }),
   'the master and its workers exited');
ok(main::wait_until(5, sub { main::redis_clients() == 0 }),
   'no Redis connection left') or diag(main::own_cli('client', 'list'));
--- no_error_log
[alert]
[crit]
open socket



=== TEST 3: worker_shutdown_timeout cuts a graceful stop short: the requests in flight are closed, nothing is left behind
--- main_config
    worker_shutdown_timeout 300ms;
--- http_config
    rate_limit_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s;
    rate_limit_local_cache off;
--- config eval: $::Config
--- request
GET /signature/warm
--- check
my $master = main::master_pid();
main::wait_until(5, sub { main::redis_clients() == 2 });
my @workers = main::workers_of($master);
main::own_cli('client', 'pause', 5000, 'write');
my @socks = map {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port()) or die $!;
    print $s "GET /signature/t$_ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    $s;
} 1 .. 6;
sleep 0.3;
# SIGQUIT itself: nginx -s under valgrind takes longer than the cut
kill 'QUIT', $master;
my $sel = IO::Select->new(@socks);
my %buf;
my $deadline = time + 10 * $main::Slow;
while ($sel->count && time < $deadline) {
    for my $s ($sel->can_read(1)) {
        my $n = sysread $s, my $chunk, 4096;
        if ($n) { $buf{$s} .= $chunk; next }
        $sel->remove($s);
    }
}
is($sel->count, 0, 'every connection was closed');
is_deeply([ grep { length($buf{$_} // '') } @socks ], [],
          'before any answer: the checks were still waiting');
my $quit = time;
# the requests are gone: no deadline timer keeps the workers for the
# checks they left behind (timeout=5s)
ok(main::wait_until(1.5, sub { !main::alive($master) }),
   'nginx exits soon after worker_shutdown_timeout');
ok(main::wait_until(6, sub { !main::alive($master) && !grep { main::alive($_) } @workers }),
   'the master and its workers exited') or diag('after ' . (time - $quit) . ' s');
ok(main::wait_until(5, sub { main::redis_clients() == 0 }),
   'no Redis connection left') or diag(main::own_cli('client', 'list'));
main::own_cli('client', 'unpause');
--- no_error_log
[alert]
[crit]
open socket
