/*
 * The event-loop seam of the core.  The Redis client drives hiredis and its
 * own deadlines only through this interface, so the same client runs on
 * nginx's event loop in production (rl_ngx_loop.cpp) and on libevent in the
 * unit tests (t/unit/rl_event_loop.cpp).
 */

#ifndef RL_LOOP_HPP
#define RL_LOOP_HPP

#include "rl_api.h"

#include <hiredis/async.h>

#include <cstdint>
#include <memory>


namespace rl {

class Timer {
public:
    virtual ~Timer() = default;

    /* (re)arms the timer to fire once, ms from now; 0: once the loop has
     * handled the I/O events of its current turn */
    virtual void start(uint64_t ms) noexcept = 0;
    virtual void stop() noexcept = 0;
    virtual bool active() const noexcept = 0;
};


using TimerHandler = void (*)(void *data) noexcept;

} /* namespace rl */


/*
 * The opaque rl_loop_t of the C API is this class.  Implementations own
 * whatever glue they create in attach() and release it in the hiredis
 * cleanup hook; hiredis calls the hooks (addRead ... cleanup) and the
 * implementations must accept repeated add and del calls.
 */
struct rl_loop_s {
    virtual ~rl_loop_s() = default;

    /* installs ac->ev hooks; returns REDIS_OK or REDIS_ERR */
    virtual int attach(redisAsyncContext *ac) noexcept = 0;

    /*
     * A one-shot timer.  A cancelable timer does not keep a gracefully
     * exiting nginx worker alive; a timer guarding in-flight requests must
     * not be cancelable.  Throws std::bad_alloc.
     */
    virtual std::unique_ptr<rl::Timer> createTimer(rl::TimerHandler handler,
        void *data, bool cancelable) = 0;

    /* a monotonic clock, milliseconds */
    virtual uint64_t nowMs() noexcept = 0;

    virtual void log(rl_log_level_e level, const char *msg) noexcept = 0;
};


namespace rl {
using Loop = ::rl_loop_s;
}

#endif /* RL_LOOP_HPP */
