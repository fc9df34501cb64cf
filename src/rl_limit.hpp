/*
 * Pure domain logic of the core: hashing, key building, decoding the
 * script's reply into a verdict.  No I/O and no clock: time and values come
 * in as parameters, so unit tests assert exact keys and numbers.
 */

#ifndef RL_LIMIT_HPP
#define RL_LIMIT_HPP

#include "rl_api.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>


namespace rl {

/* 40 lowercase hex digits of the SHA-1 of data */
std::string sha1Hex(const void *data, size_t len);

/*
 * Fills v from the reply of the limit script to a batch: the results of a
 * check of n limits, 4 integers a limit, begin at element at.  Returns
 * false, with v->error = RL_ERR_REPLY and v->errstr set, when the reply is
 * an error or does not hold them (at = kNoResults: it holds none).
 */
constexpr size_t  kNoResults = SIZE_MAX;

bool decodeReply(const redisReply *reply, size_t at, size_t n,
    rl_verdict_t *v) noexcept;

/*
 * Whether the reply to a batch is what the script returns: an array of
 * exactly total non-negative integers.  Nothing is decided from one that is
 * not, not even the checks whose own elements look right.
 */
bool batchReplyFits(const redisReply *reply, size_t total) noexcept;


/*
 * Checks each reply while hiredis' reader builds it, and stops the reader
 * before a reply could make the worker allocate without bound or make
 * hiredis abort it.  hiredis 0.14:
 *
 *   - allocates a pointer for each element an array header claims, at once
 *     ("*610001000" asks for 4.9 GB before any element has arrived);
 *   - assert()s, that is aborts the worker, when a connection that is not
 *     subscribed gets a reply (other than an error) to no command, and when
 *     a subscribed one gets an array that is not [string, string, ...], or
 *     an "unsubscribe" without a count.
 *
 * The guard refuses an array of more than kMaxReplyElements (or fewer than
 * 0) elements, a reply of more than kMaxReplyElements values or of more
 * than kMaxPendingBytes of text in all; and, given the async context, a
 * reply to no command and a pub/sub message that is not ["message" or
 * "subscribe", channel, x].  It also turns control bytes in any text into
 * '?': some of it is logged, and a peer's "-ERR x\n2026/12/03 ... [notice]
 * ..." would forge a log line.
 *
 * A refusal stops the reader with an error that hiredis calls "Out of
 * memory" (REDIS_ERR_OOM) and closes the connection; refusal() tells the
 * real reason.
 *
 * kMaxReplyElements and kMaxPendingBytes are far above any reply the
 * module reads (a batch of 64 checks of 16 limits is under 100 KB; a ROLE,
 * a master's address, a pub/sub message are smaller).  The guard must
 * outlive the reader; attaching it again resets what it refused.
 *
 * The guard also builds the reply objects itself, as hiredis does (each
 * a redisReply, freeReplyObject() can free them; an array's len, which
 * hiredis leaves 0, holds its capacity), but from a pool: the
 * values of a reply freed with the reader's freeObject (as hiredis frees
 * every reply after its callback) are kept for the next one, so a warm
 * worker allocates nothing per check for the replies (hiredis callocs
 * seven or more values per check).  The pool is the process's (the
 * module's event loop has one thread) and keeps at most kPoolNodes values
 * and kPoolArrays arrays of each size up to kPoolMaxArray; the rest are
 * freed.
 */
class ReplyGuard {
public:
    static constexpr int  kMaxReplyElements = 1 << 16;

    ReplyGuard() = default;
    ReplyGuard(const ReplyGuard &) = delete;
    ReplyGuard &operator=(const ReplyGuard &) = delete;

    /*
     * reader: one hiredis made, with its own object functions, which the
     * guard's delegate to; ac: the context whose reader this is, or nullptr
     * for a bare reader
     */
    void attach(redisReader *reader, const redisAsyncContext *ac = nullptr)
        noexcept;

    /*
     * The event loop's read handler calls this before it lets hiredis read
     * ac's socket.  A reply still incomplete after kMaxPendingBytes (a
     * string that claims a gigabyte and trickles in) would make hiredis
     * buffer all of it: then the connection fails as if the reply were
     * refused, ac is freed, and this returns false.
     */
    static constexpr size_t  kMaxPendingBytes = 4 * 1024 * 1024;

    static bool beforeRead(redisAsyncContext *ac) noexcept;

    /* why the reader stopped, when the guard stopped it; else nullptr */
    const char *refusal() const noexcept { return why_[0] ? why_ : nullptr; }

private:
    static void *createString(const redisReadTask *task, char *str,
        size_t len) noexcept;
    static void *createArray(const redisReadTask *task, int elements)
        noexcept;
    static void *createInteger(const redisReadTask *task, long long value)
        noexcept;
    static void *createNil(const redisReadTask *task) noexcept;
    static void freeObject(void *reply) noexcept;

public:
    static constexpr size_t  kPoolNodes = 4096;
    static constexpr size_t  kPoolArrays = 128;
    static constexpr size_t  kPoolMaxArray = 256;

private:

    bool admit(const redisReadTask *task, const char *str, size_t len)
        noexcept;
    void refuse(const char *fmt, ...) noexcept
        __attribute__((format(printf, 2, 3)));

    redisReplyObjectFunctions   fn_ {};
    const redisAsyncContext    *ac_ = nullptr;
    bool                        message_ = false;  /* a pub/sub message */
    size_t                      objects_ = 0;      /* of the reply built */
    size_t                      bytes_ = 0;        /* its strings' text */
    char                        why_[64] = "";
};

} /* namespace rl */

#endif /* RL_LIMIT_HPP */
