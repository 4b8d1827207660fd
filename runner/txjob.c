/* txjob.c - runs a job's work and its completion in one transaction.
 *
 * DESIGN: the handler's work runs first and the fenced "completed" UPDATE last, right
 * before COMMIT, so the job row is locked only for an instant (the control loop's lease
 * renewal touches the same row and must not wait behind a long statement). The fence
 * (id, lease_owner, attempt, state = 'running') decides: if the lease was lost while the
 * work ran, the UPDATE matches nothing and the whole transaction rolls back, so a job is
 * committed by exactly one owner. A COMMIT whose fate is unknown (connection lost) is
 * reported as a retry: if it did commit, the fenced retry write finds the job completed
 * and changes nothing. */
#include "txjob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

#define TX_STATEMENT_MS 30000
#define JSONB_OID 3802
#define INT8_OID 20

static void fail(job_result *out, job_outcome outcome, char *error)
{
    out->outcome = outcome;
    free(out->error);
    out->error = error;
}

/* simple runs a parameterless statement (BEGIN, COMMIT, SET LOCAL ...). */
static int simple(PGconn *conn, const char *sql, bool *broken, char *err, size_t errlen)
{
    PGresult *res = db_exec(conn, sql, 0, NULL, TX_STATEMENT_MS, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

static job_outcome cancel_outcome(enum cancel_reason reason)
{
    switch (reason) {
    case CANCEL_SHUTDOWN:
        return JOB_INTERRUPTED;
    case CANCEL_LEASE_LOST:
        return JOB_ABANDONED;
    case CANCEL_JOB:
        return JOB_CANCELLED;
    default:
        return JOB_RETRY;
    }
}

void txjob_sql_body(void *arg, PGconn *conn, const job *j, cancel_token *cancel, job_result *out)
{
    const char *sql = arg;
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->id);
    const Oid types[] = {JSONB_OID, INT8_OID};
    const char *params[] = {j->args, id};
    char err[ERR_LEN];
    bool broken, cancelled;
    /* no deadline of our own: statement_timeout bounds it when the kind has a timeout */
    PGresult *res = db_exec_cancellable(conn, sql, 2, types, params, INT64_MAX / 4, cancel->fd,
                                        &cancelled, &broken, err, sizeof err);
    if (res) {
        PQclear(res);
        out->outcome = JOB_COMPLETED;
        return;
    }
    enum cancel_reason reason = cancel_get(cancel);
    if (cancelled && reason != CANCEL_NONE)
        fail(out, cancel_outcome(reason),
             xasprintf("statement cancelled: %s", cancel_reason_str(reason)));
    else
        fail(out, JOB_RETRY, xstrdup(err));
}

static int complete_fenced(PGconn *conn, const job *j, bool *fenced_out, bool *broken, char *err,
                           size_t errlen)
{
    char id[24], attempt[16];
    snprintf(id, sizeof id, "%lld", (long long)j->id);
    snprintf(attempt, sizeof attempt, "%d", j->attempt);
    const char *params[] = {id, attempt, j->lease_owner};
    PGresult *res = db_exec(conn,
                            "UPDATE runner.jobs SET state = 'completed', finished_at = now(),"
                            "  lease_owner = NULL, lease_expires_at = NULL"
                            " WHERE id = $1::bigint AND attempt = $2::int"
                            "   AND lease_owner = $3::uuid AND state = 'running'",
                            3, params, TX_STATEMENT_MS, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    *fenced_out = strcmp(PQcmdTuples(res), "1") != 0;
    PQclear(res);
    return 0;
}

void txjob_run(dbpool *pool, const job *j, int64_t timeout_ms, cancel_token *cancel,
               txjob_body body, void *arg, job_result *out)
{
    char err[ERR_LEN];
    bool broken = false;
    PGconn *conn = dbpool_get(pool, err, sizeof err);
    if (!conn) {
        fail(out, JOB_RETRY, xstrdup(err));
        return;
    }
    if (simple(conn, "BEGIN", &broken, err, sizeof err) < 0) {
        fail(out, JOB_RETRY, xasprintf("could not begin transaction: %s", err));
        goto done;
    }
    if (timeout_ms > 0) {
        char set[64];
        snprintf(set, sizeof set, "SET LOCAL statement_timeout = %lld", (long long)timeout_ms);
        if (simple(conn, set, &broken, err, sizeof err) < 0) {
            fail(out, JOB_RETRY, xstrdup(err));
            goto rollback;
        }
    }
    /* a handler blocked in PQexec on conn is cancelled on the server by whoever cancels
     * the job; disarmed before the completion so a late cancel cannot hit the COMMIT */
    cancel_arm_statement(cancel, PQgetCancel(conn));
    body(arg, conn, j, cancel, out);
    cancel_disarm_statement(cancel);
    if (out->outcome != JOB_COMPLETED)
        goto rollback;

    bool fenced = false;
    if (complete_fenced(conn, j, &fenced, &broken, err, sizeof err) < 0) {
        fail(out, JOB_RETRY, xasprintf("could not record completion: %s", err));
        goto rollback;
    }
    if (fenced) {
        fail(out, JOB_ABANDONED, xstrdup("lease lost before commit: work rolled back"));
        goto rollback;
    }
    if (simple(conn, "COMMIT", &broken, err, sizeof err) < 0) {
        fail(out, JOB_RETRY, xasprintf("commit failed: %s", err));
        goto done;
    }
    out->outcome = JOB_COMMITTED;
    goto done;
rollback:
    if (!broken && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        char ignored[ERR_LEN];
        simple(conn, "ROLLBACK", &broken, ignored, sizeof ignored);
    }
done:
    dbpool_put(pool, conn);
}
