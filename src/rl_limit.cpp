/*
 * Pure domain logic: key building (bounded length), SHA-1, the script's
 * reply decoded into a verdict, Retry-After arithmetic.
 */

#include "rl_limit.hpp"

#include <arpa/inet.h>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>


namespace {

inline uint32_t
rol(uint32_t v, int n) noexcept
{
    return (v << n) | (v >> (32 - n));
}


/* FIPS 180-4 SHA-1; used for long keys and the script's digest only */
class Sha1 {
public:
    void
    update(const unsigned char *p, size_t len) noexcept
    {
        total_ += len;

        while (len > 0) {
            size_t  n = 64 - used_;

            if (n > len) {
                n = len;
            }

            std::memcpy(block_ + used_, p, n);
            used_ += n;
            p += n;
            len -= n;

            if (used_ == 64) {
                compress();
                used_ = 0;
            }
        }
    }

    void
    final(unsigned char out[20]) noexcept
    {
        uint64_t       bits = total_ * 8;
        unsigned char  pad = 0x80;

        update(&pad, 1);

        pad = 0;
        while (used_ != 56) {
            update(&pad, 1);
        }

        unsigned char  len[8];

        for (int i = 0; i < 8; i++) {
            len[i] = (unsigned char) (bits >> (56 - 8 * i));
        }

        update(len, 8);

        for (int i = 0; i < 5; i++) {
            out[4 * i] = (unsigned char) (h_[i] >> 24);
            out[4 * i + 1] = (unsigned char) (h_[i] >> 16);
            out[4 * i + 2] = (unsigned char) (h_[i] >> 8);
            out[4 * i + 3] = (unsigned char) h_[i];
        }
    }

private:
    void
    compress() noexcept
    {
        uint32_t  w[80];

        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t) block_[4 * i] << 24
                   | (uint32_t) block_[4 * i + 1] << 16
                   | (uint32_t) block_[4 * i + 2] << 8
                   | (uint32_t) block_[4 * i + 3];
        }

        for (int i = 16; i < 80; i++) {
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        }

        uint32_t  a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4];

        for (int i = 0; i < 80; i++) {
            uint32_t  f, k;

            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5a827999;

            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ed9eba1;

            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8f1bbcdc;

            } else {
                f = b ^ c ^ d;
                k = 0xca62c1d6;
            }

            uint32_t  t = rol(a, 5) + f + e + k + w[i];

            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }

        h_[0] += a;
        h_[1] += b;
        h_[2] += c;
        h_[3] += d;
        h_[4] += e;
    }

    uint32_t       h_[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
                             0xc3d2e1f0 };
    unsigned char  block_[64] = {};
    size_t         used_ = 0;
    uint64_t       total_ = 0;
};


void
sha1HexInto(const void *data, size_t len, char out[40]) noexcept
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      md[20];
    Sha1               sha;

    sha.update(static_cast<const unsigned char *>(data), len);
    sha.final(md);

    for (int i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
}


bool
fail(rl_verdict_t *v, const char *why) noexcept
{
    v->error = RL_ERR_REPLY;
    v->errstr = why;
    return false;
}


bool
nonNegative(const redisReply *r) noexcept
{
    return r->type == REDIS_REPLY_INTEGER && r->integer >= 0;
}

} /* namespace */


namespace rl {

std::string
sha1Hex(const void *data, size_t len)
{
    char  out[40];

    sha1HexInto(data, len, out);
    return std::string(out, sizeof(out));
}


/*
 * Each limit's results are count, remaining, reset_ms and retry_ms: the
 * check passed when no limit gives a time to retry.
 */
bool
decodeReply(const redisReply *reply, size_t at, size_t n, rl_verdict_t *v)
    noexcept
{
    v->error = RL_OK;
    v->errstr = nullptr;
    v->allowed = 0;
    v->nlimits = 0;
    v->latency_us = 0;

    if (reply == nullptr) {
        v->error = RL_ERR_CONNECT;
        v->errstr = "connection lost";
        return false;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        return fail(v, reply->str);
    }

    if (reply->type != REDIS_REPLY_ARRAY || n == 0 || n > RL_MAX_LIMITS
        || at > reply->elements || reply->elements - at < 4 * n)
    {
        return fail(v, "unexpected reply from the limit script");
    }

    redisReply **e = reply->element + at;

    for (size_t i = 0; i < 4 * n; i++) {
        if (!nonNegative(e[i])) {
            return fail(v, "unexpected reply from the limit script");
        }
    }

    int  allowed = 1;

    for (size_t i = 0; i < n; i++) {
        rl_limit_result_t  *l = &v->limits[i];

        l->count = (uint64_t) e[4 * i]->integer;
        l->remaining = (uint64_t) e[4 * i + 1]->integer;
        l->reset_ms = (uint64_t) e[4 * i + 2]->integer;
        l->retry_ms = (uint64_t) e[4 * i + 3]->integer;

        if (l->retry_ms > 0) {
            allowed = 0;
        }
    }

    v->allowed = allowed;
    v->nlimits = n;
    return true;
}

bool
batchReplyFits(const redisReply *reply, size_t total) noexcept
{
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != total)
    {
        return false;
    }

    for (size_t i = 0; i < total; i++) {
        if (!nonNegative(reply->element[i])) {
            return false;
        }
    }

    return true;
}

namespace {

/*
 * Under AddressSanitizer a pooled value or array is poisoned until it is
 * taken again: a reply used or freed after it was freed is reported as it
 * would be without the pool.
 */
#if defined(__SANITIZE_ADDRESS__)
#define RL_POOL_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RL_POOL_ASAN  1
#endif
#endif

#ifdef RL_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define rl_pool_poison(p, n)    ASAN_POISON_MEMORY_REGION(p, n)
#define rl_pool_unpoison(p, n)  ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define rl_pool_poison(p, n)
#define rl_pool_unpoison(p, n)
#endif


/*
 * The reply objects: redisReply values and element arrays, each allocated
 * alone as hiredis allocates them, kept on free lists when freed.  An
 * array's capacity is a power of two up to kPoolMaxArray, kept in its
 * len (which hiredis leaves 0 in an array, and nobody reads): an array
 * hiredis made, or a larger one, is freed, never pooled.
 */
class ReplyPool {
public:
    ReplyPool() = default;
    ReplyPool(const ReplyPool &) = delete;
    ReplyPool &operator=(const ReplyPool &) = delete;

    ~ReplyPool()
    {
        while (nodes_) {
            redisReply  *r = nodes_;

            rl_pool_unpoison(r, sizeof(redisReply));
            nodes_ = reinterpret_cast<redisReply *>(r->element);
            std::free(r);
        }

        nnodes_ = 0;

        for (size_t k = 0; k < kClasses; k++) {
            while (arrays_[k]) {
                redisReply  **a = arrays_[k];

                rl_pool_unpoison(a, sizeof(redisReply *) << k);
                arrays_[k] = reinterpret_cast<redisReply **>(a[0]);
                std::free(a);
            }

            narrays_[k] = 0;
        }
    }

    redisReply *
    node(int type) noexcept
    {
        redisReply  *r = nodes_;

        if (r == nullptr) {
            r = static_cast<redisReply *>(std::calloc(1, sizeof(redisReply)));

        } else {
            rl_pool_unpoison(r, sizeof(redisReply));
            nodes_ = reinterpret_cast<redisReply *>(r->element);
            nnodes_--;
            std::memset(r, 0, sizeof(redisReply));
        }

        if (r) {
            r->type = type;
        }

        return r;
    }

    /* elements slots, all NULL; *cap: what to keep in the reply's len */
    redisReply **
    array(size_t elements, size_t *cap) noexcept
    {
        size_t         c = 1, k = 0;
        redisReply   **a;

        while (c < elements) {
            c <<= 1;
            k++;
        }

        if (c > ReplyGuard::kPoolMaxArray) {
            *cap = 0;
            return static_cast<redisReply **>(
                std::calloc(elements, sizeof(redisReply *)));
        }

        *cap = c;
        a = arrays_[k];

        if (a == nullptr) {
            return static_cast<redisReply **>(
                std::calloc(c, sizeof(redisReply *)));
        }

        rl_pool_unpoison(a, c * sizeof(redisReply *));
        arrays_[k] = reinterpret_cast<redisReply **>(a[0]);
        narrays_[k]--;
        std::memset(a, 0, c * sizeof(redisReply *));

        return a;
    }

    void
    free(redisReply *r) noexcept
    {
        switch (r->type) {

        case REDIS_REPLY_ARRAY:
            if (r->element) {
                for (size_t i = 0; i < r->elements; i++) {
                    if (r->element[i]) {
                        free(r->element[i]);
                    }
                }

                freeArray(r->element, r->len);
            }
            break;

        case REDIS_REPLY_ERROR:
        case REDIS_REPLY_STATUS:
        case REDIS_REPLY_STRING:
            std::free(r->str);
            break;
        }

        if (nnodes_ == ReplyGuard::kPoolNodes) {
            std::free(r);
            return;
        }

        r->element = reinterpret_cast<redisReply **>(nodes_);
        nodes_ = r;
        nnodes_++;
        rl_pool_poison(r, sizeof(redisReply));
    }

private:
    void
    freeArray(redisReply **a, size_t cap) noexcept
    {
        size_t  k = 0;

        while (k < kClasses && (size_t) 1 << k != cap) {
            k++;
        }

        if (k == kClasses || narrays_[k] == ReplyGuard::kPoolArrays) {
            std::free(a);
            return;
        }

        a[0] = reinterpret_cast<redisReply *>(arrays_[k]);
        arrays_[k] = a;
        narrays_[k]++;
        rl_pool_poison(a, cap * sizeof(redisReply *));
    }

    /* capacities 1, 2, 4 ... kPoolMaxArray */
    static constexpr size_t  kClasses = 9;
    static_assert((size_t) 1 << (kClasses - 1) == ReplyGuard::kPoolMaxArray,
                  "one class per power of two up to kPoolMaxArray");

    redisReply    *nodes_ = nullptr;          /* linked through element */
    size_t         nnodes_ = 0;
    redisReply   **arrays_[kClasses] = {};    /* linked through [0] */
    size_t         narrays_[kClasses] = {};
};


ReplyPool  pool;


/* hiredis' rule: a value is its parent's element idx */
void *
adopt(const redisReadTask *task, redisReply *r) noexcept
{
    if (r && task->parent) {
        static_cast<redisReply *>(task->parent->obj)->element[task->idx] = r;
    }

    return r;
}

} /* namespace */


void
ReplyGuard::attach(redisReader *reader, const redisAsyncContext *ac) noexcept
{
    why_[0] = '\0';
    ac_ = ac;
    message_ = false;

    if (reader->fn != &fn_) {
        fn_.createString = createString;
        fn_.createArray = createArray;
        fn_.createInteger = createInteger;
        fn_.createNil = createNil;
        fn_.freeObject = freeObject;
        reader->fn = &fn_;
    }

    /* every task of the reader carries it: how the functions find us */
    reader->privdata = this;
}


bool
ReplyGuard::beforeRead(redisAsyncContext *ac) noexcept
{
    redisReader  *r = ac->c.reader;
    ReplyGuard   *g;

    if (r == nullptr || r->len - r->pos <= kMaxPendingBytes
        || r->fn == nullptr || r->fn->createArray != createArray)
    {
        return true;
    }

    g = static_cast<ReplyGuard *>(r->privdata);
    g->refuse("a reply of more than %zu bytes", kMaxPendingBytes);

    /* as a refused reply: the error hiredis sets when we refuse one */
    ac->c.err = REDIS_ERR_OOM;
    std::snprintf(ac->c.errstr, sizeof(ac->c.errstr), "%s", g->why_);
    ac->err = ac->c.err;
    ac->errstr = ac->c.errstr;

    redisAsyncFree(ac);
    return false;
}


void
ReplyGuard::refuse(const char *fmt, ...) noexcept
{
    va_list  args;

    va_start(args, fmt);
    std::vsnprintf(why_, sizeof(why_), fmt, args);
    va_end(args);
}


/*
 * The rules that keep hiredis from aborting; str is a string reply's text
 * (nullptr for other types).  Arrays' sizes are checked in createArray.
 */
bool
ReplyGuard::admit(const redisReadTask *task, const char *str, size_t len)
    noexcept
{
    if (task->parent == nullptr) {
        objects_ = 0;
        bytes_ = 0;
    }

    /* a reply's elements are parsed, copied and dropped from the reader's
     * buffer one by one: its size is what it has built so far */
    bytes_ += len;

    if (bytes_ > kMaxPendingBytes) {
        refuse("a reply of more than %zu bytes", kMaxPendingBytes);
        return false;
    }

    if (++objects_ > (size_t) kMaxReplyElements) {
        refuse("a reply of more than %d values", kMaxReplyElements);
        return false;
    }

    if (ac_ == nullptr) {
        return true;
    }

    if (task->parent == nullptr) {
        /* a new reply: hiredis matches it with the oldest command sent */
        message_ = false;

        if (ac_->replies.head != nullptr) {
            return true;
        }

        if (ac_->c.flags & REDIS_SUBSCRIBED) {
            message_ = task->type == REDIS_REPLY_ARRAY;
            return true;
        }

        /* hiredis closes the connection on a spontaneous error itself */
        if (task->type == REDIS_REPLY_ERROR) {
            return true;
        }

        refuse("a reply to no command");
        return false;
    }

    if (!message_ || task->parent->parent != nullptr || task->idx > 1) {
        return true;
    }

    /*
     * [ "message" or "subscribe", CHANNEL, ... ]: what a sentinel sends.  A
     * nil ($-1) comes with the type of a string, but no text (str)
     */
    if (task->type == REDIS_REPLY_STRING && str != nullptr
        && (task->idx == 1
            || (len == 7 && strncasecmp(str, "message", 7) == 0)
            || (len == 9 && strncasecmp(str, "subscribe", 9) == 0)))
    {
        return true;
    }

    refuse("a malformed pub/sub message");
    return false;
}


void *
ReplyGuard::createString(const redisReadTask *task, char *str, size_t len)
    noexcept
{
    ReplyGuard  *g = static_cast<ReplyGuard *>(task->privdata);

    if (!g->admit(task, str, len)) {
        return nullptr;
    }

    /*
     * No reply the module reads holds binary text, and some of it is logged
     * (errors, a ROLE, a sentinel's message): no line breaks, escapes or
     * NULs of the peer's in the log (str is in the reader's buffer, which
     * is read once).
     */
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char) str[i] < 0x20 || str[i] == 0x7f) {
            str[i] = '?';
        }
    }

    redisReply  *r = pool.node(task->type);

    if (r == nullptr) {
        return nullptr;
    }

    r->str = static_cast<char *>(std::malloc(len + 1));

    if (r->str == nullptr) {
        pool.free(r);
        return nullptr;
    }

    std::memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;

    return adopt(task, r);
}


void *
ReplyGuard::createArray(const redisReadTask *task, int elements) noexcept
{
    ReplyGuard  *g = static_cast<ReplyGuard *>(task->privdata);

    if (elements < 0 || elements > kMaxReplyElements) {
        g->refuse("array of %d elements (at most %d)", elements,
                  kMaxReplyElements);
        return nullptr;
    }

    if (!g->admit(task, nullptr, 0)) {
        return nullptr;
    }

    /* hiredis reads a message's third element without checking it is
     * there; its second is the channel */
    if (g->message_ && task->parent == nullptr && elements < 3) {
        g->refuse("a malformed pub/sub message");
        return nullptr;
    }

    redisReply  *r = pool.node(REDIS_REPLY_ARRAY);

    if (r == nullptr) {
        return nullptr;
    }

    if (elements > 0) {
        r->element = pool.array((size_t) elements, &r->len);

        if (r->element == nullptr) {
            pool.free(r);
            return nullptr;
        }
    }

    r->elements = (size_t) elements;

    return adopt(task, r);
}


void *
ReplyGuard::createInteger(const redisReadTask *task, long long value)
    noexcept
{
    ReplyGuard  *g = static_cast<ReplyGuard *>(task->privdata);

    if (!g->admit(task, nullptr, 0)) {
        return nullptr;
    }

    redisReply  *r = pool.node(REDIS_REPLY_INTEGER);

    if (r) {
        r->integer = value;
    }

    return adopt(task, r);
}


void *
ReplyGuard::createNil(const redisReadTask *task) noexcept
{
    ReplyGuard  *g = static_cast<ReplyGuard *>(task->privdata);

    if (!g->admit(task, nullptr, 0)) {
        return nullptr;
    }

    return adopt(task, pool.node(REDIS_REPLY_NIL));
}


void
ReplyGuard::freeObject(void *reply) noexcept
{
    if (reply) {
        pool.free(static_cast<redisReply *>(reply));
    }
}


} /* namespace rl */


extern "C" size_t
rl_build_key(char *buf, const char *prefix, size_t prefix_len,
    const char *key, size_t key_len, const char *name, size_t name_len)
    noexcept
{
    char  *p = buf;

    std::memcpy(p, prefix, prefix_len);
    p += prefix_len;
    *p++ = ':';

    /* a short key that looks hashed is hashed too: it cannot pose as the
     * digest of another, long key */
    if (key_len > RL_MAX_KEY_LEN
        || (key_len >= 5 && std::memcmp(key, "sha1:", 5) == 0))
    {
        std::memcpy(p, "sha1:", 5);
        p += 5;
        sha1HexInto(key, key_len, p);
        p += 40;

    } else {
        std::memcpy(p, key, key_len);
        p += key_len;
    }

    *p++ = ':';
    std::memcpy(p, name, name_len);
    p += name_len;

    return (size_t) (p - buf);
}


extern "C" int
rl_decode_reply(const struct redisReply *reply, size_t n, rl_verdict_t *v)
    noexcept
{
    /* the reply to a call of this one check: its results, no more */
    if (reply && reply->type == REDIS_REPLY_ARRAY
        && reply->elements != 4 * n)
    {
        return rl::decodeReply(reply, rl::kNoResults, n, v) ? 0 : -1;
    }

    return rl::decodeReply(reply, 0, n, v) ? 0 : -1;
}


extern "C" uint64_t
rl_retry_after_sec(uint64_t retry_ms) noexcept
{
    uint64_t  s = (retry_ms + 999) / 1000;

    return s ? s : 1;
}


extern "C" const char *
rl_error_name(rl_error_e err) noexcept
{
    switch (err) {
    case RL_OK:          return "ok";
    case RL_ERR_CONNECT: return "connect";
    case RL_ERR_TIMEOUT: return "timeout";
    case RL_ERR_AUTH:    return "auth";
    case RL_ERR_REPLY:   return "reply";
    case RL_ERR_BUSY:    return "busy";
    }

    return "unknown";
}


extern "C" size_t
rl_normalize_ip(const char *key, size_t len, unsigned prefix, char *out)
    noexcept
{
    static const unsigned char  mapped[12] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
    };

    char           text[INET6_ADDRSTRLEN];
    unsigned char  a[16];

    if (len == 0 || len >= sizeof(text) || std::memchr(key, ':', len) == nullptr)
    {
        return 0;
    }

    std::memcpy(text, key, len);
    text[len] = '\0';

    if (inet_pton(AF_INET6, text, a) != 1) {
        return 0;
    }

    if (std::memcmp(a, mapped, sizeof(mapped)) == 0) {
        return inet_ntop(AF_INET, a + 12, out, RL_MAX_IP_KEY)
               ? std::strlen(out) : 0;
    }

    if (prefix == 0 || prefix >= 128) {
        return 0;
    }

    for (unsigned bit = prefix; bit < 128; bit++) {
        a[bit / 8] &= (unsigned char) ~(0x80 >> (bit % 8));
    }

    if (inet_ntop(AF_INET6, a, out, RL_MAX_IP_KEY) == nullptr) {
        return 0;
    }

    len = std::strlen(out);

    return len + (size_t) std::snprintf(out + len, RL_MAX_IP_KEY - len, "/%u",
                                        prefix);
}
