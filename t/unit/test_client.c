/*
 * The Redis client on libevent against a real redis-server (its port in
 * RL_TEST_REDIS_PORT; `make unit` starts one) and against peers that
 * refuse or never answer.
 */

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "rl_api.h"
#include "rl_event_loop.h"


/*
 * Allocations counted while `counting`: the executable's malloc and calloc
 * come before libc's for every library (hiredis included).  Not under
 * AddressSanitizer, whose allocator must see every block.
 */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCATIONS  0
#else
#define COUNT_ALLOCATIONS  1

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);

static int   counting;
static long  allocations;

void *
malloc(size_t size)
{
    allocations += counting;
    return __libc_malloc(size);
}


void *
calloc(size_t n, size_t size)
{
    allocations += counting;
    return __libc_calloc(n, size);
}
#endif


typedef struct {
    int           calls;
    rl_verdict_t  v;
    char          why[128];      /* v.errstr, which lives in the callback */
} result_t;


typedef struct {
    struct event_base  *base;
    rl_loop_t          *loop;
    rl_client_t        *client;
    redisContext       *sync;       /* to look at and change Redis directly */
    int                 port;
    char                key[64];
} fixture_t;


static int
redis_port(void)
{
    const char  *p = getenv("RL_TEST_REDIS_PORT");

    return p ? atoi(p) : 0;
}


static void
on_done(void *data, const rl_verdict_t *v)
{
    result_t  *r = data;

    r->calls++;
    r->v = *v;
    r->v.errstr = NULL;
    snprintf(r->why, sizeof(r->why), "%s", v->errstr ? v->errstr : "");
}


static rl_client_t *
client(fixture_t *f, int port, uint64_t timeout_ms)
{
    char             err[128];
    rl_redis_conf_t  conf;

    memset(&conf, 0, sizeof(conf));
    conf.host = "127.0.0.1";
    conf.port = port;
    conf.connect_timeout_ms = 200;
    conf.timeout_ms = timeout_ms;

    return rl_client_create(f->loop, &conf, err, sizeof(err));
}


static int
setup(void **state)
{
    static int  seq;
    fixture_t  *f;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    f->base = event_base_new();
    f->loop = rl_event_loop_create(f->base);
    f->port = redis_port();

    snprintf(f->key, sizeof(f->key), "rl_unit:%d:%d", (int) getpid(),
             ++seq);

    if (f->port) {
        f->sync = redisConnect("127.0.0.1", f->port);
        assert_non_null(f->sync);
        assert_int_equal(f->sync->err, 0);
    }

    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    fixture_t  *f = *state;

    if (f->client) {
        rl_client_destroy(f->client);
    }

    if (f->sync) {
        redisFree(f->sync);
    }

    rl_event_loop_destroy(f->loop);
    event_base_free(f->base);
    free(f);

    return 0;
}


/* runs the loop until r has its callback, at most ms */
static void
wait_for(fixture_t *f, result_t *r, int ms)
{
    struct timeval  tv = { 0, 10000 };
    int             i;

    for (i = 0; i < ms / 10 && r->calls == 0; i++) {
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
}


static void
run_for(fixture_t *f, int ms)
{
    struct timeval  tv = { ms / 1000, (ms % 1000) * 1000 };

    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}


/* runs the loop until the client is up, at most ms; asserts it is */
static void
wait_up(fixture_t *f, int ms)
{
    int  i;

    for (i = 0; i < ms / 10 && !rl_client_up(f->client); i++) {
        run_for(f, 10);
    }

    assert_true(rl_client_up(f->client));
}


static rl_check_t *
start_alg(fixture_t *f, const char *key, uint64_t requests,
    uint64_t window_ms, rl_algorithm_e alg, uint64_t burst, result_t *r)
{
    rl_limit_arg_t  l = { key, strlen(key), requests, window_ms, alg, burst };

    memset(r, 0, sizeof(*r));
    return rl_check_start(f->client, &l, 1, on_done, r, &r->v);
}


static rl_check_t *
start(fixture_t *f, const char *key, uint64_t requests, uint64_t window_ms,
    result_t *r)
{
    return start_alg(f, key, requests, window_ms, RL_ALG_SLIDING_LOG, 0, r);
}


/* a command on the side connection, which must not fail */
static void
sync_ok(fixture_t *f, const char *fmt, ...)
{
    va_list      args;
    redisReply  *reply;

    va_start(args, fmt);
    reply = redisvCommand(f->sync, fmt, args);
    va_end(args);

    assert_non_null(reply);
    assert_int_not_equal(reply->type, REDIS_REPLY_ERROR);
    freeReplyObject(reply);
}


/*
 * A client up with its script loaded; then an entry of 1970 in the log
 * at key (out of any window: a check that reads it trims it), and Redis
 * at maxmemory, where it refuses writes that take memory.
 */
static void
client_before_a_full_redis(fixture_t *f, const char *key)
{
    result_t  r;

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    assert_non_null(start(f, "rl-unit-warm", 7, 60000, &r));
    wait_for(f, &r, 2000);
    assert_int_equal(r.v.error, RL_OK);

    sync_ok(f, "ZADD %s 1 old", key);
    sync_ok(f, "CONFIG SET maxmemory-policy noeviction");
    sync_ok(f, "CONFIG SET maxmemory 1");
}


static long long
zcard(fixture_t *f, const char *key)
{
    long long    n;
    redisReply  *reply = redisCommand(f->sync, "ZCARD %s", key);

    assert_non_null(reply);
    n = reply->integer;
    freeReplyObject(reply);

    return n;
}


static long long
pttl(fixture_t *f, const char *key)
{
    long long    n;
    redisReply  *reply = redisCommand(f->sync, "PTTL %s", key);

    assert_non_null(reply);
    n = reply->integer;
    freeReplyObject(reply);

    return n;
}


static void
test_three_pass_then_the_fourth_is_rejected(void **state)
{
    fixture_t  *f = *state;
    result_t    r;
    int         i;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    for (i = 1; i <= 4; i++) {
        assert_non_null(start(f, f->key, 3, 10000, &r));
        wait_for(f, &r, 2000);

        assert_int_equal(r.calls, 1);
        assert_int_equal(r.v.error, RL_OK);
        assert_int_equal(r.v.allowed, i <= 3);
        assert_int_equal(r.v.limits[0].count, i <= 3 ? i : 3);
        assert_int_equal(r.v.limits[0].remaining, i <= 3 ? 3 - i : 0);
        assert_true(r.v.limits[0].reset_ms > 9000);
        assert_true(r.v.limits[0].reset_ms <= 10000);
    }

    /* the rejected request says when the oldest entry leaves the window */
    assert_true(r.v.limits[0].retry_ms > 9000);
    assert_true(r.v.limits[0].retry_ms <= 10000);

    /* and consumed nothing */
    assert_int_equal(zcard(f, f->key), 3);
}


static void
test_pipelined_checks_admit_exactly_the_limit(void **state)
{
    fixture_t  *f = *state;
    result_t    r[20];
    int         i, passed = 0;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    for (i = 0; i < 20; i++) {
        assert_non_null(start(f, f->key, 7, 60000, &r[i]));
    }

    for (i = 0; i < 20; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
        passed += r[i].v.allowed;
    }

    assert_int_equal(passed, 7);
    assert_int_equal(zcard(f, f->key), 7);
}


static long long
evalsha_calls(fixture_t *f)
{
    long long    n = 0;
    const char  *p;
    redisReply  *reply = redisCommand(f->sync, "INFO commandstats");

    assert_non_null(reply);
    p = strstr(reply->str, "cmdstat_evalsha:calls=");

    if (p) {
        n = atoll(p + sizeof("cmdstat_evalsha:calls=") - 1);
    }

    freeReplyObject(reply);

    return n;
}


static void
test_checks_of_one_loop_turn_share_a_command_in_order(void **state)
{
    fixture_t  *f = *state;
    result_t    r[100];
    int         i;
    redisReply *reply;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    /* the connection up and the script loaded */
    assert_non_null(start(f, "rl-unit-warm", 7, 60000, &r[0]));
    wait_for(f, &r[0], 2000);
    assert_int_equal(r[0].v.error, RL_OK);

    reply = redisCommand(f->sync, "CONFIG RESETSTAT");
    assert_non_null(reply);
    freeReplyObject(reply);

    for (i = 0; i < 100; i++) {
        assert_non_null(start(f, f->key, 7, 60000, &r[i]));
    }

    for (i = 0; i < 100; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);

        /* decided one after the other, in the order they were started */
        assert_int_equal(r[i].v.allowed, i < 7);
    }

    /* 100 checks, at most 64 a command */
    assert_int_equal(evalsha_calls(f), 2);
    assert_int_equal(zcard(f, f->key), 7);
}


/*
 * A sequence of checks, each of one or two limits on a few shared keys,
 * decided twice: in two script calls of half the checks each (where the
 * script reads each key once and writes it back once) and one check per
 * call.  Both must give every check the same verdict, count and
 * remaining, and leave the same counts in Redis.
 */
typedef struct {
    const char      *key;         /* suffix of the key */
    rl_algorithm_e   alg;
    uint64_t         requests;
    uint64_t         burst;
} seq_limit_t;

#define SEQ_CHECKS  18

static void
run_sequence(fixture_t *f, const char *prefix, const seq_limit_t (*seq)[2],
    int batched, result_t *r)
{
    char            keys[SEQ_CHECKS][2][96];
    rl_limit_arg_t  l[2];
    int             i, j, n;

    for (i = 0; i < SEQ_CHECKS; i++) {
        n = seq[i][1].key ? 2 : 1;

        for (j = 0; j < n; j++) {
            snprintf(keys[i][j], sizeof(keys[i][j]), "%s:%s:%s", f->key,
                     prefix, seq[i][j].key);
            l[j] = (rl_limit_arg_t) { keys[i][j], strlen(keys[i][j]),
                                      seq[i][j].requests, 3600000,
                                      seq[i][j].alg, seq[i][j].burst };
        }

        memset(&r[i], 0, sizeof(r[i]));
        assert_non_null(rl_check_start(f->client, l, n, on_done, &r[i],
                                       &r[i].v));

        /* batched: two calls, the second on keys the first wrote */
        if (!batched || i == SEQ_CHECKS / 2 - 1) {
            wait_for(f, &r[i], 2000);
            assert_int_equal(r[i].calls, 1);
        }
    }

    for (i = 0; i < SEQ_CHECKS; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
    }
}


static long long
stored_count(fixture_t *f, const char *prefix, const char *suffix)
{
    long long    n = -1;
    redisReply  *reply = redisCommand(f->sync, "TYPE %s:%s:%s", f->key,
                                      prefix, suffix);

    assert_non_null(reply);

    if (strcmp(reply->str, "zset") == 0) {
        freeReplyObject(reply);
        reply = redisCommand(f->sync, "ZCARD %s:%s:%s", f->key, prefix,
                             suffix);
        n = reply->integer;

    } else if (strcmp(reply->str, "hash") == 0) {
        freeReplyObject(reply);
        reply = redisCommand(f->sync, "HGET %s:%s:%s c", f->key, prefix,
                             suffix);
        n = atoll(reply->str);

    } else if (strcmp(reply->str, "string") == 0) {
        freeReplyObject(reply);
        reply = redisCommand(f->sync, "GET %s:%s:%s", f->key, prefix,
                             suffix);
        /* a counter, or gcra's "g" and a time: its length tells apart */
        n = reply->str[0] == 'g' ? 1000000 : atoll(reply->str);
    }

    freeReplyObject(reply);

    return n;
}


static void
test_one_call_decides_as_one_call_per_check(void **state)
{
    static const char  *suffixes[] = { "a", "b", "m" };
    fixture_t          *f = *state;
    result_t            one[SEQ_CHECKS], each[SEQ_CHECKS];
    seq_limit_t         seq[SEQ_CHECKS][2];
    rl_algorithm_e      algs[] = { RL_ALG_SLIDING_LOG, RL_ALG_SLIDING_WINDOW,
                                   RL_ALG_GCRA, RL_ALG_FIXED_WINDOW };
    int                 a, i, j, mixed, passed;
    long long           before, after;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    /* the connection up and the script loaded */
    assert_non_null(start(f, "rl-unit-warm", 7, 60000, &one[0]));
    wait_for(f, &one[0], 2000);

    for (mixed = 0; mixed <= 1; mixed++) {
        for (a = 0; a < (mixed ? 1 : 8); a++) {

            /* a alone, a and b, b alone, ...; from a = 4 each three times
             * in a row (alike checks: the client sends them as a group);
             * mixed: key m under each algorithm in turn, each taking over
             * from the last */
            memset(seq, 0, sizeof(seq));

            for (i = 0; i < SEQ_CHECKS; i++) {
                int  turn = a < 4 ? i : i / 3;

                if (mixed) {
                    seq[i][0] = (seq_limit_t) { "m", algs[(i / 4) % 4], 3,
                                                2 };
                    seq[i][1] = (seq_limit_t) { "a", algs[i % 4], 9, 0 };
                    continue;
                }

                j = 0;

                if (turn % 3 != 2) {
                    seq[i][j++] = (seq_limit_t) { "a", algs[a % 4], 8, 3 };
                }

                if (turn % 3 != 0) {
                    seq[i][j++] = (seq_limit_t) { "b", algs[a % 4], 9, 0 };
                }
            }

            before = evalsha_calls(f);
            run_sequence(f, mixed ? "one-mixed" : "one", seq, 1, one);
            after = evalsha_calls(f);
            assert_int_equal(after - before, 2);

            run_sequence(f, mixed ? "each-mixed" : "each", seq, 0, each);
            assert_int_equal(evalsha_calls(f) - after, SEQ_CHECKS);

            passed = 0;

            for (i = 0; i < SEQ_CHECKS; i++) {
                assert_int_equal(one[i].v.allowed, each[i].v.allowed);
                assert_int_equal(one[i].v.nlimits, each[i].v.nlimits);
                passed += one[i].v.allowed;

                for (j = 0; j < (int) one[i].v.nlimits; j++) {
                    assert_int_equal(one[i].v.limits[j].count,
                                     each[i].v.limits[j].count);
                    assert_int_equal(one[i].v.limits[j].remaining,
                                     each[i].v.limits[j].remaining);
                    assert_int_equal(one[i].v.limits[j].retry_ms > 0,
                                     each[i].v.limits[j].retry_ms > 0);
                }
            }

            /* some pass and some are rejected, or it proves little */
            assert_in_range(passed, 2, SEQ_CHECKS - 2);

            for (i = 0; i < 3; i++) {
                assert_int_equal(
                    stored_count(f, mixed ? "one-mixed" : "one", suffixes[i]),
                    stored_count(f, mixed ? "each-mixed" : "each",
                                 suffixes[i]));
            }

            sync_ok(f, "FLUSHDB");
        }
    }
}


/*
 * A call of more checks than the client ever sends (it sends 64 at most):
 * the script adds a sliding log's new members 100 a command, and must
 * count every one of them, whether the checks come as 250 groups of one or
 * as one group of 250.
 */
static void
test_a_call_of_250_checks_on_one_key_counts_each(void **state)
{
    enum { N = 250 };
    fixture_t      *f = *state;
    const char     *argv[3 + N + 5];
    size_t          argl[3 + N + 5], len;
    char            nkeys[8], plan[1 + 3 * N];
    int             i, k, l, grouped, passed;
    redisReply     *reply;
    static const char  *lims[] = { "1000", "100" };

    if (!f->port) {
        skip();
    }

    for (grouped = 0; grouped < 2; grouped++) {
        for (l = 0; l < 2; l++) {
            k = 0;
            argv[k++] = "EVAL";
            argv[k++] = rl_limit_script(&len);
            argl[0] = 4;
            argl[1] = len;
            snprintf(nkeys, sizeof(nkeys), "%d", grouped ? 1 : N);
            argv[k++] = nkeys;

            for (i = 0; i < (grouped ? 1 : N); i++) {
                argv[k++] = f->key;
            }

            /* one limit; then (m, n, limit number) per group */
            plan[0] = 1;

            for (i = 0; i < (grouped ? 1 : N); i++) {
                plan[1 + 3 * i] = (char) (grouped ? N : 1);
                plan[2 + 3 * i] = 1;
                plan[3 + 3 * i] = 1;
            }

            argv[k] = plan;
            argl[k++] = grouped ? 4 : sizeof(plan);
            argv[k++] = "l";
            argv[k++] = lims[l];
            argv[k++] = "60000";
            argv[k++] = lims[l];

            for (i = 2; i < k; i++) {
                if (argv[i] != plan) {
                    argl[i] = strlen(argv[i]);
                }
            }

            reply = redisCommand(f->sync, "DEL %s", f->key);
            assert_non_null(reply);
            freeReplyObject(reply);

            reply = redisCommandArgv(f->sync, k, argv, argl);
            assert_non_null(reply);
            assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
            assert_int_equal(reply->elements, 4 * N);

            passed = 0;

            for (i = 0; i < N; i++) {
                /* count, remaining, reset, retry: no retry, it passed */
                redisReply  **e = reply->element + 4 * i;

                assert_int_equal(e[3]->integer == 0, i < atoi(lims[l]));
                assert_int_equal(e[0]->integer,
                                 i < atoi(lims[l]) ? i + 1 : atoi(lims[l]));
                passed += e[3]->integer == 0;
            }

            freeReplyObject(reply);

            assert_int_equal(passed, l == 0 ? N : 100);
            assert_int_equal(zcard(f, f->key), l == 0 ? N : 100);
        }
    }
}


/*
 * The plan numbers a batch's limits in a byte: checks of 320 limits in all,
 * each limit its own, go in two calls, and each is decided as its own.
 */
static void
test_a_batch_of_more_than_255_limits_is_split(void **state)
{
    enum { CHECKS = 20 };
    fixture_t        *f = *state;
    result_t          r[CHECKS], warm;
    rl_limit_arg_t    l[RL_MAX_LIMITS];
    char              keys[CHECKS][RL_MAX_LIMITS][96];
    int               i, j;
    long long         before;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    assert_non_null(start(f, "rl-unit-warm", 7, 60000, &warm));
    wait_for(f, &warm, 2000);

    before = evalsha_calls(f);

    for (i = 0; i < CHECKS; i++) {
        for (j = 0; j < RL_MAX_LIMITS; j++) {
            snprintf(keys[i][j], sizeof(keys[i][j]), "%s:%d:%d", f->key, i,
                     j);
            l[j] = (rl_limit_arg_t) { keys[i][j], strlen(keys[i][j]),
                                      (uint64_t) (100 + i * RL_MAX_LIMITS
                                                  + j),
                                      3600000, (rl_algorithm_e) (j % 4), 0 };
        }

        memset(&r[i], 0, sizeof(r[i]));
        assert_non_null(rl_check_start(f->client, l, RL_MAX_LIMITS, on_done,
                                       &r[i], &r[i].v));
    }

    for (i = 0; i < CHECKS; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
        assert_int_equal(r[i].v.allowed, 1);
        assert_int_equal(r[i].v.nlimits, RL_MAX_LIMITS);

        for (j = 0; j < RL_MAX_LIMITS; j++) {
            assert_int_equal(r[i].v.limits[j].remaining,
                             100 + i * RL_MAX_LIMITS + j - 1);
        }
    }

    /* 255 limits are 15 checks of 16: the other 5 in a second call */
    assert_int_equal(evalsha_calls(f) - before, 2);
}


static void
test_a_key_named_twice_in_one_check_is_refused(void **state)
{
    fixture_t       *f = *state;
    result_t         r;
    char             a[80], b[80];
    rl_limit_arg_t   l[3];

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    snprintf(a, sizeof(a), "%s:a", f->key);
    snprintf(b, sizeof(b), "%s:b", f->key);

    l[0] = (rl_limit_arg_t) { a, strlen(a), 2, 60000, RL_ALG_FIXED_WINDOW, 0 };
    l[1] = (rl_limit_arg_t) { b, strlen(b), 5, 60000, RL_ALG_GCRA, 0 };
    l[2] = (rl_limit_arg_t) { a, strlen(a), 9, 1000, RL_ALG_FIXED_WINDOW, 0 };

    memset(&r, 0, sizeof(r));
    assert_null(rl_check_start(f->client, l, 3, on_done, &r, &r.v));
    assert_int_equal(r.v.error, RL_ERR_REPLY);
    assert_string_equal(r.v.errstr, "the same key twice in one check");

    /* two keys of their own are fine */
    assert_non_null(rl_check_start(f->client, l, 2, on_done, &r, &r.v));
    wait_for(f, &r, 2000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_OK);
    assert_int_equal(r.v.allowed, 1);
}


/*
 * A Redis at maxmemory (noeviction) refuses the script's first write, and
 * Redis lets a script that has written once write on.  So nothing may be
 * written before the first counted request's: the trim of a sliding log's
 * old entries (in the batch's second check, on a key read after the first
 * check's) used to come first, and every write of the batch then got past
 * maxmemory.
 */
static void
test_at_maxmemory_a_batch_writes_nothing(void **state)
{
    fixture_t       *f = *state;
    result_t         r[2];
    char             a[80], b[80];
    rl_limit_arg_t   l[2];
    redisReply      *reply;
    long long        a_exists, b_card;

    if (!f->port) {
        skip();
    }

    snprintf(a, sizeof(a), "%s:a", f->key);
    snprintf(b, sizeof(b), "%s:b", f->key);

    client_before_a_full_redis(f, b);

    l[0] = (rl_limit_arg_t) { a, strlen(a), 5, 60000, RL_ALG_GCRA, 0 };
    l[1] = (rl_limit_arg_t) { b, strlen(b), 5, 60000, RL_ALG_SLIDING_LOG, 0 };

    memset(r, 0, sizeof(r));
    assert_non_null(rl_check_start(f->client, &l[0], 1, on_done, &r[0],
                                   &r[0].v));
    assert_non_null(rl_check_start(f->client, &l[1], 1, on_done, &r[1],
                                   &r[1].v));
    wait_for(f, &r[0], 2000);
    wait_for(f, &r[1], 2000);

    reply = redisCommand(f->sync, "EXISTS %s", a);
    assert_non_null(reply);
    a_exists = reply->integer;
    freeReplyObject(reply);
    b_card = zcard(f, b);

    sync_ok(f, "CONFIG SET maxmemory 0");

    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[0].v.error, RL_ERR_REPLY);
    assert_int_equal(r[1].v.error, RL_ERR_REPLY);
    assert_non_null(strstr(r[1].why, "OOM"));
    assert_int_equal(a_exists, 0);
    assert_int_equal(b_card, 1);
}


/*
 * The same at maxmemory when a sliding log comes back in the batch under
 * another window, after a check that counted nothing (rejected by its
 * other limit): the log's old entry used to be trimmed then, a first
 * write Redis allows at maxmemory, and every write after it went through.
 */
static void
test_at_maxmemory_a_log_read_again_writes_nothing(void **state)
{
    fixture_t       *f = *state;
    result_t         r[2];
    char             b[80], fw[80];
    rl_limit_arg_t   l[3];
    redisReply      *reply;
    long long        b_card;
    char             f_value[16] = "";

    if (!f->port) {
        skip();
    }

    snprintf(b, sizeof(b), "%s:b", f->key);
    snprintf(fw, sizeof(fw), "%s:f", f->key);

    sync_ok(f, "SET %s 9", fw);
    client_before_a_full_redis(f, b);

    /* [b 1 s, f (full)], then [b 2 s] */
    l[0] = (rl_limit_arg_t) { b, strlen(b), 5, 1000, RL_ALG_SLIDING_LOG, 0 };
    l[1] = (rl_limit_arg_t) { fw, strlen(fw), 5, 1000, RL_ALG_FIXED_WINDOW,
                              0 };
    l[2] = (rl_limit_arg_t) { b, strlen(b), 5, 2000, RL_ALG_SLIDING_LOG, 0 };

    memset(r, 0, sizeof(r));
    assert_non_null(rl_check_start(f->client, &l[0], 2, on_done, &r[0],
                                   &r[0].v));
    assert_non_null(rl_check_start(f->client, &l[2], 1, on_done, &r[1],
                                   &r[1].v));
    wait_for(f, &r[0], 2000);
    wait_for(f, &r[1], 2000);

    b_card = zcard(f, b);
    reply = redisCommand(f->sync, "GET %s", fw);
    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_STRING) {
        snprintf(f_value, sizeof(f_value), "%s", reply->str);
    }
    freeReplyObject(reply);

    sync_ok(f, "CONFIG SET maxmemory 0");

    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].v.error, RL_ERR_REPLY);
    assert_non_null(strstr(r[1].why, "OOM"));
    assert_int_equal(b_card, 1);
    assert_string_equal(f_value, "9");
}


/*
 * A log entry in the future (Redis' clock set back, or a failover to a
 * host whose clock is behind): once a check of the batch has added one at
 * now, the oldest entry is that one, and the next check's reset is one
 * window, as if each check had come alone.
 */
static void
test_a_future_log_entry_gives_way_to_one_added_now(void **state)
{
    fixture_t   *f = *state;
    result_t     r[3];
    redisReply  *reply;
    long long    sec, usec;
    int          i;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    reply = redisCommand(f->sync, "TIME");
    assert_non_null(reply);
    sec = atoll(reply->element[0]->str);
    usec = atoll(reply->element[1]->str);
    freeReplyObject(reply);

    /* 300 ms ahead */
    reply = redisCommand(f->sync, "ZADD %s %lld.%06lld future", f->key,
                         sec + (usec + 300000) / 1000000,
                         (usec + 300000) % 1000000);
    assert_non_null(reply);
    freeReplyObject(reply);

    for (i = 0; i < 3; i++) {
        assert_non_null(start(f, f->key, 3, 1000, &r[i]));
    }

    for (i = 0; i < 3; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
    }

    assert_int_equal(r[0].v.allowed, 1);
    assert_int_equal(r[1].v.allowed, 1);
    assert_int_equal(r[2].v.allowed, 0);
    assert_in_range(r[0].v.limits[0].reset_ms, 1001, 1300);
    assert_in_range(r[1].v.limits[0].reset_ms, 900, 1000);
    assert_in_range(r[2].v.limits[0].retry_ms, 900, 1000);
}


/*
 * gcra at 3 a second: an emission interval of 333,333.3 us.  Three
 * requests at one instant are a burst of 3 and pass; the script used to
 * round the arrival time up after each one and reject the third.
 */
static void
test_gcra_burst_with_a_fractional_interval(void **state)
{
    fixture_t  *f = *state;
    result_t    r[4];
    int         i;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    for (i = 0; i < 4; i++) {
        assert_non_null(start_alg(f, f->key, 3, 1000, RL_ALG_GCRA, 3, &r[i]));
    }

    for (i = 0; i < 4; i++) {
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
        assert_int_equal(r[i].v.allowed, i < 3);
        assert_int_equal(r[i].v.limits[0].remaining, i < 3 ? 2 - i : 0);
    }
}


/*
 * One call of the limit script as if Redis' clock read sec.usec (its TIME
 * replaced in the script's text): a group of m checks of one gcra limit on
 * key.  Returns how many passed; remaining, of the last one; and in stored
 * (unless NULL, 64 bytes), the key's value after the call, read in the
 * call's MULTI/EXEC: the key may live for a millisecond only, and Redis 7
 * holds its clock for expiry through a transaction's commands.
 */
static int
gcra_at(fixture_t *f, const char *key, long long sec, long usec, int m,
    const char *requests, const char *window_ms, const char *burst,
    long long *remaining, char *stored)
{
    static const char   time_call[] = "redis.call('TIME')";
    const char         *script, *at, *argv[9];
    size_t              len, argl[9];
    char               *text, instant[64], plan[4];
    int                 i, n, passed = 0;
    redisReply         *reply, *r;

    script = rl_limit_script(&len);
    at = strstr(script, time_call);
    assert_non_null(at);

    n = snprintf(instant, sizeof(instant), "{ '%lld', '%ld' }", sec, usec);
    text = malloc(len + (size_t) n);
    assert_non_null(text);
    memcpy(text, script, (size_t) (at - script));
    memcpy(text + (at - script), instant, (size_t) n);
    strcpy(text + (at - script) + n, at + sizeof(time_call) - 1);

    plan[0] = 1;
    plan[1] = (char) m;
    plan[2] = 1;
    plan[3] = 1;

    argv[0] = "EVAL";
    argv[1] = text;
    argv[2] = "1";
    argv[3] = key;
    argv[4] = plan;
    argv[5] = "g";
    argv[6] = requests;
    argv[7] = window_ms;
    argv[8] = burst;

    for (i = 0; i < 9; i++) {
        argl[i] = argv[i] == plan ? sizeof(plan) : strlen(argv[i]);
    }

    assert_int_equal(redisAppendCommand(f->sync, "MULTI"), REDIS_OK);
    assert_int_equal(redisAppendCommandArgv(f->sync, 9, argv, argl),
                     REDIS_OK);
    assert_int_equal(redisAppendCommand(f->sync, "GET %s", key), REDIS_OK);
    assert_int_equal(redisAppendCommand(f->sync, "EXEC"), REDIS_OK);
    free(text);

    for (i = 0; i < 3; i++) {
        /* +OK, +QUEUED, +QUEUED */
        assert_int_equal(redisGetReply(f->sync, (void **) &reply), REDIS_OK);
        assert_int_equal(reply->type, REDIS_REPLY_STATUS);
        freeReplyObject(reply);
    }

    assert_int_equal(redisGetReply(f->sync, (void **) &reply), REDIS_OK);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 2);

    r = reply->element[0];
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4 * (size_t) m);

    for (i = 0; i < m; i++) {
        /* count, remaining, reset, retry */
        passed += r->element[4 * i + 3]->integer == 0;
    }

    *remaining = r->element[4 * (m - 1) + 1]->integer;

    if (stored) {
        r = reply->element[1];
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_true(r->len < 64);
        memcpy(stored, r->str, r->len + 1);
    }

    freeReplyObject(reply);

    return passed;
}


/*
 * The arrival time gcra stores keeps its fraction of a microsecond: calls
 * of one request each at one instant admit the burst, as one call of all
 * of them does (it was rounded up to the microsecond, call after call, and
 * the third of three requests at 3 a second was rejected).
 */
static void
test_gcra_at_one_instant_in_calls_of_their_own(void **state)
{
    fixture_t  *f = *state;
    long long   remaining;
    int         i;

    if (!f->port) {
        skip();
    }

    for (i = 0; i < 3; i++) {
        assert_int_equal(gcra_at(f, f->key, 1800000000, 123456, 1, "3",
                                 "1000", "3", &remaining, NULL), 1);
        assert_int_equal(remaining, 2 - i);
    }

    assert_int_equal(gcra_at(f, f->key, 1800000000, 123456, 1, "3", "1000",
                             "3", &remaining, NULL), 0);
    sync_ok(f, "DEL %s", f->key);

    /* an hour / 102: remaining counts down by one, call after call */
    for (i = 0; i < 102; i++) {
        assert_int_equal(gcra_at(f, f->key, 1800000000, 999999, 1, "102",
                                 "3600000", "102", &remaining, NULL), 1);
        assert_int_equal(remaining, 101 - i);
    }

    assert_int_equal(gcra_at(f, f->key, 1800000000, 999999, 1, "102",
                             "3600000", "102", &remaining, NULL), 0);
}


/*
 * 1,000,000 or 10,000,000 requests a second: an interval of a microsecond
 * or less.  Each request still takes one unit of the burst, in one call or
 * in calls of their own (the arrival time goes to Redis with its fraction,
 * and comes back with it).
 */
static void
test_gcra_with_an_interval_of_a_microsecond_or_less(void **state)
{
    fixture_t  *f = *state;
    long long   remaining;
    char        stored[64];

    if (!f->port) {
        skip();
    }

    assert_int_equal(gcra_at(f, f->key, 1800000000, 5, 1, "1000000", "1000",
                             "10", &remaining, NULL), 1);
    assert_int_equal(remaining, 9);
    sync_ok(f, "DEL %s", f->key);

    assert_int_equal(gcra_at(f, f->key, 1800000000, 5, 100, "10000000",
                             "1000", "10", &remaining, NULL), 10);
    assert_int_equal(remaining, 0);
    sync_ok(f, "DEL %s", f->key);

    /* 0.1 us after now */
    assert_int_equal(gcra_at(f, f->key, 1800000000, 5, 1, "10000000", "1000",
                             "10", &remaining, stored), 1);
    assert_string_equal(stored, "g1800000000000005.100000");

    /* 8.5 or 9.5 of the 10 units taken: one more, or none */
    sync_ok(f, "SET %s g1800000000000005.850000 PX 60000", f->key);
    assert_int_equal(gcra_at(f, f->key, 1800000000, 5, 1, "10000000", "1000",
                             "10", &remaining, stored), 1);
    assert_int_equal(remaining, 0);
    assert_string_equal(stored, "g1800000000000005.950000");

    sync_ok(f, "SET %s g1800000000000005.950000 PX 60000", f->key);
    assert_int_equal(gcra_at(f, f->key, 1800000000, 5, 1, "10000000", "1000",
                             "10", &remaining, NULL), 0);
}


/*
 * The slack for the stored fractions is under a microsecond: at one request
 * an hour, the next is refused a millisecond before its time and passes on
 * it (1/1024 of the interval would let it in 3.5 s early); at one a second,
 * it is refused a microsecond before its time.
 */
static void
test_gcra_lets_no_request_in_early(void **state)
{
    fixture_t  *f = *state;
    long long   remaining;

    if (!f->port) {
        skip();
    }

    assert_int_equal(gcra_at(f, f->key, 1800000000, 500000, 1, "1",
                             "3600000", "1", &remaining, NULL), 1);
    assert_int_equal(remaining, 0);

    assert_int_equal(gcra_at(f, f->key, 1800003599, 499000, 1, "1",
                             "3600000", "1", &remaining, NULL), 0);
    assert_int_equal(gcra_at(f, f->key, 1800003596, 500000, 1, "1",
                             "3600000", "1", &remaining, NULL), 0);
    assert_int_equal(gcra_at(f, f->key, 1800003600, 500000, 1, "1",
                             "3600000", "1", &remaining, NULL), 1);
    sync_ok(f, "DEL %s", f->key);

    assert_int_equal(gcra_at(f, f->key, 1900000000, 0, 1, "1", "1000", "1",
                             &remaining, NULL), 1);
    assert_int_equal(gcra_at(f, f->key, 1900000000, 999999, 1, "1", "1000",
                             "1", &remaining, NULL), 0);
    assert_int_equal(gcra_at(f, f->key, 1900000001, 0, 1, "1", "1000", "1",
                             &remaining, NULL), 1);
}


#if COUNT_ALLOCATIONS
/* the allocations of one batch of n checks on one key, sent and answered */
static long
batch_allocations(fixture_t *f, int n)
{
    result_t  r[32];
    int       i;
    long      before;

    counting = 1;
    before = allocations;

    for (i = 0; i < n; i++) {
        assert_non_null(start(f, f->key, 1000000, 60000, &r[i]));
    }

    for (i = 0; i < n; i++) {
        wait_for(f, &r[i], 2000);
    }

    counting = 0;

    for (i = 0; i < n; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
        assert_int_equal(r[i].v.allowed, 1);
    }

    return allocations - before;
}
#endif


/*
 * A warm client allocates per batch (hiredis' command buffer and callback),
 * never per check: a batch of 32 checks costs what a batch of 1 does.
 * hiredis' own reply objects were 8 callocs per check (a check's array,
 * its element array, six integers).
 */
static void
test_a_warm_client_allocates_nothing_per_check(void **state)
{
#if COUNT_ALLOCATIONS
    fixture_t  *f = *state;
    long        one, many;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    /* warm: connected, script loaded, buffers and pools grown */
    batch_allocations(f, 32);
    batch_allocations(f, 32);

    one = batch_allocations(f, 1);
    many = batch_allocations(f, 32);

    print_message("allocations: %ld for 1 check, %ld for 32\n", one, many);
    assert_in_range(many, 0, one + 2);
#else
    (void) state;
    skip();
#endif
}


static void
test_a_rejected_request_counts_in_no_limit(void **state)
{
    fixture_t       *f = *state;
    result_t         r;
    char             a[80], b[80];
    int              i;
    rl_limit_arg_t   l[2];

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    snprintf(a, sizeof(a), "%s:a", f->key);
    snprintf(b, sizeof(b), "%s:b", f->key);

    l[0] = (rl_limit_arg_t) { a, strlen(a), 2, 60000, RL_ALG_SLIDING_LOG, 0 };
    l[1] = (rl_limit_arg_t) { b, strlen(b), 5, 60000, RL_ALG_GCRA, 0 };

    for (i = 1; i <= 3; i++) {
        memset(&r, 0, sizeof(r));
        assert_non_null(rl_check_start(f->client, l, 2, on_done, &r, &r.v));
        wait_for(f, &r, 2000);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.v.allowed, i <= 2);
    }

    assert_true(r.v.limits[0].retry_ms > 0);
    assert_int_equal(r.v.limits[1].retry_ms, 0);
    assert_int_equal(r.v.limits[1].remaining, 3);
    assert_int_equal(zcard(f, a), 2);

    /* the gcra limit holds two emission intervals (2 x 12 s), not three */
    assert_in_range(pttl(f, b), 23000, 24000);
}


static void
test_a_flushed_script_is_loaded_again(void **state)
{
    fixture_t   *f = *state;
    result_t     r;
    redisReply  *reply;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    reply = redisCommand(f->sync, "SCRIPT FLUSH");
    assert_non_null(reply);
    freeReplyObject(reply);

    assert_non_null(start(f, f->key, 3, 10000, &r));
    wait_for(f, &r, 2000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_OK);
    assert_int_equal(r.v.allowed, 1);
    assert_int_equal(zcard(f, f->key), 1);
}


static void
test_a_batch_sent_again_after_noscript_leaves_out_cancelled_checks(
    void **state)
{
    fixture_t   *f = *state;
    result_t     a, b;
    rl_check_t  *cb;
    redisReply  *reply;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);
    run_for(f, 100);

    reply = redisCommand(f->sync, "SCRIPT FLUSH");
    assert_non_null(reply);
    freeReplyObject(reply);

    /* one batch of two; the second's request leaves once it was sent */
    assert_non_null(start(f, f->key, 3, 10000, &a));
    cb = start(f, f->key, 3, 10000, &b);
    assert_non_null(cb);
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_check_cancel(cb);

    wait_for(f, &a, 2000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.v.error, RL_OK);
    run_for(f, 100);
    assert_int_equal(b.calls, 0);

    /* the EVAL that followed NOSCRIPT carried only the first */
    assert_int_equal(zcard(f, f->key), 1);
}


static int
closed_port(void)
{
    int                 fd, port;
    struct sockaddr_in  sa;
    socklen_t           len = sizeof(sa);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);

    return port;
}


static void
test_refused_connection_answers_at_once_afterwards(void **state)
{
    fixture_t   *f = *state;
    result_t     r;
    rl_check_t  *c;

    f->client = client(f, closed_port(), 50);
    assert_non_null(f->client);

    /* queued during the first connect: fails when the connect fails */
    c = start(f, "k", 3, 10000, &r);
    if (c != NULL) {
        wait_for(f, &r, 2000);
        assert_int_equal(r.calls, 1);
    }

    assert_int_equal(r.v.error, RL_ERR_CONNECT);
    assert_int_equal(rl_event_loop_logged(f->loop,
        "Failed to connect to Redis: Connection refused. "
        "Using fallback mode."), 1);

    /* Redis is now known to be down: no waiting */
    assert_null(start(f, "k", 3, 10000, &r));
    assert_int_equal(r.v.error, RL_ERR_CONNECT);
    assert_int_equal(r.calls, 0);

    /* reconnects keep failing in the background, logged once */
    run_for(f, 500);
    assert_false(rl_client_up(f->client));
    assert_int_equal(rl_event_loop_logged(f->loop, "Failed to connect"), 1);
}


/* a peer that accepts (in the kernel) and never answers */
static int
silent_peer(int *port)
{
    int                 fd;
    struct sockaddr_in  sa;
    socklen_t           len = sizeof(sa);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
    *port = ntohs(sa.sin_port);

    return fd;
}


static void
test_a_silent_peer_never_becomes_ready(void **state)
{
    fixture_t  *f = *state;
    result_t    r;
    int         fd, port;

    fd = silent_peer(&port);

    /* the TCP connect succeeds (the kernel accepts), PING never answers */
    f->client = client(f, port, 50);
    assert_non_null(f->client);

    assert_non_null(start(f, "k", 3, 10000, &r));
    wait_for(f, &r, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_ERR_TIMEOUT);
    assert_false(rl_client_up(f->client));
    assert_int_equal(rl_event_loop_logged(f->loop,
        "Redis not answering: no reply to the connection setup"), 1);

    assert_null(start(f, "k", 3, 10000, &r));
    assert_int_equal(rl_event_loop_logged(f->loop, "restored"), 0);

    close(fd);
}


/*
 * A peer that speaks some RESP: "+PONG" to each PING (a connection setup's),
 * answers[i + 1] to a command named answers[i] (pairs, up to a NULL), and
 * answer to any other command; an empty answer is silence.  Up to 4
 * connections at a time, each greeted with greeting if it is set.
 */
#define PEER_CONNS  4

typedef struct scripted_peer_s  scripted_peer_t;

typedef struct {
    scripted_peer_t  *peer;
    struct event     *ev;
    int               fd;
} peer_conn_t;

struct scripted_peer_s {
    struct event        *accept_ev;
    int                  listen_fd;
    const char          *greeting;        /* sent on accept, or NULL */
    const char          *answer;
    const char *const   *answers;
    peer_conn_t          conns[PEER_CONNS];
};


/*
 * The answer to the command at *p, which it steps over; NULL when no whole
 * command is left before end (the rest of a long pipeline, not answered).
 */
static const char *
peer_answer(const scripted_peer_t *peer, char **p, const char *end)
{
    long                 argc, i, len;
    char                *s = *p, *name = NULL;
    size_t               name_len = 0;
    const char *const   *a;

    argc = strtol(s + 1, &s, 10);
    s += 2;

    for (i = 0; i < argc; i++) {
        if (s >= end || *s != '$') {
            return NULL;
        }

        len = strtol(s + 1, &s, 10);
        s += 2;

        if (len < 0 || len + 2 > end - s) {
            return NULL;
        }

        if (i == 0) {
            name = s;
            name_len = (size_t) len;
        }

        s += len + 2;
    }

    *p = s;

    if (argc == 1 && name_len == 4 && memcmp(name, "PING", 4) == 0) {
        return "+PONG\r\n";
    }

    for (a = peer->answers; a && a[0]; a += 2) {
        if (strlen(a[0]) == name_len && memcmp(name, a[0], name_len) == 0) {
            return a[1];
        }
    }

    return peer->answer;
}


static void
peer_read(evutil_socket_t fd, short what, void *data)
{
    peer_conn_t  *pc = data;
    char          buf[4096];
    char         *cmd;
    ssize_t       n;
    const char   *out;

    (void) what;

    /* whole commands come in one read when they are few and small */
    n = read(fd, buf, sizeof(buf) - 1);

    if (n <= 0) {
        event_free(pc->ev);
        close(fd);
        pc->fd = -1;
        return;
    }

    buf[n] = '\0';

    for (cmd = buf; cmd < buf + n && *cmd == '*'; /* void */) {
        out = peer_answer(pc->peer, &cmd, buf + n);

        if (out == NULL) {
            break;
        }

        /* the client may have hung up already: nothing to answer then */
        if (write(fd, out, strlen(out)) != (ssize_t) strlen(out)) {
            break;
        }
    }
}


static void
peer_accept(evutil_socket_t fd, short what, void *data)
{
    scripted_peer_t  *p = data;
    int               c = accept(fd, NULL, NULL), i;

    (void) what;

    if (c < 0) {
        return;
    }

    for (i = 0; i < PEER_CONNS; i++) {
        if (p->conns[i].fd < 0) {
            p->conns[i].fd = c;
            p->conns[i].ev = event_new(event_get_base(p->accept_ev), c,
                                       EV_READ | EV_PERSIST, peer_read,
                                       &p->conns[i]);
            assert_non_null(p->conns[i].ev);
            event_add(p->conns[i].ev, NULL);

            if (p->greeting) {
                assert_int_equal(write(c, p->greeting, strlen(p->greeting)),
                                 (ssize_t) strlen(p->greeting));
            }

            return;
        }
    }

    close(c);
}


static int
scripted_peer(fixture_t *f, scripted_peer_t *p, const char *answer)
{
    int  port, i;

    memset(p, 0, sizeof(*p));
    p->listen_fd = silent_peer(&port);
    p->answer = answer;

    for (i = 0; i < PEER_CONNS; i++) {
        p->conns[i].peer = p;
        p->conns[i].fd = -1;
    }

    p->accept_ev = event_new(f->base, p->listen_fd, EV_READ | EV_PERSIST,
                             peer_accept, p);
    assert_non_null(p->accept_ev);
    event_add(p->accept_ev, NULL);

    return port;
}


static void
scripted_peer_close(scripted_peer_t *p)
{
    int  i;

    event_free(p->accept_ev);
    close(p->listen_fd);

    for (i = 0; i < PEER_CONNS; i++) {
        if (p->conns[i].fd >= 0) {
            event_free(p->conns[i].ev);
            close(p->conns[i].fd);
        }
    }
}


/* the client first (it may still write), then its peer */
static void
close_client_and_peer(fixture_t *f, scripted_peer_t *p)
{
    rl_client_destroy(f->client);
    f->client = NULL;
    scripted_peer_close(p);
}


/*
 * An array header claims its element count: hiredis would allocate a
 * pointer for each before any arrives (4.9 GB here).  It is refused as a
 * protocol error, at once, and the reason logged; so is a negative count
 * (by hiredis itself, since 0.14.0).
 */
static void
test_an_absurd_array_length_is_a_protocol_error(void **state)
{
    static const char *const  answers[] = { "*610001000\r\n", "*-2\r\n" };
    static const char *const  logged[] = {
        "Redis protocol error: array of 610001000 elements (at most 65536)",
        "Redis protocol error: Multi-bulk length out of range",
    };

    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;
    size_t            i;

    for (i = 0; i < 2; i++) {
        f->client = client(f, scripted_peer(f, &p, answers[i]), 5000);
        assert_non_null(f->client);

        assert_non_null(start(f, "k", 3, 10000, &r));

        /* the reply's header is enough: no waiting for the timeout */
        wait_for(f, &r, 1000);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.v.error, RL_ERR_REPLY);
        assert_int_equal(rl_event_loop_logged(f->loop, logged[i]), 1);

        close_client_and_peer(f, &p);
    }
}


/*
 * A batch's reply is taken whole or not at all: here the first check's
 * four results look right and the second's last is a string.  Neither
 * check is decided (the first passed before), and the connection is
 * dropped as out of step.
 */
static void
test_a_batch_reply_out_of_shape_decides_no_check(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r1, r2;

    f->client = client(f, scripted_peer(f, &p,
        "*8\r\n:1\r\n:2\r\n:10000\r\n:0\r\n"
        ":1\r\n:2\r\n:10000\r\n$1\r\nx\r\n"),
        1000);
    assert_non_null(f->client);

    /* one loop turn: one command */
    assert_non_null(start(f, "k1", 3, 10000, &r1));
    assert_non_null(start(f, "k2", 3, 10000, &r2));

    wait_for(f, &r1, 1000);
    wait_for(f, &r2, 1000);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r1.v.error, RL_ERR_REPLY);
    assert_int_equal(r2.v.error, RL_ERR_REPLY);
    assert_int_equal(r1.v.allowed, 0);
    assert_int_equal(rl_event_loop_logged(f->loop,
        "Redis protocol error: unexpected reply"), 1);

    close_client_and_peer(f, &p);
}


/*
 * A reply to no command makes hiredis 0.14 abort() the process (an assert
 * in redisProcessCallbacks); here the peer answers a check twice.  The
 * first answer counts, the second is refused as a protocol error.
 */
static void
test_a_reply_to_no_command_is_a_protocol_error(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;

    /* one check of one limit: count 1, remaining 2, reset in 10 s, no
     * retry (it passed); then "+OK" */
    f->client = client(f, scripted_peer(f, &p,
        "*4\r\n:1\r\n:2\r\n:10000\r\n:0\r\n+OK\r\n"),
        1000);
    assert_non_null(f->client);

    assert_non_null(start(f, "k", 3, 10000, &r));
    wait_for(f, &r, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_OK);
    assert_int_equal(r.v.allowed, 1);

    run_for(f, 50);
    assert_int_equal(rl_event_loop_logged(f->loop,
        "Redis protocol error: a reply to no command"), 1);

    close_client_and_peer(f, &p);
}


/*
 * Redis' error text is logged: the peer's line breaks, escapes and NULs
 * must not reach the log (a forged line, a terminal escape, a cut line).
 */
static void
test_control_bytes_of_an_error_reply_are_replaced(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;

    f->client = client(f, scripted_peer(f, &p,
        "-ERR x\n2026/12/03 [notice] forged \033[31mred\r\n"), 1000);
    assert_non_null(f->client);

    assert_non_null(start(f, "k", 3, 10000, &r));
    wait_for(f, &r, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_ERR_REPLY);
    assert_string_equal(r.why, "ERR x?2026/12/03 [notice] forged ?[31mred");

    close_client_and_peer(f, &p);
}


/*
 * A peer that speaks first: its "+OK" would be taken for the answer to
 * the setup's PING, and the connection reported as up.
 */
static void
test_a_peer_that_speaks_first_is_not_taken_for_redis(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;

    f->client = client(f, scripted_peer(f, &p, ""), 1000);
    assert_non_null(f->client);
    p.greeting = "+OK\r\n";

    assert_non_null(start(f, "k", 3, 10000, &r));
    wait_for(f, &r, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_ERR_REPLY);
    assert_false(rl_client_up(f->client));
    assert_int_equal(rl_event_loop_logged(f->loop,
        "Redis protocol error: unexpected reply to the connection setup"), 1);
    assert_int_equal(rl_event_loop_logged(f->loop, "connected to Redis"), 0);

    close_client_and_peer(f, &p);
}


/* a sentinel's answer to get-master-addr-by-name: 127.0.0.1 and port */
static void
master_address(char *buf, size_t size, int port)
{
    snprintf(buf, size, "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n",
             snprintf(NULL, 0, "%d", port), port);
}


static rl_client_t *
sentinels_client(fixture_t *f, const int *ports, size_t n)
{
    char               err[128];
    const char        *hosts[] = { "127.0.0.1", "127.0.0.1" };
    rl_redis_conf_t    conf;

    assert_true(n <= 2);

    memset(&conf, 0, sizeof(conf));
    conf.connect_timeout_ms = 200;
    conf.timeout_ms = 200;
    conf.nsentinels = n;
    conf.sentinel_hosts = hosts;
    conf.sentinel_ports = ports;
    conf.master_name = "mymaster";

    return rl_client_create(f->loop, &conf, err, sizeof(err));
}


static rl_client_t *
sentinel_client(fixture_t *f, int port)
{
    return sentinels_client(f, &port, 1);
}


/*
 * A sentinel whose reply breaks the connection (the worker used to keep the
 * freed connection and free it again when the connect timer fired), or
 * names a port that is none (it used to be read as 0, or as 99999).
 */
static void
test_a_sentinel_that_breaks_the_protocol_is_given_up(void **state)
{
    static const char *const  answers[] = {
        "*610001000\r\n",
        "?\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$3\r\nabc\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n",
    };
    static const char *const  logged[] = {
        "Failed to discover the Redis master from Sentinel: sentinel "
        "127.0.0.1:%d: array of 610001000 elements (at most 65536)",
        "Failed to discover the Redis master from Sentinel: sentinel "
        "127.0.0.1:%d: Protocol error",
        "Failed to discover the Redis master from Sentinel: sentinel "
        "127.0.0.1:%d: the master's port is not a port number",
        "Failed to discover the Redis master from Sentinel: sentinel "
        "127.0.0.1:%d: the master's port is not a port number",
    };

    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;
    char              line[256];
    size_t            i;
    int               port;

    for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        port = scripted_peer(f, &p, answers[i]);
        f->client = sentinel_client(f, port);
        assert_non_null(f->client);

        /* no master known yet: answered at once, and discovery starts */
        assert_null(start(f, "k", 3, 10000, &r));

        /* past the connect timeout, which used to free it a second time */
        run_for(f, 400);

        snprintf(line, sizeof(line), logged[i], port);
        assert_int_equal(rl_event_loop_logged(f->loop, line), 1);
        assert_false(rl_client_up(f->client));

        close_client_and_peer(f, &p);
    }
}


/*
 * A subscribed connection that gets an array shorter than a message, or one
 * not made of strings (a nil channel too), made hiredis 0.14 abort() the
 * process.  The sentinel
 * here names the real Redis as master and answers the +switch-master
 * subscription with such arrays: the master's connection carries on.
 */
static void
test_malformed_sentinel_messages_are_refused(void **state)
{
    static const char *const  messages[] = {
        "*1\r\n:1\r\n",
        "*3\r\n:1\r\n$14\r\n+switch-master\r\n:1\r\n",
        "*2\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n",
        /* a nil channel: hiredis asserts the channel is a string */
        "*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n",
    };

    static const char  broke[] =
        "broke the +switch-master subscription: a malformed pub/sub message";

    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;
    char              addr[64];
    const char       *answers[5];
    size_t            i;
    int               j;

    if (!f->port) {
        skip();
    }

    master_address(addr, sizeof(addr), f->port);

    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        answers[0] = "SENTINEL";
        answers[1] = addr;
        answers[2] = "SUBSCRIBE";
        answers[3] = messages[i];
        answers[4] = NULL;

        f->client = sentinel_client(f, scripted_peer(f, &p, ""));
        p.answers = answers;
        assert_non_null(f->client);

        /* the subscription gets its message, refused and told once; the
         * master comes up */
        for (j = 0; j < 100 && (!rl_client_up(f->client)
                                || rl_event_loop_logged(f->loop, broke)
                                   <= i);
             j++)
        {
            run_for(f, 10);
        }

        assert_true(rl_client_up(f->client));
        assert_int_equal(rl_event_loop_logged(f->loop, broke), i + 1);

        assert_non_null(start(f, f->key, 10, 10000, &r));
        wait_for(f, &r, 1000);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.v.error, RL_OK);
        assert_int_equal(r.v.allowed, 1);

        close_client_and_peer(f, &p);
    }
}


/*
 * Text from Redis that is logged, here a ROLE, keeps no control bytes of
 * the peer's: a master answering "slave\n<a forged log line>" must not
 * forge a line.  The sentinel names a scripted master.
 */
static void
test_a_role_reply_cannot_forge_a_log_line(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   sentinel, master;
    result_t          r;
    char              addr[64];
    const char       *answers[3];
    int               port, i;

    port = scripted_peer(f, &master,
        "*2\r\n$40\r\nslave\n2030/01/01 00:00:00 [emerg] forged\r\n:0\r\n");

    master_address(addr, sizeof(addr), port);
    answers[0] = "SENTINEL";
    answers[1] = addr;
    answers[2] = NULL;

    f->client = sentinel_client(f, scripted_peer(f, &sentinel, ""));
    sentinel.answers = answers;
    assert_non_null(f->client);
    assert_null(start(f, "k", 3, 10000, &r));

    for (i = 0; i < 50
                && !rl_event_loop_logged(f->loop, "is not the master"); i++)
    {
        run_for(f, 10);
    }

    assert_int_equal(rl_event_loop_logged(f->loop,
        "Redis node is not the master: "
        "slave?2030/01/01 00:00:00 [emerg] forged. Using fallback mode."), 1);

    close_client_and_peer(f, &sentinel);
    scripted_peer_close(&master);
}


/*
 * A +switch-master message whose new port is not a port (hiredis would cut
 * 187040 to 18704 and the log name a port that is none) is not followed,
 * nor logged.
 */
static void
test_a_switch_to_a_port_that_is_none_is_ignored(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t          r;
    char              addr[64], msgs[512];
    const char       *answers[5];

    if (!f->port) {
        skip();
    }

    master_address(addr, sizeof(addr), f->port);

    /* the confirmation, then a switch to port 187040 */
    snprintf(msgs, sizeof(msgs),
             "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
             "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n"
             "$41\r\nmymaster 127.0.0.1 %5d 127.0.0.1 187040\r\n",
             f->port);

    answers[0] = "SENTINEL";
    answers[1] = addr;
    answers[2] = "SUBSCRIBE";
    answers[3] = msgs;
    answers[4] = NULL;

    f->client = sentinel_client(f, scripted_peer(f, &p, ""));
    p.answers = answers;
    assert_non_null(f->client);

    wait_up(f, 1000);
    run_for(f, 100);

    assert_int_equal(rl_event_loop_logged(f->loop, "Sentinel switched"), 0);
    assert_true(rl_client_up(f->client));

    assert_non_null(start(f, f->key, 3, 10000, &r));
    wait_for(f, &r, 1000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.v.error, RL_OK);

    close_client_and_peer(f, &p);
}


/*
 * The first sentinel accepts (in the kernel) and never answers: the
 * subscription used to stay there for good and miss the second one's
 * switch.  Unconfirmed after connect_timeout + timeout, it moves on.
 */
static void
test_a_silent_sentinel_does_not_keep_the_subscription(void **state)
{
    fixture_t        *f = *state;
    scripted_peer_t   p;
    char              addr[64], msgs[512];
    const char       *answers[5];
    int               ports[2], fd, j;

    if (!f->port) {
        skip();
    }

    master_address(addr, sizeof(addr), f->port);

    /* the confirmation, then a switch away from the real Redis */
    snprintf(msgs, sizeof(msgs),
             "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
             "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n"
             "$40\r\nmymaster 127.0.0.1 %5d 127.0.0.1 %5d\r\n",
             f->port, closed_port());

    answers[0] = "SENTINEL";
    answers[1] = addr;
    answers[2] = "SUBSCRIBE";
    answers[3] = msgs;
    answers[4] = NULL;

    fd = silent_peer(&ports[0]);
    ports[1] = scripted_peer(f, &p, "");
    p.answers = answers;

    f->client = sentinels_client(f, ports, 2);
    assert_non_null(f->client);

    for (j = 0; j < 150
                && !rl_event_loop_logged(f->loop, "Sentinel switched"); j++)
    {
        run_for(f, 10);
    }

    assert_int_equal(rl_event_loop_logged(f->loop,
        "Sentinel switched master \"mymaster\""), 1);

    close_client_and_peer(f, &p);
    close(fd);
}


/*
 * At most 10,000 checks wait for Redis in one worker: the next is answered
 * at once, busy, and never called back; the others all end, each once.
 */
static void
test_checks_in_flight_are_bounded(void **state)
{
    enum { bound = 10000 };

    fixture_t        *f = *state;
    scripted_peer_t   p;
    result_t         *r, busy;
    rl_check_t       *c;
    int               i, n;

    r = calloc(bound, sizeof(result_t));
    assert_non_null(r);

    /* a Redis that answers the connection setup, then nothing */
    f->client = client(f, scripted_peer(f, &p, ""), 300);
    assert_non_null(f->client);

    wait_up(f, 500);

    for (i = 0; i < bound; i++) {
        assert_non_null(start(f, "k", 3, 10000, &r[i]));
    }

    c = start(f, "k", 3, 10000, &busy);
    assert_null(c);
    assert_int_equal(busy.v.error, RL_ERR_BUSY);

    /* the checks time out together; none is lost, the refused one stays
     * refused */
    for (i = 0; i < 100 && r[bound - 1].calls == 0; i++) {
        run_for(f, 10);
    }

    for (i = 0, n = 0; i < bound; i++) {
        assert_int_equal(r[i].calls, 1);
        n += r[i].v.error == RL_ERR_TIMEOUT;
    }

    assert_int_equal(n, bound);
    assert_int_equal(busy.calls, 0);

    close_client_and_peer(f, &p);
    free(r);
}


static void
test_a_paused_redis_times_out_then_trips_the_breaker(void **state)
{
    fixture_t   *f = *state;
    result_t     r;
    int          i;
    redisReply  *reply;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 50);
    assert_non_null(f->client);

    wait_up(f, 500);

    reply = redisCommand(f->sync, "CLIENT PAUSE 1000 WRITE");
    assert_non_null(reply);
    freeReplyObject(reply);

    for (i = 0; i < 3; i++) {
        assert_non_null(start(f, f->key, 3, 10000, &r));
        wait_for(f, &r, 1000);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.v.error, RL_ERR_TIMEOUT);
    }

    /* three timeouts in a row: known down, answered at once, and why */
    assert_null(start(f, f->key, 3, 10000, &r));
    assert_int_equal(r.v.error, RL_ERR_TIMEOUT);
    assert_int_equal(rl_event_loop_logged(f->loop, "Redis not answering"), 1);

    reply = redisCommand(f->sync, "CLIENT UNPAUSE");
    assert_non_null(reply);
    freeReplyObject(reply);
}


static void
test_a_cancelled_check_is_never_called_back(void **state)
{
    fixture_t   *f = *state;
    result_t     r;
    rl_check_t  *c;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    /* let the connection come up, so that checks go out at once */
    run_for(f, 100);

    c = start(f, f->key, 3, 10000, &r);
    assert_non_null(c);
    rl_check_cancel(c);

    run_for(f, 200);
    assert_int_equal(r.calls, 0);

    /* cancelled in the loop turn it started: never sent, counted nowhere */
    assert_int_equal(zcard(f, f->key), 0);

    /* cancelled once sent: never called back, but Redis ran it */
    c = start(f, f->key, 3, 10000, &r);
    assert_non_null(c);
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_check_cancel(c);

    run_for(f, 200);
    assert_int_equal(r.calls, 0);
    assert_int_equal(zcard(f, f->key), 1);
}


/* a callback that also notes the timers armed when it came */
typedef struct {
    result_t    r;
    rl_loop_t  *loop;
    size_t      uncancelable;
} probe_t;


static void
on_done_probe(void *data, const rl_verdict_t *v)
{
    probe_t  *p = data;

    on_done(&p->r, v);
    p->uncancelable = rl_event_loop_uncancelable(p->loop);
}


/*
 * A worker shutting down gracefully waits for the checks of requests still
 * waiting (their timer is not cancelable), never for checks nobody waits
 * for.  Here the last waiting check is answered while a cancelled one, sent
 * in the same command, is still queued: from that callback on, only
 * cancelable timers are armed.
 */
static void
test_a_cancelled_check_left_queued_does_not_hold_an_exiting_worker(
    void **state)
{
    fixture_t       *f = *state;
    probe_t          a;
    result_t         rb;
    rl_check_t      *b;
    rl_limit_arg_t   l = { f->key, strlen(f->key), 10, 10000,
                           RL_ALG_SLIDING_LOG, 0 };

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 10000);
    assert_non_null(f->client);
    wait_up(f, 2000);

    memset(&a, 0, sizeof(a));
    a.loop = f->loop;
    a.uncancelable = 99;

    assert_non_null(rl_check_start(f->client, &l, 1, on_done_probe, &a,
                                   &a.r.v));
    b = start(f, f->key, 10, 10000, &rb);
    assert_non_null(b);

    /* both go out in one command, then b's request leaves */
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_check_cancel(b);
    assert_int_equal(rl_event_loop_uncancelable(f->loop), 1);

    wait_for(f, &a.r, 2000);
    assert_int_equal(a.r.calls, 1);
    assert_int_equal(a.r.v.error, RL_OK);
    assert_int_equal(a.uncancelable, 0);

    run_for(f, 100);
    assert_int_equal(rb.calls, 0);
    assert_int_equal(zcard(f, f->key), 2);
    assert_int_equal(rl_event_loop_uncancelable(f->loop), 0);
}


static void
test_destroying_the_client_drops_checks_in_flight(void **state)
{
    fixture_t  *f = *state;
    result_t    r;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    assert_non_null(f->client);

    assert_non_null(start(f, f->key, 3, 10000, &r));
    rl_client_destroy(f->client);
    f->client = NULL;

    run_for(f, 100);
    assert_int_equal(r.calls, 0);
}


/* n checks in a row on one key; results in r[0..n) */
static void
run_checks(fixture_t *f, rl_algorithm_e alg, uint64_t requests,
    uint64_t window_ms, uint64_t burst, result_t *r, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        assert_non_null(start_alg(f, f->key, requests, window_ms, alg,
                                  burst, &r[i]));
        wait_for(f, &r[i], 2000);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].v.error, RL_OK);
    }
}


static void
test_fixed_window_counts_to_the_window_end(void **state)
{
    fixture_t  *f = *state;
    result_t    r[4];
    int         i;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    run_checks(f, RL_ALG_FIXED_WINDOW, 3, 3600000, 0, r, 4);

    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].v.allowed, 1);
        assert_int_equal(r[i].v.limits[0].count, i + 1);
        assert_int_equal(r[i].v.limits[0].remaining, 2 - i);
    }

    assert_int_equal(r[3].v.allowed, 0);
    assert_int_equal(r[3].v.limits[0].count, 3);

    /* the window is epoch-aligned: the retry is the time to its end */
    assert_in_range(r[3].v.limits[0].retry_ms, 1, 3600000);
    assert_in_range(r[3].v.limits[0].retry_ms,
                    r[3].v.limits[0].reset_ms - 5, r[3].v.limits[0].reset_ms);
    assert_in_range(pttl(f, f->key), r[3].v.limits[0].retry_ms - 1000,
                    r[3].v.limits[0].retry_ms);
}


static void
test_gcra_admits_the_burst_then_one_per_interval(void **state)
{
    fixture_t  *f = *state;
    result_t    r[4];
    int         i;

    if (!f->port) {
        skip();
    }

    /* 6 a minute is one each 10 s; a burst of 3 passes at once */
    f->client = client(f, f->port, 1000);
    run_checks(f, RL_ALG_GCRA, 6, 60000, 3, r, 4);

    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].v.allowed, 1);
        assert_int_equal(r[i].v.limits[0].remaining, 2 - i);
    }

    assert_int_equal(r[3].v.allowed, 0);
    assert_int_equal(r[3].v.limits[0].remaining, 0);
    assert_in_range(r[3].v.limits[0].retry_ms, 9900, 10000);
}


static void
test_sliding_window_rejects_at_the_limit(void **state)
{
    fixture_t  *f = *state;
    result_t    r[4];
    int         i;

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    run_checks(f, RL_ALG_SLIDING_WINDOW, 3, 3600000, 0, r, 4);

    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].v.allowed, 1);
        assert_int_equal(r[i].v.limits[0].count, i + 1);
    }

    assert_int_equal(r[3].v.allowed, 0);
    assert_int_equal(r[3].v.limits[0].remaining, 0);

    /* the three entries of this window weigh in until the next one ends */
    assert_true(r[3].v.limits[0].retry_ms > r[3].v.limits[0].reset_ms);
    assert_true(r[3].v.limits[0].retry_ms <= 2 * 3600000);
}


static void
test_a_changed_algorithm_takes_the_key_over(void **state)
{
    fixture_t  *f = *state;
    result_t    r[2];

    if (!f->port) {
        skip();
    }

    f->client = client(f, f->port, 1000);
    run_checks(f, RL_ALG_SLIDING_LOG, 3, 60000, 0, r, 1);
    run_checks(f, RL_ALG_GCRA, 3, 60000, 0, r + 1, 1);

    assert_int_equal(r[1].v.allowed, 1);
    assert_int_equal(r[1].v.limits[0].remaining, 2);

    /* gcra and fixed_window both keep strings: still told apart */
    run_checks(f, RL_ALG_FIXED_WINDOW, 5, 60000, 0, r, 1);
    assert_int_equal(r[0].v.allowed, 1);
    assert_int_equal(r[0].v.limits[0].count, 1);

    run_checks(f, RL_ALG_GCRA, 3, 60000, 0, r + 1, 1);
    assert_int_equal(r[1].v.allowed, 1);
    assert_int_equal(r[1].v.limits[0].remaining, 2);
}


static void
test_gcra_reset_is_when_the_next_unit_returns(void **state)
{
    fixture_t  *f = *state;
    result_t    r[2];

    if (!f->port) {
        skip();
    }

    /* 3 a minute: one unit each 20 s */
    f->client = client(f, f->port, 1000);
    run_checks(f, RL_ALG_GCRA, 3, 60000, 0, r, 2);

    assert_int_equal(r[1].v.limits[0].remaining, 1);
    assert_in_range(r[1].v.limits[0].reset_ms, 19000, 20000);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup_teardown(
            test_three_pass_then_the_fourth_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_pipelined_checks_admit_exactly_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_checks_of_one_loop_turn_share_a_command_in_order, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_batch_sent_again_after_noscript_leaves_out_cancelled_checks,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_one_call_decides_as_one_call_per_check, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_call_of_250_checks_on_one_key_counts_each, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_batch_of_more_than_255_limits_is_split, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_key_named_twice_in_one_check_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_at_maxmemory_a_batch_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_at_maxmemory_a_log_read_again_writes_nothing, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_future_log_entry_gives_way_to_one_added_now, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_burst_with_a_fractional_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_at_one_instant_in_calls_of_their_own, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_with_an_interval_of_a_microsecond_or_less, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_lets_no_request_in_early, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_warm_client_allocates_nothing_per_check, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_rejected_request_counts_in_no_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_flushed_script_is_loaded_again, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_fixed_window_counts_to_the_window_end, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_admits_the_burst_then_one_per_interval, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_sliding_window_rejects_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_changed_algorithm_takes_the_key_over, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gcra_reset_is_when_the_next_unit_returns, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_refused_connection_answers_at_once_afterwards, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_silent_peer_never_becomes_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_absurd_array_length_is_a_protocol_error, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_batch_reply_out_of_shape_decides_no_check, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_reply_to_no_command_is_a_protocol_error, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_control_bytes_of_an_error_reply_are_replaced, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_peer_that_speaks_first_is_not_taken_for_redis, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_sentinel_that_breaks_the_protocol_is_given_up, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_malformed_sentinel_messages_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_role_reply_cannot_forge_a_log_line, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_switch_to_a_port_that_is_none_is_ignored, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_silent_sentinel_does_not_keep_the_subscription, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_checks_in_flight_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_paused_redis_times_out_then_trips_the_breaker, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cancelled_check_is_never_called_back, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cancelled_check_left_queued_does_not_hold_an_exiting_worker,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_destroying_the_client_drops_checks_in_flight, setup,
            teardown),
    };

    /* a peer here may write to a client that hung up, as nginx ignores */
    signal(SIGPIPE, SIG_IGN);

    if (redis_port() == 0) {
        fprintf(stderr, "RL_TEST_REDIS_PORT is not set: the tests that "
                        "need a redis-server are skipped\n");
    }

    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
