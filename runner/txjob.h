/* txjob.h - jobs whose work and completion commit in one transaction (exactly-once). */
#ifndef RUNNER_TXJOB_H
#define RUNNER_TXJOB_H

#include <libpq-fe.h>
#include <stdint.h>

#include "cancel.h"
#include "dbpool.h"
#include "job.h"

/* The work inside the transaction. It fills out (JOB_COMPLETED to commit; anything else
 * rolls back) and may watch cancel. */
typedef void (*txjob_body)(void *arg, PGconn *conn, const job *j, cancel_token *cancel,
                           job_result *out);

/* txjob_run: BEGIN on a pooled connection (statement_timeout = timeout_ms when > 0),
 * body, then the fenced completion and COMMIT. If the fence finds the lease lost,
 * everything rolls back (JOB_ABANDONED). Success is JOB_COMMITTED. */
void txjob_run(dbpool *pool, const job *j, int64_t timeout_ms, cancel_token *cancel,
               txjob_body body, void *arg, job_result *out);

/* txjob_run_sql runs sql with $1 = args::jsonb and $2 = job id and the fenced completion
 * as one transaction in one round trip. A cancelled statement maps to the cancel
 * reason's outcome, a timeout or an error to a retry. */
void txjob_run_sql(dbpool *pool, const job *j, const char *sql, int64_t timeout_ms,
                   cancel_token *cancel, job_result *out);

#endif
