/*
 * libFuzzer target: Redis keys from client-controlled values.  The key of a
 * limit is an nginx complex value (by default $remote_addr, but often a
 * header, a cookie, an argument): any bytes, any length.  The input is
 * split into a prefix, a key and a name; the key also goes through
 * rl_normalize_ip() with a fuzzed prefix length, as the shim does.
 *
 * Checks, besides memory errors (each piece is a heap block of its exact
 * size; the output buffer is exactly RL_MAX_REDIS_KEY bytes, so a byte
 * written past the bound is an ASan report):
 *   - the key is never longer than RL_MAX_REDIS_KEY(prefix, name);
 *   - PREFIX:KEY:NAME verbatim for a KEY up to RL_MAX_KEY_LEN bytes, else
 *     PREFIX:sha1:<40 lowercase hex>:NAME, the same for the same KEY;
 *   - rl_normalize_ip() writes at most RL_MAX_IP_KEY bytes, NUL included,
 *     returns the length it wrote, and its result is stable (normalizing
 *     it again changes nothing more).
 *
 * make fuzz (t/fuzz/corpus/key/ holds the seeds).
 */

#include "rl_api.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>


#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
                         __LINE__, #cond);                                    \
            std::abort();                                                     \
        }                                                                     \
    } while (0)


/* exactly size bytes on the heap, never a null pointer (new char[0] is not) */
struct Bytes {
    explicit Bytes(const std::string &s)
        : buf(new char[s.size()]), len(s.size())
    {
        std::memcpy(buf.get(), s.data(), len);
    }

    const char *data() const { return buf.get(); }
    size_t size() const { return len; }

    std::unique_ptr<char[]>  buf;
    size_t                   len;
};


static size_t
buildKey(const Bytes &prefix, const Bytes &key, const Bytes &name,
    std::string *out)
{
    size_t             max = RL_MAX_REDIS_KEY(prefix.size(), name.size());
    std::vector<char>  buf(max);
    size_t             len;

    len = rl_build_key(buf.data(), prefix.data(), prefix.size(), key.data(),
                       key.size(), name.data(), name.size());

    CHECK(len <= max);
    out->assign(buf.data(), len);
    return len;
}


static void
checkKey(const Bytes &prefix, const Bytes &key, const Bytes &name)
{
    std::string  k, again;
    size_t       p = prefix.size(), n = name.size();

    buildKey(prefix, key, name, &k);

    CHECK(k.compare(0, p, prefix.data(), p) == 0);
    CHECK(k[p] == ':');
    CHECK(k.compare(k.size() - n, n, name.data(), n) == 0);
    CHECK(k[k.size() - n - 1] == ':');

    std::string  mid = k.substr(p + 1, k.size() - p - n - 2);

    /* a short key that begins with "sha1:" is hashed like a long one */
    bool  hashed = key.size() > RL_MAX_KEY_LEN
                   || (key.size() >= 5 && std::memcmp(key.data(), "sha1:", 5)
                                          == 0);

    if (!hashed) {
        CHECK(mid.size() == key.size()
              && std::memcmp(mid.data(), key.data(), key.size()) == 0);

    } else {
        CHECK(mid.size() == 5 + 40 && mid.compare(0, 5, "sha1:") == 0);

        for (size_t i = 5; i < mid.size(); i++) {
            CHECK(std::strchr("0123456789abcdef", mid[i]) && mid[i]);
        }

        buildKey(prefix, key, name, &again);
        CHECK(again == k);
    }
}


static void
checkIp(const Bytes &key, unsigned prefix)
{
    /* one byte more than the bound, poisoned, to see a write past it */
    char    out[RL_MAX_IP_KEY + 1];
    size_t  len;

    std::memset(out, 0x5a, sizeof(out));

    len = rl_normalize_ip(key.data(), key.size(), prefix, out);

    CHECK((unsigned char) out[RL_MAX_IP_KEY] == 0x5a);

    if (len == 0) {
        return;
    }

    CHECK(len < RL_MAX_IP_KEY);
    CHECK(std::strlen(out) == len);

    /* an address already cut to its prefix stays as it is */
    std::string  text(out, len);
    size_t       slash = text.find('/');
    char         out2[RL_MAX_IP_KEY];

    if (slash != std::string::npos) {
        std::string  addr = text.substr(0, slash);
        size_t       len2 = rl_normalize_ip(addr.data(), addr.size(), prefix,
                                            out2);

        CHECK(len2 == len && std::memcmp(out2, out, len) == 0);
    }
}


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzedDataProvider  fdp(data, size);

    unsigned     ipPrefix = fdp.ConsumeIntegralInRange<unsigned>(0, 200);
    std::string  prefix = fdp.ConsumeRandomLengthString(64);
    std::string  name = fdp.ConsumeRandomLengthString(64);
    std::string  key = fdp.ConsumeRemainingBytesAsString();

    /* exact-size heap copies: a read past any of them is an ASan report */
    Bytes  p(prefix), n(name), k(key);

    checkKey(p, k, n);
    checkIp(k, ipPrefix);

    return 0;
}
