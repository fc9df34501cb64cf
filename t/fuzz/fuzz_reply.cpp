/*
 * libFuzzer target: whatever bytes come back on the Redis connection.  They
 * go through hiredis' reply parser (a redisReader, as in the client) and
 * every complete reply is decoded as the limit script's reply for 1..16
 * limits with rl_decode_reply(), as the client does with any reply, a
 * well-formed one, a foreign one or garbage from a peer that is not Redis.
 *
 * The reader carries the client's ReplyGuard: an array header may not make
 * it allocate more than ReplyGuard::kMaxReplyElements pointers (without the
 * guard, "*610001000" asks for 4.9 GB: libFuzzer's out-of-memory).  Every
 * array the reader builds holds the elements it claims.  The same bytes
 * also go to readers whose guard sees a connection with no command
 * waiting, subscribed or not: a reply it lets through must not trip one of
 * the assert()s with which hiredis' async code would abort the worker.
 *
 * Besides memory errors and undefined behaviour, it checks the decoder's
 * contract: a success fills exactly n limits from an array of 4n
 * non-negative integers, allowed when no limit has a time to retry; a
 * failure sets an error kind and a message, never a verdict.
 *
 * make fuzz (t/fuzz/corpus/reply/ holds the seeds: script replies, errors,
 * nested arrays, RESP fragments).
 */

#include "rl_api.h"
#include "rl_limit.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>


#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
                         __LINE__, #cond);                                    \
            std::abort();                                                     \
        }                                                                     \
    } while (0)


static bool
scriptShaped(const redisReply *r, size_t n)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 * n) {
        return false;
    }

    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER
            || r->element[i]->integer < 0)
        {
            return false;
        }
    }

    return true;
}


/*
 * Every array holds as many elements as it claims, within the guard's
 * bound; no text holds control bytes.
 */
static void
checkShape(const redisReply *r, int depth)
{
    CHECK(depth <= 8);

    if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS
        || r->type == REDIS_REPLY_STRING)
    {
        /* logged as it is: no control bytes (the guard replaced them) */
        for (size_t i = 0; i < r->len; i++) {
            CHECK((unsigned char) r->str[i] >= 0x20 && r->str[i] != 0x7f);
        }
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    CHECK(r->elements <= (size_t) rl::ReplyGuard::kMaxReplyElements);
    CHECK(r->elements == 0 || r->element != nullptr);

    for (size_t i = 0; i < r->elements; i++) {
        CHECK(r->element[i] != nullptr);
        checkShape(r->element[i], depth + 1);
    }
}


static void
decode(const redisReply *r)
{
    for (size_t n = 1; n <= RL_MAX_LIMITS; n++) {
        rl_verdict_t  v;

        /* garbage in: the decoder must set every field it reports */
        std::memset(&v, 0xa5, sizeof(v));

        int  rc = rl_decode_reply(r, n, &v);

        CHECK(rc == 0 || rc == -1);
        CHECK((rc == 0) == scriptShaped(r, n));

        /* a batch of checks of 4n results in all: taken whole or not */
        CHECK(rl::batchReplyFits(r, 4 * n) == scriptShaped(r, n));

        if (rc == 0) {
            CHECK(v.error == RL_OK);
            CHECK(v.nlimits == n);

            bool  retry = false;

            for (size_t i = 0; i < n; i++) {
                const rl_limit_result_t  *l = &v.limits[i];
                redisReply *const        *e = r->element + 4 * i;

                CHECK(l->count == (uint64_t) e[0]->integer);
                CHECK(l->remaining == (uint64_t) e[1]->integer);
                CHECK(l->reset_ms == (uint64_t) e[2]->integer);
                CHECK(l->retry_ms == (uint64_t) e[3]->integer);
                retry = retry || l->retry_ms > 0;
            }

            CHECK(v.allowed == (retry ? 0 : 1));

        } else {
            CHECK(v.error == RL_ERR_REPLY);
            CHECK(v.errstr != nullptr);
            CHECK(std::strlen(v.errstr) < 65536);
            CHECK(v.nlimits == 0);
            CHECK(v.allowed == 0);
        }
    }

    /* and as a connection lost: no reply at all */
    rl_verdict_t  v;

    std::memset(&v, 0xa5, sizeof(v));
    CHECK(rl_decode_reply(nullptr, 1, &v) == -1);
    CHECK(v.error == RL_ERR_CONNECT && v.errstr != nullptr);
}


/* the checks hiredis' async code makes with assert() on what it is given */
static void
checkAsync(const redisReply *r, int flags)
{
    if (!(flags & REDIS_SUBSCRIBED)) {
        /* a reply to no command: only an error (hiredis disconnects) */
        CHECK(r->type == REDIS_REPLY_ERROR);
        return;
    }

    if (r->type == REDIS_REPLY_ARRAY) {
        CHECK(r->elements >= 3);
        CHECK(r->element[0]->type == REDIS_REPLY_STRING);
        CHECK(r->element[1]->type == REDIS_REPLY_STRING);
        CHECK(strcasecmp(r->element[0]->str, "unsubscribe") != 0);
    }
}


/*
 * Feeds data to a reader in two pieces, as bytes arrive from a socket, and
 * calls check on every complete reply.  ac: the async context the guard
 * consults (no command waiting for a reply), or nullptr.
 */
static void
feed(const uint8_t *data, size_t size, const redisAsyncContext *ac,
    void (*check)(const redisReply *r, int flags))
{
    static rl::ReplyGuard   guard;
    redisReader            *reader = redisReaderCreate();
    void                   *reply;
    size_t                  half = size / 2;

    if (reader == nullptr) {
        return;
    }

    guard.attach(reader, ac);

    if (redisReaderFeed(reader, (const char *) data, half) != REDIS_OK) {
        redisReaderFree(reader);
        return;
    }

    for (int pass = 0; pass < 2; pass++) {
        for ( ;; ) {
            reply = nullptr;

            if (redisReaderGetReply(reader, &reply) != REDIS_OK
                || reply == nullptr)
            {
                break;
            }

            checkShape(static_cast<redisReply *>(reply), 0);
            check(static_cast<redisReply *>(reply), ac ? ac->c.flags : 0);

            /* as hiredis frees a reply after its callback: to the pool */
            reader->fn->freeObject(reply);
        }

        if (reader->err || pass == 1
            || redisReaderFeed(reader, (const char *) data + half,
                               size - half) != REDIS_OK)
        {
            break;
        }
    }

    redisReaderFree(reader);
}


static void
decodeAll(const redisReply *r, int flags)
{
    (void) flags;
    decode(r);
}


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static redisAsyncContext  idle, subscribed;

    /* a bare reader, as the client's before any command: every reply is
     * decoded */
    feed(data, size, nullptr, decodeAll);

    /* a connection with no command waiting, subscribed or not: what the
     * guard lets through never trips hiredis' asserts */
    std::memset(&idle, 0, sizeof(idle));
    feed(data, size, &idle, checkAsync);

    std::memset(&subscribed, 0, sizeof(subscribed));
    subscribed.c.flags = REDIS_SUBSCRIBED;
    feed(data, size, &subscribed, checkAsync);

    return 0;
}
