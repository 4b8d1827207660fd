/* status.c - `runner status`: the queue summary, the instances and the oldest waiting job,
 * as aligned text tables or as one JSON document built by PostgreSQL. */
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

/* The instances both forms show: live ones, and those heard from within $1. */
#define INSTANCES_SHOWN                                                                            \
    " FROM runner.instance_status"                                                                 \
    " WHERE state IN ('running', 'draining') OR heartbeat_at > now() - $1::interval"
/* The job that has been due the longest without being claimed, in any queue. */
#define OLDEST_WAITING                                                                             \
    "SELECT j.id, j.queue, j.kind, j.attempt, j.run_at, now() - j.run_at AS waiting"               \
    "  FROM runner.jobs j WHERE j.state = 'available' AND j.run_at <= now()"                       \
    " ORDER BY j.run_at, j.id LIMIT 1"

static const char *const recent[] = {"1 hour"};

static const char queues_sql[] =
    "SELECT queue, available, scheduled, running, retrying, failed,"
    "  completed_last_hour AS done_1h,"
    "  coalesce(date_trunc('second', oldest_waiting_age)::text, '') AS oldest_wait,"
    "  CASE WHEN paused THEN 'paused' ELSE '' END AS paused"
    " FROM runner.queue_summary ORDER BY queue";

static const char instances_sql[] =
    "SELECT id, host, pid, state, CASE WHEN alive THEN 'yes' ELSE 'no' END"
    "  AS alive, running_jobs AS running, concurrency,"
    "  array_to_string(queues, ',') AS queues,"
    "  date_trunc('second', heartbeat_age)::text AS last_heartbeat,"
    "  date_trunc('second', started_at)::text AS started_at" INSTANCES_SHOWN " ORDER BY started_at";

static const char oldest_sql[] =
    "SELECT id, queue, kind, attempt, date_trunc('second', waiting)::text AS waiting,"
    "  date_trunc('second', run_at)::text AS run_at FROM (" OLDEST_WAITING ") o";

/* json_sql builds the whole document in PostgreSQL, which knows how to quote JSON:
 * the same views and filters as the tables, durations as seconds. */
static const char json_sql[] =
    "SELECT json_build_object("
    " 'queues', coalesce((SELECT json_agg(json_build_object("
    "     'queue', queue, 'available', available, 'scheduled', scheduled,"
    "     'running', running, 'retrying', retrying, 'failed', failed,"
    "     'completed_last_hour', completed_last_hour,"
    "     'oldest_waiting_seconds', round(extract(epoch FROM oldest_waiting_age)::numeric, 3),"
    "     'paused', paused) ORDER BY queue)"
    "   FROM runner.queue_summary), '[]'::json),"
    " 'instances', coalesce((SELECT json_agg(json_build_object("
    "     'id', id, 'host', host, 'pid', pid, 'version', version, 'state', state,"
    "     'alive', alive, 'running_jobs', running_jobs, 'concurrency', concurrency,"
    "     'queues', queues, 'started_at', started_at, 'heartbeat_at', heartbeat_at,"
    "     'heartbeat_age_seconds', round(extract(epoch FROM heartbeat_age)::numeric, 3))"
    "     ORDER BY started_at)" INSTANCES_SHOWN "), '[]'::json),"
    " 'oldest_waiting_job', (SELECT json_build_object("
    "     'id', id, 'queue', queue, 'kind', kind, 'attempt', attempt, 'run_at', run_at,"
    "     'waiting_seconds', round(extract(epoch FROM waiting)::numeric, 3))"
    "   FROM (" OLDEST_WAITING ") o),"
    " 'generated_at', now())::text";

static int query_table(PGconn *conn, const char *title, const char *sql, int nparams, FILE *out,
                       char *err, size_t errlen)
{
    bool broken;
    PGresult *res = db_exec(conn, sql, nparams, recent, 30000, NULL, NULL, &broken, err, errlen);
    if (!res)
        return -1;
    fprintf(out, "%s\n", title);
    print_table(res, out);
    PQclear(res);
    return 0;
}

int status_print(PGconn *conn, FILE *out, char *err, size_t errlen)
{
    if (query_table(conn, "queues", queues_sql, 0, out, err, errlen) < 0)
        return -1;
    fputc('\n', out);
    if (query_table(conn, "instances", instances_sql, 1, out, err, errlen) < 0)
        return -1;
    fputc('\n', out);
    return query_table(conn, "oldest waiting job", oldest_sql, 0, out, err, errlen);
}

int status_print_json(PGconn *conn, FILE *out, char *err, size_t errlen)
{
    bool broken;
    PGresult *res = db_exec(conn, json_sql, 1, recent, 30000, NULL, NULL, &broken, err, errlen);
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) != 1 || PQnfields(res) != 1)
        rc = errf(err, errlen,
                  "unexpected status result: got %d rows and %d fields, expected 1 and 1",
                  PQntuples(res), PQnfields(res));
    else
        fprintf(out, "%s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}
