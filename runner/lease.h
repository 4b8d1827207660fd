/* lease.h - the instance row, lease renewal and the rescue of expired leases. */
#ifndef RUNNER_LEASE_H
#define RUNNER_LEASE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define INSTANCE_ID_LEN 37

/* LEASE_FENCE is the condition every write to a held job carries, with the job row
 * aliased j, the (id, attempt) written aliased d, and this instance's id as $1: the row
 * changes only while this instance's lease still holds it at that attempt. A lease_owner
 * with a lease_expires_at implies state 'running' (the table's CHECK), so the state is
 * left out: the planner then stays on the primary key rather than a scan of
 * jobs_running_idx when statistics are stale. sql/003's runner.complete_job (an
 * immutable migration) spells the same fence for the sql kind's one-trip completion. */
#define LEASE_FENCE                                                                             \
    "j.id = d.id AND j.attempt = d.attempt AND j.lease_owner = $1::uuid"                         \
    " AND j.lease_expires_at IS NOT NULL"

typedef struct instance_info {
    char id[INSTANCE_ID_LEN]; /* uuid; empty until registered */
    const char *state;        /* running | draining | stopped */
    int concurrency;
    const char *const *queues;
    size_t nqueues;
    const char *const *kinds;
    size_t nkinds;
    int64_t lease_ms;
    int64_t timeout_ms; /* deadline of each statement sent for this instance */
} instance_info;

/* lease_register inserts the instance row (keeping inst->id when it is already set, so
 * a reconnect after the row was pruned re-creates the same instance); for a row that
 * exists it updates the state and what a reload may change (concurrency, queues,
 * kinds). */
int lease_register(PGconn *conn, instance_info *inst, bool *broken, char *err, size_t errlen);

/* lease_set_state records running/draining/stopped. */
int lease_set_state(PGconn *conn, const instance_info *inst, bool *broken, char *err,
                    size_t errlen);

/* lease_renew extends the leases of exactly the jobs (ids, attempts) this instance holds
 * and beats the instance heartbeat, in one round trip. renewed[i] tells which leases
 * were still ours, cancel_requested[i] which of those an admin asked to cancel
 * (runner.cancel_job; its NOTIFY may have been missed). *instance_missing is set when the
 * instance row is gone. */
int lease_renew(PGconn *conn, const instance_info *inst, const int64_t *ids, const int *attempts,
                size_t n, bool *renewed, bool *cancel_requested, bool *instance_missing,
                bool *broken, char *err, size_t errlen);

/* Called once per (queue, kind) of the jobs a rescue requeued, with their number. */
typedef void (*lease_rescued_fn)(void *arg, const char *queue, const char *kind, int n);

/* lease_rescue requeues running jobs whose lease expired (attempt stays charged; a job
 * out of attempts fails), marks instances whose heartbeat stopped as lost and NOTIFYs.
 * each (may be NULL) hears what was rescued. Returns the number of rescued jobs, or -1. */
int lease_rescue(PGconn *conn, const instance_info *inst, lease_rescued_fn each, void *arg,
                 bool *broken, char *err, size_t errlen);

#endif
