/* The event-loop seam on libevent (unit tests only). */

#include "rl_event_loop.h"
#include "rl_loop.hpp"

#include <hiredis/adapters/libevent.h>

#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <vector>


namespace {

class EventTimer : public rl::Timer {
public:
    EventTimer(event_base *base, rl::TimerHandler handler, void *data,
        bool cancelable, std::set<EventTimer *> *all)
        : handler_(handler), data_(data), cancelable_(cancelable), all_(all)
    {
        all_->insert(this);

        ev_ = evtimer_new(base, onTimer, this);
        if (ev_ == nullptr) {
            all_->erase(this);
            throw std::bad_alloc();
        }
    }

    ~EventTimer() override
    {
        all_->erase(this);
        event_free(ev_);
    }

    bool cancelable() const noexcept { return cancelable_; }

    void
    start(uint64_t ms) noexcept override
    {
        timeval  tv;

        tv.tv_sec = (time_t) (ms / 1000);
        tv.tv_usec = (suseconds_t) (ms % 1000) * 1000;
        evtimer_add(ev_, &tv);
    }

    void
    stop() noexcept override
    {
        evtimer_del(ev_);
    }

    bool
    active() const noexcept override
    {
        return evtimer_pending(ev_, nullptr);
    }

private:
    static void
    onTimer(evutil_socket_t, short, void *arg)
    {
        EventTimer  *t = static_cast<EventTimer *>(arg);

        t->handler_(t->data_);
    }

    event                   *ev_;
    rl::TimerHandler         handler_;
    void                    *data_;
    bool                     cancelable_;
    std::set<EventTimer *>  *all_;
};


class EventLoop : public rl::Loop {
public:
    explicit EventLoop(event_base *base) : base_(base) {}

    int
    attach(redisAsyncContext *ac) noexcept override
    {
        return redisLibeventAttach(ac, base_);
    }

    std::unique_ptr<rl::Timer>
    createTimer(rl::TimerHandler handler, void *data, bool cancelable)
        override
    {
        return std::unique_ptr<rl::Timer>(
            new EventTimer(base_, handler, data, cancelable, &timers_));
    }

    size_t
    uncancelable() const noexcept
    {
        size_t  n = 0;

        for (const EventTimer *t : timers_) {
            n += !t->cancelable() && t->active();
        }

        return n;
    }

    uint64_t
    nowMs() noexcept override
    {
        timespec  ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
    }

    void
    log(rl_log_level_e level, const char *msg) noexcept override
    {
        try {
            lines_.emplace_back(msg);
        } catch (...) {
        }

        if (getenv("RL_TEST_VERBOSE")) {
            std::fprintf(stderr, "[log %d] %s\n", (int) level, msg);
        }
    }

    size_t
    logged(const char *text) const noexcept
    {
        size_t  n = 0;

        for (const auto &l : lines_) {
            if (l.find(text) != std::string::npos) {
                n++;
            }
        }

        return n;
    }

private:
    event_base                *base_;
    std::vector<std::string>   lines_;
    std::set<EventTimer *>     timers_;
};

} /* namespace */


extern "C" rl_loop_t *
rl_event_loop_create(struct event_base *base) noexcept
{
    return new (std::nothrow) EventLoop(base);
}


extern "C" void
rl_event_loop_destroy(rl_loop_t *loop) noexcept
{
    delete loop;
}


extern "C" size_t
rl_event_loop_logged(rl_loop_t *loop, const char *text) noexcept
{
    return static_cast<EventLoop *>(loop)->logged(text);
}


extern "C" size_t
rl_event_loop_uncancelable(rl_loop_t *loop) noexcept
{
    return static_cast<EventLoop *>(loop)->uncancelable();
}
