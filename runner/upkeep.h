/* upkeep.h - the upkeep connection: the chores' statements that write much and that the
 * loop never waits for (retention's deletes, the completions rollup), one at a time, on a
 * connection of their own, sent without waiting for their answer. */
#ifndef RUNNER_UPKEEP_H
#define RUNNER_UPKEEP_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

typedef struct upkeep {
    const char *url;
    int64_t timeout_ms;        /* deadline of each statement */
    PGconn *conn;              /* NULL until opened, and after it broke */
    db_connecting *connecting; /* an attempt to open conn, in flight (off the loop) */
    db_call *call;             /* the statement in flight, NULL when none */
    int64_t deadline;
    int64_t reconnect_at, reconnect_delay;
} upkeep;

void upkeep_init(upkeep *u, const char *url, int64_t timeout_ms);
/* upkeep_free gives up a statement in flight (cancelled on the server) and closes. */
void upkeep_free(upkeep *u);

/* upkeep_busy: a statement is in flight, or the connection is being opened. */
static inline bool upkeep_busy(const upkeep *u)
{
    return u->call != NULL || u->connecting != NULL;
}

/* upkeep_send sends sql (text params; sql must live until the statement ends) when the
 * connection is open and idle, and returns true. Otherwise it starts opening the
 * connection if it may (after a failure: capped backoff with jitter) and returns false:
 * send again once upkeep_poll has seen it open. */
bool upkeep_send(upkeep *u, const char *sql, int nparams, const char *const *params, int64_t now);

/* upkeep_poll reads what arrived, without blocking. Returns 1 with *res (the caller
 * clears it) when the statement succeeded; -1 with err when it failed, or timed out, or
 * the connection could not be opened (a broken connection is closed and opened again
 * later); 0 when nothing ended. */
int upkeep_poll(upkeep *u, int64_t now, PGresult **res, char *err, size_t errlen);

/* upkeep_fd is the descriptor to poll() (-1: none): the statement's socket, or the
 * attempt to open the connection, readable once it ended. */
int upkeep_fd(const upkeep *u, short *events);

/* upkeep_due is when upkeep_poll or upkeep_send next has something to do without a
 * descriptor waking the loop: the statement's deadline, or when the connection may be
 * opened again (INT64_MAX: nothing). */
int64_t upkeep_due(const upkeep *u);

#endif
