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
 * body, then the fenced completion UPDATE, then COMMIT. If the fence matches no row the
 * lease was lost: everything rolls back (JOB_ABANDONED). Success is JOB_COMMITTED. */
void txjob_run(dbpool *pool, const job *j, int64_t timeout_ms, cancel_token *cancel,
               txjob_body body, void *arg, job_result *out);

/* txjob_sql_body runs arg (an SQL statement) with $1 = args::jsonb and $2 = job id; a
 * cancelled statement maps to the cancel reason's outcome, a timeout to a retry. */
void txjob_sql_body(void *arg, PGconn *conn, const job *j, cancel_token *cancel, job_result *out);

#endif
