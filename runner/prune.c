/* prune.c - retention: one small batch of runner.prune() per call; the completions
 * rollup (runner.rollup_completed()). */
#include "prune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prune_params(int64_t retention_ms, char older[24], char batch[16], const char *params[2])
{
    snprintf(older, 24, "%lld", (long long)retention_ms);
    snprintf(batch, 16, "%d", PRUNE_BATCH);
    params[0] = older;
    params[1] = batch;
}

/* shape checks that res has one row of n columns. */
static bool shape(const PGresult *res, int n, const char *what, char *err, size_t errlen)
{
    if (PQntuples(res) == 1 && PQnfields(res) == n)
        return true;
    snprintf(err, errlen, "could not %s: got %d rows and %d fields, expected 1 and %d", what,
             PQntuples(res), PQnfields(res), n);
    return false;
}

int prune_read(const PGresult *res, char *err, size_t errlen)
{
    if (!shape(res, 1, "prune", err, errlen))
        return -1;
    return (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
}

int prune_rollup_read(const PGresult *res, bool *more, char *err, size_t errlen)
{
    if (!shape(res, 2, "roll up completions", err, errlen))
        return -1;
    *more = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    return (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
}
