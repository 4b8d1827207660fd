/* status.c - prints the queue summary and the instances as aligned text tables. */
#include "status.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

/* print_table prints a result with a header, columns padded to their widest value. */
static void print_table(const PGresult *res, FILE *out)
{
    int rows = PQntuples(res), cols = PQnfields(res);
    int *width = xcalloc((size_t)cols, sizeof *width);
    for (int c = 0; c < cols; c++) {
        width[c] = (int)strlen(PQfname(res, c));
        for (int r = 0; r < rows; r++) {
            int w = (int)strlen(PQgetvalue(res, r, c));
            if (w > width[c])
                width[c] = w;
        }
    }
    for (int c = 0; c < cols; c++)
        fprintf(out, "%s%-*s", c ? "  " : "", width[c], PQfname(res, c));
    fputc('\n', out);
    for (int c = 0; c < cols; c++) {
        fprintf(out, "%s", c ? "  " : "");
        for (int i = 0; i < width[c]; i++)
            fputc('-', out);
    }
    fputc('\n', out);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            fprintf(out, "%s%-*s", c ? "  " : "", width[c], PQgetvalue(res, r, c));
        fputc('\n', out);
    }
    if (rows == 0)
        fputs("(none)\n", out);
    free(width);
}

static int query_table(PGconn *conn, const char *title, const char *sql, FILE *out, char *err,
                       size_t errlen)
{
    bool broken;
    PGresult *res = db_exec(conn, sql, 0, NULL, 30000, NULL, NULL, &broken, err, errlen);
    if (!res)
        return -1;
    fprintf(out, "%s\n", title);
    print_table(res, out);
    PQclear(res);
    return 0;
}

int status_print(PGconn *conn, FILE *out, char *err, size_t errlen)
{
    if (query_table(
            conn, "queues",
            "SELECT queue,"
            "  count(*) FILTER (WHERE state = 'available' AND run_at <= now()) AS available,"
            "  count(*) FILTER (WHERE state = 'available' AND run_at > now()) AS scheduled,"
            "  count(*) FILTER (WHERE state = 'running') AS running,"
            "  count(*) FILTER (WHERE state = 'failed') AS failed,"
            "  count(*) FILTER (WHERE state = 'completed'"
            "                   AND finished_at > now() - interval '1 hour') AS done_1h,"
            "  coalesce(date_trunc('second', now() - min(run_at) FILTER"
            "    (WHERE state = 'available' AND run_at <= now()))::text, '') AS oldest_wait"
            " FROM runner.jobs GROUP BY queue ORDER BY queue",
            out, err, errlen) < 0)
        return -1;
    fputc('\n', out);
    return query_table(conn, "instances",
                       "SELECT id, host, pid, state, concurrency,"
                       "  array_to_string(queues, ',') AS queues,"
                       "  date_trunc('second', now() - heartbeat_at)::text AS last_heartbeat,"
                       "  date_trunc('second', started_at)::text AS started_at"
                       " FROM runner.instances"
                       " WHERE state IN ('running', 'draining')"
                       "    OR heartbeat_at > now() - interval '1 hour'"
                       " ORDER BY started_at",
                       out, err, errlen);
}
