/* schedule.h - cron schedules: each tick enqueued exactly once, however many instances run. */
#ifndef RUNNER_SCHEDULE_H
#define RUNNER_SCHEDULE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "cron.h"

/* At most this many ticks of one schedule are enqueued per schedule_tick call
 * (catch_up: all); the rest follow in the next calls, which the wait says to make at once. */
#define SCHEDULE_MAX_TICKS 1000

/* The longest wait schedule_tick asks for, so that definitions a peer changed and
 * schedules taken over from a dead peer are noticed within it. */
#define SCHEDULE_MAX_WAIT_MS 60000

/* Each statement of a call gets at most this long. */
#define SCHEDULE_TIMEOUT_MS 5000

/* schedule_sync writes the definition of every configured schedule into
 * runner.schedules, taking over the rows whose definition differs (this instance
 * becomes their definer). Call once at startup, after the instance is registered;
 * instance_id may be NULL. Returns how many rows were created or changed, or -1 with
 * err (*broken: reconnect). */
int schedule_sync(PGconn *conn, const config *cfg, const char *instance_id, bool *broken, char *err,
                  size_t errlen);

/* schedule_tick enqueues the due ticks of every configured schedule whose row in
 * runner.schedules holds this instance's definition, each exactly once (concurrent
 * callers on any number of instances included), following its catch_up mode. A schedule
 * with no row yet is registered; one whose definer (the instance that synced it last) is
 * no longer alive is taken over. now_ms is the time in unix milliseconds, or 0 for the
 * database clock (what the runner uses: every instance then agrees on what is due).
 * *wait_ms (may be NULL) receives how long until the next tick is due by the same clock,
 * at most SCHEDULE_MAX_WAIT_MS; 0 means call again at once. Logs one line per enqueued
 * tick. Returns the number of jobs enqueued, or -1 with err (*broken: reconnect). */
int schedule_tick(PGconn *conn, const config *cfg, const char *instance_id, int64_t now_ms,
                  int64_t *wait_ms, bool *broken, char *err, size_t errlen);

/* schedule_next_fire computes the first tick of expression c strictly after `after_ms`
 * (unix ms): cron expressions in time zone tz at minute resolution, @every on the grid of
 * multiples of its interval since the unix epoch. Returns 0, or -1 with err. */
int schedule_next_fire(const cron_expr *c, const char *tz, int64_t after_ms, int64_t *next_ms,
                       char *err, size_t errlen);

#endif
