# rate_limit_metrics: Prometheus text exposition of what the limiter
# decided, summed over all workers, and kept across reloads.

use lib 't/lib';
use Test::Nginx::Socket;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    rate_limit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

our $Config = <<'_EOC_';
    location /signature/ {
        rate_limit signature requests=10 window=1h;
        empty_gif;
    }
    location /login/ {
        rate_limit login requests=100 window=1h key=$arg_user;
        empty_gif;
    }
    location = /metrics {
        rate_limit_metrics;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n");
    $block->set_value(no_error_log => "[error]\n")
        unless defined $block->no_error_log;
});

# the value of one sample, by its name and labels as written
sub sample {
    my ($text, $series) = @_;
    return $text =~ /^\Q$series\E (\S+)$/m ? $1 : undef;
}

# the exposition format, checked line by line
sub valid_exposition {
    my $text = shift;
    my (%type, @errors);
    for my $line (split /\n/, $text) {
        if ($line =~ /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/) {
            $type{$2} = $3 if $1 eq 'TYPE';
            next;
        }
        if ($line !~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (-?[0-9.]+(e[+-]?\d+)?|\+Inf|NaN)$/) {
            push @errors, "bad line: $line";
            next;
        }
        my $name = $1;
        my $family = exists $type{$name} ? $name
                                         : $name =~ s/_(bucket|sum|count)$//r;
        push @errors, "no TYPE before $1" unless exists $type{$family};
    }
    my @buckets = $text =~ /^rate_limit_redis_latency_seconds_bucket\{le="[^"]+"\} (\d+)$/mg;
    for (1 .. $#buckets) {
        push @errors, 'buckets decrease' if $buckets[$_] < $buckets[$_ - 1];
    }
    push @errors, '+Inf bucket differs from _count'
        if $buckets[-1] != sample($text, 'rate_limit_redis_latency_seconds_count');
    return @errors;
}

run_tests();
done_testing();

__DATA__

=== TEST 1: a known mix of traffic is counted exactly, and the output is valid exposition
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[ (map { "GET /signature/x" } 1 .. 13), "GET /login/?user=a",
  "GET /login/?user=b", "GET /login/" ]
--- error_code eval
[ (200) x 10, (429) x 3, 200, 200, 200 ]
--- check
my $m = http_get('/metrics');
is($m->{status}, 200, 'metrics served');
like($m->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'exposition content type');
my $t = $m->{body};
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="passed"}'), 10, 'passed');
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="rejected"}'), 3, 'rejected');
is(main::sample($t, 'rate_limit_requests_total{limit="login",status="passed"}'), 2, 'login passed');
is(main::sample($t, 'rate_limit_requests_total{limit="login",status="skipped"}'), 1, 'empty key skipped');
is(main::sample($t, 'rate_limit_redis_latency_seconds_count'), 13,
   'one round trip per check, none for the two the cache rejected');
is(main::sample($t, 'rate_limit_cache_hits_total'), 2, 'two cache hits');
is(main::sample($t, 'rate_limit_redis_errors_total{kind="connect"}'), 0, 'no errors');
is(main::sample($t, 'rate_limit_redis_up'), 1, 'all workers connected');
is(main::sample($t, 'rate_limit_redis_connections{state="up"}'), 4, 'four workers');
is(main::sample($t, 'rate_limit_inflight_checks'), 0, 'nothing in flight');
is_deeply([ main::valid_exposition($t) ], [], 'valid Prometheus text');



=== TEST 2: under concurrency on 4 workers the counts equal what clients saw
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /signature/warmup
--- check
my $r = http_parallel(50, "GET /signature/x");
my %seen;
$seen{ $_->{status} }++ for @$r;
my $t = http_get('/metrics')->{body};
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="passed"}'),
   $seen{200} + 1, "passed: $seen{200} + the warm-up");
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="rejected"}'),
   $seen{429}, "rejected: $seen{429}");



=== TEST 3: Redis errors are counted by kind and Redis shows as down
--- http_config
    rate_limit_redis 127.0.0.1:1;
--- config eval: $::Config
--- request eval
[ map { "GET /signature/x" } 1 .. 5 ]
--- error_code: 200
--- check
my $t;
for (1 .. 50) {
    # all four workers have started (each counts itself in)
    $t = http_get('/metrics')->{body};
    last if main::sample($t, 'rate_limit_redis_connections{state="down"}') == 4;
    select(undef, undef, undef, 0.05);
}
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="error_allowed"}'), 5, 'fail-open counted');
is(main::sample($t, 'rate_limit_redis_errors_total{kind="connect"}'), 5, 'connect errors');
is(main::sample($t, 'rate_limit_redis_up'), 0, 'Redis down');
is(main::sample($t, 'rate_limit_redis_connections{state="down"}'), 4, 'no worker connected');
is_deeply([ main::valid_exposition($t) ], [], 'still valid exposition');
--- error_log
Failed to connect to Redis
--- no_error_log
[alert]



=== TEST 4: counts survive a reload
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[ map { "GET /signature/x" } 1 .. 3 ]
--- check
open my $fh, '<', servroot() . '/logs/nginx.pid' or die $!;
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid or die $!;
my ($t, $up);
for (1 .. 50) {
    select(undef, undef, undef, 0.1);
    $t = http_get('/metrics')->{body};
    $up = main::sample($t, 'rate_limit_redis_connections{state="up"}');
    last if main::error_log_text() =~ /exited with code 0/ && $up == 4;
}
is(main::sample($t, 'rate_limit_requests_total{limit="signature",status="passed"}'),
   3, 'the old workers\' counts are still there');
is($up, 4, 'old workers gone, new ones connected');



=== TEST 5: a worker killed without its exit hook leaves no stale gauges
--- http_config
    rate_limit_redis 127.0.0.1:1;
--- config eval: $::Config
--- request
GET /signature/x
--- check
my $t;
for (1 .. 50) {
    $t = http_get('/metrics')->{body};
    last if main::sample($t, 'rate_limit_redis_connections{state="down"}') == 4;
    select(undef, undef, undef, 0.05);
}
open my $fh, '<', servroot() . '/logs/nginx.pid' or die $!;
my $master = <$fh>;
chomp $master;
my @kids = grep { /^\d+$/ && ((`cat /proc/$_/stat 2>/dev/null` =~ /^\d+ \(\S+\) \S (\d+)/)[0] // 0) == $master }
           map { m{/proc/(\d+)$} ? $1 : () } glob '/proc/[0-9]*';
ok(@kids >= 4, 'four workers found');
kill 'KILL', $kids[0];
for (1 .. 60) {
    select(undef, undef, undef, 0.1);
    $t = http_get('/metrics')->{body};
    last if main::error_log_text() =~ /exited on signal 9/
            && main::sample($t, 'rate_limit_redis_connections{state="down"}') == 4;
}
is(main::sample($t, 'rate_limit_redis_connections{state="down"}'), 4,
   'four workers again, the killed one not counted twice');
is(main::sample($t, 'rate_limit_inflight_checks'), 0, 'nothing in flight');
--- error_log
exited on signal 9
--- no_error_log
[crit]
