# Exactness across workers and hosts: whatever the concurrency, exactly
# "requests" pass in a window, because every check is one atomic script
# in the one Redis all workers of all hosts share.

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
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(init => "redis_cli('flushdb');\n");
    $block->set_value(no_error_log => "[error]\n");
});

sub statuses {
    my %n;
    $n{ $_->{status} }++ for @_;
    return \%n;
}

run_tests();
done_testing();

__DATA__

=== TEST 1: 4 workers, 60 simultaneous requests: exactly 10 pass
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /signature/warmup
--- error_code: 200
--- check
my $r = http_parallel(60, "GET /signature/x");
is(scalar @$r, 60, 'every request answered');
is_deeply(main::statuses(@$r), { 200 => 9, 429 => 51 },
          '9 more pass (10 with the warm-up), the rest get 429');
is(redis_cli('zcard', 'rate_limit:127.0.0.1:signature'), "10\n",
   'ten entries, all members distinct');



=== TEST 2: once the budget is spent, every burst is rejected whole and adds nothing
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request eval
[ map { "GET /signature/x" } 1 .. 10 ]
--- error_code: 200
--- check
for (1 .. 5) {
    my $r = http_parallel(20, "GET /signature/x");
    is(scalar(grep { $_->{status} == 429 } @$r), 20, "burst $_: all rejected");
}
is(redis_cli('zcard', 'rate_limit:127.0.0.1:signature'), "10\n",
   'rejected requests left no entries');



=== TEST 3: two nginx hosts on one Redis share one budget
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /signature/warmup
--- check
my $other = start_extra_nginx({ http_config => $::HttpConfig,
                                config => $::Config });
my %n;
for my $i (1 .. 12) {
    my $port = $i % 2 ? $other->{port} : server_port();
    $n{ http_get('/signature/x', port => $port)->{status} }++;
}
stop_extra_nginx($other);
is_deeply(\%n, { 200 => 9, 429 => 3 }, '10 passed over both hosts');
