package OwnRedis;

# A redis-server of a test file's own, on a free loopback port, for tests
# that stop, pause or reconfigure it.  `use OwnRedis;` starts it at compile
# time (before the harness reads the environment), sets $main::OwnRedisDir,
# $main::OwnRedisPort and TEST_NGINX_OWN_REDIS_PORT, and stops it, by pid,
# when the test file exits.

use strict;
use warnings;

use File::Temp qw(tempdir);

our ($Dir, $Port);

sub import {
    return if $Dir;

    $Dir = tempdir('rl-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $Port = `scripts/redis.sh start $Dir/r`;
    chomp $Port;
    die "cannot start redis-server\n" unless $Port;

    $ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;
    ($main::OwnRedisDir, $main::OwnRedisPort) = ($Dir, $Port);
}

END { system('scripts/redis.sh', 'stop', "$Dir/r") if $Dir }

1;
