/* prune.c - retention: one small batch of runner.prune() per call. */
#include "prune.h"

#include <stdio.h>
#include <stdlib.h>

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
