/*
 * Pure parsing and validation of directive values.  No nginx, no I/O: the
 * shim calls these with the raw directive arguments and reports failures
 * with the directive's name and the value.
 */

#include "rl_api.h"

#include <cstdint>
#include <cstring>


namespace {

bool
isDigit(char c) noexcept
{
    return c >= '0' && c <= '9';
}


/* milliseconds in one unit of nginx's time syntax; 0: not a unit */
uint64_t
unitMs(const char *s, size_t len, size_t *used) noexcept
{
    if (len >= 2 && s[0] == 'm' && s[1] == 's') {
        *used = 2;
        return 1;
    }

    *used = 1;

    switch (len ? s[0] : '\0') {
    case 's': return 1000;
    case 'm': return 60ULL * 1000;
    case 'h': return 3600ULL * 1000;
    case 'd': return 86400ULL * 1000;
    case 'w': return 7ULL * 86400 * 1000;
    case 'M': return 30ULL * 86400 * 1000;
    case 'y': return 365ULL * 86400 * 1000;
    default:
        *used = 0;
        return 0;
    }
}

} /* namespace */


extern "C" int
rl_parse_requests(const char *s, size_t len, uint64_t *out) noexcept
{
    uint64_t  v = 0;

    if (len == 0 || len > 10) {
        return -1;
    }

    for (size_t i = 0; i < len; i++) {
        if (!isDigit(s[i])) {
            return -1;
        }

        v = v * 10 + (uint64_t) (s[i] - '0');
    }

    if (v == 0 || v > RL_REQUESTS_MAX) {
        return -1;
    }

    *out = v;
    return 0;
}


/*
 * nginx's time syntax as ngx_parse_time() reads it: one or more
 * "<number><unit>" parts (ms, s, m, h, d, w, M, y) in decreasing units,
 * optionally separated by spaces; a bare number at the end is seconds.  No overflow: anything above ten years is
 * refused, the caller checks its own range.
 */
extern "C" int
rl_parse_duration_ms(const char *s, size_t len, uint64_t *out) noexcept
{
    const uint64_t  cap = 10ULL * 365 * 86400 * 1000;
    uint64_t        total = 0, last = UINT64_MAX;
    size_t          i = 0;

    if (len == 0) {
        return -1;
    }

    while (i < len) {
        uint64_t  n = 0, unit;
        size_t    digits = 0, used;

        while (i < len && isDigit(s[i])) {
            n = n * 10 + (uint64_t) (s[i] - '0');
            if (n > cap) {
                return -1;
            }
            i++;
            digits++;
        }

        if (digits == 0) {
            return -1;
        }

        unit = unitMs(s + i, len - i, &used);

        if (unit == 0) {
            if (i != len) {
                return -1;
            }
            unit = 1000;
        }

        /* as nginx: each part in a smaller unit than the one before */
        if (unit >= last) {
            return -1;
        }

        last = unit;
        i += used;

        if (n > cap / unit || total + n * unit > cap) {
            return -1;
        }

        total += n * unit;

        while (i < len && s[i] == ' ') {
            i++;
        }
    }

    *out = total;
    return 0;
}


/* endpoint names: letters, digits, '_', '-', '.'; never ':' */
extern "C" int
rl_valid_name(const char *s, size_t len) noexcept
{
    if (len == 0 || len > 64) {
        return 0;
    }

    for (size_t i = 0; i < len; i++) {
        char  c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || isDigit(c) || c == '_' || c == '-' || c == '.'))
        {
            return 0;
        }
    }

    return 1;
}


namespace {

const char  *kAlgorithms[] = {
    "sliding_log", "sliding_window", "gcra", "fixed_window"
};

} /* namespace */


extern "C" int
rl_parse_algorithm(const char *s, size_t len) noexcept
{
    for (size_t i = 0; i < sizeof(kAlgorithms) / sizeof(kAlgorithms[0]);
         i++)
    {
        if (std::strlen(kAlgorithms[i]) == len
            && std::memcmp(kAlgorithms[i], s, len) == 0)
        {
            return (int) i;
        }
    }

    return -1;
}


extern "C" const char *
rl_algorithm_name(rl_algorithm_e alg) noexcept
{
    return (size_t) alg < sizeof(kAlgorithms) / sizeof(kAlgorithms[0])
           ? kAlgorithms[alg] : "unknown";
}
