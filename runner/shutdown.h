/* shutdown.h - the shutdown protocol, driven from the main thread by signals and timers. */
#ifndef RUNNER_SHUTDOWN_H
#define RUNNER_SHUTDOWN_H

#include "config.h"
#include "control.h"

/* shutdown_signals_install routes SIGTERM and SIGINT to a byte on write_fd (the handler
 * does nothing else) and ignores SIGPIPE. shutdown_signals_restore undoes it. */
int shutdown_signals_install(int write_fd, char *err, size_t errlen);
void shutdown_signals_restore(void);

/* shutdown_run waits for stop requests on read_fd (one byte each: a signal number, or 0
 * from runner_stop) and walks the protocol: first request -> drain; grace deadline or
 * second request -> cancel; returns when the control loop has ended or, as a last resort,
 * when it overran grace + kill_after + 1 s (returns -1 then). */
int shutdown_run(int read_fd, control *ctl, const config *cfg);

#endif
