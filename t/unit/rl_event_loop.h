/*
 * The core's event-loop seam on libevent, for the unit tests: the same Redis
 * client code that runs on nginx's loop in production runs on this one.
 */

#ifndef RL_EVENT_LOOP_H
#define RL_EVENT_LOOP_H

#include "rl_api.h"

#include <event2/event.h>

#ifdef __cplusplus
extern "C" {
#endif

rl_loop_t *rl_event_loop_create(struct event_base *base) RL_NOEXCEPT;
void rl_event_loop_destroy(rl_loop_t *loop) RL_NOEXCEPT;

/* how many lines the client logged that contain text */
size_t rl_event_loop_logged(rl_loop_t *loop, const char *text) RL_NOEXCEPT;

/* how many timers that are not cancelable are armed: those that would keep
 * a gracefully exiting nginx worker waiting */
size_t rl_event_loop_uncancelable(rl_loop_t *loop) RL_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* RL_EVENT_LOOP_H */
