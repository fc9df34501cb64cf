/*
 * The event-loop seam on nginx: the only core file that includes nginx
 * headers.
 *
 * hiredis' socket is wrapped in an ngx_connection_t taken from the worker's
 * connection pool, so its events go through nginx's event module like any
 * other connection.  The events are level-triggered (NGX_LEVEL_EVENT on add
 * and delete alike): hiredis 0.14 reads at most 16 KiB per call, and with
 * nginx's edge-triggered epoll the rest of a large pipelined reply would sit
 * unread until more data arrived.
 *
 * Writes are flushed, not polled for: when a command is queued on a
 * connected socket, its write event is posted, so everything the requests
 * of one event-loop iteration queued goes out in one write at the end of
 * that iteration, with no epoll_ctl calls and no extra epoll_wait round.
 * Only a write that would block (or a connect in progress) registers the
 * write event with the event module.
 *
 * hiredis calls cleanup just before it closes the socket, possibly from
 * inside our own read or write handler; after cleanup nothing here touches
 * the connection or the context again.
 */

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
}

#include "rl_limit.hpp"
#include "rl_loop.hpp"
#include "rl_ngx_loop.h"

#include <new>


namespace {

class NgxTimer : public rl::Timer {
public:
    NgxTimer(ngx_log_t *log, rl::TimerHandler handler, void *data,
        bool cancelable) noexcept
        : handler_(handler), data_(data)
    {
        ngx_memzero(&ev_, sizeof(ngx_event_t));
        ev_.handler = onTimer;
        ev_.data = this;
        ev_.log = log;
        ev_.cancelable = cancelable ? 1 : 0;
    }

    ~NgxTimer() override
    {
        stop();
    }

    /* 0: at the end of this loop turn, after its I/O events */
    void
    start(uint64_t ms) noexcept override
    {
        if (ms == 0) {
            if (ev_.timer_set) {
                ngx_del_timer(&ev_);
            }

            if (!ev_.posted) {
                ngx_post_event(&ev_, &ngx_posted_events);
            }

            return;
        }

        if (ev_.posted) {
            ngx_delete_posted_event(&ev_);
        }

        ngx_add_timer(&ev_, (ngx_msec_t) ms);
    }

    void
    stop() noexcept override
    {
        if (ev_.timer_set) {
            ngx_del_timer(&ev_);
        }

        if (ev_.posted) {
            ngx_delete_posted_event(&ev_);
        }
    }

    bool
    active() const noexcept override
    {
        return ev_.timer_set || ev_.posted;
    }

private:
    static void
    onTimer(ngx_event_t *ev) noexcept
    {
        NgxTimer  *t = static_cast<NgxTimer *>(ev->data);

        t->handler_(t->data_);
    }

    ngx_event_t       ev_;
    rl::TimerHandler  handler_;
    void             *data_;
};


class NgxLoop : public rl::Loop {
public:
    explicit NgxLoop(ngx_log_t *log) noexcept : log_(log) {}

    int
    attach(redisAsyncContext *ac) noexcept override
    {
        ngx_connection_t  *c;

        if (ac->ev.data != nullptr) {
            return REDIS_ERR;
        }

        c = ngx_get_connection(ac->c.fd, log_);
        if (c == nullptr) {
            return REDIS_ERR;
        }

        c->data = ac;
        c->read->handler = onRead;
        c->write->handler = onWrite;
        c->read->log = log_;
        c->write->log = log_;

        ac->ev.data = c;
        ac->ev.addRead = addRead;
        ac->ev.delRead = delRead;
        ac->ev.addWrite = addWrite;
        ac->ev.delWrite = delWrite;
        ac->ev.cleanup = cleanup;

        /* as hiredis' own adapters: writability tells that connect() ended */
        addRead(c);
        addWrite(c);

        return REDIS_OK;
    }

    std::unique_ptr<rl::Timer>
    createTimer(rl::TimerHandler handler, void *data, bool cancelable)
        override
    {
        return std::unique_ptr<rl::Timer>(
            new NgxTimer(log_, handler, data, cancelable));
    }

    uint64_t
    nowMs() noexcept override
    {
        return ngx_current_msec;
    }

    void
    log(rl_log_level_e level, const char *msg) noexcept override
    {
        static const ngx_uint_t  levels[] = {
            NGX_LOG_ERR, NGX_LOG_WARN, NGX_LOG_NOTICE, NGX_LOG_INFO,
            NGX_LOG_DEBUG
        };

        ngx_log_error(levels[level], log_, 0, "%s", msg);
    }

private:
    static void
    onRead(ngx_event_t *ev) noexcept
    {
        ngx_connection_t   *c = static_cast<ngx_connection_t *>(ev->data);
        redisAsyncContext  *ac = static_cast<redisAsyncContext *>(c->data);

        /* a reply hiredis would buffer without end fails the connection */
        if (rl::ReplyGuard::beforeRead(ac)) {
            redisAsyncHandleRead(ac);
        }
    }

    static void
    onWrite(ngx_event_t *ev) noexcept
    {
        ngx_connection_t  *c = static_cast<ngx_connection_t *>(ev->data);

        /* hiredis asks for the write event again only if this write blocks */
        flushing_ = c;
        redisAsyncHandleWrite(static_cast<redisAsyncContext *>(c->data));
        flushing_ = nullptr;
    }

    static void
    addRead(void *data) noexcept
    {
        ngx_connection_t  *c = static_cast<ngx_connection_t *>(data);

        if (!c->read->active) {
            (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
        }
    }

    static void
    delRead(void *data) noexcept
    {
        ngx_connection_t  *c = static_cast<ngx_connection_t *>(data);

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
        }
    }

    static void
    addWrite(void *data) noexcept
    {
        ngx_connection_t   *c = static_cast<ngx_connection_t *>(data);
        redisAsyncContext  *ac = static_cast<redisAsyncContext *>(c->data);

        if (c->write->active || c->write->posted) {
            return;
        }

        if (c == flushing_ || !(ac->c.flags & REDIS_CONNECTED)) {
            (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
            return;
        }

        ngx_post_event(c->write, &ngx_posted_events);
    }

    static void
    delWrite(void *data) noexcept
    {
        ngx_connection_t  *c = static_cast<ngx_connection_t *>(data);

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
        }
    }

    /* hiredis closes the socket itself right after this */
    static void
    cleanup(void *data) noexcept
    {
        ngx_connection_t  *c = static_cast<ngx_connection_t *>(data);

        delRead(c);
        delWrite(c);

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ngx_free_connection(c);

        /* marks events epoll already returned for this socket as stale */
        c->fd = (ngx_socket_t) -1;
    }

    ngx_log_t  *log_;

    /* the connection whose write handler runs (a worker has one thread) */
    static ngx_connection_t  *flushing_;
};


ngx_connection_t  *NgxLoop::flushing_;

} /* namespace */


extern "C" rl_loop_t *
rl_ngx_loop_create(ngx_log_t *log) noexcept
{
    return new (std::nothrow) NgxLoop(log);
}


extern "C" void
rl_ngx_loop_destroy(rl_loop_t *loop) noexcept
{
    delete loop;
}
