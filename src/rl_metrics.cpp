/*
 * Prometheus text exposition (format 0.0.4) of the module's counters.  The
 * counters live in the shim's shared memory; this renders a snapshot of
 * them, so it is pure and unit-tested.
 */

#include "rl_api.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>


namespace {

const uint64_t  kBucketsUs[RL_LATENCY_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000
};

const char  *kStatuses[RL_STATUSES] = {
    "passed", "rejected", "rejected_dry_run", "error_allowed",
    "error_rejected", "skipped", "local_passed", "local_rejected"
};


/* appends to a buffer that may be too small, counting what it needs */
class Out {
public:
    Out(char *buf, size_t len) noexcept : buf_(buf), len_(len) {}

    void
    printf(const char *fmt, ...) noexcept __attribute__((format(printf, 2, 3)))
    {
        va_list  ap;
        size_t   room = used_ < len_ ? len_ - used_ : 0;
        int      n;

        va_start(ap, fmt);
        n = std::vsnprintf(room ? buf_ + used_ : nullptr, room, fmt, ap);
        va_end(ap);

        if (n > 0) {
            used_ += (size_t) n;
        }
    }

    size_t used() const noexcept { return used_; }

private:
    char    *buf_;
    size_t   len_;
    size_t   used_ = 0;
};


void
seconds(Out &out, uint64_t us) noexcept
{
    out.printf("%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}

} /* namespace */


extern "C" size_t
rl_latency_bucket(uint64_t us) noexcept
{
    size_t  i;

    for (i = 0; i < RL_LATENCY_BUCKETS; i++) {
        if (us <= kBucketsUs[i]) {
            break;
        }
    }

    return i;
}


extern "C" size_t
rl_metrics_render(const rl_metrics_t *m, char *buf, size_t len) noexcept
{
    Out       out(buf, len);
    uint64_t  cumulative = 0;

    out.printf("# HELP rate_limit_requests_total Requests checked, by limit "
               "and verdict.\n"
               "# TYPE rate_limit_requests_total counter\n");

    for (size_t i = 0; i < m->nlimits; i++) {
        for (size_t s = 0; s < RL_STATUSES; s++) {
            out.printf("rate_limit_requests_total{limit=\"%.*s\","
                       "status=\"%s\"} %" PRIu64 "\n",
                       (int) m->limits[i].name_len, m->limits[i].name,
                       kStatuses[s], m->limits[i].requests[s]);
        }
    }

    out.printf("# HELP rate_limit_redis_errors_total Checks Redis could not "
               "answer, by kind.\n"
               "# TYPE rate_limit_redis_errors_total counter\n");

    for (int k = RL_ERR_CONNECT; k < RL_ERR_KINDS; k++) {
        out.printf("rate_limit_redis_errors_total{kind=\"%s\"} %" PRIu64 "\n",
                   rl_error_name((rl_error_e) k), m->errors[k]);
    }

    out.printf("# HELP rate_limit_redis_latency_seconds Time from sending a "
               "check to its reply.\n"
               "# TYPE rate_limit_redis_latency_seconds histogram\n");

    for (size_t i = 0; i <= RL_LATENCY_BUCKETS; i++) {
        cumulative += m->latency[i];

        out.printf("rate_limit_redis_latency_seconds_bucket{le=\"");

        if (i < RL_LATENCY_BUCKETS) {
            seconds(out, kBucketsUs[i]);
        } else {
            out.printf("+Inf");
        }

        out.printf("\"} %" PRIu64 "\n", cumulative);
    }

    out.printf("rate_limit_redis_latency_seconds_sum ");
    seconds(out, m->latency_sum_us);
    out.printf("\nrate_limit_redis_latency_seconds_count %" PRIu64 "\n",
               cumulative);

    out.printf("# HELP rate_limit_redis_up 1 when every worker is connected "
               "to Redis.\n"
               "# TYPE rate_limit_redis_up gauge\n"
               "rate_limit_redis_up %d\n"
               "# HELP rate_limit_redis_connections Workers with a Redis "
               "client, by connection state.\n"
               "# TYPE rate_limit_redis_connections gauge\n"
               "rate_limit_redis_connections{state=\"up\"} %" PRIu64 "\n"
               "rate_limit_redis_connections{state=\"down\"} %" PRIu64 "\n"
               "# HELP rate_limit_inflight_checks Requests waiting for "
               "Redis.\n"
               "# TYPE rate_limit_inflight_checks gauge\n"
               "rate_limit_inflight_checks %" PRIu64 "\n"
               "# HELP rate_limit_cache_hits_total Requests rejected by the "
               "over-limit cache without asking Redis.\n"
               "# TYPE rate_limit_cache_hits_total counter\n"
               "rate_limit_cache_hits_total %" PRIu64 "\n",
               m->workers > 0 && m->connections_up >= m->workers ? 1 : 0,
               m->connections_up,
               m->workers > m->connections_up
                   ? m->workers - m->connections_up : 0,
               m->inflight, m->cache_hits);

    return out.used();
}
