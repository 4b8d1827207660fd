/* claim.h - the claim statement: take due jobs with FOR UPDATE SKIP LOCKED. */
#ifndef RUNNER_CLAIM_H
#define RUNNER_CLAIM_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "job.h"

/* The claim statement, exported for the tests that EXPLAIN it. $1 queues, $2 kinds,
 * $3 limit, $4 instance id, $5 lease in ms, $6 max_attempts per kind (0 = unset). */
extern const char claim_sql[];

/* What an instance may claim: its queues and the kinds it has handlers for. */
typedef struct claim_scope {
    const char *instance_id;
    const char *const *queues;
    size_t nqueues;
    const char *const *kinds;
    const int *kind_max_attempts; /* per kind, 0 = unset */
    const int *kind_limit;        /* per kind, jobs it may take at most (-1: no limit); NULL:
                                   * none has one */
    size_t nkinds;
    int64_t lease_ms;
} claim_scope;

/* claim_jobs claims up to limit due jobs, oldest-priority first, and commits at once (the
 * lease is the ownership, not a row lock). Returns the number claimed (jobs in *out,
 * malloc'd, caller owns) or -1 with err set; *broken as for db_exec. */
int claim_jobs(PGconn *conn, const claim_scope *scope, int limit, job ***out, int64_t timeout_ms,
               bool *broken, char *err, size_t errlen);

/* claim_unhandled_kinds lists kinds of jobs in this instance's queues that have waited
 * over five minutes and that no live instance has a handler for (malloc'd array of
 * malloc'd strings). Returns the count or -1. */
int claim_unhandled_kinds(PGconn *conn, const claim_scope *scope, char ***kinds, int64_t timeout_ms,
                          bool *broken, char *err, size_t errlen);

#endif
