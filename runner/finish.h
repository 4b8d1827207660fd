/* finish.h - records what became of running jobs, many at once, fenced on the lease. */
#ifndef RUNNER_FINISH_H
#define RUNNER_FINISH_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum finish_kind {
    FINISH_COMPLETED,   /* -> completed */
    FINISH_RETRY,       /* -> available at now()+delay, or failed when no attempts are left */
    FINISH_DISCARD,     /* -> failed */
    FINISH_CANCELLED,   /* -> cancelled */
    FINISH_RELEASED,    /* -> available now, attempt not charged, note in the history */
    FINISH_HANDED_BACK, /* -> available now, attempt not charged, never started */
} finish_kind;

typedef struct finish_item {
    int64_t id;
    int attempt;
    finish_kind kind;
    const char *error; /* history entry (NULL: none) */
    int64_t delay_ms;  /* FINISH_RETRY */
    /* out: the job's new state, or NULL when the fence matched nothing (lease lost) */
    const char *new_state;
} finish_item;

/* finish_jobs writes all items in one statement, each fenced on (id, lease_owner,
 * attempt, state = 'running'), and NOTIFYs the queues of jobs that became available
 * now. Fills items[i].new_state. Returns 0, or -1 with err (nothing written). */
int finish_jobs(PGconn *conn, const char *instance_id, finish_item *items, size_t n,
                int64_t timeout_ms, bool *broken, char *err, size_t errlen);

#endif
