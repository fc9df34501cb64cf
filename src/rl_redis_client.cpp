/*
 * The per-worker Redis client (see rl_redis_client.hpp for the states).
 *
 * Ownership: a check is allocated here when its command is queued in hiredis
 * and freed here in that command's hiredis callback, which hiredis always
 * calls exactly once (with a NULL reply when the context is freed).  The
 * caller's callback is called at most once before that: on the reply, on the
 * deadline, or when the connection is lost; a cancelled check only waits for
 * its hiredis callback.  Nothing here holds on to a redisAsyncContext that
 * hiredis has freed: ac_ is cleared in the connect and disconnect callbacks
 * and before every redisAsyncFree().
 */

#include "rl_redis_client.hpp"
#include "rl_limit.hpp"
#include "rl_script.hpp"

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <new>


namespace rl {

namespace {

const char  kFallback[] = ". Using fallback mode.";


/* a port as Redis and Sentinel write it: 1 to 65535, in digits only */
bool
parsePort(const char *s, size_t len, int *port) noexcept
{
    unsigned long  n = 0;

    if (len == 0 || len > 5) {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }

        n = n * 10 + (unsigned long) (s[i] - '0');
    }

    if (n == 0 || n > 65535) {
        return false;
    }

    *port = (int) n;
    return true;
}


void
errorVerdict(rl_verdict_t *v, rl_error_e err, const char *why) noexcept
{
    v->error = err;
    v->errstr = why;
    v->allowed = 0;
    v->nlimits = 0;
    v->latency_us = 0;
}


/* a finer clock than the loop's cached milliseconds, for latency only */
uint64_t
steadyUs() noexcept
{
    return (uint64_t) std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
}

} /* namespace */


RedisClient::RedisClient(Loop *loop, const rl_redis_conf_t *conf)
    : loop_(loop),
      host_(conf->host ? conf->host : ""),
      port_(conf->port),
      unixPath_(conf->unix_path ? conf->unix_path : ""),
      db_(conf->db),
      username_(conf->username ? conf->username : ""),
      password_(conf->password ? conf->password : ""),
      auth_(conf->password != nullptr),
      connectTimeout_(conf->connect_timeout_ms),
      timeout_(conf->timeout_ms),
      onState_(conf->on_state),
      stateData_(conf->state_data)
{
    for (size_t i = 0; i < conf->nsentinels; i++) {
        sentinels_.emplace_back(conf->sentinel_hosts[i],
                                conf->sentinel_ports[i]);
    }

    if (!sentinels_.empty()) {
        masterName_ = conf->master_name ? conf->master_name : "";
        sentinelAuth_ = conf->sentinel_password != nullptr;
        sentinelPassword_ = sentinelAuth_ ? conf->sentinel_password : "";
        unixPath_.clear();
    }

    addr_ = unixPath_.empty() ? host_ + ":" + std::to_string(port_)
                              : "unix:" + unixPath_;

    if (!sentinels_.empty()) {
        addr_ = "sentinel master " + masterName_;
    }

    flushTimer_ = loop_->createTimer(onFlush, this, false);
    deadlineTimer_ = loop_->createTimer(onDeadline, this, false);
    orphanTimer_ = loop_->createTimer(onDeadline, this, true);
    connectTimer_ = loop_->createTimer(onConnectTimeout, this, true);
    reconnectTimer_ = loop_->createTimer(onReconnect, this, true);
    subscribeTimer_ = loop_->createTimer(onResubscribe, this, true);

    seed_ = loop_->nowMs() ^ reinterpret_cast<uintptr_t>(this);

    if (!sentinels_.empty()) {
        subscribe();
    }

    connect();
}


RedisClient::~RedisClient()
{
    /* nobody listens any more: a worker is exiting */
    for (Check *c = head_; c; c = c->next) {
        c->done = nullptr;
    }

    waiting_ = 0;

    reportState(false);

    flushTimer_->stop();
    deadlineTimer_->stop();
    orphanTimer_->stop();
    connectTimer_->stop();
    reconnectTimer_->stop();
    subscribeTimer_->stop();

    closeSentinel();
    closeSubscription();

    if (ac_) {
        redisAsyncContext  *ac = ac_;

        ac_ = nullptr;
        redisAsyncFree(ac);
    }

    /* the checks still queued never reached hiredis */
    while (head_) {
        Check  *c = head_;

        head_ = c->next;
        delete c;
    }

    while (free_) {
        Check  *c = free_;

        free_ = c->next;
        delete c;
    }

    for (Batch *b : spareBatches_) {
        delete b;
    }
}


void
RedisClient::connect() noexcept
{
    redisAsyncContext  *ac;

    connected_ = false;
    handshakePending_ = 0;
    lostKind_ = RL_ERR_CONNECT;

    if (!sentinels_.empty() && !masterKnown_) {
        discover();
        return;
    }

    ac = unixPath_.empty() ? redisAsyncConnect(host_.c_str(), port_)
                           : redisAsyncConnectUnix(unixPath_.c_str());

    if (ac == nullptr) {
        failed(RL_ERR_CONNECT, "Failed to connect to Redis: ",
               "out of memory");
        return;
    }

    if (ac->err) {
        std::string  why(ac->errstr);

        redisAsyncFree(ac);
        failed(RL_ERR_CONNECT, "Failed to connect to Redis: ", why.c_str());
        return;
    }

    if (loop_->attach(ac) != REDIS_OK) {
        redisAsyncFree(ac);
        failed(RL_ERR_CONNECT, "Failed to connect to Redis: ",
               "cannot watch the socket");
        return;
    }

    ac->data = this;
    guard_.attach(ac->c.reader, ac);
    redisAsyncSetConnectCallback(ac, onConnect);
    redisAsyncSetDisconnectCallback(ac, onDisconnect);

    ac_ = ac;
    state_ = State::Connecting;
    connectDeadline_ = loop_->nowMs() + connectTimeout_;
    connectTimer_->start(connectTimeout_);

    sendHandshake();
}


/*
 * AUTH and SELECT are queued at once, ahead of any check: hiredis writes them
 * when the socket connects, and Redis answers in order, so a check queued
 * meanwhile never runs unauthenticated or on the wrong database.
 */
void
RedisClient::sendHandshake() noexcept
{
    const char  *argv[3];
    size_t       lens[3];
    int          argc = 0;

    if (auth_) {
        argv[argc] = "AUTH";
        lens[argc++] = 4;

        if (!username_.empty()) {
            argv[argc] = username_.data();
            lens[argc++] = username_.size();
        }

        argv[argc] = password_.data();
        lens[argc++] = password_.size();

        if (redisAsyncCommandArgv(ac_, onHandshake, this, argc, argv, lens)
            == REDIS_OK)
        {
            handshakePending_++;
        }
    }

    if (!sentinels_.empty()) {
        argv[0] = "ROLE";
        lens[0] = 4;

        if (redisAsyncCommandArgv(ac_, onRole, this, 1, argv, lens)
            == REDIS_OK)
        {
            handshakePending_++;
        }
    }

    if (db_ != 0) {
        std::string  db = std::to_string(db_);

        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db.c_str();
        lens[1] = db.size();

        if (redisAsyncCommandArgv(ac_, onHandshake, this, 2, argv, lens)
            == REDIS_OK)
        {
            handshakePending_++;
        }
    }

    /* a connect alone proves nothing: Ready needs a reply from Redis */
    argv[0] = "PING";
    lens[0] = 4;

    if (redisAsyncCommandArgv(ac_, onHandshake, this, 1, argv, lens)
        == REDIS_OK)
    {
        handshakePending_++;
    }
}


void
RedisClient::handshakeDone() noexcept
{
    char  msg[256];

    connectTimer_->stop();
    state_ = State::Ready;
    timeouts_ = 0;
    lastError_.clear();
    reportState(true);

    if (down_) {
        down_ = false;
        std::snprintf(msg, sizeof(msg),
                      "Redis connection restored, rate limiting resumed "
                      "(redis: %s)", addr_.c_str());
        lastLogged_.clear();
        loop_->log(RL_LOG_NOTICE, msg);

    } else {
        std::snprintf(msg, sizeof(msg), "connected to Redis (redis: %s)",
                      addr_.c_str());
        loop_->log(RL_LOG_INFO, msg);
    }
}


/*
 * The connection failed or was lost: Redis is now known to be down.  Checks
 * get the fallback answer at once until a new connection is Ready.
 */
void
RedisClient::failed(rl_error_e kind, const char *what, const char *why)
    noexcept
{
    char    msg[512];
    size_t  n;

    connectTimer_->stop();
    state_ = State::Down;
    connected_ = false;
    down_ = true;
    failures_++;
    reportState(false);

    /* the next attempt asks the sentinels again, starting with the one
     * that answered last */
    masterKnown_ = false;
    sentinelTries_ = 0;

    downKind_ = kind;

    try {
        lastError_ = why;
    } catch (...) {
    }

    /* Redis' own messages may end with a period; ours adds one */
    n = std::strlen(why);
    while (n > 0 && why[n - 1] == '.') {
        n--;
    }

    std::snprintf(msg, sizeof(msg), "%s%.*s%s (redis: %s)", what, (int) n,
                  why, kFallback, addr_.c_str());
    logOnce(RL_LOG_ERR, msg);

    reconnectTimer_->start(backoffMs());
}


void
RedisClient::reportState(bool up) noexcept
{
    if (up == upReported_) {
        return;
    }

    upReported_ = up;

    if (onState_) {
        onState_(stateData_, up ? 1 : 0);
    }
}


/* log a Redis trouble line once, not again while it repeats */
void
RedisClient::logOnce(rl_log_level_e level, const char *msg) noexcept
{
    try {
        if (lastLogged_ == msg) {
            return;
        }

        lastLogged_ = msg;

    } catch (...) {
        /* logging without the memory of the last line is still logging */
    }

    loop_->log(level, msg);
}


/*
 * The first retry comes within 100 ms, then the delay doubles up to 5 s;
 * each delay is drawn from its upper half so that the workers of many hosts
 * do not reconnect in step.
 */
uint64_t
RedisClient::backoffMs() noexcept
{
    unsigned  shift = failures_ > 7 ? 6 : failures_ - 1;
    uint64_t  base = 100ULL << shift;

    if (base > 5000) {
        base = 5000;
    }

    seed_ = seed_ * 6364136223846793005ULL + 1442695040888963407ULL;

    return base / 2 + (seed_ >> 33) % (base / 2 + 1);
}


/*
 * We give up on a connection hiredis still holds.  redisAsyncFree() runs the
 * callbacks of every queued command with a NULL reply (deferred until the
 * current callback returns when called from one); lostKind_ tells them why.
 */
void
RedisClient::breakConnection(rl_error_e kind, const char *what,
    const char *why) noexcept
{
    redisAsyncContext  *ac = ac_;
    std::string         reason;

    try {
        reason = why;
        lastError_ = reason;
    } catch (...) {
    }

    ac_ = nullptr;
    lostKind_ = kind;

    if (ac) {
        redisAsyncFree(ac);
    }

    failed(kind, what, reason.c_str());
}


Check *
RedisClient::acquire() noexcept
{
    Check  *c = free_;

    if (c) {
        free_ = c->next;
        nfree_--;
        return c;
    }

    return new (std::nothrow) Check();
}


void
RedisClient::release(Check *c) noexcept
{
    if (nfree_ >= kMaxFree) {
        delete c;
        return;
    }

    c->done = nullptr;
    c->next = free_;
    free_ = c;
    nfree_++;
}


Check *
RedisClient::start(const rl_limit_arg_t *limits, size_t n,
    rl_check_done_pt done, void *data, rl_verdict_t *now) noexcept
{
    Check  *c;

    if (n == 0 || n > RL_MAX_LIMITS) {
        errorVerdict(now, RL_ERR_REPLY, "bad number of limits");
        return nullptr;
    }

    /* the script keeps one state per key: a key counts once per check */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (limits[i].key_len == limits[j].key_len
                && std::memcmp(limits[i].key, limits[j].key,
                               limits[i].key_len) == 0)
            {
                errorVerdict(now, RL_ERR_REPLY,
                             "the same key twice in one check");
                return nullptr;
            }
        }
    }

    if (down_) {
        errorVerdict(now, downKind_,
                     lastError_.empty() ? "Redis down" : lastError_.c_str());
        return nullptr;
    }

    if (inFlight_ >= kMaxInFlight) {
        errorVerdict(now, RL_ERR_BUSY, "too many checks in flight");
        return nullptr;
    }

    if (ac_ == nullptr) {
        if (sac_ == nullptr) {
            connect();
        }

        if (ac_ == nullptr) {
            errorVerdict(now, RL_ERR_CONNECT,
                         sac_ ? "asking Sentinel for the master"
                              : "Redis down");
            return nullptr;
        }
    }

    c = acquire();
    if (c == nullptr) {
        errorVerdict(now, RL_ERR_BUSY, "out of memory");
        return nullptr;
    }

    try {
        buildCheck(limits, n, &c->keys, &c->specs);
        pending_.push_back(c);

    } catch (...) {
        release(c);
        errorVerdict(now, RL_ERR_BUSY, "out of memory");
        return nullptr;
    }

    c->client = this;
    c->done = done;
    waiting_++;
    c->data = data;
    c->nlimits = n;
    c->expired = false;
    c->sent = steadyUs();

    /* while connecting, a check may also wait out the connect timeout */
    c->deadline = loop_->nowMs() + timeout_;

    if (state_ == State::Connecting && connectDeadline_ + timeout_
                                       > c->deadline)
    {
        c->deadline = connectDeadline_ + timeout_;
    }

    /*
     * Deadlines never decrease along the queue, so one timer armed for the
     * oldest live check serves all; a check queued right after the first
     * connect may wait at most as long as those queued during it.
     */
    if (tail_ && tail_->deadline > c->deadline) {
        c->deadline = tail_->deadline;
    }

    c->prev = tail_;
    c->next = nullptr;

    if (tail_) {
        tail_->next = c;
    } else {
        head_ = c;
    }

    tail_ = c;
    inFlight_++;

    if (!flushTimer_->active()) {
        flushTimer_->start(0);
    }

    if (!deadlineTimer_->active()) {
        armDeadline();
    }

    return c;
}


/*
 * The checks of one loop turn go out together, at its end: one command, one
 * script call in Redis and one reply for up to kMaxBatch of them, instead of
 * one each.  Checks cancelled before that are dropped: never sent, they
 * count nowhere.
 */
void
RedisClient::flush() noexcept
{
    std::vector<Check *>  queued;
    Batch                *b = nullptr;

    /* a verdict given here may start a check: it waits for the next turn */
    queued.swap(pending_);

    for (Check *c : queued) {
        if (c->done == nullptr) {
            unlink(c);
            continue;
        }

        if (b == nullptr) {
            b = takeBatch();

            if (b == nullptr) {
                finish(c, nullptr, 0, nullptr);
                continue;
            }
        }

        if (b->nlimits + c->nlimits > kMaxBatchLimits) {
            dispatch(b);
            b = takeBatch();

            if (b == nullptr) {
                finish(c, nullptr, 0, nullptr);
                continue;
            }
        }

        try {
            b->checks.push_back(c);

        } catch (...) {
            finish(c, nullptr, 0, nullptr);
            continue;
        }

        b->nlimits += c->nlimits;

        if (b->checks.size() == kMaxBatch) {
            dispatch(b);
            b = nullptr;
        }
    }

    if (b) {
        dispatch(b);
    }

    if (pending_.empty()) {
        /* keep the capacity */
        queued.clear();
        pending_.swap(queued);
    }
}


Batch *
RedisClient::takeBatch() noexcept
{
    Batch  *b;

    if (spareBatches_.empty()) {
        b = new (std::nothrow) Batch();

    } else {
        b = spareBatches_.back();
        spareBatches_.pop_back();
    }

    if (b) {
        b->client = this;
        b->nlimits = 0;
        b->retried = false;
        b->checks.clear();
    }

    return b;
}


void
RedisClient::releaseBatch(Batch *b) noexcept
{
    b->checks.clear();

    try {
        spareBatches_.push_back(b);

    } catch (...) {
        delete b;
    }
}


/* sends a batch, or answers its checks at once if it cannot be sent */
void
RedisClient::dispatch(Batch *b) noexcept
{
    if (b->checks.empty()) {
        releaseBatch(b);

    } else if (!send(b)) {
        answer(b, nullptr, nullptr);
    }
}


bool
RedisClient::send(Batch *b) noexcept
{
    if (ac_ == nullptr) {
        return false;
    }

    try {
        call_.clear();

        for (Check *c : b->checks) {
            call_.add(c->keys, c->specs);
        }

        const std::string  &cmd = call_.command(b->retried);

        return redisAsyncFormattedCommand(ac_, onReply, b, cmd.data(),
                                          cmd.size())
               == REDIS_OK;

    } catch (...) {
        return false;
    }
}


/* a NULL reply: the connection is gone, or the batch never left */
void
RedisClient::answer(Batch *b, const redisReply *reply,
    const redisAsyncContext *ac) noexcept
{
    size_t  total = 0, at = 0;
    bool    fits;

    if (reply && reply->type == REDIS_REPLY_ERROR && !b->retried && ac_
        && std::strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /*
         * The script cache was flushed or Redis restarted: EVAL loads it.
         * A check nobody waits for any more (timed out, or its request
         * left) is not sent again: Redis would count it.
         */
        size_t  kept = 0;

        b->retried = true;

        for (Check *c : b->checks) {
            if (c->done) {
                b->checks[kept++] = c;

            } else {
                finish(c, reply, 0, ac);
            }
        }

        b->checks.resize(kept);

        if (kept == 0) {
            releaseBatch(b);
            return;
        }

        if (send(b)) {
            return;
        }
    }

    /* the results of each check follow those of the one before */
    for (Check *c : b->checks) {
        total += 4 * c->nlimits;
    }

    /* a reply out of shape anywhere decides none of them (each check's
     * verdict is then the error of an unexpected reply) */
    fits = batchReplyFits(reply, total);

    for (Check *c : b->checks) {
        size_t  n = 4 * c->nlimits;

        /* finish() hands c back to the free list */
        finish(c, reply, fits ? at : kNoResults, ac);
        at += n;
    }

    releaseBatch(b);
}


/*
 * O(1) but for the last waiting check: a cancelled check stays queued (it
 * may have been sent), and the deadline stays the oldest unexpired one's.
 * Only the timer's kind changes when nobody waits any more.
 */
void
RedisClient::cancel(Check *c) noexcept
{
    if (c->done) {
        c->done = nullptr;
        waiting_--;
    }

    /* nobody waits: the checks must not hold a worker that is exiting */
    if (waiting_ == 0) {
        armDeadline();
    }
}


/*
 * Why hiredis gave up reading ac, when its replies broke the protocol: bytes
 * that are not RESP, or an array our guard refused (hiredis reports that as
 * out of memory); nullptr otherwise.
 */
const char *
RedisClient::protocolError(const redisAsyncContext *ac) const noexcept
{
    if (ac == ac_ && ac->err == REDIS_ERR_OOM && guard_.refusal()) {
        return guard_.refusal();
    }

    return ac->err == REDIS_ERR_PROTOCOL ? ac->errstr : nullptr;
}


void
RedisClient::finish(Check *c, const redisReply *reply, size_t at,
    const redisAsyncContext *ac) noexcept
{
    rl_verdict_t   v;
    bool           garbage = false, readonly = false;
    const char    *protocol;

    if (reply == nullptr) {
        errorVerdict(&v, lostKind_,
                     lastError_.empty() ? "connection lost"
                                        : lastError_.c_str());

        protocol = ac ? protocolError(ac) : nullptr;

        if (protocol) {
            /* hiredis drops the connection on a reply it cannot parse */
            errorVerdict(&v, RL_ERR_REPLY, protocol);

        } else if (ac && ac->err && ac_ == ac) {
            /* Redis closed it or the socket failed: the disconnect
             * callback, which records why, comes after these replies */
            errorVerdict(&v, RL_ERR_CONNECT, ac->errstr);
        }

    } else {
        /* a late reply to an expired check does not make Redis timely */
        if (!c->expired) {
            timeouts_ = 0;
        }

        if (!decodeReply(reply, at, c->nlimits, &v)) {
            garbage = (reply->type != REDIS_REPLY_ERROR);
            readonly = !garbage && std::strstr(reply->str, "READONLY");

        } else {
            /* only a decided check proves the node works: a replica
             * answers the setup, then refuses every script */
            failures_ = 0;
        }

        v.latency_us = steadyUs() - c->sent;
    }

    if (c->done && !c->expired) {
        rl_check_done_pt  done = c->done;

        c->done = nullptr;

        /* the last waiter, answered while checks nobody waits for are
         * still queued: their timer must let an exiting worker go */
        if (--waiting_ == 0 && (c->prev || c->next)
            && deadlineTimer_->active())
        {
            armDeadline();
        }

        done(c->data, &v);
    }

    unlink(c);

    if (garbage && ac_) {
        /* the pipeline is out of step or the peer is not Redis */
        breakConnection(RL_ERR_REPLY, "Redis protocol error: ",
                        "unexpected reply");

    } else if (readonly && ac_) {
        /* a demoted master: find the new one */
        breakConnection(RL_ERR_REPLY, "Redis node is a replica: ",
                        "READONLY");
    }
}


/* takes a check off the queue and keeps it for reuse */
void
RedisClient::unlink(Check *c) noexcept
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        head_ = c->next;
    }

    if (c->next) {
        c->next->prev = c->prev;
    } else {
        tail_ = c->prev;
    }

    inFlight_--;
    release(c);

    if (head_ == nullptr) {
        deadlineTimer_->stop();
        orphanTimer_->stop();
    }
}


/*
 * Checks are queued in deadline order (see start(); a NOSCRIPT retry keeps
 * its place), so one timer armed for the oldest live check serves them all.
 * The timer is not cancelable, so that a worker shutting down gracefully
 * waits for requests still waiting for Redis; when only cancelled checks
 * are left, a cancelable one takes over: the worker must not wait for
 * checks whose requests are gone.
 */
void
RedisClient::armDeadline() noexcept
{
    uint64_t  now = loop_->nowMs();

    Check     *first = head_;
    bool       live = waiting_ > 0;

    /* the expired checks are the head of the queue (deadline order) */
    while (first && first->expired) {
        first = first->next;
    }

    deadlineTimer_->stop();
    orphanTimer_->stop();

    if (first == nullptr) {
        return;
    }

    /* only checks nobody waits for: still timed, to notice a stalled
     * Redis, but on a timer that lets an exiting worker go */
    (live ? deadlineTimer_ : orphanTimer_)->start(
        first->deadline > now ? first->deadline - now : 0);
}


/*
 * A command that timed out is not replayed: Redis may still run it, and then
 * it counts.  Its check answers now with RL_ERR_TIMEOUT and stays queued
 * until hiredis hands back its reply or drops the connection.
 */
void
RedisClient::expire() noexcept
{
    uint64_t      now = loop_->nowMs();
    rl_verdict_t  v;
    char          why[64];

    for (Check *c = head_; c && c->deadline <= now; c = c->next) {
        if (c->expired) {
            continue;
        }

        c->expired = true;
        timeouts_++;

        if (c->done) {
            rl_check_done_pt  done = c->done;

            c->done = nullptr;
            waiting_--;
            errorVerdict(&v, RL_ERR_TIMEOUT, "timed out");
            done(c->data, &v);
        }
    }

    if (timeouts_ >= kMaxTimeouts && ac_) {
        std::snprintf(why, sizeof(why), "%u checks timed out in a row",
                      timeouts_);
        breakConnection(RL_ERR_TIMEOUT, "Redis not answering: ", why);
        return;
    }

    armDeadline();
}


void
RedisClient::onConnect(const redisAsyncContext *ac, int status) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(ac->data);

    if (self == nullptr || self->ac_ != ac) {
        return;
    }

    if (status != REDIS_OK) {
        /* hiredis frees the context when this callback returns */
        std::string  why;

        try {
            why = ac->c.errstr[0] ? ac->c.errstr : "connection failed";
        } catch (...) {
        }

        self->ac_ = nullptr;
        self->failed(RL_ERR_CONNECT, "Failed to connect to Redis: ",
                     why.c_str());
        return;
    }

    self->connected_ = true;

    if (self->handshakePending_ == 0) {
        self->handshakeDone();
        return;
    }

    /* connect_timeout was for connect(2); the handshake's replies get the
     * per-command timeout like any command */
    self->connectDeadline_ = self->loop_->nowMs() + self->timeout_;
    self->connectTimer_->start(self->timeout_);
}


void
RedisClient::onDisconnect(const redisAsyncContext *ac, int status) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(ac->data);

    (void) status;

    if (self == nullptr || self->ac_ != ac) {
        /* we freed it ourselves and already know why */
        return;
    }

    /* hiredis frees the context when this callback returns */
    std::string   why;
    const char   *protocol = self->protocolError(ac);

    try {
        why = protocol ? protocol
              : ac->errstr && ac->errstr[0] ? ac->errstr
              : "Server closed the connection";
    } catch (...) {
    }

    self->ac_ = nullptr;

    if (protocol) {
        /* the peer answered bytes that are not RESP: not Redis, or broken */
        self->failed(RL_ERR_REPLY, "Redis protocol error: ", why.c_str());
        return;
    }

    self->failed(RL_ERR_CONNECT, "Redis connection lost: ", why.c_str());
}


void
RedisClient::onHandshake(redisAsyncContext *ac, void *r, void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);
    redisReply   *reply = static_cast<redisReply *>(r);

    if (self->ac_ != ac || reply == nullptr) {
        /* the connection is going away; its own callback tells why */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        std::string  why;

        try {
            why.assign(reply->str, reply->len);
        } catch (...) {
        }

        self->breakConnection(RL_ERR_AUTH,
                              "Redis refused the connection setup: ",
                              why.c_str());
        return;
    }

    /* AUTH and SELECT answer +OK; PING, sent last, +PONG: anything else is
     * not Redis, or a peer that spoke before it was asked */
    if (reply->type != REDIS_REPLY_STATUS
        || (self->handshakePending_ == 1
            && strcasecmp(reply->str, "PONG") != 0))
    {
        self->breakConnection(RL_ERR_REPLY, "Redis protocol error: ",
                              "unexpected reply to the connection setup");
        return;
    }

    if (--self->handshakePending_ == 0 && self->connected_) {
        self->handshakeDone();
    }
}


void
RedisClient::onReply(redisAsyncContext *ac, void *reply, void *data) noexcept
{
    Batch  *b = static_cast<Batch *>(data);

    b->client->answer(b, static_cast<redisReply *>(reply), ac);
}


void
RedisClient::onFlush(void *data) noexcept
{
    static_cast<RedisClient *>(data)->flush();
}


void
RedisClient::onDeadline(void *data) noexcept
{
    static_cast<RedisClient *>(data)->expire();
}


void
RedisClient::onConnectTimeout(void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);

    if (self->sac_) {
        self->sentinelFailed("Connection timed out");
        return;
    }

    if (self->state_ != State::Connecting) {
        return;
    }

    if (self->connected_) {
        self->breakConnection(RL_ERR_TIMEOUT, "Redis not answering: ",
                              "no reply to the connection setup");
        return;
    }

    self->breakConnection(RL_ERR_CONNECT, "Failed to connect to Redis: ",
                          "Connection timed out");
}


void
RedisClient::onReconnect(void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);

    if (self->ac_ == nullptr && self->sac_ == nullptr) {
        self->connect();
    }
}


/*
 * Asks one sentinel for the master's address on a connection of its own,
 * closed as soon as it answered.  The next sentinel is tried at once when
 * one fails; when all have failed, the usual backoff applies.
 */
void
RedisClient::discover() noexcept
{
    const auto          &s = sentinels_[nextSentinel_ % sentinels_.size()];
    redisAsyncContext   *sac;
    const char          *argv[3];
    size_t               lens[3];

    state_ = State::Connecting;

    try {
        addr_ = "sentinel master " + masterName_;
    } catch (...) {
    }

    sac = redisAsyncConnect(s.first.c_str(), s.second);

    if (sac == nullptr || sac->err) {
        std::string  why(sac ? sac->errstr : "out of memory");

        if (sac) {
            redisAsyncFree(sac);
        }

        sentinelFailed(why.c_str());
        return;
    }

    if (loop_->attach(sac) != REDIS_OK) {
        redisAsyncFree(sac);
        sentinelFailed("cannot watch the socket");
        return;
    }

    sac->data = this;
    sentinelGuard_.attach(sac->c.reader, sac);
    redisAsyncSetConnectCallback(sac, onSentinelConnect);
    sac_ = sac;

    if (sentinelAuth_) {
        argv[0] = "AUTH";
        lens[0] = 4;
        argv[1] = sentinelPassword_.data();
        lens[1] = sentinelPassword_.size();
        (void) redisAsyncCommandArgv(sac, onSentinelReply, this, 2, argv,
                                     lens);
    }

    argv[0] = "SENTINEL";
    lens[0] = 8;
    argv[1] = "get-master-addr-by-name";
    lens[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = masterName_.data();
    lens[2] = masterName_.size();
    (void) redisAsyncCommandArgv(sac, onSentinelReply, this, 3, argv, lens);

    connectTimer_->start(connectTimeout_);
}


void
RedisClient::closeSentinel() noexcept
{
    redisAsyncContext  *sac = sac_;

    if (sac) {
        sac_ = nullptr;
        redisAsyncFree(sac);
    }
}


void
RedisClient::sentinelFailed(const char *why) noexcept
{
    std::string  reason;
    const auto  &s = sentinels_[nextSentinel_ % sentinels_.size()];

    try {
        reason = "sentinel " + s.first + ":" + std::to_string(s.second)
                 + ": " + why;
    } catch (...) {
    }

    closeSentinel();
    connectTimer_->stop();
    nextSentinel_++;

    if (++sentinelTries_ < sentinels_.size()) {
        discover();
        return;
    }

    failed(RL_ERR_CONNECT, "Failed to discover the Redis master from "
                           "Sentinel: ", reason.c_str());
}


void
RedisClient::onSentinelConnect(const redisAsyncContext *ac, int status)
    noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(ac->data);

    if (self == nullptr || self->sac_ != ac || status == REDIS_OK) {
        return;
    }

    /* hiredis frees the context when this callback returns */
    std::string  why;

    try {
        why = ac->c.errstr[0] ? ac->c.errstr : "connection failed";
    } catch (...) {
    }

    self->sac_ = nullptr;
    self->sentinelFailed(why.c_str());
}


void
RedisClient::onSentinelReply(redisAsyncContext *ac, void *r, void *data)
    noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);
    redisReply   *reply = static_cast<redisReply *>(r);
    char          msg[256];

    if (self->sac_ != ac) {
        /* we closed it ourselves */
        return;
    }

    if (reply == nullptr) {
        /* hiredis drops the connection and frees it when this returns */
        const char  *why = self->sentinelGuard_.refusal();

        if (why == nullptr) {
            why = ac->c.errstr[0] ? ac->c.errstr : "connection lost";
        }

        self->sac_ = nullptr;
        self->sentinelFailed(why);
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS) {
        /* AUTH accepted */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        self->sentinelFailed(reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        self->sentinelFailed(reply->type == REDIS_REPLY_NIL
                             ? "unknown master name"
                             : "unexpected reply");
        return;
    }

    /* a host name would be resolved by a blocking getaddrinfo() */
    unsigned char  bin[16];

    if (std::strlen(reply->element[0]->str) != reply->element[0]->len) {
        self->sentinelFailed("the master's address holds a NUL byte");
        return;
    }

    if (inet_pton(AF_INET, reply->element[0]->str, bin) != 1
        && inet_pton(AF_INET6, reply->element[0]->str, bin) != 1)
    {
        self->sentinelFailed("the master is announced by name, not address");
        return;
    }

    int  port;

    if (!parsePort(reply->element[1]->str, reply->element[1]->len, &port)) {
        self->sentinelFailed("the master's port is not a port number");
        return;
    }

    try {
        self->host_.assign(reply->element[0]->str, reply->element[0]->len);
        self->port_ = port;
        self->addr_ = self->host_ + ":" + std::to_string(self->port_);

    } catch (...) {
        self->sentinelFailed("out of memory");
        return;
    }

    std::snprintf(msg, sizeof(msg),
                  "Sentinel reports master \"%s\" at %s",
                  self->masterName_.c_str(), self->addr_.c_str());
    self->loop_->log(RL_LOG_INFO, msg);

    self->masterKnown_ = true;
    self->closeSentinel();
    self->connectTimer_->stop();
    self->connect();
}


/*
 * One sentinel at a time tells of failovers; when its connection breaks the
 * next one is subscribed to, a second later.
 */
void
RedisClient::subscribe() noexcept
{
    const auto         &s = sentinels_[subSentinel_ % sentinels_.size()];
    redisAsyncContext  *ac;
    const char         *argv[2];
    size_t              lens[2];

    ac = redisAsyncConnect(s.first.c_str(), s.second);

    if (ac == nullptr || ac->err || loop_->attach(ac) != REDIS_OK) {
        if (ac) {
            redisAsyncFree(ac);
        }

        subscribeNext(1000);
        return;
    }

    ac->data = this;
    subGuard_.attach(ac->c.reader, ac);
    redisAsyncSetDisconnectCallback(ac, onSubscriptionDisconnect);
    subAc_ = ac;
    subConfirmed_ = false;

    /* a sentinel whose host is gone is noticed in about 30 s ... */
    (void) redisEnableKeepAlive(&ac->c);

    /* ... one that never confirms the subscription, at this timer */
    subscribeTimer_->start(connectTimeout_ + timeout_);

    if (sentinelAuth_) {
        argv[0] = "AUTH";
        lens[0] = 4;
        argv[1] = sentinelPassword_.data();
        lens[1] = sentinelPassword_.size();
        (void) redisAsyncCommandArgv(ac, nullptr, nullptr, 2, argv, lens);
    }

    argv[0] = "SUBSCRIBE";
    lens[0] = 9;
    argv[1] = "+switch-master";
    lens[1] = sizeof("+switch-master") - 1;
    (void) redisAsyncCommandArgv(ac, onSwitch, this, 2, argv, lens);
}


/* the subscription goes to the next sentinel, after ms (0: now) */
void
RedisClient::subscribeNext(uint64_t ms) noexcept
{
    subSentinel_++;

    if (ms == 0) {
        subscribe();
        return;
    }

    subscribeTimer_->start(ms);
}


void
RedisClient::closeSubscription() noexcept
{
    redisAsyncContext  *ac = subAc_;

    if (ac) {
        subAc_ = nullptr;
        redisAsyncFree(ac);
    }
}


void
RedisClient::onSwitch(redisAsyncContext *ac, void *r, void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);
    redisReply   *reply = static_cast<redisReply *>(r);

    if (self->subAc_ != ac) {
        return;
    }

    if (reply == nullptr) {
        /* the connection is gone: it failed to connect, was closed, or a
         * reply was refused (see ReplyGuard), which is worth a line */
        if (self->subGuard_.refusal()) {
            const auto  &s = self->sentinels_[self->subSentinel_
                                              % self->sentinels_.size()];
            char         msg[256];

            std::snprintf(msg, sizeof(msg),
                          "Sentinel %s:%d broke the +switch-master "
                          "subscription: %s", s.first.c_str(), s.second,
                          self->subGuard_.refusal());
            self->loop_->log(RL_LOG_WARN, msg);
        }

        self->subAc_ = nullptr;
        self->subscribeNext(1000);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        char  msg[256];

        std::snprintf(msg, sizeof(msg),
                      "Sentinel refused the +switch-master subscription: %s",
                      reply->str);
        self->loop_->log(RL_LOG_WARN, msg);

        self->closeSubscription();
        self->subscribeNext(1000);
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && std::strcmp(reply->element[0]->str, "subscribe") == 0)
    {
        self->subConfirmed_ = true;
        self->subscribeTimer_->stop();
        return;
    }

    /* [ "message", "+switch-master", "NAME OLDIP OLDPORT NEWIP NEWPORT" ] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && std::strcmp(reply->element[0]->str, "message") == 0
        && reply->element[2]->type == REDIS_REPLY_STRING)
    {
        self->switchMaster(reply->element[2]);
    }
}


void
RedisClient::switchMaster(const redisReply *msg) noexcept
{
    char  name[128], oldHost[64], oldPort[8], newHost[64], newPortText[8],
          log[512];
    int   newPort;

    unsigned char  bin[16];

    if (std::sscanf(msg->str, "%127s %63s %7s %63s %7s", name, oldHost,
                    oldPort, newHost, newPortText) != 5
        || masterName_ != name
        || !parsePort(newPortText, std::strlen(newPortText), &newPort))
    {
        return;
    }

    if (inet_pton(AF_INET, newHost, bin) != 1
        && inet_pton(AF_INET6, newHost, bin) != 1)
    {
        /* a name: ask the sentinels on the next reconnect instead */
        return;
    }

    if (ac_ && host_ == newHost && port_ == newPort) {
        /* already there (a repeated or stale message): nothing to tell */
        return;
    }

    std::snprintf(log, sizeof(log),
                  "Sentinel switched master \"%s\" from %s:%s to %s:%d",
                  name, oldHost, oldPort, newHost, newPort);
    loop_->log(RL_LOG_NOTICE, log);

    /* move now: the old master takes writes until it is demoted */
    closeSentinel();

    if (ac_) {
        redisAsyncContext  *ac = ac_;

        ac_ = nullptr;
        lostKind_ = RL_ERR_CONNECT;
        redisAsyncFree(ac);
    }

    try {
        host_ = newHost;
        port_ = newPort;
        addr_ = host_ + ":" + std::to_string(port_);
    } catch (...) {
        return;
    }

    masterKnown_ = true;
    connectTimer_->stop();
    reconnectTimer_->stop();
    connect();
}


void
RedisClient::onSubscriptionDisconnect(const redisAsyncContext *ac,
    int status) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(ac->data);

    (void) status;

    if (self == nullptr || self->subAc_ != ac) {
        return;
    }

    self->subAc_ = nullptr;
    self->subscribeNext(1000);
}


void
RedisClient::onResubscribe(void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);

    if (self->subAc_ == nullptr) {
        self->subscribe();
        return;
    }

    if (!self->subConfirmed_) {
        /* connected or not, the sentinel never confirmed: the next one */
        self->closeSubscription();
        self->subscribeNext(0);
    }
}


/* the node must be the master; sentinels may still name a demoted one */
void
RedisClient::onRole(redisAsyncContext *ac, void *r, void *data) noexcept
{
    RedisClient  *self = static_cast<RedisClient *>(data);
    redisReply   *reply = static_cast<redisReply *>(r);
    std::string   role;

    if (self->ac_ != ac || reply == nullptr) {
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == 6
        && std::memcmp(reply->element[0]->str, "master", 6) == 0)
    {
        if (--self->handshakePending_ == 0 && self->connected_) {
            self->handshakeDone();
        }

        return;
    }

    try {
        role = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
               && reply->element[0]->type == REDIS_REPLY_STRING
               ? reply->element[0]->str
               : reply->type == REDIS_REPLY_ERROR ? reply->str : "unknown";
    } catch (...) {
    }

    self->breakConnection(RL_ERR_REPLY, "Redis node is not the master: ",
                          role.c_str());
}

} /* namespace rl */


extern "C" rl_client_t *
rl_client_create(rl_loop_t *loop, const rl_redis_conf_t *conf, char *err,
    size_t err_len) noexcept
{
    try {
        return new rl_client_s(loop, conf);

    } catch (const std::exception &e) {
        std::snprintf(err, err_len, "%s", e.what());

    } catch (...) {
        std::snprintf(err, err_len, "unknown error");
    }

    return nullptr;
}


extern "C" void
rl_client_destroy(rl_client_t *client) noexcept
{
    delete client;
}


extern "C" rl_check_t *
rl_check_start(rl_client_t *client, const rl_limit_arg_t *limits, size_t n,
    rl_check_done_pt done, void *data, rl_verdict_t *now) noexcept
{
    return client->client.start(limits, n, done, data, now);
}


extern "C" void
rl_check_cancel(rl_check_t *check) noexcept
{
    check->client->cancel(check);
}


extern "C" int
rl_client_up(rl_client_t *client) noexcept
{
    return client->client.up();
}
