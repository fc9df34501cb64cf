/*
 * The limit script, its digest and its arguments.  The client sends EVALSHA
 * first and falls back to EVAL (which also caches the script in Redis) only
 * on an explicit NOSCRIPT reply.
 */

#ifndef RL_SCRIPT_HPP
#define RL_SCRIPT_HPP

#include "rl_api.h"

#include <cstdint>
#include <string>
#include <vector>


namespace rl {

/*
 * One command carries the checks a worker queued in one turn of its event
 * loop (see rl_script.cpp for its form).  At most this many checks, and
 * this many limits in all (the plan numbers them in a byte):
 */
constexpr size_t  kMaxBatch = 64;
constexpr size_t  kMaxBatchLimits = 255;

const std::string &limitScript();
const std::string &limitSha();


/* a limit as the script takes it */
struct LimitSpec {
    char      algorithm;    /* l, s, g or f */
    uint64_t  requests;
    uint64_t  window_ms;
    uint64_t  burst;        /* requests when burst= is unset */

    bool operator==(const LimitSpec &o) const noexcept
    {
        return algorithm == o.algorithm && requests == o.requests
               && window_ms == o.window_ms && burst == o.burst;
    }
};


/*
 * The keys and the limits of a check of n limits, in vectors whose capacity
 * is reused; throws std::bad_alloc.
 */
void buildCheck(const rl_limit_arg_t *limits, size_t n,
    std::vector<std::string> *keys, std::vector<LimitSpec> *specs);


/*
 * The command of one batch: add() its checks in order (at most kMaxBatch,
 * of kMaxBatchLimits limits in all), then command().  A check like the one
 * before it (same keys, same limits) joins its group.  The buffers keep
 * their capacity from one batch to the next; add() and command() throw
 * std::bad_alloc.
 */
class ScriptCall {
public:
    void clear() noexcept;
    void add(const std::vector<std::string> &keys,
        const std::vector<LimitSpec> &specs);

    /* EVALSHA digest, or EVAL script, with the batch's arguments */
    const std::string &command(bool eval);

private:
    std::vector<LimitSpec>             specs_;
    std::string                        plan_;
    std::vector<const std::string *>   keys_;
    const std::vector<std::string>    *lastKeys_ = nullptr;
    const std::vector<LimitSpec>      *lastSpecs_ = nullptr;
    size_t                             lastGroup_ = 0;  /* its m in plan_ */
    std::vector<std::string>           specArgs_;
    std::string                        numKeys_;
    std::string                        command_;
};

} /* namespace rl */

#endif /* RL_SCRIPT_HPP */
