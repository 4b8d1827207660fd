/* txjob.c - runs a job's work and its completion in one transaction.
 *
 * DESIGN: the handler's work runs first and the fenced completion last, right before the
 * commit, so the job row is locked only for an instant (the control loop's lease renewal
 * touches the same row and must not wait behind a long statement). The fence is
 * runner.complete_held_job() (sql/003): it completes the row only while it still has this
 * id, attempt and lease_owner and a lease at all (lease_expires_at set, which the table's
 * CHECK ties to 'running'), and raises SQLSTATE RN001 otherwise, so when the lease was
 * lost while the work ran the whole transaction rolls back and a job is committed by
 * exactly one owner.
 *
 * The sql kind costs one round trip: BEGIN, [timeout,] statement, fence, COMMIT go out
 * in one pipeline with one Sync. The explicit BEGIN matters: without it the first
 * statement of a pipeline runs outside any transaction block, so a CALL whose procedure
 * COMMITs, or a VACUUM, would commit on its own, apart from the fence. When anything
 * fails the rest of the pipeline is skipped, COMMIT included, and a ROLLBACK follows. A
 * C handler runs its own statements in between, so it takes two round trips: BEGIN
 * (+ timeout), then fence + COMMIT.
 *
 * A commit whose fate is unknown (connection lost after it was sent) is reported as a
 * retry: if it did commit, the fenced retry write finds the job completed and changes
 * nothing. */
#include "txjob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

#define TX_STATEMENT_MS 30000
#define JSONB_OID 3802
#define INT8_OID 20
#define FENCE_SQLSTATE "RN001"

static const char fence_sql[] = "SELECT runner.complete_held_job($1::bigint, $2::int, $3::uuid)";

/* tx_stmts is one pipeline's statements with the text of their parameters. */
typedef struct tx_stmts {
    db_stmt stmt[5];
    int n;
    char timeout[24], id[24], attempt[16];
    const char *timeout_params[1];
    const char *fence_params[3];
    const char *job_params[2];
} tx_stmts;

static void tx_init(tx_stmts *t, const job *j)
{
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%lld", (long long)j->id);
    snprintf(t->attempt, sizeof t->attempt, "%d", j->attempt);
    t->fence_params[0] = t->id;
    t->fence_params[1] = t->attempt;
    t->fence_params[2] = j->lease_owner;
    t->job_params[0] = j->args;
    t->job_params[1] = t->id;
}

static void add(tx_stmts *t, const char *sql)
{
    t->stmt[t->n++] = (db_stmt){.sql = sql, .prepared = true};
}

/* add_timeout sets the kind's timeout as statement_timeout for this transaction only */
static void add_timeout(tx_stmts *t, int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return;
    snprintf(t->timeout, sizeof t->timeout, "%lld", (long long)timeout_ms);
    t->timeout_params[0] = t->timeout;
    t->stmt[t->n++] = (db_stmt){.sql = "SELECT set_config('statement_timeout', $1, true)",
                                .nparams = 1,
                                .params = t->timeout_params,
                                .prepared = true};
}

/* add_job_sql adds the sql kind's statement: $1 = args::jsonb, $2 = job id */
static void add_job_sql(tx_stmts *t, const char *sql)
{
    static const Oid types[] = {JSONB_OID, INT8_OID};
    t->stmt[t->n++] = (db_stmt){
        .sql = sql, .nparams = 2, .types = types, .params = t->job_params, .prepared = true};
}

static void add_fence(tx_stmts *t)
{
    t->stmt[t->n++] =
        (db_stmt){.sql = fence_sql, .nparams = 3, .params = t->fence_params, .prepared = true};
}

static void fail(job_result *out, job_outcome outcome, char *error)
{
    out->outcome = outcome;
    free(out->error);
    out->error = error;
}

/* run sends t as one pipeline, waiting at most deadline_ms (statement_timeout bounds a
 * job's own statement) and cancelling it on the server when cancel (may be NULL) fires.
 * Returns 0 when every statement succeeded; otherwise sets out's outcome and error
 * (prefixed with what) and returns -1. */
static int run(PGconn *conn, const tx_stmts *t, int64_t deadline_ms, cancel_token *cancel,
               const char *what, bool *broken, job_result *out)
{
    char err[ERR_LEN], sqlstate[6];
    bool cancelled;
    PGresult *res = db_exec_pipeline(conn, t->stmt, t->n, deadline_ms, cancel ? cancel->fd : -1,
                                     &cancelled, broken, sqlstate, err, sizeof err);
    if (res) {
        PQclear(res);
        return 0;
    }
    enum cancel_reason reason = cancel ? cancel_get(cancel) : CANCEL_NONE;
    if (strcmp(sqlstate, FENCE_SQLSTATE) == 0)
        fail(out, JOB_ABANDONED, xstrdup("lease lost before commit: work rolled back"));
    else if (cancelled && reason != CANCEL_NONE)
        fail(out, cancel_outcome(reason),
             xasprintf("statement cancelled: %s", cancel_reason_str(reason)));
    else
        fail(out, JOB_RETRY, what ? xasprintf("%s: %s", what, err) : xstrdup(err));
    return -1;
}

/* finish ends the job's use of conn: a transaction left open (a failed pipeline) is
 * rolled back, and a connection that is broken, or whose statement cache the server no
 * longer matches (db.c), is closed instead of going back to the pool. */
static void finish(dbpool *pool, PGconn *conn, bool broken)
{
    if (!broken && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        char ignored[ERR_LEN];
        PQclear(db_exec(conn, "ROLLBACK", 0, NULL, TX_STATEMENT_MS, NULL, NULL, &broken, ignored,
                        sizeof ignored));
    }
    if (broken) {
        PQfinish(conn);
        return;
    }
    dbpool_put(pool, conn);
}

/* begin takes a pooled connection for j and starts t with BEGIN and the kind's timeout;
 * NULL (out says why) when there is no connection. */
static PGconn *begin(dbpool *pool, const job *j, int64_t timeout_ms, tx_stmts *t, job_result *out)
{
    char err[ERR_LEN];
    PGconn *conn = dbpool_get(pool, err, sizeof err);
    if (!conn) {
        fail(out, JOB_RETRY, xstrdup(err));
        return NULL;
    }
    tx_init(t, j);
    add(t, "BEGIN");
    add_timeout(t, timeout_ms);
    return conn;
}

void txjob_run_sql(dbpool *pool, const job *j, const char *sql, int64_t timeout_ms,
                   cancel_token *cancel, job_result *out)
{
    bool broken = false;
    tx_stmts t;
    PGconn *conn = begin(pool, j, timeout_ms, &t, out);
    if (!conn)
        return;
    add_job_sql(&t, sql);
    add_fence(&t);
    add(&t, "COMMIT");
    if (run(conn, &t, INT64_MAX / 4, cancel, NULL, &broken, out) == 0)
        out->outcome = JOB_COMMITTED;
    finish(pool, conn, broken);
}

void txjob_run(dbpool *pool, const job *j, int64_t timeout_ms, cancel_token *cancel,
               txjob_body body, void *arg, job_result *out)
{
    bool broken = false;
    tx_stmts t;
    PGconn *conn = begin(pool, j, timeout_ms, &t, out);
    if (!conn)
        return;
    if (run(conn, &t, TX_STATEMENT_MS, NULL, "could not begin transaction", &broken, out) < 0)
        goto done;
    /* a handler blocked in PQexec on conn is cancelled on the server by whoever cancels
     * the job; disarmed before the completion so a late cancel cannot hit the COMMIT */
    cancel_arm_statement(cancel, PQgetCancel(conn));
    body(arg, conn, j, cancel, out);
    cancel_disarm_statement(cancel);
    if (out->outcome != JOB_COMPLETED)
        goto done;

    tx_init(&t, j);
    add_fence(&t);
    add(&t, "COMMIT");
    if (run(conn, &t, TX_STATEMENT_MS, NULL, "could not commit", &broken, out) == 0)
        out->outcome = JOB_COMMITTED;
done:
    finish(pool, conn, broken);
}
