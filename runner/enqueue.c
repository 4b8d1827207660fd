/* enqueue.c - adds a job with runner.enqueue(), every value passed as a parameter. */
#include "enqueue.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "util.h"

int enqueue_job(PGconn *conn, const enqueue_opts *o, int64_t *id, char *err, size_t errlen)
{
    char in_ms[24];
    snprintf(in_ms, sizeof in_ms, "%lld", (long long)o->run_in_ms);
    const char *params[] = {o->kind,
                            o->args ? o->args : "{}",
                            o->queue ? o->queue : "default",
                            o->priority ? o->priority : "0",
                            o->run_at,
                            o->run_in_ms > 0 ? in_ms : NULL,
                            o->max_attempts,
                            o->unique_key};
    PGresult *res =
        PQexecParams(conn,
                     "SELECT runner.enqueue($1, $2::jsonb, $3, $4::int,"
                     " coalesce($5::timestamptz, now() + $6::bigint * interval '1 ms', now()),"
                     " $7::int, $8)",
                     8, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char why[ERR_LEN];
        db_result_error(res, why, sizeof why);
        PQclear(res);
        return errf(err, errlen, "could not enqueue job: %s", why);
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}
