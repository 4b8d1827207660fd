/* control.h - the control loop: claims jobs, keeps their leases, and walks the shutdown
 * phases, on a thread of its own. */
#ifndef RUNNER_CONTROL_H
#define RUNNER_CONTROL_H

#include <stddef.h>

#include "config.h"
#include "metrics.h"
#include "shutdown.h"
#include "worker.h"

typedef struct control control;

/* The kinds this instance can run (its claims ask for exactly these). */
typedef struct control_kind {
    const char *name;
    int max_attempts; /* kinds.<name>.max_attempts; 0: unset */
} control_kind;

/* control_create prepares the loop; it takes no ownership. wake_fd is the eventfd the
 * pool writes when a job finishes; the loop also uses it for requests. The loop feeds m
 * (outcomes, gauges, its ticks, the phase). */
control *control_create(const config *cfg, const char *database_url, worker_pool *pool, int wake_fd,
                        const control_kind *kinds, size_t nkinds, metrics *m);
void control_destroy(control *c);

/* control_statement_timeout_ms is the deadline of each statement the loop sends: a
 * fraction of the lease, so that the lease guard always gets to run in time. */
int64_t control_statement_timeout_ms(const config *cfg);
/* control_longest_turn_ms is the longest one loop turn takes on a server that stopped
 * answering (what /healthz must allow before it calls the loop wedged). */
int64_t control_longest_turn_ms(const config *cfg);

/* A kind's room: how many more of its jobs may start now, or -1 for no limit of its own
 * (a worker kind has as many as it has free processes). */
typedef int (*control_kind_room_fn)(void *arg, const char *kind);
/* control_set_kind_room makes claims ask room() before taking jobs of a kind (before
 * control_start). */
void control_set_kind_room(control *c, control_kind_room_fn room, void *arg);

/* control_start runs the loop on its own thread (signals blocked). */
int control_start(control *c, char *err, size_t errlen);
/* control_drain enters PHASE_DRAINING: stop claiming, hand back unstarted jobs, let
 * running ones finish. */
void control_drain(control *c);
/* control_cancel enters PHASE_CANCELLING with the deadlines of shutdown.c: cancel running
 * jobs, release their leases, then stop. */
void control_cancel(control *c, const shutdown_deadlines *d);
/* control_reload hands the loop a new configuration and its kinds (both must outlive
 * the loop); it takes them at the start of its next turn: claims from then on follow
 * them, the instance row shows them, schedules are synced again. */
void control_reload(control *c, const config *cfg, const control_kind *kinds, size_t nkinds);
/* control_done_fd becomes readable when the loop has ended. */
int control_done_fd(const control *c);
/* control_join waits for the loop and returns its status: 0 after a clean stop, -1 on a
 * fatal error (message in err). */
int control_join(control *c, char *err, size_t errlen);

#endif
