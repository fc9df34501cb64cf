/*
 * libFuzzer target: the parsers of directive values (rl_config.cpp), fed
 * the raw bytes of a directive argument, as the shim passes them: not
 * NUL-terminated, any length.  Besides memory errors (ASan) and undefined
 * behaviour (UBSan), it checks what each parser promises:
 *
 *   rl_parse_requests     decimal digits only, 1..RL_REQUESTS_MAX, the
 *                         value of those digits
 *   rl_parse_duration_ms  a result no more than ten years; nginx's time
 *                         syntax; the same as the parse of the same text
 *                         written without the optional spaces
 *   rl_valid_name         letters, digits, '_', '-', '.', 1..64 bytes
 *   rl_parse_algorithm    one of the names rl_algorithm_name() gives back
 *
 * make fuzz (t/fuzz/corpus/config/ holds the seeds).
 */

#include "rl_api.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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


static void
checkRequests(const char *s, size_t len)
{
    uint64_t  v = 0, want = 0;
    bool      digits = len > 0 && len <= 10;

    for (size_t i = 0; digits && i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            digits = false;
            break;
        }
        want = want * 10 + (uint64_t) (s[i] - '0');
    }

    bool  ok = digits && want >= 1 && want <= RL_REQUESTS_MAX;

    CHECK((rl_parse_requests(s, len, &v) == 0) == ok);

    if (ok) {
        CHECK(v == want);
    }
}


static void
checkDuration(const char *s, size_t len)
{
    const uint64_t  cap = 10ULL * 365 * 86400 * 1000;
    uint64_t        v = UINT64_MAX, v2 = UINT64_MAX;

    if (rl_parse_duration_ms(s, len, &v) != 0) {
        return;
    }

    CHECK(v <= cap);

    /* nginx's syntax: digits, units, spaces, nothing else; no space first */
    CHECK(len > 0 && s[0] >= '0' && s[0] <= '9');

    for (size_t i = 0; i < len; i++) {
        CHECK(std::strchr("0123456789mshdwMy ", s[i]) != nullptr && s[i]);
    }

    /* the spaces between parts are optional: the same value without them */
    std::string  packed;

    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ') {
            packed.push_back(s[i]);
        }
    }

    CHECK(rl_parse_duration_ms(packed.data(), packed.size(), &v2) == 0);
    CHECK(v2 == v);
}


static void
checkName(const char *s, size_t len)
{
    bool  ok = len >= 1 && len <= 64;

    for (size_t i = 0; ok && i < len; i++) {
        unsigned char  c = (unsigned char) s[i];

        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
             || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    }

    CHECK((rl_valid_name(s, len) != 0) == ok);
}


static void
checkAlgorithm(const char *s, size_t len)
{
    int  alg = rl_parse_algorithm(s, len);

    if (alg < 0) {
        CHECK(alg == -1);
        return;
    }

    const char  *name = rl_algorithm_name((rl_algorithm_e) alg);

    CHECK(std::strlen(name) == len && std::memcmp(name, s, len) == 0);
}


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly size bytes: ASan sees any read past the end */
    std::vector<char>  buf(data, data + size);
    const char        *s = size ? buf.data() : "";

    checkRequests(s, size);
    checkDuration(s, size);
    checkName(s, size);
    checkAlgorithm(s, size);

    return 0;
}
