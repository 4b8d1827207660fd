/* sdnotify.h - systemd's service notification protocol (sd_notify(3)), spoken directly. */
#ifndef RUNNER_SDNOTIFY_H
#define RUNNER_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* The notify socket is a property of the process (systemd hands it over in the
 * environment), so this module keeps one process-wide state rather than a handle.
 *
 * Lifecycle and threads:
 *   sdnotify_open()      once, in the main thread, before any other thread starts
 *                        (it removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from
 *                        the environment so that exec children do not inherit them);
 *                        main.c does it for `runner run`, so an embedding program's
 *                        runner_run sends nothing and leaves its environment alone;
 *   sdnotify_send()      from any thread; a no-op when not under systemd;
 *   sdnotify_status(),
 *   sdnotify_watchdog()  from one thread only: the control loop;
 *   sdnotify_close()     after every other thread has stopped.
 *
 * Sending never blocks (a non-blocking datagram socket, MSG_DONTWAIT) and a failure does
 * not stop the caller: the first one is logged, later ones are counted silently. */

/* Longest message sdnotify_status() and sdnotify_format_*() produce, NUL included. */
#define SDNOTIFY_MSG_LEN 256

/* sdnotify_open reads NOTIFY_SOCKET ("/path" or "@abstract"), WATCHDOG_USEC and
 * WATCHDOG_PID. Returns 1 when notifications will be sent, 0 when NOTIFY_SOCKET is unset
 * (not started by systemd: everything else becomes a no-op), -1 with err set when the
 * variable cannot be used (the caller logs it and carries on without). Calling it again
 * returns the first call's answer. */
int sdnotify_open(char *err, size_t errlen);

/* sdnotify_close closes the socket; later sends are no-ops. */
void sdnotify_close(void);

/* sdnotify_send sends one datagram, e.g. "READY=1" or "STOPPING=1\nSTATUS=draining".
 * Returns 0 when it was sent or there is no socket, -1 when sending failed. */
int sdnotify_send(const char *state);

/* sdnotify_watchdog_interval_ms is WATCHDOG_USEC in ms (0: no watchdog, also when
 * WATCHDOG_PID names another process). systemd kills the service when no WATCHDOG=1
 * arrives within it; sdnotify_watchdog() pings at half of it. */
int64_t sdnotify_watchdog_interval_ms(void);

/* sdnotify_watchdog_next_ms is the now_ms() at which the next WATCHDOG=1 is due
 * (INT64_MAX without a watchdog): a deadline for the loop's poll timeout. */
int64_t sdnotify_watchdog_next_ms(void);

/* sdnotify_watchdog sends WATCHDOG=1 when it is due at now (now_ms()), then schedules
 * the next one half an interval later. Call it on every turn of the control loop: only a
 * loop that turns keeps the service alive. */
void sdnotify_watchdog(int64_t now);

/* sdnotify_status sends STATUS=<line> when the line differs from the last one sent and
 * at least SDNOTIFY_STATUS_MIN_MS passed since then (the newest line wins: a loop that
 * calls it on every turn sends at most one a second). */
#define SDNOTIFY_STATUS_MIN_MS 1000
void sdnotify_status(int64_t now, const char *line);

/* sdnotify_format_status writes the one-line summary the status messages carry:
 * "draining: 3/20 busy, 1042 jobs done". phase is "running", "draining" or
 * "cancelling". Returns buf. */
char *sdnotify_format_status(char *buf, size_t len, const char *phase, int busy, int capacity,
                             int64_t jobs_done);

/* sdnotify_format_extend writes "EXTEND_TIMEOUT_USEC=<remaining_ms in us>" (at least 1 s,
 * so that a deadline being reached never reads as "no time at all"). Returns buf. */
char *sdnotify_format_extend(char *buf, size_t len, int64_t remaining_ms);

#endif
