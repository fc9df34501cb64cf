
/*
 * The over-limit cache and the local limiter (see
 * ngx_http_rate_limit_cache.h).
 *
 * Times are ngx_current_msec, nginx's monotonic clock, which all processes
 * of a host share.  Entries expire by themselves: a lookup removes an
 * expired entry it meets, a store removes up to two expired entries from the
 * LRU tail, and when the zone is full the least recently stored entries go.
 * The zone survives reloads, so an entry outlives a reload as the Redis
 * state it mirrors does.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_rate_limit_cache.h"


typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;
    ngx_queue_t                  queue;
    ngx_msec_t                   until;        /* cache: over until then */
    time_t                       logged;       /* cache: second of lines */
    ngx_uint_t                   lines;        /* cache: lines in it */
    ngx_uint_t                   quiet;        /* cache: lines left out */
    ngx_msec_t                   window;       /* local: its start, ms */
    ngx_uint_t                   count;        /* local: in that window */
    ngx_uint_t                   previous;     /* local: in the one before */
    u_char                       data[1];
} ngx_http_rate_limit_cache_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;        /* most recent first */
} ngx_http_rate_limit_cache_sh_t;


static void ngx_http_rate_limit_cache_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_rate_limit_cache_node_t *ngx_http_rate_limit_cache_get(
    ngx_shm_zone_t *shm_zone, u_char *key, size_t len);
static ngx_rbtree_node_t *ngx_http_rate_limit_cache_find(
    ngx_http_rate_limit_cache_sh_t *sh, u_char *key, size_t len,
    uint32_t hash);
static void ngx_http_rate_limit_cache_delete(ngx_slab_pool_t *shpool,
    ngx_http_rate_limit_cache_sh_t *sh, ngx_rbtree_node_t *node);
static void ngx_http_rate_limit_cache_expire(ngx_slab_pool_t *shpool,
    ngx_http_rate_limit_cache_sh_t *sh, ngx_uint_t n, ngx_flag_t force);


#define ngx_http_rate_limit_cache_data(node)                                  \
    ((ngx_http_rate_limit_cache_node_t *) &(node)->color)


ngx_int_t
ngx_http_rate_limit_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t                 *shpool;
    ngx_http_rate_limit_cache_sh_t  *sh;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_rate_limit_cache_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_rate_limit_cache_insert);
    ngx_queue_init(&sh->queue);

    /* allocation failures are expected when full: no log lines for them */
    shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_msec_t
ngx_http_rate_limit_cache_lookup(ngx_shm_zone_t *shm_zone, u_char *key,
    size_t len, ngx_uint_t *suppressed)
{
    uint32_t                           hash;
    ngx_msec_t                         wait;
    ngx_slab_pool_t                   *shpool;
    ngx_rbtree_node_t                 *node;
    ngx_http_rate_limit_cache_sh_t    *sh;
    ngx_http_rate_limit_cache_node_t  *cn;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    sh = shm_zone->data;
    *suppressed = 0;

    /*
     * Read without the lock: nothing is cached on the host (nothing was
     * rejected since it started, or everything was looked up again after
     * its time), so no lookup and no lock on the way.  A stale answer costs
     * at most one check that asks Redis.
     */
    if (sh->rbtree.root == sh->rbtree.sentinel) {
        return 0;
    }

    hash = ngx_murmur_hash2(key, len);
    wait = 0;

    ngx_shmtx_lock(&shpool->mutex);

    node = ngx_http_rate_limit_cache_find(sh, key, len, hash);

    if (node) {
        cn = ngx_http_rate_limit_cache_data(node);

        if ((ngx_msec_int_t) (cn->until - ngx_current_msec) > 0) {
            wait = cn->until - ngx_current_msec;

            /* workers' clocks may differ by a second: never step back */
            if (cn->logged < ngx_time()) {
                cn->logged = ngx_time();
                cn->lines = 0;
            }

            if (cn->lines < NGX_HTTP_RATE_LIMIT_CACHE_LINES) {
                cn->lines++;
                *suppressed = cn->quiet;
                cn->quiet = 0;

            } else {
                cn->quiet++;
                *suppressed = NGX_HTTP_RATE_LIMIT_CACHE_QUIET;
            }

        } else {
            /* its time is over: the lines it left out are still owed */
            *suppressed = cn->quiet;
            ngx_http_rate_limit_cache_delete(shpool, sh, node);
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return wait;
}


void
ngx_http_rate_limit_cache_store(ngx_shm_zone_t *shm_zone, u_char *key,
    size_t len, ngx_msec_t ttl)
{
    ngx_msec_t                         until;
    ngx_slab_pool_t                   *shpool;
    ngx_http_rate_limit_cache_node_t  *cn;

    if (ttl == 0) {
        return;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    until = ngx_current_msec + ttl;

    ngx_shmtx_lock(&shpool->mutex);

    cn = ngx_http_rate_limit_cache_get(shm_zone, key, len);

    if (cn && (cn->until == 0 || (ngx_msec_int_t) (until - cn->until) > 0)) {
        cn->until = until;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * The entry of a key, created when missing, moved to the head of the LRU
 * queue; NULL when the zone is full even after evicting.  Called locked.
 */
static ngx_http_rate_limit_cache_node_t *
ngx_http_rate_limit_cache_get(ngx_shm_zone_t *shm_zone, u_char *key,
    size_t len)
{
    size_t                             size;
    uint32_t                           hash;
    ngx_slab_pool_t                   *shpool;
    ngx_rbtree_node_t                 *node;
    ngx_http_rate_limit_cache_sh_t    *sh;
    ngx_http_rate_limit_cache_node_t  *cn;

    if (len > 65535) {
        return NULL;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    sh = shm_zone->data;
    hash = ngx_murmur_hash2(key, len);

    node = ngx_http_rate_limit_cache_find(sh, key, len, hash);

    if (node) {
        cn = ngx_http_rate_limit_cache_data(node);
        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&sh->queue, &cn->queue);
        return cn;
    }

    ngx_http_rate_limit_cache_expire(shpool, sh, 2, 0);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_rate_limit_cache_node_t, data)
           + len;

    node = ngx_slab_alloc_locked(shpool, size);

    if (node == NULL) {
        ngx_http_rate_limit_cache_expire(shpool, sh, 16, 1);

        node = ngx_slab_alloc_locked(shpool, size);
        if (node == NULL) {
            return NULL;
        }
    }

    node->key = hash;

    cn = ngx_http_rate_limit_cache_data(node);
    cn->len = (u_short) len;
    cn->until = 0;
    cn->logged = 0;
    cn->lines = 0;
    cn->quiet = 0;
    cn->window = 0;
    cn->count = 0;
    cn->previous = 0;
    ngx_memcpy(cn->data, key, len);

    ngx_rbtree_insert(&sh->rbtree, node);
    ngx_queue_insert_head(&sh->queue, &cn->queue);

    return cn;
}


/*
 * Sliding windows on nginx's monotonic clock: the count of the current
 * fixed window plus the previous one's, weighted by the share of the
 * sliding window that still lies in it.
 */
void
ngx_http_rate_limit_local_check(ngx_shm_zone_t *shm_zone,
    ngx_http_rate_limit_local_t *limits, ngx_uint_t n, rl_verdict_t *v)
{
    double                             est, w, into, wait;
    ngx_uint_t                         i, allowed, count, previous;
    ngx_msec_t                         start, span, now;
    ngx_slab_pool_t                   *shpool;
    rl_limit_result_t                 *res;
    ngx_http_rate_limit_cache_node_t  *cn[RL_MAX_LIMITS];

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    now = ngx_current_msec;
    allowed = 1;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < n; i++) {
        res = &v->limits[i];
        span = limits[i].window;
        w = (double) span;
        start = now - now % span;

        cn[i] = ngx_http_rate_limit_cache_get(shm_zone, limits[i].key,
                                              limits[i].len);

        /*
         * Each worker reads its own cached clock: one a few milliseconds
         * behind another must not take a key that has begun the next
         * window back to the one before, and so wipe its count.  Windows
         * are kept by their start, not their number, so that a node of
         * another window length (before a reload) matches none of these
         * but by chance, and starts afresh.
         */
        if (cn[i] && cn[i]->window == start + span) {
            start += span;
        }

        into = now > start ? (double) (now - start) : 0;

        count = 0;
        previous = 0;

        if (cn[i] && cn[i]->window == start) {
            count = cn[i]->count;
            previous = cn[i]->previous;

        } else if (cn[i] && cn[i]->window + span == start) {
            previous = cn[i]->count;
        }

        est = previous * (w - into) / w + count;

        res->count = (uint64_t) est;
        res->reset_ms = (uint64_t) (w - into);
        res->retry_ms = 0;

        if (cn[i] && est + 1 > limits[i].requests) {
            if (count + 1 <= limits[i].requests && previous > 0) {
                wait = w - (limits[i].requests - 1 - count) * w / previous
                       - into;

            } else {
                wait = w - into + w - (limits[i].requests - 1) * w
                                      / ngx_max(count, 1);
            }

            res->retry_ms = wait < 1 ? 1 : (uint64_t) wait + 1;
            allowed = 0;
        }

        /* keep what the commit below needs; forget it two windows on */
        if (cn[i]) {
            cn[i]->window = start;
            cn[i]->count = count;
            cn[i]->previous = previous;
            cn[i]->until = now + 2 * span;
        }

        res->remaining = est < limits[i].requests
                         ? (uint64_t) (limits[i].requests - est) : 0;
    }

    for (i = 0; allowed && i < n; i++) {
        res = &v->limits[i];

        if (cn[i]) {
            cn[i]->count++;
            res->count++;
            res->remaining = res->remaining ? res->remaining - 1 : 0;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    v->error = RL_OK;
    v->errstr = NULL;
    v->allowed = (int) allowed;
    v->nlimits = n;
    v->latency_us = 0;
}


static ngx_rbtree_node_t *
ngx_http_rate_limit_cache_find(ngx_http_rate_limit_cache_sh_t *sh,
    u_char *key, size_t len, uint32_t hash)
{
    ngx_int_t                          rc;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_rate_limit_cache_node_t  *cn;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = ngx_http_rate_limit_cache_data(node);

        rc = ngx_memn2cmp(key, cn->data, len, (size_t) cn->len);

        if (rc == 0) {
            return node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_rate_limit_cache_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                 **p;
    ngx_http_rate_limit_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = ngx_http_rate_limit_cache_data(node);
            cnt = ngx_http_rate_limit_cache_data(temp);

            p = (ngx_memn2cmp(cn->data, cnt->data, cn->len, cnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static void
ngx_http_rate_limit_cache_delete(ngx_slab_pool_t *shpool,
    ngx_http_rate_limit_cache_sh_t *sh, ngx_rbtree_node_t *node)
{
    ngx_http_rate_limit_cache_node_t  *cn;

    cn = ngx_http_rate_limit_cache_data(node);

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&sh->rbtree, node);
    ngx_slab_free_locked(shpool, node);
}


/* removes up to n entries from the LRU tail: expired ones, or any if force */
static void
ngx_http_rate_limit_cache_expire(ngx_slab_pool_t *shpool,
    ngx_http_rate_limit_cache_sh_t *sh, ngx_uint_t n, ngx_flag_t force)
{
    ngx_queue_t                       *q;
    ngx_rbtree_node_t                 *node;
    ngx_http_rate_limit_cache_node_t  *cn;

    while (n-- && !ngx_queue_empty(&sh->queue)) {

        q = ngx_queue_last(&sh->queue);
        cn = ngx_queue_data(q, ngx_http_rate_limit_cache_node_t, queue);

        if (!force && (ngx_msec_int_t) (cn->until - ngx_current_msec) > 0) {
            return;
        }

        node = (ngx_rbtree_node_t *)
                   ((u_char *) cn - offsetof(ngx_rbtree_node_t, color));

        ngx_http_rate_limit_cache_delete(shpool, sh, node);
    }
}
