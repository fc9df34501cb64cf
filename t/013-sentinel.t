# Sentinel: the module asks the sentinels for the master, verifies it with
# ROLE, and follows a failover (SENTINEL FAILOVER, or the master killed)
# without a reload; counts carry over through replication.

use lib 't/lib';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

our ($Dir, $MasterPort, $ReplicaPort, $SentinelPort);

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die $!;
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub cli { my $port = shift; my $out = `redis-cli -p $port @_ 2>&1`; $out }

sub pid_of { my $f = shift; open my $fh, '<', $f or return; my $p = <$fh>; chomp $p; $p }

BEGIN {
    $Dir = tempdir('rl-sentinel-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $MasterPort = free_port();
    $ReplicaPort = free_port();
    $SentinelPort = free_port();
    for my $r ([ 'master', $MasterPort, '' ],
               [ 'replica', $ReplicaPort, "--replicaof 127.0.0.1 $MasterPort" ]) {
        my ($name, $port, $extra) = @$r;
        system("redis-server --bind 127.0.0.1 --port $port --save '' "
               . "--appendonly no --daemonize yes --dir $Dir "
               . "--repl-diskless-sync-delay 0 "
               . "--pidfile $Dir/$name.pid --logfile $Dir/$name.log $extra") == 0
            or die "cannot start $name\n";
    }
    open my $fh, '>', "$Dir/sentinel.conf" or die $!;
    print $fh <<"_CONF_";
port $SentinelPort
bind 127.0.0.1
daemonize yes
pidfile $Dir/sentinel.pid
logfile $Dir/sentinel.log
dir $Dir
sentinel monitor mymaster 127.0.0.1 $MasterPort 1
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 5000
_CONF_
    close $fh;
    system("redis-server $Dir/sentinel.conf --sentinel") == 0
        or die "cannot start the sentinel\n";
    # the sentinel must know the replica before it can fail over to it
    for (1 .. 100) {
        last if cli($SentinelPort, 'sentinel', 'replicas', 'mymaster')
                =~ /$ReplicaPort/
             && cli($ReplicaPort, 'info', 'replication')
                =~ /master_link_status:up/;
        sleep 0.1;
    }
    $ENV{TEST_NGINX_SENTINEL_PORT} = $SentinelPort;
}

END {
    for my $name (qw(sentinel master replica)) {
        my $pid = pid_of("$Dir/$name.pid") or next;
        kill 'TERM', $pid;
    }
    sleep 0.3;
}

use Test::Nginx::Socket;

sub current_master {
    my @a = split /\n/, cli($SentinelPort, 'sentinel',
                            'get-master-addr-by-name', 'mymaster');
    return $a[1];
}

# polls until a request is decided by Redis again; returns the statuses seen
sub until_passed {
    my @seen;
    for (1 .. 150) {
        my $s = http_get('/signature/x')->{headers}{'x-rl-status'};
        push @seen, $s;
        return @seen if $s eq 'PASSED' || $s eq 'REJECTED';
        sleep 0.1;
    }
    return @seen;
}

sub wait_connected {
    for (1 .. 100) {
        return if error_log_text() =~ /connected to Redis/;
        sleep 0.05;
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(no_error_log => "[alert]\n")
        unless defined $block->no_error_log;
});

run_tests();
done_testing();

__DATA__

=== TEST 1: the master comes from the sentinel; a failover is followed, counts carried over
--- http_config
    rate_limit_redis sentinel=127.0.0.1:$TEST_NGINX_SENTINEL_PORT master=mymaster timeout=200ms;
    rate_limit_local_cache off;
--- config
    location /signature/ {
        rate_limit signature requests=6 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
    location = /ready {
        empty_gif;
    }
--- request
GET /ready
--- check
# until the worker has asked the sentinel and connected, checks fall back
main::wait_connected();
my @first = map { http_get('/signature/x')->{headers}{'x-rl-status'} } 1 .. 3;
is_deeply(\@first, [ ('PASSED') x 3 ], 'three pass');
is(main::cli($main::MasterPort, 'zcard', 'rate_limit:127.0.0.1:signature'),
   "3\n", 'counted on the master');
# replication is asynchronous: let the replica catch up before the switch
my $copied;
for (1 .. 50) {
    $copied = main::cli($main::ReplicaPort, 'zcard',
                        'rate_limit:127.0.0.1:signature');
    last if $copied eq "3\n";
    sleep 0.1;
}
is($copied, "3\n", 'replicated');
# the sentinel refuses (NOGOODREPLICA) until it has looked at the replica
my ($new, $said);
for (1 .. 200) {
    $said = main::cli($main::SentinelPort, 'sentinel', 'failover', 'mymaster')
        if $_ % 10 == 1 && main::current_master() != $main::ReplicaPort;
    $new = main::current_master();
    last if $new == $main::ReplicaPort;
    sleep 0.1;
}
diag("SENTINEL FAILOVER said: $said") if $new != $main::ReplicaPort;
is($new, $main::ReplicaPort, 'the sentinel switched to the replica');
# the worker hears of it on its +switch-master subscription; requests sent
# before that would still reach the old master, as with any Redis client
for (1 .. 50) {
    last if main::error_log_text() =~ /Sentinel switched master/;
    sleep 0.1;
}
my @seen = main::until_passed();
is($seen[-1], 'PASSED', 'decided by Redis again (' . scalar(@seen) . ' tries)');
my @rest = map { http_get('/signature/x')->{headers}{'x-rl-status'} } 1 .. 3;
is_deeply(\@rest, [ 'PASSED', 'PASSED', 'REJECTED' ],
          'the budget spent before the failover stays spent (3 + 1 + 2)');
is(main::cli($main::ReplicaPort, 'zcard', 'rate_limit:127.0.0.1:signature'),
   "6\n", 'the new master holds the counts');
--- error_log
Sentinel reports master "mymaster" at 127.0.0.1:
Sentinel switched master "mymaster" from 127.0.0.1:
--- no_error_log
[alert]
[crit]



=== TEST 2: the master killed: limiting continues on the new one after detection
--- http_config
    rate_limit_redis sentinel=127.0.0.1:$TEST_NGINX_SENTINEL_PORT master=mymaster timeout=200ms connect_timeout=200ms;
--- config
    location /signature/ {
        rate_limit signature requests=1000 window=1h;
        add_header X-RL-Status $rate_limit_status always;
        empty_gif;
    }
    location = /ready {
        empty_gif;
    }
--- request
GET /ready
--- check
main::wait_connected();
my $master = main::current_master();
my $name = $master == $main::MasterPort ? 'master' : 'replica';
my $other = $master == $main::MasterPort ? $main::ReplicaPort : $main::MasterPort;
for (1 .. 100) {
    last if main::cli($other, 'info', 'replication') =~ /master_link_status:up/;
    sleep 0.1;
}
kill 'KILL', main::pid_of("$main::Dir/$name.pid");
my $t0 = time;
my $r = http_get('/signature/x');
is($r->{status}, 200, 'fail open while there is no master');
my @seen = main::until_passed();
my $took = time - $t0;
is($seen[-1], 'PASSED', sprintf('decided by the new master after %.1f s', $took));
is(main::current_master(), $other, 'which the sentinel promoted');
--- error_log
Redis connection lost
Sentinel reports master "mymaster" at 127.0.0.1:
