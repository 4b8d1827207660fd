/* prune.c - retention: one small batch of runner.prune() per call; the completions
 * rollup (runner.rollup_completed()). */
#include "prune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int prune_run(PGconn *conn, int64_t retention_ms, bool *broken, char *err, size_t errlen)
{
    char older[24], batch[16];
    snprintf(older, sizeof older, "%lld", (long long)retention_ms);
    snprintf(batch, sizeof batch, "%d", PRUNE_BATCH);
    const char *params[] = {older, batch};
    PGresult *res = db_exec(conn, "SELECT runner.prune($1::bigint * interval '1 ms', $2::int)", 2,
                            params, PRUNE_TIMEOUT_MS, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    int n = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

int prune_rollup(PGconn *conn, bool *more, bool *broken, char *err, size_t errlen)
{
    /* rollup_through() reads the statement's snapshot: `through` before this step, which
     * moves it by two minutes at most; 20 s behind is caught up (see sql/004). */
    PGresult *res = db_exec(conn,
                            "SELECT runner.rollup_completed(),"
                            " runner.rollup_through() < now() - interval '140 s'",
                            0, NULL, PRUNE_TIMEOUT_MS, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 2) {
        snprintf(err, errlen,
                 "could not roll up completions: got %d rows and %d fields, expected 1 and 2",
                 PQntuples(res), PQnfields(res));
        PQclear(res);
        return -1;
    }
    int n = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    *more = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return n;
}
