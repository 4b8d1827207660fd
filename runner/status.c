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
    if (query_table(conn, "queues",
                    "SELECT queue, available, scheduled, running, retrying, failed,"
                    "  completed_last_hour AS done_1h,"
                    "  coalesce(date_trunc('second', oldest_waiting_age)::text, '') AS oldest_wait,"
                    "  CASE WHEN paused THEN 'paused' ELSE '' END AS paused"
                    " FROM runner.queue_summary ORDER BY queue",
                    out, err, errlen) < 0)
        return -1;
    fputc('\n', out);
    return query_table(conn, "instances",
                       "SELECT id, host, pid, state, CASE WHEN alive THEN 'yes' ELSE 'no' END"
                       "  AS alive, running_jobs AS running, concurrency,"
                       "  array_to_string(queues, ',') AS queues,"
                       "  date_trunc('second', heartbeat_age)::text AS last_heartbeat,"
                       "  date_trunc('second', started_at)::text AS started_at"
                       " FROM runner.instance_status"
                       " WHERE state IN ('running', 'draining')"
                       "    OR heartbeat_at > now() - interval '1 hour'"
                       " ORDER BY started_at",
                       out, err, errlen);
}
