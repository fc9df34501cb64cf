/*
 * The core's event-loop seam implemented on nginx's event loop.  Included by
 * the C shim after the nginx headers.
 */

#ifndef RL_NGX_LOOP_H
#define RL_NGX_LOOP_H

#include "rl_api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when out of memory; messages are logged to log */
rl_loop_t *rl_ngx_loop_create(ngx_log_t *log) RL_NOEXCEPT;
void rl_ngx_loop_destroy(rl_loop_t *loop) RL_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* RL_NGX_LOOP_H */
