/* shutdown.h - the shutdown protocol: its phases, its deadlines, and the signals that
 * drive it from the thread that called runner_run. */
#ifndef RUNNER_SHUTDOWN_H
#define RUNNER_SHUTDOWN_H

#include <stdint.h>

#include "config.h"

/* The phases of an instance, in the only order it goes through them. Every module
 * speaks these names (the control loop, this file, the metrics' runner_phase). */
enum shutdown_phase {
    PHASE_RUNNING = 0,    /* claiming and working jobs */
    PHASE_DRAINING = 1,   /* first SIGTERM/SIGINT: no claims, unstarted jobs handed back,
                           * running jobs may finish within shutdown.grace */
    PHASE_CANCELLING = 2, /* grace over or second signal: running jobs are cancelled (exec
                           * children: SIGTERM, SIGKILL after kill_after), then every
                           * unfinished lease is released in one statement */
};

const char *shutdown_phase_name(enum shutdown_phase p);

/* Slack after shutdown.kill_after for killed children to be reaped and their handlers
 * to return. */
#define SHUTDOWN_REAP_MS 500
/* What the release statement may take before the loop gives up on it (the leases then
 * run out and a peer rescues the jobs). */
#define SHUTDOWN_WRITE_MS 500
/* What the loop may take to close its connections before runner_run stops waiting. */
#define SHUTDOWN_EXIT_MS 500

/* The deadlines of the cancelling phase, all fixed at once when it begins, in the
 * order they fall. The whole budget after the grace period is kill_after + 1.5 s, so
 * the defaults (grace 20 s, kill_after 5 s) end a shutdown in 26.5 s at most. */
typedef struct shutdown_deadlines {
    int64_t handlers_ms; /* cancelled handlers have returned: write the releases */
    int64_t loop_ms;     /* the control loop ends, written or not */
    int64_t exit_ms;     /* last resort: runner_run returns even if the loop hangs */
} shutdown_deadlines;

/* shutdown_cancel_deadlines are the deadlines of a cancel that begins at now_ms. */
shutdown_deadlines shutdown_cancel_deadlines(const config *cfg, int64_t now_ms);

/* What the stop pipe carries, one byte a request: a signal number (SIGTERM, SIGINT:
 * stop; SIGHUP: reload) or one of these from the C API. */
#define SHUTDOWN_BYTE_STOP 0     /* runner_stop (no signal is 0) */
#define SHUTDOWN_BYTE_RELOAD 255 /* runner_reload (no signal is 255) */

/* shutdown_signals_install routes SIGTERM, SIGINT and SIGHUP to a byte on write_fd (the
 * handler does nothing else) and ignores SIGPIPE. shutdown_signals_restore undoes it (a no-op
 * when nothing is installed). */
int shutdown_signals_install(int write_fd, char *err, size_t errlen);
void shutdown_signals_restore(void);

struct control;

/* shutdown_run waits for requests on read_fd and walks the phases: first stop request ->
 * draining; grace deadline or second request -> cancelling. A reload request while
 * running calls reload(arg) (on this thread), which may put a new configuration in *cfg;
 * the grace and kill_after in force are read from *cfg when a phase begins. Returns 0
 * when the control loop has ended, or -1 when it overran the cancel's exit deadline (the
 * loop or a handler is stuck). */
int shutdown_run(int read_fd, struct control *ctl, const config *const *cfg,
                 void (*reload)(void *arg), void *arg);

#endif
