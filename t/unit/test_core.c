/*
 * Unit tests of the core's pure parts: directive values, key building,
 * decoding of the script's reply, Retry-After arithmetic.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "rl_api.h"


static uint64_t
requests(const char *s)
{
    uint64_t  v = 0;

    return rl_parse_requests(s, strlen(s), &v) == 0 ? v : 0;
}


static int64_t
duration(const char *s)
{
    uint64_t  v = 0;

    return rl_parse_duration_ms(s, strlen(s), &v) == 0 ? (int64_t) v : -1;
}


static void
test_requests_accepts_1_to_a_billion(void **state)
{
    (void) state;

    assert_int_equal(requests("1"), 1);
    assert_int_equal(requests("10"), 10);
    assert_int_equal(requests("1000000000"), 1000000000);
}


static void
test_requests_refuses_zero_junk_and_overflow(void **state)
{
    (void) state;

    assert_int_equal(requests("0"), 0);
    assert_int_equal(requests(""), 0);
    assert_int_equal(requests("ten"), 0);
    assert_int_equal(requests("10r"), 0);
    assert_int_equal(requests("-1"), 0);
    assert_int_equal(requests("1000000001"), 0);
    assert_int_equal(requests("99999999999999999999"), 0);
}


static void
test_duration_reads_nginx_time_syntax(void **state)
{
    (void) state;

    assert_int_equal(duration("3600"), 3600000);
    assert_int_equal(duration("3600s"), 3600000);
    assert_int_equal(duration("60m"), 3600000);
    assert_int_equal(duration("1h"), 3600000);
    assert_int_equal(duration("1h30m"), 5400000);
    assert_int_equal(duration("1h 30m"), 5400000);
    assert_int_equal(duration("1h30"), 3630000);       /* bare: seconds */
    assert_int_equal(duration("250ms"), 250);
    assert_int_equal(duration("1d"), 86400000);
    assert_int_equal(duration("1w"), 604800000);
    assert_int_equal(duration("365d"), 31536000000LL);
}


static void
test_duration_refuses_junk(void **state)
{
    (void) state;

    assert_int_equal(duration(""), -1);
    assert_int_equal(duration("h"), -1);
    assert_int_equal(duration("1x"), -1);
    assert_int_equal(duration("-5s"), -1);
    assert_int_equal(duration("1s1h"), -1);             /* nginx refuses */
    assert_int_equal(duration("1m1m"), -1);
    assert_int_equal(duration("1h 1h"), -1);
    assert_int_equal(duration("30 1h"), -1);
    assert_int_equal(duration("99999999999999y"), -1);
}


static void
test_names_are_letters_digits_and_three_marks(void **state)
{
    (void) state;

    assert_true(rl_valid_name("signature", 9));
    assert_true(rl_valid_name("web.login-2_x", 13));
    assert_false(rl_valid_name("", 0));
    assert_false(rl_valid_name("a:b", 3));
    assert_false(rl_valid_name("a b", 3));
    assert_false(rl_valid_name("a/b", 3));
}


static char *
key(const char *prefix, const char *k, size_t klen, const char *name)
{
    static char  buf[RL_MAX_REDIS_KEY(64, 64) + 1];
    size_t       n;

    n = rl_build_key(buf, prefix, strlen(prefix), k, klen, name,
                     strlen(name));
    buf[n] = '\0';

    return buf;
}


static void
test_key_is_prefix_key_name(void **state)
{
    (void) state;

    assert_string_equal(key("school_asset:rate_limit", "192.168.1.100", 13,
                            "signature"),
                        "school_asset:rate_limit:192.168.1.100:signature");
    assert_string_equal(key("rate_limit", "::1", 3, "login"),
                        "rate_limit:::1:login");
}


static void
test_key_keeps_every_byte(void **state)
{
    char         buf[RL_MAX_REDIS_KEY(1, 1)];
    const char   raw[] = { 'a', '\0', '\r', '\n', (char) 0xff };
    const char   want[] = { 'p', ':', 'a', '\0', '\r', '\n', (char) 0xff,
                            ':', 'n' };
    size_t       n;

    (void) state;

    n = rl_build_key(buf, "p", 1, raw, sizeof(raw), "n", 1);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}


static void
test_long_keys_are_hashed_and_bounded(void **state)
{
    char  *a;

    (void) state;

    a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);

    /* 256 bytes is still stored as it is */
    assert_int_equal(strlen(key("p", a, 256, "n")), 2 + 256 + 2);

    assert_string_equal(key("p", a, 257, "n"),
        "p:sha1:0c1038883670f8a0203e053eaf67dc2dec280b42:n");

    /* a short key cannot pose as the digest of a long one */
    assert_string_equal(key("p", "sha1:0c1038883670f8a0203e053eaf67dc2dec280b42",
                            45, "n"),
        "p:sha1:9f706477d19b2eb52506b0d98bd80727b00eb6c4:n");

    /* the FIPS 180 "one million a" vector */
    assert_string_equal(key("p", a, 1000000, "n"),
        "p:sha1:34aa973cd4c4daa4f61eeb2bdbad27316534016f:n");

    free(a);
}


static redisReply *
parse(const char *resp)
{
    void          *reply = NULL;
    redisReader   *r = redisReaderCreate();

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);

    return reply;
}


static void
test_reply_of_a_passed_request(void **state)
{
    rl_verdict_t   v;
    redisReply    *reply;

    (void) state;

    reply = parse("*4\r\n:3\r\n:7\r\n:3599500\r\n:0\r\n");

    assert_int_equal(rl_decode_reply(reply, 1, &v), 0);
    assert_int_equal(v.error, RL_OK);
    assert_int_equal(v.allowed, 1);
    assert_int_equal(v.nlimits, 1);
    assert_int_equal(v.limits[0].count, 3);
    assert_int_equal(v.limits[0].remaining, 7);
    assert_int_equal(v.limits[0].reset_ms, 3599500);
    assert_int_equal(v.limits[0].retry_ms, 0);

    freeReplyObject(reply);
}


static void
test_reply_of_two_limits_one_rejecting(void **state)
{
    rl_verdict_t   v;
    redisReply    *reply;

    (void) state;

    reply = parse("*8\r\n"
                  ":10\r\n:0\r\n:1200\r\n:1200\r\n"
                  ":4\r\n:96\r\n:50000\r\n:0\r\n");

    assert_int_equal(rl_decode_reply(reply, 2, &v), 0);
    assert_int_equal(v.allowed, 0);
    assert_int_equal(v.limits[0].retry_ms, 1200);
    assert_int_equal(v.limits[1].remaining, 96);
    assert_int_equal(v.limits[1].retry_ms, 0);

    freeReplyObject(reply);
}


static void
test_bad_replies_are_errors_not_verdicts(void **state)
{
    static const char  *bad[] = {
        "-NOSCRIPT No matching script\r\n",
        "-OOM command not allowed when used memory > 'maxmemory'\r\n",
        "-READONLY You can't write against a read only replica.\r\n",
        "+OK\r\n",
        ":1\r\n",
        "$5\r\nhello\r\n",
        "*0\r\n",
        "*8\r\n:3\r\n:7\r\n:1\r\n:0\r\n"
            ":3\r\n:7\r\n:1\r\n:0\r\n",                       /* 2 limits */
        "*4\r\n:-3\r\n:7\r\n:1\r\n:0\r\n",                  /* negative */
        "*4\r\n$1\r\n3\r\n:7\r\n:1\r\n:0\r\n",            /* a string */
        "*4\r\n:3\r\n:7\r\n:1\r\n*0\r\n",                   /* an array */
        "*3\r\n:3\r\n:7\r\n:1\r\n",                         /* short */
    };

    rl_verdict_t   v;
    redisReply    *reply;
    size_t         i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reply = parse(bad[i]);
        assert_int_equal(rl_decode_reply(reply, 1, &v), -1);
        assert_int_equal(v.error, RL_ERR_REPLY);
        assert_non_null(v.errstr);
        freeReplyObject(reply);
    }

    assert_int_equal(rl_decode_reply(NULL, 1, &v), -1);
    assert_int_equal(v.error, RL_ERR_CONNECT);
}


static void
test_retry_after_rounds_up_to_whole_seconds(void **state)
{
    (void) state;

    assert_int_equal(rl_retry_after_sec(0), 1);
    assert_int_equal(rl_retry_after_sec(1), 1);
    assert_int_equal(rl_retry_after_sec(1000), 1);
    assert_int_equal(rl_retry_after_sec(1001), 2);
    assert_int_equal(rl_retry_after_sec(3600000), 3600);
}


static void
test_latency_buckets_are_upper_bounds(void **state)
{
    (void) state;

    assert_int_equal(rl_latency_bucket(0), 0);
    assert_int_equal(rl_latency_bucket(250), 0);
    assert_int_equal(rl_latency_bucket(251), 1);
    assert_int_equal(rl_latency_bucket(1000000), RL_LATENCY_BUCKETS - 1);
    assert_int_equal(rl_latency_bucket(1000001), RL_LATENCY_BUCKETS);
}


static void
test_metrics_render_as_prometheus_text(void **state)
{
    char                 small[16], *big;
    size_t               need, n;
    rl_metrics_t         m;
    rl_metrics_limit_t   l[1];

    (void) state;

    memset(&m, 0, sizeof(m));
    memset(l, 0, sizeof(l));
    l[0].name = "signature";
    l[0].name_len = 9;
    l[0].requests[0] = 10;
    l[0].requests[1] = 5;
    m.limits = l;
    m.nlimits = 1;
    m.errors[RL_ERR_TIMEOUT] = 2;
    m.latency[0] = 3;
    m.latency[2] = 1;
    m.latency[RL_LATENCY_BUCKETS] = 1;
    m.latency_sum_us = 2500750;
    m.workers = 4;
    m.connections_up = 3;

    need = rl_metrics_render(&m, small, sizeof(small));
    assert_true(need > sizeof(small));

    big = malloc(need + 1);
    assert_non_null(big);
    n = rl_metrics_render(&m, big, need + 1);
    assert_int_equal(n, need);

    assert_non_null(strstr(big,
        "rate_limit_requests_total{limit=\"signature\",status=\"passed\"}"
        " 10\n"));
    assert_non_null(strstr(big,
        "rate_limit_requests_total{limit=\"signature\",status=\"rejected\"}"
        " 5\n"));
    assert_non_null(strstr(big,
        "rate_limit_requests_total{limit=\"signature\",status=\"skipped\"}"
        " 0\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_errors_total{kind=\"timeout\"} 2\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_errors_total{kind=\"connect\"} 0\n"));

    /* buckets are cumulative, the last one is the count */
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_bucket{le=\"0.000250\"} 3\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_bucket{le=\"0.000500\"} 3\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_bucket{le=\"0.001000\"} 4\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_bucket{le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_sum 2.500750\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_latency_seconds_count 5\n"));

    /* one worker of four is not connected */
    assert_non_null(strstr(big, "rate_limit_redis_up 0\n"));
    assert_non_null(strstr(big,
        "rate_limit_redis_connections{state=\"down\"} 1\n"));

    free(big);
}


static const char *
ip(const char *key, unsigned prefix)
{
    static char  out[RL_MAX_IP_KEY];
    size_t       n;

    n = rl_normalize_ip(key, strlen(key), prefix, out);
    if (n == 0) {
        return key;
    }

    out[n] = '\0';
    return out;
}


static void
test_ipv6_keys_are_grouped_and_mapped_ipv4_unwrapped(void **state)
{
    (void) state;

    assert_string_equal(ip("192.168.1.100", 64), "192.168.1.100");
    assert_string_equal(ip("::ffff:192.168.1.100", 128), "192.168.1.100");
    assert_string_equal(ip("::FFFF:10.0.0.1", 64), "10.0.0.1");
    assert_string_equal(ip("2001:db8:1:2:3:4:5:6", 128),
                        "2001:db8:1:2:3:4:5:6");
    assert_string_equal(ip("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
    assert_string_equal(ip("2001:db8:1:2:ffff:ffff:ffff:ffff", 64),
                        "2001:db8:1:2::/64");
    assert_string_equal(ip("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
    assert_string_equal(ip("2001:db8:1:2:3:4:5:6", 1), "::/1");
    assert_string_equal(ip("2001:db8::1", 127), "2001:db8::/127");
    assert_string_equal(ip("alice", 64), "alice");
    assert_string_equal(ip("not:an:address", 64), "not:an:address");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_requests_accepts_1_to_a_billion),
        cmocka_unit_test(test_requests_refuses_zero_junk_and_overflow),
        cmocka_unit_test(test_duration_reads_nginx_time_syntax),
        cmocka_unit_test(test_duration_refuses_junk),
        cmocka_unit_test(test_names_are_letters_digits_and_three_marks),
        cmocka_unit_test(test_key_is_prefix_key_name),
        cmocka_unit_test(test_key_keeps_every_byte),
        cmocka_unit_test(test_long_keys_are_hashed_and_bounded),
        cmocka_unit_test(test_reply_of_a_passed_request),
        cmocka_unit_test(test_reply_of_two_limits_one_rejecting),
        cmocka_unit_test(test_bad_replies_are_errors_not_verdicts),
        cmocka_unit_test(test_retry_after_rounds_up_to_whole_seconds),
        cmocka_unit_test(test_latency_buckets_are_upper_bounds),
        cmocka_unit_test(test_metrics_render_as_prometheus_text),
        cmocka_unit_test(
            test_ipv6_keys_are_grouped_and_mapped_ipv4_unwrapped),
    };

    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
