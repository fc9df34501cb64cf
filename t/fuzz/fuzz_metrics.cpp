/*
 * libFuzzer target: the Prometheus exposition (rl_metrics_render) of any
 * counter values, up to RL_MAX_LIMITS * 4 limits, into buffers of any size.
 * The shim renders into a buffer it sizes from a first call and calls again
 * when the counters grew in between, so the contract checked here is:
 *   - the return value is the length of the whole text, whatever len is
 *     (as snprintf: the text and its NUL need one byte more);
 *   - nothing is written at or past buf + len;
 *   - a buffer of one byte more than that holds the whole text, NUL-free,
 *     then a NUL; a shorter one holds a prefix of it, then a NUL.
 *
 * make fuzz (t/fuzz/corpus/metrics/ holds the seeds).
 */

#include "rl_api.h"

#include <fuzzer/FuzzedDataProvider.h>

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


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzedDataProvider  fdp(data, size);

    size_t                           nlimits;
    rl_metrics_t                     m;
    std::vector<std::string>         names;
    std::vector<rl_metrics_limit_t>  limits;

    std::memset(&m, 0, sizeof(m));

    nlimits = fdp.ConsumeIntegralInRange<size_t>(0, 4 * RL_MAX_LIMITS);

    for (size_t i = 0; i < nlimits; i++) {
        /* names passed rl_valid_name() at configuration time */
        std::string  name = fdp.ConsumeRandomLengthString(64);

        if (!rl_valid_name(name.data(), name.size())) {
            name = "n" + std::to_string(i);
        }

        names.push_back(name);
    }

    limits.resize(nlimits);

    for (size_t i = 0; i < nlimits; i++) {
        limits[i].name = names[i].data();
        limits[i].name_len = names[i].size();

        for (size_t s = 0; s < RL_STATUSES; s++) {
            limits[i].requests[s] = fdp.ConsumeIntegral<uint64_t>();
        }
    }

    m.limits = limits.data();
    m.nlimits = nlimits;

    for (size_t k = 0; k < RL_ERR_KINDS; k++) {
        m.errors[k] = fdp.ConsumeIntegral<uint64_t>();
    }

    /* cumulative buckets: keep the sum from wrapping, as real counts do */
    for (size_t b = 0; b <= RL_LATENCY_BUCKETS; b++) {
        m.latency[b] = fdp.ConsumeIntegral<uint32_t>();
    }

    m.latency_sum_us = fdp.ConsumeIntegral<uint64_t>();
    m.workers = fdp.ConsumeIntegral<uint64_t>();
    m.connections_up = fdp.ConsumeIntegral<uint64_t>();
    m.inflight = fdp.ConsumeIntegral<uint64_t>();
    m.cache_hits = fdp.ConsumeIntegral<uint64_t>();

    size_t  need = rl_metrics_render(&m, nullptr, 0);

    CHECK(need > 0);

    /* need + 1 bytes, then a poisoned guard byte read back */
    std::vector<char>  full(need + 2, '\x5a');

    CHECK(rl_metrics_render(&m, full.data(), need + 1) == need);
    CHECK(full[need] == '\0' && full[need + 1] == '\x5a');
    CHECK(std::memchr(full.data(), '\0', need) == nullptr);
    CHECK(full[need - 1] == '\n');

    size_t  len = fdp.ConsumeIntegralInRange<size_t>(1, need + 1);
    std::vector<char>  part(len + 1, '\x5a');

    CHECK(rl_metrics_render(&m, part.data(), len) == need);
    CHECK(part[len] == '\x5a' && part[len - 1] == '\0');
    CHECK(std::memcmp(part.data(), full.data(), len - 1) == 0);

    /* every limit is there, under the name it was given */
    std::string  text(full.data(), need);

    for (size_t i = 0; i < nlimits; i++) {
        CHECK(text.find("limit=\"" + names[i] + "\"") != std::string::npos);
    }

    return 0;
}
