/*
 * The per-worker Redis client: one persistent connection, commands of
 * concurrent checks pipelined on it, a deadline per command, and a breaker
 * that answers at once while Redis is known to be down and reconnects in the
 * background with capped, jittered backoff.
 *
 * Connection states:
 *
 *   Idle --connect--> Connecting --(connected, AUTH/SELECT ok)--> Ready
 *   Connecting --(refused, connect_timeout, AUTH error)--> Down
 *   Ready --(closed, garbage, timeouts piled up, READONLY)--> Down
 *   Down --(backoff timer)--> Connecting
 *
 * With Sentinel, Connecting starts by asking the sentinels, one after the
 * other, for the master's address (on a short-lived connection), and the
 * handshake adds ROLE: a node that is not the master is dropped.  The
 * address is forgotten whenever the connection is lost or a node answers
 * READONLY, so every reconnect asks the sentinels again and a failover is
 * followed without a reload.  A subscription to +switch-master on one
 * sentinel moves the connection at once, before the old master is demoted
 * (until then it would still accept writes the new master never sees).
 *
 * While "down" (from the first failure until a connection is Ready again)
 * checks get an error at once and never wait.
 */

#ifndef RL_REDIS_CLIENT_HPP
#define RL_REDIS_CLIENT_HPP

#include "rl_limit.hpp"
#include "rl_loop.hpp"
#include "rl_script.hpp"

#include <memory>
#include <string>
#include <vector>


namespace rl {
class RedisClient;
}


/*
 * One check in flight: owned by the client, queued until the end of the
 * loop turn, then sent in a batch and freed when the batch's reply comes.
 */
struct rl_check_s {
    rl::RedisClient         *client;
    rl_check_s              *prev;
    rl_check_s              *next;

    /* NULL once the check was cancelled or timed out: nobody listens */
    rl_check_done_pt         done;
    void                    *data;

    uint64_t                 deadline;   /* loop ms */
    uint64_t                 sent;       /* steady clock, us */
    bool                     expired;
    size_t                   nlimits;
    std::vector<std::string> keys;
    std::vector<rl::LimitSpec> specs;
};


namespace rl {

using Check = ::rl_check_s;


/* the checks of one command */
struct Batch {
    RedisClient          *client;
    std::vector<Check *>  checks;
    size_t                nlimits;    /* of all its checks */
    bool                  retried;    /* EVAL already sent after NOSCRIPT */
};


class RedisClient {
public:
    RedisClient(Loop *loop, const rl_redis_conf_t *conf);
    ~RedisClient();

    RedisClient(const RedisClient &) = delete;
    RedisClient &operator=(const RedisClient &) = delete;

    Check *start(const rl_limit_arg_t *limits, size_t n, rl_check_done_pt done,
        void *data, rl_verdict_t *now) noexcept;
    void cancel(Check *check) noexcept;
    bool up() const noexcept { return state_ == State::Ready; }

    /* checks in flight beyond which a worker answers at once */
    static constexpr size_t  kMaxInFlight = 10000;

    /* consecutive command timeouts that mark Redis as down */
    static constexpr unsigned  kMaxTimeouts = 3;

private:
    enum class State { Idle, Connecting, Ready, Down };

    void connect() noexcept;
    void discover() noexcept;
    void sentinelFailed(const char *why) noexcept;
    void closeSentinel() noexcept;
    void subscribe() noexcept;
    void subscribeNext(uint64_t ms) noexcept;
    void closeSubscription() noexcept;
    void switchMaster(const redisReply *msg) noexcept;
    void sendHandshake() noexcept;
    void handshakeDone() noexcept;
    void failed(rl_error_e kind, const char *what, const char *why) noexcept;
    void breakConnection(rl_error_e kind, const char *what,
        const char *why) noexcept;
    void flush() noexcept;
    Batch *takeBatch() noexcept;
    void releaseBatch(Batch *b) noexcept;
    void dispatch(Batch *b) noexcept;
    bool send(Batch *b) noexcept;
    void answer(Batch *b, const redisReply *reply,
        const redisAsyncContext *ac) noexcept;
    void finish(Check *c, const redisReply *reply, size_t at,
        const redisAsyncContext *ac) noexcept;
    void unlink(Check *c) noexcept;
    void expire() noexcept;
    void armDeadline() noexcept;
    void logOnce(rl_log_level_e level, const char *msg) noexcept;
    uint64_t backoffMs() noexcept;
    void reportState(bool up) noexcept;

    const char *protocolError(const redisAsyncContext *ac) const noexcept;
    static void onConnect(const redisAsyncContext *ac, int status)
        noexcept;
    static void onDisconnect(const redisAsyncContext *ac, int status)
        noexcept;
    static void onHandshake(redisAsyncContext *ac, void *reply, void *data)
        noexcept;
    static void onReply(redisAsyncContext *ac, void *reply, void *data)
        noexcept;
    static void onFlush(void *data) noexcept;
    static void onRole(redisAsyncContext *ac, void *reply, void *data)
        noexcept;
    static void onSentinelConnect(const redisAsyncContext *ac, int status)
        noexcept;
    static void onSentinelReply(redisAsyncContext *ac, void *reply,
        void *data) noexcept;
    static void onSwitch(redisAsyncContext *ac, void *reply, void *data)
        noexcept;
    static void onSubscriptionDisconnect(const redisAsyncContext *ac,
        int status) noexcept;
    static void onResubscribe(void *data) noexcept;
    static void onDeadline(void *data) noexcept;
    static void onConnectTimeout(void *data) noexcept;
    static void onReconnect(void *data) noexcept;

    Loop                   *loop_;
    std::string             host_;
    int                     port_;
    std::string             unixPath_;
    int                     db_;
    std::string             username_;
    std::string             password_;
    bool                    auth_;
    uint64_t                connectTimeout_;
    uint64_t                timeout_;
    std::string             addr_;       /* for log lines */

    /* Sentinel: numeric addresses, asked in turn */
    std::vector<std::pair<std::string, int>>  sentinels_;
    std::string             masterName_;
    std::string             sentinelPassword_;
    bool                    sentinelAuth_ = false;
    size_t                  nextSentinel_ = 0;
    size_t                  sentinelTries_ = 0;
    bool                    masterKnown_ = false;
    redisAsyncContext      *sac_ = nullptr;
    redisAsyncContext      *subAc_ = nullptr;    /* +switch-master */
    ReplyGuard              sentinelGuard_;      /* sac_'s reader */
    ReplyGuard              subGuard_;           /* subAc_'s reader */
    size_t                  subSentinel_ = 0;
    bool                    subConfirmed_ = false;   /* "subscribe" came */
    void                  (*onState_)(void *data, int up);
    void                   *stateData_;
    bool                    upReported_ = false;

    redisAsyncContext      *ac_ = nullptr;
    ReplyGuard              guard_;              /* ac_'s reader */
    State                   state_ = State::Idle;
    bool                    connected_ = false;
    unsigned                handshakePending_ = 0;
    uint64_t                connectDeadline_ = 0;
    bool                    down_ = false;
    unsigned                failures_ = 0;
    unsigned                timeouts_ = 0;

    /* what a NULL reply means while a connection we broke is being freed */
    rl_error_e              lostKind_ = RL_ERR_CONNECT;

    /* why Redis is known to be down, for the checks answered at once */
    rl_error_e              downKind_ = RL_ERR_CONNECT;
    std::string             lastError_;
    std::string             lastLogged_;

    Check                  *head_ = nullptr;
    Check                  *tail_ = nullptr;
    size_t                  inFlight_ = 0;

    /* the queued checks whose callback is still to come (done set) */
    size_t                  waiting_ = 0;

    /* finished checks kept for reuse, linked by next: no allocation of
     * ours per request once the worker is warm */
    Check                  *free_ = nullptr;
    size_t                  nfree_ = 0;
    static constexpr size_t kMaxFree = 256;

    Check *acquire() noexcept;
    void release(Check *c) noexcept;

    /* checks started in this loop turn, sent at its end (flushTimer_) */
    std::vector<Check *>    pending_;
    std::vector<Batch *>    spareBatches_;
    /* the command being sent, its capacity reused */
    ScriptCall              call_;

    std::unique_ptr<Timer>  flushTimer_;
    std::unique_ptr<Timer>  deadlineTimer_;
    std::unique_ptr<Timer>  orphanTimer_;    /* cancelled checks only */
    std::unique_ptr<Timer>  connectTimer_;
    std::unique_ptr<Timer>  reconnectTimer_;
    std::unique_ptr<Timer>  subscribeTimer_;
    uint64_t                seed_;
};

} /* namespace rl */


struct rl_client_s {
    rl::RedisClient  client;

    rl_client_s(rl::Loop *loop, const rl_redis_conf_t *conf)
        : client(loop, conf) {}
};

#endif /* RL_REDIS_CLIENT_HPP */
