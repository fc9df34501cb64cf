
/*
 * Host-local state in shared memory, an rbtree by Redis key with an LRU
 * queue for eviction, in two zones of the same shape:
 *
 * the over-limit cache: once Redis says a key is over its limit until time
 * T, every worker of the host rejects that key until T without asking Redis
 * again;
 *
 * the local limiter of "rate_limit_fallback local": while Redis cannot
 * answer, the same limits per host, as sliding windows (two weighted
 * fixed-window counters), exact across the host's workers.
 */

#ifndef NGX_HTTP_RATE_LIMIT_CACHE_H
#define NGX_HTTP_RATE_LIMIT_CACHE_H

#include <ngx_config.h>
#include <ngx_core.h>

#include "rl_api.h"


#define NGX_HTTP_RATE_LIMIT_CACHE_SIZE  (1024 * 1024)


ngx_int_t ngx_http_rate_limit_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

/*
 * Rejection lines of the requests the cache answers, per key and host: at
 * most this many a second, the first one after a pause reporting how many
 * were left out.
 */
#define NGX_HTTP_RATE_LIMIT_CACHE_LINES  10

/* the line of this cached rejection is left out */
#define NGX_HTTP_RATE_LIMIT_CACHE_QUIET  ((ngx_uint_t) -1)

/*
 * ms until the key may pass again; 0 when it is not known to be over.  For
 * a key that is over, *suppressed tells its rejection line: the number of
 * lines left out before it, or NGX_HTTP_RATE_LIMIT_CACHE_QUIET.  For a key
 * whose cached time has just ended, it is the number of lines its last
 * second left out, still to be written; otherwise 0.
 */
ngx_msec_t ngx_http_rate_limit_cache_lookup(ngx_shm_zone_t *shm_zone,
    u_char *key, size_t len, ngx_uint_t *suppressed);

/* remembers that the key is over its limit for ttl ms */
void ngx_http_rate_limit_cache_store(ngx_shm_zone_t *shm_zone, u_char *key,
    size_t len, ngx_msec_t ttl);


/* one limit of a local check */
typedef struct {
    u_char                      *key;
    size_t                       len;
    ngx_uint_t                   requests;
    ngx_msec_t                   window;
} ngx_http_rate_limit_local_t;

/*
 * Decides n limits at once and counts the request in all of them or in
 * none, like the Redis script; fills v.  A limit whose state cannot be
 * allocated (zone full even after eviction) passes.
 */
void ngx_http_rate_limit_local_check(ngx_shm_zone_t *shm_zone,
    ngx_http_rate_limit_local_t *limits, ngx_uint_t n, rl_verdict_t *v);

#endif /* NGX_HTTP_RATE_LIMIT_CACHE_H */
