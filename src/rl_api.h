/*
 * The C ABI between the nginx shim and the C++ core.
 *
 * Only C types cross it: opaque handles, POD structs, plain functions.
 * Every function here is noexcept in C++: the core catches its own
 * exceptions and turns them into error codes.  Memory allocated by the core
 * (clients, checks) is freed by the core; memory the shim passes in (limits,
 * keys, configuration strings) is only read during the call.
 */

#ifndef RL_API_H
#define RL_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define RL_NOEXCEPT  noexcept
extern "C" {
#else
#define RL_NOEXCEPT
#endif


/* most rate_limit lines that may apply to one request */
#define RL_MAX_LIMITS        16

/* a client key longer than this is stored as "sha1:" + hex digest */
#define RL_MAX_KEY_LEN       256

/* the longest Redis key rl_build_key() can produce */
#define RL_MAX_REDIS_KEY(prefix_len, name_len)                                \
    ((prefix_len) + 1 + RL_MAX_KEY_LEN + 1 + (name_len))

#define RL_REQUESTS_MAX      1000000000ULL
#define RL_WINDOW_MIN_MS     1000ULL
#define RL_WINDOW_MAX_MS     (365ULL * 86400 * 1000)


typedef enum {
    RL_LOG_ERR = 0,
    RL_LOG_WARN,
    RL_LOG_NOTICE,
    RL_LOG_INFO,
    RL_LOG_DEBUG
} rl_log_level_e;


/* why Redis could not answer; also the "kind" label of the error metric */
typedef enum {
    RL_OK = 0,
    RL_ERR_CONNECT,      /* not connected, connection lost or refused */
    RL_ERR_TIMEOUT,      /* no reply within timeout= */
    RL_ERR_AUTH,         /* AUTH or SELECT refused */
    RL_ERR_REPLY,        /* an error reply or a reply of the wrong shape */
    RL_ERR_BUSY          /* too many checks in flight on this worker */
} rl_error_e;

#define RL_ERR_KINDS         (RL_ERR_BUSY + 1)


typedef struct rl_loop_s    rl_loop_t;
typedef struct rl_client_s  rl_client_t;
typedef struct rl_check_s   rl_check_t;


typedef struct {
    /* either a numeric address and a port, or a unix socket path */
    const char    *host;
    int            port;
    const char    *unix_path;

    int            db;
    const char    *username;         /* NULL: none */
    const char    *password;         /* NULL: no AUTH */

    uint64_t       connect_timeout_ms;
    uint64_t       timeout_ms;

    /*
     * Sentinel: when nsentinels > 0, host/port/unix_path are ignored; the
     * master named master_name is asked from the sentinels (numeric
     * addresses) and verified with ROLE.
     */
    size_t               nsentinels;
    const char *const   *sentinel_hosts;
    const int           *sentinel_ports;
    const char          *master_name;
    const char          *sentinel_password;     /* NULL: no AUTH */

    /*
     * Called when the connection becomes ready (up = 1) and when a ready
     * connection is lost or a reconnect fails after one was ready (up = 0);
     * optional.
     */
    void         (*on_state)(void *data, int up);
    void          *state_data;
} rl_redis_conf_t;


typedef enum {
    RL_ALG_SLIDING_LOG = 0,   /* exact: one sorted-set entry per request */
    RL_ALG_SLIDING_WINDOW,    /* two fixed-window counters, weighted */
    RL_ALG_GCRA,              /* generic cell rate, with a burst */
    RL_ALG_FIXED_WINDOW       /* one counter per window, epoch-aligned */
} rl_algorithm_e;


/* one limit of a check: the Redis key is already built (rl_build_key) */
typedef struct {
    const char      *key;
    size_t           key_len;
    uint64_t         requests;
    uint64_t         window_ms;
    rl_algorithm_e   algorithm;
    uint64_t         burst;          /* gcra only; 0: requests */
} rl_limit_arg_t;

/* "sliding_log" etc. to the enum; -1 for an unknown name */
int rl_parse_algorithm(const char *s, size_t len) RL_NOEXCEPT;
const char *rl_algorithm_name(rl_algorithm_e alg) RL_NOEXCEPT;


typedef struct {
    uint64_t       count;            /* requests counted in the window, this
                                        one included when it passed */
    uint64_t       remaining;        /* requests still allowed now */
    uint64_t       reset_ms;         /* until the next unit of quota returns */
    uint64_t       retry_ms;         /* > 0: this limit rejects; wait this long */
} rl_limit_result_t;


typedef struct {
    rl_error_e          error;       /* RL_OK: the fields below are valid */
    const char         *errstr;      /* static or owned by the core; valid
                                        during the callback only */
    int                 allowed;     /* every limit passed and was counted */
    uint64_t            latency_us;  /* command sent to reply; 0: no reply */
    size_t              nlimits;
    rl_limit_result_t   limits[RL_MAX_LIMITS];
} rl_verdict_t;


/*
 * Called once per started check, from the event loop, unless the check was
 * cancelled first.  The verdict is valid during the call only; the check
 * handle is invalid from the moment the callback starts.
 */
typedef void (*rl_check_done_pt)(void *data, const rl_verdict_t *verdict);


/* pure helpers (rl_config.cpp, rl_limit.cpp) */

int rl_parse_requests(const char *s, size_t len, uint64_t *out) RL_NOEXCEPT;
int rl_parse_duration_ms(const char *s, size_t len, uint64_t *out)
    RL_NOEXCEPT;
int rl_valid_name(const char *s, size_t len) RL_NOEXCEPT;

/*
 * Writes PREFIX:KEY:NAME into buf (of size RL_MAX_REDIS_KEY or more) and
 * returns its length; a KEY longer than RL_MAX_KEY_LEN, or one that begins
 * with "sha1:", is written as "sha1:" and its hex digest.
 */
size_t rl_build_key(char *buf, const char *prefix, size_t prefix_len,
    const char *key, size_t key_len, const char *name, size_t name_len)
    RL_NOEXCEPT;

/* the limit script (rl_script.cpp), as sent to Redis; for tests and tools */
const char *rl_limit_script(size_t *len) RL_NOEXCEPT;

/*
 * Decodes the limit script's reply (a hiredis redisReply) to a call of one
 * check of n limits into v; returns 0, or -1 with v->error and v->errstr
 * set.
 */
struct redisReply;
int rl_decode_reply(const struct redisReply *reply, size_t n, rl_verdict_t *v)
    RL_NOEXCEPT;

/*
 * Client identity: when key is an IPv6 address, an IPv4-mapped one
 * (::ffff:a.b.c.d) becomes a.b.c.d, and with prefix < 128 the address is
 * cut to its first prefix bits and written as "net::/prefix".  Writes into
 * out (RL_MAX_IP_KEY bytes) and returns the length; 0 when key is not an
 * IPv6 address or stays as it is.
 */
#define RL_MAX_IP_KEY        (46 + 4)

size_t rl_normalize_ip(const char *key, size_t len, unsigned prefix,
    char *out) RL_NOEXCEPT;

/* whole seconds a client should wait, never less than 1 */
uint64_t rl_retry_after_sec(uint64_t retry_ms) RL_NOEXCEPT;

const char *rl_error_name(rl_error_e err) RL_NOEXCEPT;


/* metrics (rl_metrics.cpp): the shim keeps the counters, the core renders */

/* request verdicts as metric labels, in $rate_limit_status order */
#define RL_STATUSES          8

/* upper bounds of the Redis latency histogram, microseconds */
#define RL_LATENCY_BUCKETS   11

typedef struct {
    const char    *name;
    size_t         name_len;
    uint64_t       requests[RL_STATUSES];
} rl_metrics_limit_t;

typedef struct {
    const rl_metrics_limit_t  *limits;
    size_t                     nlimits;

    uint64_t       errors[RL_ERR_KINDS];            /* [RL_OK] unused */
    uint64_t       latency[RL_LATENCY_BUCKETS + 1]; /* per bucket; last: +Inf */
    uint64_t       latency_sum_us;

    uint64_t       workers;          /* processes with a Redis client */
    uint64_t       connections_up;   /* of those, connected to Redis */
    uint64_t       inflight;         /* requests waiting for Redis */
    uint64_t       cache_hits;       /* rejected by the over-limit cache */
} rl_metrics_t;

/* the histogram bucket of a latency */
size_t rl_latency_bucket(uint64_t us) RL_NOEXCEPT;

/*
 * Writes the Prometheus text exposition of m into buf; returns the length it
 * needs, which may be more than len (then call again with a larger buf).
 */
size_t rl_metrics_render(const rl_metrics_t *m, char *buf, size_t len)
    RL_NOEXCEPT;


/* the Redis client: one per worker process, driven by an rl_loop_t */

/*
 * Returns NULL on failure with a message in err.  Starts connecting at once.
 * The configuration strings are copied.
 */
rl_client_t *rl_client_create(rl_loop_t *loop, const rl_redis_conf_t *conf,
    char *err, size_t err_len) RL_NOEXCEPT;

/*
 * Closes the connection; callbacks of checks still in flight are not called.
 * The loop must outlive this call.
 */
void rl_client_destroy(rl_client_t *client) RL_NOEXCEPT;

/*
 * Starts a check of n limits (1..RL_MAX_LIMITS, each on a key of its own)
 * in one round trip.  Returns the in-flight check, whose callback will be
 * called once; or NULL when the answer is known at once (Redis known to be
 * down, too many checks in flight, a key named twice), with the error in
 * *now.
 */
rl_check_t *rl_check_start(rl_client_t *client, const rl_limit_arg_t *limits,
    size_t n, rl_check_done_pt done, void *data, rl_verdict_t *now)
    RL_NOEXCEPT;

/* the callback will not be called; the handle is invalid afterwards */
void rl_check_cancel(rl_check_t *check) RL_NOEXCEPT;

/* 1 while the client has a connection that answered its handshake */
int rl_client_up(rl_client_t *client) RL_NOEXCEPT;


#ifdef __cplusplus
}
#endif

#endif /* RL_API_H */
