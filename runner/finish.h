/* finish.h - records what became of running jobs, many at once, fenced on the lease. */
#ifndef RUNNER_FINISH_H
#define RUNNER_FINISH_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

typedef enum finish_outcome {
    FINISH_COMPLETED,   /* -> completed */
    FINISH_RETRY,       /* -> available at now()+delay, or failed when no attempts are left */
    FINISH_DISCARD,     /* -> failed */
    FINISH_CANCELLED,   /* -> cancelled */
    FINISH_RELEASED,    /* -> available now, attempt not charged, note in the history */
    FINISH_HANDED_BACK, /* -> available now, attempt not charged, never started */
} finish_outcome;

typedef struct finish_item {
    int64_t id;
    int attempt;
    finish_outcome outcome;
    const char *error; /* history entry (NULL: none) */
    int64_t delay_ms;  /* FINISH_RETRY */
    /* out: the job's new state, or NULL when the fence matched nothing (lease lost) */
    const char *new_state;
} finish_item;

/* finish_send sends all items as one statement, each fenced on (id, lease_owner,
 * attempt), which also NOTIFYs the queues of jobs that became available now; the items'
 * strings need not outlive the call. The control loop waits for the call with the
 * other sockets it watches and hands the result to finish_read. */
db_call *finish_send(PGconn *conn, const char *instance_id, const finish_item *items, size_t n);

/* finish_read fills items[i].new_state from the statement's result and clears it. */
void finish_read(PGresult *res, finish_item *items, size_t n);

#endif
