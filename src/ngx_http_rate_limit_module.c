
/*
 * ngx_http_rate_limit_module: request limits shared by every worker of every
 * nginx host through Redis.
 *
 * This file is the C shim: the module, its directives and their merge, the
 * access handler, the variables and the rejection response.  Redis, the
 * limit script and the parsing of values live in the C++ core behind
 * rl_api.h; the core's event loop is nginx's (rl_ngx_loop.cpp).
 *
 * A request's life: the access handler (first in the access phase, after
 * realip, before auth_basic and access) builds one Redis key per limit and
 * starts one check for all of them; it returns NGX_AGAIN.  The core calls
 * ngx_http_rate_limit_done() with the verdict, which stores it and posts the
 * request's write event; the phase engine then calls the handler again and
 * it returns the verdict.  The per-request state lives in a cleanup of the
 * request pool, so an internal redirect finds it and never counts twice, and
 * a request freed mid-check (client gone) cancels its check.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "rl_api.h"
#include "rl_ngx_loop.h"
#include "ngx_http_rate_limit_cache.h"


#define NGX_HTTP_RATE_LIMIT_FALLBACK_OPEN     0
#define NGX_HTTP_RATE_LIMIT_FALLBACK_CLOSED   1
#define NGX_HTTP_RATE_LIMIT_FALLBACK_LOCAL    2

#define NGX_HTTP_RATE_LIMIT_HEADERS_OFF       0
#define NGX_HTTP_RATE_LIMIT_HEADERS_ON        1
#define NGX_HTTP_RATE_LIMIT_HEADERS_LEGACY    2

#define NGX_HTTP_RATE_LIMIT_BODY_TEXT         0
#define NGX_HTTP_RATE_LIMIT_BODY_JSON         1

/* distinct limit NAMEs the metrics zone keeps counters for */
#define NGX_HTTP_RATE_LIMIT_METRIC_NAMES      256


/* $rate_limit_status values, in limit_req's naming */
typedef enum {
    NGX_HTTP_RATE_LIMIT_NONE = 0,
    NGX_HTTP_RATE_LIMIT_PASSED,
    NGX_HTTP_RATE_LIMIT_REJECTED,
    NGX_HTTP_RATE_LIMIT_REJECTED_DRY_RUN,
    NGX_HTTP_RATE_LIMIT_ERROR_ALLOWED,
    NGX_HTTP_RATE_LIMIT_ERROR_REJECTED,
    NGX_HTTP_RATE_LIMIT_SKIPPED,
    NGX_HTTP_RATE_LIMIT_LOCAL_PASSED,      /* fallback local */
    NGX_HTTP_RATE_LIMIT_LOCAL_REJECTED
} ngx_http_rate_limit_status_e;


typedef enum {
    NGX_HTTP_RATE_LIMIT_STATE_CHECKING = 0,
    NGX_HTTP_RATE_LIMIT_STATE_DECIDED,     /* verdict stored, not returned */
    NGX_HTTP_RATE_LIMIT_STATE_RETURNED
} ngx_http_rate_limit_state_e;


/* one "rate_limit" line */
typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   requests;
    ngx_msec_t                   window;          /* ms */
    rl_algorithm_e               algorithm;
    ngx_uint_t                   burst;           /* gcra; 0: requests */
    ngx_uint_t                   ipv6_prefix;     /* 128: whole address */
    ngx_http_complex_value_t     key;

    /* where the NAME was first defined, for the conflict message */
    ngx_str_t                    file;
    ngx_uint_t                   line;

    /* its entry in the main conf's list of NAMEs */
    ngx_uint_t                   known;

    /* its counters in the metrics zone; -1: none (zone full) */
    ngx_int_t                    slot;
} ngx_http_rate_limit_t;


/* a resolved address: numeric host, NUL-terminated, and port */
typedef struct {
    ngx_str_t                    host;
    ngx_int_t                    port;
} ngx_http_rate_limit_addr_t;


/* a worker's own gauges in the metrics zone */
typedef struct {
    ngx_atomic_t                 pid;          /* 0: free */
    ngx_atomic_t                 up;           /* connected to Redis */
    ngx_atomic_t                 inflight;     /* requests waiting */
} ngx_http_rate_limit_shm_proc_t;


/* the metrics zone: counters summed over all workers, kept across reloads */
typedef struct {
    u_char                       name[64];
    size_t                       len;
    ngx_atomic_t                 requests[RL_STATUSES];
} ngx_http_rate_limit_shm_limit_t;


typedef struct {
    ngx_atomic_t                 errors[RL_ERR_KINDS];
    ngx_atomic_t                 latency[RL_LATENCY_BUCKETS + 1];
    ngx_atomic_t                 latency_sum_us;
    /*
     * One slot per nginx process slot, written by its worker alone: a
     * worker that dies without its exit hook (a crash, kill -9) leaves a
     * slot whose pid is gone, which the exposition skips, and the master
     * gives the slot to the worker that replaces it.
     */
    ngx_http_rate_limit_shm_proc_t
                                 procs[NGX_MAX_PROCESSES];
    ngx_atomic_t                 cache_hits;
    ngx_uint_t                   nlimits;
    ngx_http_rate_limit_shm_limit_t
                                 limits[NGX_HTTP_RATE_LIMIT_METRIC_NAMES];
} ngx_http_rate_limit_shm_t;


typedef struct {
    /* every rate_limit line of the http block, to keep NAMEs consistent */
    ngx_array_t                  limits;         /* ngx_http_rate_limit_t */

    ngx_str_t                    prefix;

    ngx_flag_t                   redis_set;
    ngx_str_t                    host;           /* numeric, NUL-terminated */
    ngx_int_t                    port;
    ngx_str_t                    unix_path;      /* NUL-terminated */
    ngx_int_t                    db;
    ngx_str_t                    username;       /* NUL-terminated or empty */
    ngx_str_t                    password;
    ngx_flag_t                   password_set;
    ngx_msec_t                   connect_timeout;
    ngx_msec_t                   timeout;

    /* Sentinel: their addresses, the master's name, their password */
    ngx_array_t                 *sentinels;      /* ngx_http_rate_limit_addr_t */
    ngx_str_t                    master;         /* NUL-terminated */
    ngx_str_t                    sentinel_password;
    ngx_flag_t                   sentinel_password_set;

    ngx_flag_t                   metrics_used;
    ngx_shm_zone_t              *shm_zone;

    ngx_flag_t                   local_cache;
    ngx_shm_zone_t              *cache_zone;

    ngx_flag_t                   local_used;
    ngx_shm_zone_t              *local_zone;
    ngx_http_rate_limit_shm_t   *sh;

    /* the worker's Redis client; NULL in the master and in nginx -t */
    rl_loop_t                   *loop;
    rl_client_t                 *client;
} ngx_http_rate_limit_main_conf_t;


typedef struct {
    ngx_array_t                 *limits;         /* ngx_http_rate_limit_t */
    ngx_uint_t                   fallback;
    ngx_uint_t                   status_code;
    ngx_uint_t                   log_level;
    ngx_flag_t                   dry_run;
    ngx_uint_t                   headers;
    ngx_uint_t                   body;
} ngx_http_rate_limit_loc_conf_t;


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_rate_limit_loc_conf_t  *lcf;

    /* in flight; NULL once the core called back or the check was refused */
    rl_check_t                      *check;

    ngx_http_rate_limit_state_e      state;
    ngx_http_rate_limit_status_e     status;
    ngx_int_t                        rc;         /* the handler's answer */

    uint64_t                         remaining;
    uint64_t                         reset;      /* seconds */
    uint64_t                         retry_after;

    /* the limits sent to Redis (empty keys left out), keys and results */
    ngx_uint_t                       nlimits;
    ngx_http_rate_limit_t           *limits[RL_MAX_LIMITS];
    ngx_str_t                        keys[RL_MAX_LIMITS];
    rl_limit_result_t                results[RL_MAX_LIMITS];
    ngx_str_t                        rkeys[RL_MAX_LIMITS];

    /* results[i] not known: the over-limit cache answered for another */
    uint32_t                         unknown;

    /* the cache's word on each rejection line (cache.h) */
    ngx_uint_t                       suppressed[RL_MAX_LIMITS];

    unsigned                         cached:1;
    unsigned                         local:1;
    unsigned                         headers_done:1;
} ngx_http_rate_limit_ctx_t;


static ngx_int_t ngx_http_rate_limit_handler(ngx_http_request_t *r);
static ngx_http_rate_limit_ctx_t *ngx_http_rate_limit_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_rate_limit_cleanup(void *data);
static void ngx_http_rate_limit_bound(ngx_http_rate_limit_t *limit,
    rl_limit_result_t *res);
static void ngx_http_rate_limit_log_rejection(ngx_http_rate_limit_ctx_t *ctx,
    ngx_uint_t i, uint64_t count, ngx_flag_t cached, ngx_uint_t suppressed);
static ngx_uint_t ngx_http_rate_limit_cached(ngx_http_rate_limit_ctx_t *ctx,
    rl_verdict_t *v);
static void ngx_http_rate_limit_done(void *data, const rl_verdict_t *v);
static void ngx_http_rate_limit_decide(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v);
static void ngx_http_rate_limit_verdict(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v);
static void ngx_http_rate_limit_log_fallback(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v);
static ngx_int_t ngx_http_rate_limit_respond(ngx_http_request_t *r,
    ngx_http_rate_limit_ctx_t *ctx);
static ngx_int_t ngx_http_rate_limit_send_rejection(ngx_http_request_t *r,
    ngx_http_rate_limit_ctx_t *ctx);
static ngx_int_t ngx_http_rate_limit_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_http_rate_limit_decided(ngx_http_rate_limit_ctx_t *ctx);
static ngx_int_t ngx_http_rate_limit_add_header(ngx_http_request_t *r,
    char *name, u_char *value, size_t len);
static void ngx_http_rate_limit_count(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v);
static void ngx_http_rate_limit_inflight(ngx_http_rate_limit_ctx_t *ctx,
    ngx_int_t n);
static void ngx_http_rate_limit_on_state(void *data, int up);
static ngx_int_t ngx_http_rate_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_rate_limit_metrics_handler(ngx_http_request_t *r);
static char *ngx_http_rate_limit_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_rate_limit_key_prefix(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

static ngx_int_t ngx_http_rate_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_rate_limit_number_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_rate_limit_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_rate_limit_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_rate_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_rate_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_rate_limit_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_rate_limit_set_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_rate_limit_set_status(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_rate_limit_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_rate_limit_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_rate_limit_init_process(ngx_cycle_t *cycle);
static void ngx_http_rate_limit_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_rate_limit_fallback[] = {
    { ngx_string("open"), NGX_HTTP_RATE_LIMIT_FALLBACK_OPEN },
    { ngx_string("closed"), NGX_HTTP_RATE_LIMIT_FALLBACK_CLOSED },
    { ngx_string("local"), NGX_HTTP_RATE_LIMIT_FALLBACK_LOCAL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_rate_limit_headers[] = {
    { ngx_string("on"), NGX_HTTP_RATE_LIMIT_HEADERS_ON },
    { ngx_string("off"), NGX_HTTP_RATE_LIMIT_HEADERS_OFF },
    { ngx_string("legacy"), NGX_HTTP_RATE_LIMIT_HEADERS_LEGACY },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_rate_limit_bodies[] = {
    { ngx_string("text"), NGX_HTTP_RATE_LIMIT_BODY_TEXT },
    { ngx_string("json"), NGX_HTTP_RATE_LIMIT_BODY_JSON },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_rate_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_rate_limit_commands[] = {

    { ngx_string("rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_rate_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rate_limit_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_rate_limit_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rate_limit_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_key_prefix,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("rate_limit_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, fallback),
      &ngx_http_rate_limit_fallback },

    { ngx_string("rate_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_set_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, status_code),
      NULL },

    { ngx_string("rate_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, log_level),
      &ngx_http_rate_limit_log_levels },

    { ngx_string("rate_limit_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, dry_run),
      NULL },

    { ngx_string("rate_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, headers),
      &ngx_http_rate_limit_headers },

    { ngx_string("rate_limit_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_rate_limit_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_loc_conf_t, body),
      &ngx_http_rate_limit_bodies },

    { ngx_string("rate_limit_local_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_rate_limit_main_conf_t, local_cache),
      NULL },

    { ngx_string("rate_limit_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_rate_limit_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_rate_limit_module_ctx = {
    ngx_http_rate_limit_add_variables,     /* preconfiguration */
    ngx_http_rate_limit_init,              /* postconfiguration */

    ngx_http_rate_limit_create_main_conf,  /* create main configuration */
    ngx_http_rate_limit_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_rate_limit_create_loc_conf,   /* create location configuration */
    ngx_http_rate_limit_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_rate_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_rate_limit_module_ctx,       /* module context */
    ngx_http_rate_limit_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_rate_limit_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_rate_limit_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_rate_limit_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN"),
    ngx_string("ERROR_ALLOWED"),
    ngx_string("ERROR_REJECTED"),
    ngx_string("SKIPPED"),
    ngx_string("LOCAL_PASSED"),
    ngx_string("LOCAL_REJECTED")
};


#define NGX_HTTP_RATE_LIMIT_VAR_REMAINING  0
#define NGX_HTTP_RATE_LIMIT_VAR_RESET      1

static ngx_http_variable_t  ngx_http_rate_limit_vars[] = {

    { ngx_string("rate_limit_status"), NULL,
      ngx_http_rate_limit_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("rate_limit_remaining"), NULL,
      ngx_http_rate_limit_number_variable,
      NGX_HTTP_RATE_LIMIT_VAR_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("rate_limit_reset"), NULL,
      ngx_http_rate_limit_number_variable,
      NGX_HTTP_RATE_LIMIT_VAR_RESET, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static u_char  ngx_http_rate_limit_body[] = "Rate limit exceeded\n";

static char  ngx_http_rate_limit_json_head[] =
    "{\"type\":\"https://iana.org/assignments/http-problem-types"
    "#quota-exceeded\",\"title\":\"Rate limit exceeded\","
    "\"detail\":\"Request cannot be satisfied as assigned quota has been "
    "exceeded\",\"status\":";

static char  ngx_http_rate_limit_json_tail[] = "]}\n";


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/* per worker and fallback mode: throttling of the per-request lines */
static time_t      ngx_http_rate_limit_fallback_logged[3];
static ngx_uint_t  ngx_http_rate_limit_fallback_suppressed[3];


static ngx_int_t
ngx_http_rate_limit_handler(ngx_http_request_t *r)
{
    size_t                            len;
    u_char                           *p;
    ngx_str_t                         key;
    ngx_uint_t                        i, n;
    rl_check_t                       *check;
    rl_verdict_t                      now;
    rl_limit_arg_t                    args[RL_MAX_LIMITS];
    ngx_pool_cleanup_t               *cln;
    ngx_http_rate_limit_t            *limits;
    ngx_http_rate_limit_ctx_t        *ctx;
    ngx_http_rate_limit_loc_conf_t   *lcf;
    ngx_http_rate_limit_main_conf_t  *mcf;

    ctx = ngx_http_rate_limit_get_ctx(r);

    if (ctx != NULL) {

        switch (ctx->state) {

        case NGX_HTTP_RATE_LIMIT_STATE_CHECKING:
            return NGX_AGAIN;

        case NGX_HTTP_RATE_LIMIT_STATE_DECIDED:
            ctx->state = NGX_HTTP_RATE_LIMIT_STATE_RETURNED;
            return ngx_http_rate_limit_respond(r, ctx);

        default:
            /* decided before an internal redirect: never count again */
            return NGX_DECLINED;
        }
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_rate_limit_module);

    if (lcf->limits == NULL) {
        return NGX_DECLINED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_rate_limit_module);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_rate_limit_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_rate_limit_ctx_t));
    ctx->request = r;
    ctx->lcf = lcf;
    ctx->state = NGX_HTTP_RATE_LIMIT_STATE_RETURNED;

    cln->handler = ngx_http_rate_limit_cleanup;

    limits = lcf->limits->elts;
    n = 0;

    for (i = 0; i < lcf->limits->nelts; i++) {

        if (ngx_http_complex_value(r, &limits[i].key, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            continue;
        }

        /* IPv4-mapped addresses count as IPv4; IPv6 may be grouped */
        if (ngx_strlchr(key.data, key.data + key.len, ':')) {
            p = ngx_pnalloc(r->pool, RL_MAX_IP_KEY);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            len = rl_normalize_ip((char *) key.data, key.len,
                                  (unsigned) limits[i].ipv6_prefix,
                                  (char *) p);
            if (len) {
                key.data = p;
                key.len = len;
            }
        }

        len = RL_MAX_REDIS_KEY(mcf->prefix.len, limits[i].name.len);

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        args[n].key = (char *) p;
        args[n].key_len = rl_build_key((char *) p, (char *) mcf->prefix.data,
                                       mcf->prefix.len, (char *) key.data,
                                       key.len, (char *) limits[i].name.data,
                                       limits[i].name.len);
        args[n].requests = limits[i].requests;
        args[n].window_ms = limits[i].window;
        args[n].algorithm = limits[i].algorithm;
        args[n].burst = limits[i].burst;

        ctx->limits[n] = &limits[i];
        ctx->keys[n] = key;
        ctx->rkeys[n].data = p;
        ctx->rkeys[n].len = args[n].key_len;
        n++;
    }

    ctx->nlimits = n;

    if (n == 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "rate limit: empty key, not limited");
        ctx->status = NGX_HTTP_RATE_LIMIT_SKIPPED;
        ngx_http_rate_limit_count(ctx, NULL);
        return NGX_DECLINED;
    }

    if (mcf->cache_zone && ngx_http_rate_limit_cached(ctx, &now)) {
        ngx_http_rate_limit_decide(ctx, &now);
        return ngx_http_rate_limit_respond(r, ctx);
    }

    if (mcf->client == NULL) {
        ngx_memzero(&now, sizeof(rl_verdict_t));
        now.error = RL_ERR_CONNECT;
        now.errstr = "no Redis client in this process";
        ngx_http_rate_limit_decide(ctx, &now);
        return ngx_http_rate_limit_respond(r, ctx);
    }

    check = rl_check_start(mcf->client, args, n, ngx_http_rate_limit_done,
                           ctx, &now);

    if (check == NULL) {
        ngx_http_rate_limit_decide(ctx, &now);
        return ngx_http_rate_limit_respond(r, ctx);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "rate limit: checking %ui limit(s) in Redis", n);

    ctx->check = check;
    ctx->state = NGX_HTTP_RATE_LIMIT_STATE_CHECKING;
    ngx_http_rate_limit_inflight(ctx, 1);

    /* notice a client that leaves while Redis answers */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


/*
 * The per-request state is the data of a request pool cleanup rather than a
 * module ctx: an internal redirect clears module ctxs but not the pool, and
 * the state must survive it so that a request is counted once.
 */
static ngx_http_rate_limit_ctx_t *
ngx_http_rate_limit_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_rate_limit_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


/*
 * Answers from the over-limit cache when a key of the request is known to be
 * over its limit: the request is rejected without a Redis round trip and
 * counts nowhere, as any rejected request.  Returns 1 with the verdict in v.
 */
static ngx_uint_t
ngx_http_rate_limit_cached(ngx_http_rate_limit_ctx_t *ctx, rl_verdict_t *v)
{
    ngx_uint_t                        i, hit;
    ngx_msec_t                        wait;
    rl_limit_result_t                *res;
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(ctx->request,
                                        ngx_http_rate_limit_module);
    hit = 0;

    for (i = 0; i < ctx->nlimits; i++) {
        res = &v->limits[i];

        wait = ngx_http_rate_limit_cache_lookup(mcf->cache_zone,
                                                ctx->rkeys[i].data,
                                                ctx->rkeys[i].len,
                                                &ctx->suppressed[i]);
        if (wait) {
            res->count = ctx->limits[i]->requests;
            res->remaining = 0;
            res->reset_ms = wait;
            res->retry_ms = wait;
            hit = 1;
            continue;
        }

        if (ctx->suppressed[i]) {
            /*
             * The key's cached time ended with lines left out: written now,
             * as the line of the last of them, so that lines and counts
             * still add up to the rejections.
             */
            ngx_http_rate_limit_log_rejection(ctx, i,
                                              ctx->limits[i]->requests, 1,
                                              ctx->suppressed[i] - 1);
        }

        res->count = 0;
        res->remaining = (uint64_t) -1;
        res->reset_ms = 0;
        res->retry_ms = 0;
        ctx->unknown |= 1 << i;
    }

    if (!hit) {
        ctx->unknown = 0;
        return 0;
    }

    v->error = RL_OK;
    v->errstr = NULL;
    v->allowed = 0;
    v->nlimits = ctx->nlimits;
    v->latency_us = 0;

    ctx->cached = 1;

    if (mcf->sh) {
        (void) ngx_atomic_fetch_add(&mcf->sh->cache_hits, 1);
    }

    return 1;
}


/* the request is going away: a reply that comes later is dropped */
static void
ngx_http_rate_limit_cleanup(void *data)
{
    ngx_http_rate_limit_ctx_t  *ctx = data;

    if (ctx->check) {
        rl_check_cancel(ctx->check);
        ctx->check = NULL;
        ngx_http_rate_limit_inflight(ctx, -1);
    }
}


/* called by the core, from the event loop, once per started check */
static void
ngx_http_rate_limit_done(void *data, const rl_verdict_t *v)
{
    ngx_http_rate_limit_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->check = NULL;
    ngx_http_rate_limit_inflight(ctx, -1);

    ngx_http_rate_limit_decide(ctx, v);

    ctx->state = NGX_HTTP_RATE_LIMIT_STATE_DECIDED;
    r->read_event_handler = ngx_http_block_reading;

    /* the phase engine resumes the request and calls the handler again */
    ngx_post_event(r->connection->write, &ngx_posted_events);
}


static void
ngx_http_rate_limit_decide(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v)
{
    ngx_http_rate_limit_verdict(ctx, v);
    ngx_http_rate_limit_count(ctx, v);
}


static void
ngx_http_rate_limit_verdict(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v)
{
    uint64_t                         retry, remaining;
    ngx_uint_t                       i;
    ngx_log_t                       *log;
    ngx_http_rate_limit_t           *limit;
    rl_verdict_t                      lv;
    rl_limit_result_t                *res;
    ngx_http_rate_limit_local_t       local[RL_MAX_LIMITS];
    ngx_http_rate_limit_loc_conf_t   *lcf;
    ngx_http_rate_limit_main_conf_t  *mcf;

    lcf = ctx->lcf;
    log = ctx->request->connection->log;
    mcf = ngx_http_get_module_main_conf(ctx->request,
                                        ngx_http_rate_limit_module);

    if ((v->error != RL_OK || v->nlimits != ctx->nlimits)
        && lcf->fallback == NGX_HTTP_RATE_LIMIT_FALLBACK_LOCAL
        && mcf->local_zone)
    {
        ngx_http_rate_limit_log_fallback(ctx, v);

        for (i = 0; i < ctx->nlimits; i++) {
            local[i].key = ctx->rkeys[i].data;
            local[i].len = ctx->rkeys[i].len;
            local[i].requests = ctx->limits[i]->requests;
            local[i].window = ctx->limits[i]->window;
        }

        ngx_http_rate_limit_local_check(mcf->local_zone, local,
                                        ctx->nlimits, &lv);
        ctx->local = 1;
        v = &lv;
    }

    if (v->error != RL_OK || v->nlimits != ctx->nlimits) {
        ngx_http_rate_limit_log_fallback(ctx, v);

        if (lcf->fallback != NGX_HTTP_RATE_LIMIT_FALLBACK_CLOSED) {
            ctx->status = NGX_HTTP_RATE_LIMIT_ERROR_ALLOWED;
            ctx->rc = NGX_DECLINED;

        } else {
            ctx->status = NGX_HTTP_RATE_LIMIT_ERROR_REJECTED;
            ctx->rc = NGX_HTTP_SERVICE_UNAVAILABLE;
        }

        return;
    }

    ngx_memcpy(ctx->results, v->limits,
               v->nlimits * sizeof(rl_limit_result_t));

    /* $rate_limit_remaining and _reset follow the tightest limit */
    remaining = (uint64_t) -1;
    retry = 0;

    for (i = 0; i < v->nlimits; i++) {
        res = &ctx->results[i];
        limit = ctx->limits[i];

        ngx_http_rate_limit_bound(limit, res);

        if (res->remaining < remaining) {
            remaining = res->remaining;
            ctx->reset = (res->reset_ms + 999) / 1000;
        }

        if (v->allowed) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "rate limit check passed for %V. "
                          "Attempts: %uL/%ui, Remaining: %uL",
                          &ctx->keys[i], res->count, limit->requests,
                          res->remaining);
            continue;
        }

        if (res->retry_ms == 0) {
            continue;
        }

        if (res->retry_ms > retry) {
            retry = res->retry_ms;
        }

        if (!ctx->cached) {
            ngx_http_rate_limit_log_rejection(ctx, i, res->count, 0, 0);

        } else if (ctx->suppressed[i] != NGX_HTTP_RATE_LIMIT_CACHE_QUIET) {
            ngx_http_rate_limit_log_rejection(ctx, i, res->count, 1,
                                              ctx->suppressed[i]);
        }

        if (mcf->cache_zone && !ctx->cached && !ctx->local) {
            ngx_http_rate_limit_cache_store(mcf->cache_zone,
                                            ctx->rkeys[i].data,
                                            ctx->rkeys[i].len,
                                            (ngx_msec_t) res->retry_ms);
        }
    }

    ctx->remaining = remaining;

    if (v->allowed) {
        ctx->status = ctx->local ? NGX_HTTP_RATE_LIMIT_LOCAL_PASSED
                                 : NGX_HTTP_RATE_LIMIT_PASSED;
        ctx->rc = NGX_DECLINED;
        return;
    }

    ctx->retry_after = rl_retry_after_sec(retry);

    if (ctx->reset < ctx->retry_after) {
        ctx->reset = ctx->retry_after;
    }

    if (lcf->dry_run) {
        ctx->status = NGX_HTTP_RATE_LIMIT_REJECTED_DRY_RUN;
        ctx->rc = NGX_DECLINED;
        return;
    }

    ctx->status = ctx->local ? NGX_HTTP_RATE_LIMIT_LOCAL_REJECTED
                             : NGX_HTTP_RATE_LIMIT_REJECTED;
    ctx->rc = lcf->status_code;
}


/*
 * No script reports a wait longer than two of its limit's windows (gcra with
 * a burst above requests: two bursts' worth of intervals).  A reply beyond
 * that comes from a broken or foreign Redis: believed, it would pin the key
 * in the over-limit cache until a restart and send absurd Retry-After and
 * RateLimit values, so it is cut to that horizon.
 */
static void
ngx_http_rate_limit_bound(ngx_http_rate_limit_t *limit,
    rl_limit_result_t *res)
{
    uint64_t  horizon, bursts;

    bursts = 1;

    if (limit->burst > limit->requests) {
        bursts = (limit->burst + limit->requests - 1) / limit->requests;
    }

    horizon = 2 * (uint64_t) limit->window * bursts;

    if (res->retry_ms > horizon) {
        res->retry_ms = horizon;
    }

    if (res->reset_ms > horizon) {
        res->reset_ms = horizon;
    }
}


/*
 * The rejection line of limit i; a rejection by the over-limit cache says
 * so, and the count of the lines of its key left out before it.
 */
static void
ngx_http_rate_limit_log_rejection(ngx_http_rate_limit_ctx_t *ctx,
    ngx_uint_t i, uint64_t count, ngx_flag_t cached, ngx_uint_t suppressed)
{
    u_char                          *p;
    ngx_http_rate_limit_t           *limit;
    ngx_http_rate_limit_loc_conf_t  *lcf;
    u_char                           suffix[sizeof(", cached ( similar lines "
                                                   "suppressed)")
                                            + NGX_INT_T_LEN];

    lcf = ctx->lcf;
    limit = ctx->limits[i];
    p = suffix;

    if (cached) {
        p = ngx_cpymem(p, ", cached", sizeof(", cached") - 1);

        if (suppressed) {
            p = ngx_sprintf(p, " (%ui similar lines suppressed)", suppressed);
        }
    }

    ngx_log_error(lcf->log_level, ctx->request->connection->log, 0,
                  "Rate limit exceeded for IP %V on %V endpoint. "
                  "Attempts: %uL/%ui%s%*s",
                  &ctx->keys[i], &limit->name, count, limit->requests,
                  lcf->dry_run ? ", dry run" : "", (size_t) (p - suffix),
                  suffix);
}


/*
 * One line a second per worker while Redis cannot answer, with the number
 * of lines left out since the last one.
 */
static void
ngx_http_rate_limit_log_fallback(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v)
{
    time_t               now;
    ngx_uint_t           suppressed, level, mode;
    const char          *action, *where, *why;
    ngx_http_request_t  *r;

    r = ctx->request;
    now = ngx_time();
    mode = ctx->lcf->fallback;

    if (now == ngx_http_rate_limit_fallback_logged[mode]) {
        ngx_http_rate_limit_fallback_suppressed[mode]++;
        return;
    }

    suppressed = ngx_http_rate_limit_fallback_suppressed[mode];
    ngx_http_rate_limit_fallback_logged[mode] = now;
    ngx_http_rate_limit_fallback_suppressed[mode] = 0;

    where = "";

    switch (mode) {

    case NGX_HTTP_RATE_LIMIT_FALLBACK_OPEN:
        action = "Allowing";
        level = NGX_LOG_WARN;
        break;

    case NGX_HTTP_RATE_LIMIT_FALLBACK_LOCAL:
        action = "Limiting";
        where = " on this host";
        level = NGX_LOG_WARN;
        break;

    default:
        action = "Rejecting";
        level = NGX_LOG_ERR;
    }

    why = v->error != RL_OK ? rl_error_name(v->error) : "reply";

    if (suppressed) {
        ngx_log_error(level, r->connection->log, 0,
                      "Rate limiting unavailable (Redis down). "
                      "%s request from %V%s (%s: %s; %ui similar lines "
                      "suppressed)",
                      action, &r->connection->addr_text, where, why,
                      v->errstr ? v->errstr : "", suppressed);
        return;
    }

    ngx_log_error(level, r->connection->log, 0,
                  "Rate limiting unavailable (Redis down). "
                  "%s request from %V%s (%s: %s)",
                  action, &r->connection->addr_text, where, why,
                  v->errstr ? v->errstr : "");
}


static ngx_int_t
ngx_http_rate_limit_respond(ngx_http_request_t *r,
    ngx_http_rate_limit_ctx_t *ctx)
{
    u_char                    *p, *last;
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    if (ctx->rc == NGX_DECLINED
        || (ctx->status != NGX_HTTP_RATE_LIMIT_REJECTED
            && ctx->status != NGX_HTTP_RATE_LIMIT_LOCAL_REJECTED))
    {
        return ctx->rc;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "%uL", ctx->retry_after);

    if (ngx_http_rate_limit_add_header(r, "Retry-After", p, last - p)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the operator's own error_page for the status takes over the body */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->error_pages) {
        err_page = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            if (err_page[i].status == (ngx_int_t) ctx->rc) {
                /*
                 * Finalized here, not returned to the access phase, which
                 * under "satisfy any" would take a 401 or 403 for a mere
                 * denial and let allow or auth_basic grant the request.
                 */
                ngx_http_finalize_request(r, ctx->rc);
                return NGX_DONE;
            }
        }
    }

    return ngx_http_rate_limit_send_rejection(r, ctx);
}


static ngx_int_t
ngx_http_rate_limit_send_rejection(ngx_http_request_t *r,
    ngx_http_rate_limit_ctx_t *ctx)
{
    size_t       len;
    u_char      *p;
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_uint_t   i;
    ngx_chain_t  out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = ctx->rc;
    r->headers_out.content_type_lowcase = NULL;

    if (ctx->lcf->body == NGX_HTTP_RATE_LIMIT_BODY_TEXT) {
        ngx_str_set(&r->headers_out.content_type, "text/plain");
        b->pos = ngx_http_rate_limit_body;
        b->last = ngx_http_rate_limit_body
                  + sizeof(ngx_http_rate_limit_body) - 1;

    } else {
        /*
         * RFC 9457 problem details of the "quota-exceeded" type that the
         * RateLimit header draft registers; NAMEs need no JSON escaping.
         */
        len = sizeof(ngx_http_rate_limit_json_head) - 1 + NGX_INT_T_LEN
              + sizeof(ngx_http_rate_limit_json_tail) - 1
              + 2 * NGX_INT64_LEN + 64;

        for (i = 0; i < ctx->nlimits; i++) {
            len += ctx->limits[i]->name.len + 4;
        }

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->pos = p;
        p = ngx_sprintf(p, "%s%ui,\"retry-after\":%uL,"
                        "\"violated-policies\":[",
                        ngx_http_rate_limit_json_head, ctx->rc,
                        ctx->retry_after);

        for (i = 0, len = 0; i < ctx->nlimits; i++) {
            if (ctx->results[i].retry_ms && !(ctx->unknown & (1 << i))) {
                p = ngx_sprintf(p, "%s\"%V\"", len++ ? "," : "",
                                &ctx->limits[i]->name);
            }
        }

        b->last = ngx_sprintf(p, "%s", ngx_http_rate_limit_json_tail);
        ngx_str_set(&r->headers_out.content_type, "application/problem+json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = b->last - b->pos;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc != NGX_ERROR && rc <= NGX_OK && !r->header_only) {
        rc = ngx_http_output_filter(r, &out);
    }

    /* finalized here, so the access phase stops without a second answer */
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * Adds the RateLimit header fields of draft-ietf-httpapi-ratelimit-headers
 * to every response of a checked request: passed pages from the upstream and
 * rejections alike.  One list item per limit, named by the limit's NAME.
 */
static ngx_int_t
ngx_http_rate_limit_header_filter(ngx_http_request_t *r)
{
    char                       *sep;
    u_char                     *p, *last;
    size_t                      len;
    uint64_t                    t, tightest;
    ngx_uint_t                  i, k;
    ngx_http_rate_limit_t      *l;
    rl_limit_result_t          *res;
    ngx_http_rate_limit_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_rate_limit_get_ctx(r);

    if (ctx == NULL
        || ctx->headers_done
        || ctx->nlimits == 0
        || ctx->lcf->headers == NGX_HTTP_RATE_LIMIT_HEADERS_OFF
        || !ngx_http_rate_limit_decided(ctx))
    {
        return ngx_http_next_header_filter(r);
    }

    ctx->headers_done = 1;

    len = 0;
    for (i = 0; i < ctx->nlimits; i++) {
        len += sizeof("\"\";q=;w=, ") - 1 + ctx->limits[i]->name.len
               + 2 * NGX_INT64_LEN;
    }

    sep = "";

    p = ngx_pnalloc(r->pool, 2 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = p;
    for (i = 0; i < ctx->nlimits; i++) {
        if (ctx->unknown & (1 << i)) {
            continue;
        }

        l = ctx->limits[i];
        last = ngx_sprintf(last, "%s\"%V\";q=%ui;w=%M", sep, &l->name,
                           l->requests, (l->window + 999) / 1000);
        sep = ", ";
    }

    if (ngx_http_rate_limit_add_header(r, "RateLimit-Policy", p, last - p)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = last;
    k = 0;
    tightest = (uint64_t) -1;
    sep = "";

    for (i = 0; i < ctx->nlimits; i++) {
        if (ctx->unknown & (1 << i)) {
            continue;
        }

        res = &ctx->results[i];

        /* a rejecting limit's quota comes back when a retry would pass */
        t = (res->retry_ms ? res->retry_ms : res->reset_ms) + 999;

        last = ngx_sprintf(last, "%s\"%V\";r=%uL;t=%uL", sep,
                           &ctx->limits[i]->name, res->remaining,
                           t / 1000);
        sep = ", ";

        if (res->remaining < tightest) {
            tightest = res->remaining;
            k = i;
        }
    }

    if (ngx_http_rate_limit_add_header(r, "RateLimit", p, last - p)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->lcf->headers == NGX_HTTP_RATE_LIMIT_HEADERS_LEGACY) {
        p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        last = ngx_sprintf(p, "%ui", ctx->limits[k]->requests);

        if (ngx_http_rate_limit_add_header(r, "RateLimit-Limit", p,
                                           last - p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = last;
        last = ngx_sprintf(p, "%uL", ctx->remaining);

        if (ngx_http_rate_limit_add_header(r, "RateLimit-Remaining", p,
                                           last - p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = last;
        last = ngx_sprintf(p, "%uL", ctx->reset);

        if (ngx_http_rate_limit_add_header(r, "RateLimit-Reset", p,
                                           last - p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/* a limit decided the request (Redis, the over-limit cache or locally) */
static ngx_uint_t
ngx_http_rate_limit_decided(ngx_http_rate_limit_ctx_t *ctx)
{
    switch (ctx->status) {
    case NGX_HTTP_RATE_LIMIT_PASSED:
    case NGX_HTTP_RATE_LIMIT_REJECTED:
    case NGX_HTTP_RATE_LIMIT_REJECTED_DRY_RUN:
    case NGX_HTTP_RATE_LIMIT_LOCAL_PASSED:
    case NGX_HTTP_RATE_LIMIT_LOCAL_REJECTED:
        return 1;
    default:
        return 0;
    }
}


static ngx_int_t
ngx_http_rate_limit_add_header(ngx_http_request_t *r, char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * Metrics: a request counts once under each limit it was checked against,
 * with the request's verdict; errors by kind and the round trip's latency
 * once per check.
 */
static void
ngx_http_rate_limit_count(ngx_http_rate_limit_ctx_t *ctx,
    const rl_verdict_t *v)
{
    ngx_int_t                         slot;
    ngx_uint_t                        i, n;
    ngx_http_rate_limit_t            *limits, **checked, *known;
    ngx_http_rate_limit_shm_t        *sh;
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(ctx->request,
                                        ngx_http_rate_limit_module);
    sh = mcf->sh;

    if (sh == NULL || ctx->status == NGX_HTTP_RATE_LIMIT_NONE) {
        return;
    }

    known = mcf->limits.elts;
    limits = ctx->lcf->limits->elts;
    checked = ctx->limits;
    n = ctx->nlimits ? ctx->nlimits : ctx->lcf->limits->nelts;

    for (i = 0; i < n; i++) {
        slot = known[ctx->nlimits ? checked[i]->known : limits[i].known].slot;

        if (slot >= 0) {
            (void) ngx_atomic_fetch_add(
                &sh->limits[slot].requests[ctx->status - 1], 1);
        }
    }

    if (v == NULL) {
        return;
    }

    if (v->error != RL_OK) {
        (void) ngx_atomic_fetch_add(&sh->errors[v->error], 1);
    }

    if (v->latency_us) {
        (void) ngx_atomic_fetch_add(
                   &sh->latency[rl_latency_bucket(v->latency_us)], 1);
        (void) ngx_atomic_fetch_add(&sh->latency_sum_us,
                                    (ngx_atomic_int_t) v->latency_us);
    }
}


static void
ngx_http_rate_limit_inflight(ngx_http_rate_limit_ctx_t *ctx, ngx_int_t n)
{
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(ctx->request,
                                        ngx_http_rate_limit_module);

    if (mcf->sh) {
        (void) ngx_atomic_fetch_add(&mcf->sh->procs[ngx_process_slot].inflight,
                                    n);
    }
}


/* the core's connection state changes, for rate_limit_redis_up */
static void
ngx_http_rate_limit_on_state(void *data, int up)
{
    ngx_http_rate_limit_main_conf_t  *mcf = data;

    if (mcf->sh) {
        mcf->sh->procs[ngx_process_slot].up = up ? 1 : 0;
    }
}


/*
 * The metrics zone outlives reloads: a new cycle takes over the old cycle's
 * counters and adds slots for NAMEs it has not seen.  Runs in the master
 * before the workers start, so nothing else appends meanwhile.
 */
static ngx_int_t
ngx_http_rate_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_rate_limit_main_conf_t  *omcf = data;

    ngx_uint_t                        i, j;
    ngx_slab_pool_t                  *shpool;
    ngx_http_rate_limit_t            *known;
    ngx_http_rate_limit_shm_t        *sh;
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (omcf) {
        sh = omcf->sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        sh = ngx_slab_calloc(shpool, sizeof(ngx_http_rate_limit_shm_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        shpool->data = sh;
    }

    mcf->sh = sh;
    known = mcf->limits.elts;

    for (i = 0; i < mcf->limits.nelts; i++) {

        for (j = 0; j < sh->nlimits; j++) {
            if (sh->limits[j].len == known[i].name.len
                && ngx_strncmp(sh->limits[j].name, known[i].name.data,
                               known[i].name.len)
                   == 0)
            {
                break;
            }
        }

        if (j == NGX_HTTP_RATE_LIMIT_METRIC_NAMES) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "rate limit \"%V\" gets no metrics: more than %d "
                          "names", &known[i].name,
                          NGX_HTTP_RATE_LIMIT_METRIC_NAMES);
            known[i].slot = -1;
            continue;
        }

        if (j == sh->nlimits) {
            ngx_memcpy(sh->limits[j].name, known[i].name.data,
                       known[i].name.len);
            sh->limits[j].len = known[i].name.len;
            sh->nlimits++;
        }

        known[i].slot = (ngx_int_t) j;
    }

    return NGX_OK;
}


/* rate_limit_metrics: Prometheus text exposition, all workers summed */
static ngx_int_t
ngx_http_rate_limit_metrics_handler(ngx_http_request_t *r)
{
    size_t                            len, need;
    u_char                           *buf;
    ngx_pid_t                         pid;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_uint_t                        i, k;
    ngx_chain_t                       out;
    rl_metrics_t                      m;
    rl_metrics_limit_t               *ml;
    ngx_http_rate_limit_shm_t        *sh;
    ngx_http_rate_limit_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_rate_limit_module);
    sh = mcf->sh;

    if (sh == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&m, sizeof(rl_metrics_t));

    m.nlimits = sh->nlimits;
    ml = ngx_palloc(r->pool, (m.nlimits + 1) * sizeof(rl_metrics_limit_t));
    if (ml == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < m.nlimits; i++) {
        ml[i].name = (char *) sh->limits[i].name;
        ml[i].name_len = sh->limits[i].len;

        for (k = 0; k < RL_STATUSES; k++) {
            ml[i].requests[k] = sh->limits[i].requests[k];
        }
    }

    m.limits = ml;

    for (k = 0; k < RL_ERR_KINDS; k++) {
        m.errors[k] = sh->errors[k];
    }

    for (k = 0; k <= RL_LATENCY_BUCKETS; k++) {
        m.latency[k] = sh->latency[k];
    }

    m.latency_sum_us = sh->latency_sum_us;
    /* only the slots of live workers count */
    for (k = 0; k < NGX_MAX_PROCESSES; k++) {
        pid = (ngx_pid_t) sh->procs[k].pid;

        if (pid == 0 || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)) {
            continue;
        }

        m.workers++;
        m.connections_up += sh->procs[k].up ? 1 : 0;
        m.inflight += sh->procs[k].inflight;
    }
    m.cache_hits = sh->cache_hits;

    len = 4096 + m.nlimits * 512;

    for ( ;; ) {
        buf = ngx_pnalloc(r->pool, len);
        if (buf == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        need = rl_metrics_render(&m, (char *) buf, len);

        if (need < len) {
            break;
        }

        len = need + 1;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = need;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = buf;
    b->last = buf + need;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static char *
ngx_http_rate_limit_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_rate_limit_module);
    mcf->metrics_used = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_rate_limit_metrics_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_rate_limit_key_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_rate_limit_main_conf_t  *mcf = conf;

    ngx_str_t  *value;

    if (mcf->prefix.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 128) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be 1 to 128 bytes long",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    mcf->prefix = value[1];

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_rate_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_rate_limit_ctx_t  *ctx;

    ctx = ngx_http_rate_limit_get_ctx(r);

    if (ctx == NULL || ctx->status == NGX_HTTP_RATE_LIMIT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_rate_limit_status_names[ctx->status].len;
    v->data = ngx_http_rate_limit_status_names[ctx->status].data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_rate_limit_number_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_http_rate_limit_ctx_t  *ctx;

    ctx = ngx_http_rate_limit_get_ctx(r);

    if (ctx == NULL || !ngx_http_rate_limit_decided(ctx)) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL",
                         data == NGX_HTTP_RATE_LIMIT_VAR_REMAINING
                         ? ctx->remaining : ctx->reset)
             - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static void *
ngx_http_rate_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_rate_limit_main_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_rate_limit_main_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->prefix = { 0, NULL };
     *     conf->redis_set = 0;
     *     conf->host = { 0, NULL };
     *     conf->unix_path = { 0, NULL };
     *     conf->username = { 0, NULL };
     *     conf->password = { 0, NULL };
     *     conf->password_set = 0;
     *     conf->db = 0;
     *     conf->loop = NULL;
     *     conf->client = NULL;
     */

    if (ngx_array_init(&conf->limits, cf->pool, 4,
                       sizeof(ngx_http_rate_limit_t))
        != NGX_OK)
    {
        return NULL;
    }

    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->local_cache = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_rate_limit_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_rate_limit_main_conf_t  *mcf = conf;

    ngx_str_t               name;
    ngx_http_rate_limit_t  *first;

    if (mcf->prefix.data == NULL) {
        ngx_str_set(&mcf->prefix, "rate_limit");
    }

    ngx_conf_init_msec_value(mcf->connect_timeout, 100);
    ngx_conf_init_msec_value(mcf->timeout, 50);

    if (mcf->limits.nelts || mcf->metrics_used) {
        ngx_str_set(&name, "ngx_http_rate_limit_module");

        mcf->shm_zone = ngx_shared_memory_add(cf, &name,
                            sizeof(ngx_http_rate_limit_shm_t) + 65536,
                            &ngx_http_rate_limit_module);
        if (mcf->shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->shm_zone->init = ngx_http_rate_limit_init_zone;
        mcf->shm_zone->data = mcf;
    }

    ngx_conf_init_value(mcf->local_cache, 1);

    if (mcf->limits.nelts && mcf->local_cache) {
        ngx_str_set(&name, "ngx_http_rate_limit_module_cache");

        mcf->cache_zone = ngx_shared_memory_add(cf, &name,
                                          NGX_HTTP_RATE_LIMIT_CACHE_SIZE,
                                          &ngx_http_rate_limit_module);
        if (mcf->cache_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->cache_zone->init = ngx_http_rate_limit_cache_init_zone;
    }

    if (mcf->limits.nelts && mcf->local_used) {
        ngx_str_set(&name, "ngx_http_rate_limit_module_local");

        mcf->local_zone = ngx_shared_memory_add(cf, &name,
                                          NGX_HTTP_RATE_LIMIT_CACHE_SIZE,
                                          &ngx_http_rate_limit_module);
        if (mcf->local_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->local_zone->init = ngx_http_rate_limit_cache_init_zone;
    }

    if (mcf->limits.nelts && !mcf->redis_set) {
        first = mcf->limits.elts;

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"rate_limit\" is used in %V:%ui but no "
                      "\"rate_limit_redis\" is set in the http block",
                      &first[0].file, first[0].line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_rate_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_rate_limit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_rate_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->limits = NGX_CONF_UNSET_PTR;
    conf->fallback = NGX_CONF_UNSET_UINT;
    conf->status_code = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->dry_run = NGX_CONF_UNSET;
    conf->headers = NGX_CONF_UNSET_UINT;
    conf->body = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_rate_limit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_rate_limit_loc_conf_t *prev = parent;
    ngx_http_rate_limit_loc_conf_t *conf = child;

    /* as limit_req: the inner level's lines replace the outer level's */
    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);

    ngx_conf_merge_uint_value(conf->fallback, prev->fallback,
                              NGX_HTTP_RATE_LIMIT_FALLBACK_OPEN);
    ngx_conf_merge_uint_value(conf->status_code, prev->status_code,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_WARN);
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_HTTP_RATE_LIMIT_HEADERS_ON);
    ngx_conf_merge_uint_value(conf->body, prev->body,
                              NGX_HTTP_RATE_LIMIT_BODY_TEXT);

    return NGX_CONF_OK;
}


/* " burst=N" of a gcra limit, for messages; nothing for the others */
static u_char *
ngx_http_rate_limit_burst_text(ngx_http_rate_limit_t *limit, u_char *buf)
{
    if (limit->algorithm != RL_ALG_GCRA) {
        return buf;
    }

    return ngx_sprintf(buf, " burst=%ui",
                       limit->burst ? limit->burst : limit->requests);
}


/* rate_limit NAME requests=N window=TIME [key=VALUE]; */
static char *
ngx_http_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_rate_limit_loc_conf_t  *lcf = conf;

    int                                alg;
    u_char                             buf[NGX_INT_T_LEN + 8];
    uint64_t                           v;
    ngx_int_t                          n;
    ngx_str_t                         *value, key;
    ngx_uint_t                         i, seen_algorithm;
    ngx_http_rate_limit_t             *limit, *l, *known;
    ngx_http_compile_complex_value_t   ccv;
    ngx_http_rate_limit_main_conf_t   *mcf;

    value = cf->args->elts;

    if (!rl_valid_name((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid name \"%V\" in \"rate_limit\" directive, "
                           "it may contain letters, digits, \"_\", \"-\" "
                           "and \".\" only, 64 at most",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (lcf->limits == NGX_CONF_UNSET_PTR) {
        lcf->limits = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_http_rate_limit_t));
        if (lcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    l = lcf->limits->elts;

    for (i = 0; i < lcf->limits->nelts; i++) {
        if (l[i].name.len == value[1].len
            && ngx_strncmp(l[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "rate limit \"%V\" is duplicate", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (lcf->limits->nelts == RL_MAX_LIMITS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"rate_limit\" directives on one level, "
                           "%d at most", RL_MAX_LIMITS);
        return NGX_CONF_ERROR;
    }

    limit = ngx_array_push(lcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_http_rate_limit_t));
    limit->name = value[1];
    limit->file = cf->conf_file->file.name;
    limit->line = cf->conf_file->line;

    ngx_str_set(&key, "$remote_addr");
    seen_algorithm = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "requests=", 9) == 0) {

            if (limit->requests) {
                goto duplicate;
            }

            if (rl_parse_requests((char *) value[i].data + 9,
                                  value[i].len - 9, &v)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, requests must be a number "
                                   "from 1 to %uL",
                                   &value[i], (uint64_t) RL_REQUESTS_MAX);
                return NGX_CONF_ERROR;
            }

            limit->requests = (ngx_uint_t) v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {

            if (limit->window) {
                goto duplicate;
            }

            if (rl_parse_duration_ms((char *) value[i].data + 7,
                                     value[i].len - 7, &v)
                != 0
                || v < RL_WINDOW_MIN_MS || v > RL_WINDOW_MAX_MS)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, window must be a time from "
                                   "1s to 365d",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            limit->window = (ngx_msec_t) v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "algorithm=", 10) == 0) {

            if (seen_algorithm++) {
                goto duplicate;
            }

            alg = rl_parse_algorithm((char *) value[i].data + 10,
                                     value[i].len - 10);
            if (alg < 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, algorithm must be "
                                   "\"sliding_log\", \"sliding_window\", "
                                   "\"gcra\" or \"fixed_window\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            limit->algorithm = (rl_algorithm_e) alg;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ipv6_prefix=", 12) == 0) {

            if (limit->ipv6_prefix) {
                goto duplicate;
            }

            n = ngx_atoi(value[i].data + 12, value[i].len - 12);

            if (n < 1 || n > 128) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, ipv6_prefix must be a number "
                                   "from 1 to 128", &value[i]);
                return NGX_CONF_ERROR;
            }

            limit->ipv6_prefix = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {

            if (limit->burst) {
                goto duplicate;
            }

            if (rl_parse_requests((char *) value[i].data + 6,
                                  value[i].len - 6, &v)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, burst must be a number "
                                   "from 1 to %uL",
                                   &value[i], (uint64_t) RL_REQUESTS_MAX);
                return NGX_CONF_ERROR;
            }

            limit->burst = (ngx_uint_t) v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {

            if (limit->key.value.data) {
                goto duplicate;
            }

            key.data = value[i].data + 4;
            key.len = value[i].len - 4;

            if (key.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"rate_limit\" "
                                   "directive, key must not be empty",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            /* marks key= as seen; compiled below */
            limit->key.value = key;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"rate_limit\" "
                           "directive", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* the operators' guide's defaults: 10 requests an hour */
    if (limit->requests == 0) {
        limit->requests = 10;
    }

    if (limit->window == 0) {
        limit->window = 3600 * 1000;
    }

    if (limit->ipv6_prefix == 0) {
        limit->ipv6_prefix = 128;
    }

    if (limit->burst && limit->algorithm != RL_ALG_GCRA) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"burst=\" in \"rate_limit\" directive \"%V\" "
                           "needs algorithm=gcra", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &key;
    ccv.complex_value = &limit->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* one NAME is one budget: its parameters must agree everywhere */
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_rate_limit_module);
    known = mcf->limits.elts;

    for (i = 0; i < mcf->limits.nelts; i++) {
        if (known[i].name.len != limit->name.len
            || ngx_strncmp(known[i].name.data, limit->name.data,
                           limit->name.len)
               != 0)
        {
            continue;
        }

        if (known[i].requests != limit->requests
            || known[i].window != limit->window
            || known[i].algorithm != limit->algorithm
            || (limit->algorithm == RL_ALG_GCRA
                && (known[i].burst ? known[i].burst : known[i].requests)
                   != (limit->burst ? limit->burst : limit->requests)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "rate limit \"%V\" is already defined with "
                               "requests=%ui window=%M%s algorithm=%s%*s "
                               "in %V:%ui",
                               &limit->name, known[i].requests,
                               known[i].window % 1000
                               ? known[i].window : known[i].window / 1000,
                               known[i].window % 1000 ? "ms" : "s",
                               rl_algorithm_name(known[i].algorithm),
                               ngx_http_rate_limit_burst_text(&known[i], buf)
                               - buf, buf,
                               &known[i].file, known[i].line);
            return NGX_CONF_ERROR;
        }

        limit->known = i;
        return NGX_CONF_OK;
    }

    limit->known = mcf->limits.nelts;

    known = ngx_array_push(&mcf->limits);
    if (known == NULL) {
        return NGX_CONF_ERROR;
    }

    *known = *limit;

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"rate_limit\" "
                       "directive", &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_rate_limit_copy_cstr(ngx_conf_t *cf, ngx_str_t *dst, u_char *src,
    size_t len)
{
    dst->data = ngx_pnalloc(cf->pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->data[len] = '\0';
    dst->len = len;

    return NGX_OK;
}


/*
 * Resolves host:port (or host, with the default port) once, at configuration
 * time: hiredis would resolve a name with a blocking getaddrinfo() in the
 * worker.  The first address is used.
 */
static ngx_int_t
ngx_http_rate_limit_resolve(ngx_conf_t *cf, ngx_str_t *url,
    in_port_t default_port, ngx_http_rate_limit_addr_t *addr)
{
    size_t     len;
    u_char     text[NGX_SOCKADDR_STRLEN];
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = *url;
    u.default_port = default_port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\" in \"rate_limit_redis\" "
                           "directive%s%s", url, u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);

    if (ngx_http_rate_limit_copy_cstr(cf, &addr->host, text, len) != NGX_OK) {
        return NGX_ERROR;
    }

    addr->port = u.port ? u.port : default_port;

    return NGX_OK;
}


/* sentinel=h1:p1,h2:p2,... */
static char *
ngx_http_rate_limit_sentinels(ngx_conf_t *cf,
    ngx_http_rate_limit_main_conf_t *mcf, ngx_str_t *value)
{
    u_char                      *p, *last, *comma;
    ngx_str_t                    one;
    ngx_http_rate_limit_addr_t  *addr;

    mcf->sentinels = ngx_array_create(cf->pool, 3,
                                      sizeof(ngx_http_rate_limit_addr_t));
    if (mcf->sentinels == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value->data + sizeof("sentinel=") - 1;
    last = value->data + value->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        one.data = p;
        one.len = comma - p;

        if (one.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"rate_limit_redis\" "
                               "directive, an empty sentinel address", value);
            return NGX_CONF_ERROR;
        }

        if (one.len >= 5 && ngx_strncmp(one.data, "unix:", 5) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"rate_limit_redis\" "
                               "directive, sentinels are reached over TCP",
                               value);
            return NGX_CONF_ERROR;
        }

        addr = ngx_array_push(mcf->sentinels);
        if (addr == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_rate_limit_resolve(cf, &one, 26379, addr) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        p = comma + 1;
    }

    if (mcf->sentinels->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"rate_limit_redis\" "
                           "directive, no sentinel address", value);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * rate_limit_redis ADDRESS [db=N] [password=P] [username=U]
 *                  [connect_timeout=T] [timeout=T];
 * rate_limit_redis sentinel=H:P[,H:P...] master=NAME [sentinel_password=P]
 *                  [db=N] [password=P] [username=U] [connect_timeout=T]
 *                  [timeout=T];
 */
static char *
ngx_http_rate_limit_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_rate_limit_main_conf_t  *mcf = conf;

    size_t                       len;
    u_char                      *eq;
    uint64_t                     ms;
    ngx_str_t                   *value, s, *secret;
    ngx_int_t                    n;
    ngx_uint_t                   i, j, seen, first;
    ngx_http_rate_limit_addr_t   addr;

    static ngx_str_t  params[] = {
        ngx_string("db="), ngx_string("password="), ngx_string("username="),
        ngx_string("connect_timeout="), ngx_string("timeout="),
        ngx_string("sentinel="), ngx_string("master="),
        ngx_string("sentinel_password=")
    };

    if (mcf->redis_set) {
        return "is duplicate";
    }

    mcf->redis_set = 1;
    value = cf->args->elts;

    /* never echo what may be a secret: name a parameter by "name=" only */
    eq = ngx_strlchr(value[1].data, value[1].data + value[1].len, '=');
    first = 2;

    if (eq) {
        s.data = value[1].data;
        s.len = eq - value[1].data + 1;

        if (s.len != sizeof("sentinel=") - 1
            || ngx_strncmp(s.data, "sentinel=", s.len) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"rate_limit_redis\" directive needs an "
                               "address (host:port, host or unix:path) or "
                               "sentinel= before \"%V\"", &s);
            return NGX_CONF_ERROR;
        }

        first = 1;
    }

    seen = 0;

    for (i = first; i < cf->args->nelts; i++) {

        for (j = 0; j < sizeof(params) / sizeof(params[0]); j++) {
            if (value[i].len >= params[j].len
                && ngx_strncmp(value[i].data, params[j].data, params[j].len)
                   == 0)
            {
                if (seen & (1 << j)) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "duplicate parameter \"%V\" in "
                                       "\"rate_limit_redis\" directive",
                                       &params[j]);
                    return NGX_CONF_ERROR;
                }

                seen |= 1 << j;
                break;
            }
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (n == NGX_ERROR || n > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in "
                                   "\"rate_limit_redis\" directive, db must "
                                   "be a database number", &value[i]);
                return NGX_CONF_ERROR;
            }

            mcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "sentinel=", 9) == 0) {
            if (first == 2) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"rate_limit_redis\" directive takes an "
                                   "address or sentinel=, not both");
                return NGX_CONF_ERROR;
            }

            if (ngx_http_rate_limit_sentinels(cf, mcf, &value[i])
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "master=", 7) == 0) {
            if (!rl_valid_name((char *) value[i].data + 7, value[i].len - 7))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in "
                                   "\"rate_limit_redis\" directive, a "
                                   "master name", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_rate_limit_copy_cstr(cf, &mcf->master,
                                              value[i].data + 7,
                                              value[i].len - 7)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        secret = NULL;
        len = 0;

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            secret = &mcf->password;
            mcf->password_set = 1;
            len = 9;

        } else if (ngx_strncmp(value[i].data, "sentinel_password=", 18) == 0) {
            secret = &mcf->sentinel_password;
            mcf->sentinel_password_set = 1;
            len = 18;

        } else if (ngx_strncmp(value[i].data, "username=", 9) == 0) {
            secret = &mcf->username;
            len = 9;
        }

        if (secret) {
            if (value[i].len == len) {
                s.data = value[i].data;
                s.len = len;

                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty \"%V\" in \"rate_limit_redis\" "
                                   "directive", &s);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_rate_limit_copy_cstr(cf, secret, value[i].data + len,
                                              value[i].len - len)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0
            || ngx_strncmp(value[i].data, "timeout=", 8) == 0)
        {
            len = value[i].data[0] == 'c' ? 16 : 8;

            if (rl_parse_duration_ms((char *) value[i].data + len,
                                     value[i].len - len, &ms)
                != 0
                || ms == 0 || ms > 60000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in "
                                   "\"rate_limit_redis\" directive, it must "
                                   "be a time from 1ms to 60s", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (len == 16) {
                mcf->connect_timeout = (ngx_msec_t) ms;

            } else {
                mcf->timeout = (ngx_msec_t) ms;
            }

            continue;
        }

        s = value[i];
        eq = ngx_strlchr(s.data, s.data + s.len, '=');

        if (eq) {
            s.len = eq - s.data + 1;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"rate_limit_redis\" "
                           "directive", &s);
        return NGX_CONF_ERROR;
    }

    if (mcf->username.len && !mcf->password_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rate_limit_redis\" directive has \"username=\" "
                           "without \"password=\"");
        return NGX_CONF_ERROR;
    }

    if (first == 1) {
        if (mcf->master.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"rate_limit_redis\" directive has "
                               "\"sentinel=\" without \"master=\"");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (mcf->master.len || mcf->sentinel_password_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"rate_limit_redis\" directive has \"%s\" "
                           "without \"sentinel=\"",
                           mcf->master.len ? "master=" : "sentinel_password=");
        return NGX_CONF_ERROR;
    }

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        if (value[1].len - 5 >= sizeof(((struct sockaddr_un *) 0)->sun_path))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address \"%V\" in "
                               "\"rate_limit_redis\" directive, the socket "
                               "path is too long", &value[1]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_rate_limit_copy_cstr(cf, &mcf->unix_path,
                                          value[1].data + 5,
                                          value[1].len - 5)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (ngx_http_rate_limit_resolve(cf, &value[1], 6379, &addr) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mcf->host = addr.host;
    mcf->port = addr.port;

    return NGX_CONF_OK;
}


/* an enum slot whose error names the directive and the allowed values */
static char *
ngx_http_rate_limit_set_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char                           *last, buf[128];
    ngx_str_t                        *value;
    ngx_uint_t                        i, *np;
    ngx_conf_enum_t                  *e;
    ngx_http_rate_limit_main_conf_t  *mcf;

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *np = e[i].value;

            if (e == ngx_http_rate_limit_fallback
                && e[i].value == NGX_HTTP_RATE_LIMIT_FALLBACK_LOCAL)
            {
                mcf = ngx_http_conf_get_module_main_conf(cf,
                                                 ngx_http_rate_limit_module);
                mcf->local_used = 1;
            }

            return NGX_CONF_OK;
        }
    }

    last = buf;

    for (i = 0; e[i].name.len != 0; i++) {
        last = ngx_slprintf(last, buf + sizeof(buf), "%s\"%V\"",
                            i ? ", " : "", &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be one of %*s",
                       &value[1], &cmd->name, last - buf, buf);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_rate_limit_set_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_rate_limit_loc_conf_t  *lcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (lcf->status_code != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = ngx_atoi(value[1].data, value[1].len);

    /* 444 closes the connection, 499 is nginx's "client went away" */
    if (n < 400 || n > 599 || n == 444 || n == 499) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be a status code from 400 to 599, "
                           "not 444 or 499",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    lcf->status_code = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_rate_limit_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_rate_limit_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * The handler is pushed last in the access phase, and the phase runs its
 * handlers last-pushed first: a dynamic module's postconfiguration runs after
 * every built-in module's, so the limit is checked before auth_basic,
 * auth_request and access, and after realip (post-read and preaccess).
 */
static ngx_int_t
ngx_http_rate_limit_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_rate_limit_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_rate_limit_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_rate_limit_init_process(ngx_cycle_t *cycle)
{
    int                              *ports;
    char                              err[256], **hosts;
    ngx_uint_t                        i;
    rl_redis_conf_t                   rc;
    ngx_http_rate_limit_addr_t       *sentinels;
    ngx_http_rate_limit_main_conf_t  *mcf;

    /* cache managers and loaders run this too: they serve no requests */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_rate_limit_module);

    if (mcf == NULL || mcf->limits.nelts == 0 || !mcf->redis_set) {
        return NGX_OK;
    }

    mcf->loop = rl_ngx_loop_create(cycle->log);
    if (mcf->loop == NULL) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "rate limit: no memory for the event loop adapter; "
                      "every request gets the fallback answer");
        return NGX_OK;
    }

    ngx_memzero(&rc, sizeof(rl_redis_conf_t));
    rc.host = mcf->host.len ? (char *) mcf->host.data : NULL;
    rc.port = (int) mcf->port;
    rc.unix_path = mcf->unix_path.len ? (char *) mcf->unix_path.data : NULL;
    rc.db = (int) mcf->db;
    rc.username = mcf->username.len ? (char *) mcf->username.data : NULL;
    rc.password = mcf->password_set ? (char *) mcf->password.data : NULL;
    rc.connect_timeout_ms = mcf->connect_timeout;
    rc.timeout_ms = mcf->timeout;
    rc.on_state = ngx_http_rate_limit_on_state;
    rc.state_data = mcf;

    if (mcf->sentinels) {
        sentinels = mcf->sentinels->elts;
        rc.nsentinels = mcf->sentinels->nelts;

        hosts = ngx_palloc(cycle->pool, rc.nsentinels * sizeof(char *));
        ports = ngx_palloc(cycle->pool, rc.nsentinels * sizeof(int));
        if (hosts == NULL || ports == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < rc.nsentinels; i++) {
            hosts[i] = (char *) sentinels[i].host.data;
            ports[i] = (int) sentinels[i].port;
        }

        rc.sentinel_hosts = (const char *const *) hosts;
        rc.sentinel_ports = ports;
        rc.master_name = (char *) mcf->master.data;
        rc.sentinel_password = mcf->sentinel_password_set
                               ? (char *) mcf->sentinel_password.data : NULL;
    }

    /*
     * The cached time is the master's, from before the fork: the connect
     * timer would be armed in the past and fire before any reply.
     */
    ngx_time_update();

    mcf->client = rl_client_create(mcf->loop, &rc, err, sizeof(err));

    if (mcf->client == NULL) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "rate limit: cannot create the Redis client: %s; "
                      "every request gets the fallback answer", err);
        return NGX_OK;
    }

    if (mcf->sh) {
        mcf->sh->procs[ngx_process_slot].up = 0;
        mcf->sh->procs[ngx_process_slot].inflight = 0;
        mcf->sh->procs[ngx_process_slot].pid = (ngx_atomic_uint_t) ngx_pid;
    }

    return NGX_OK;
}


/* before nginx looks for open sockets left: close the Redis connection */
static void
ngx_http_rate_limit_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_rate_limit_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_rate_limit_module);
    if (mcf == NULL) {
        return;
    }

    if (mcf->client) {
        rl_client_destroy(mcf->client);
        mcf->client = NULL;

        if (mcf->sh) {
            mcf->sh->procs[ngx_process_slot].pid = 0;
        }
    }

    if (mcf->loop) {
        rl_ngx_loop_destroy(mcf->loop);
        mcf->loop = NULL;
    }
}
