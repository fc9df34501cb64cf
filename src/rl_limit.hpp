/*
 * Pure domain logic of the core: hashing, key building, decoding the
 * script's reply into a verdict.  No I/O and no clock: time and values come
 * in as parameters, so unit tests assert exact keys and numbers.
 */

#ifndef RL_LIMIT_HPP
#define RL_LIMIT_HPP

#include "rl_api.h"

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>


namespace rl {

/* 40 lowercase hex digits of the SHA-1 of data */
std::string sha1Hex(const void *data, size_t len);

/*
 * Fills v from the reply of the limit script for n limits.  Returns false,
 * with v->error = RL_ERR_REPLY and v->errstr set, when the reply is an error
 * or is not the array of integers the script returns.
 */
bool decodeReply(const redisReply *reply, size_t n, rl_verdict_t *v) noexcept;


/*
 * Bounds the arrays a Redis connection's reader builds.  An array's header
 * names its element count, and hiredis 0.14 allocates a pointer for each at
 * once: "*610001000" asks for 4.9 GB before a single element has arrived.
 * Attached to a reader, the guard refuses such a header (and a negative
 * count, which Debian's hiredis already refuses itself): the reader stops
 * with an error, which hiredis calls "Out of memory" (REDIS_ERR_OOM), and
 * the connection is closed; refusal() then tells the real reason.
 *
 * kMaxReplyElements is far above any reply the module reads (a batch of 64
 * checks, a sentinel's ROLE or address, a pub/sub message).  The guard must
 * outlive the reader; attaching it again resets what it refused.
 */
class ReplyGuard {
public:
    static constexpr int  kMaxReplyElements = 1 << 16;

    void attach(redisReader *reader) noexcept;

    /* why the reader stopped, when the guard stopped it; else nullptr */
    const char *refusal() const noexcept { return why_[0] ? why_ : nullptr; }

private:
    static void *createArray(const redisReadTask *task, int elements)
        noexcept;

    redisReplyObjectFunctions   fn_ {};
    void                     *(*create_)(const redisReadTask *, int) =
                                  nullptr;
    char                        why_[64] = "";
};

} /* namespace rl */

#endif /* RL_LIMIT_HPP */
