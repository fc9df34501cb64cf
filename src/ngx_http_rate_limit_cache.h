
/*
 * The over-limit cache: once Redis says a key is over its limit until time
 * T, every worker of the host rejects that key until T without asking Redis
 * again.  Shared memory, an rbtree by key with an LRU queue for eviction.
 */

#ifndef NGX_HTTP_RATE_LIMIT_CACHE_H
#define NGX_HTTP_RATE_LIMIT_CACHE_H

#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_RATE_LIMIT_CACHE_SIZE  (1024 * 1024)


ngx_int_t ngx_http_rate_limit_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

/* ms until the key may pass again; 0 when it is not known to be over */
ngx_msec_t ngx_http_rate_limit_cache_lookup(ngx_shm_zone_t *shm_zone,
    u_char *key, size_t len);

/* remembers that the key is over its limit for ttl ms */
void ngx_http_rate_limit_cache_store(ngx_shm_zone_t *shm_zone, u_char *key,
    size_t len, ngx_msec_t ttl);

#endif /* NGX_HTTP_RATE_LIMIT_CACHE_H */
