/* qstats.c - per-queue job counts from the database for /metrics, read rarely and cached.
 *
 * DESIGN
 * Where: on the listener's thread that serves the scrape, over a connection of its own
 * ("runner metrics", opened at the first scrape), never on the control loop, so a slow
 * statistics query cannot delay a claim. When: at most once per interval (5 s) whatever
 * the number of scrapers, and never sooner than 50 times the last query's duration after
 * it, so the query costs the server at most 2 % of one backend per instance even on a
 * huge table; a scrape that comes while another thread refreshes takes the cached text.
 * Bounded: the statement and the connect time out after 2 s; a failed refresh drops the
 * cached series (stale numbers would look current) and is retried after the interval.
 *
 * What: one statement over the partial indexes of the live states. available, running
 * and failed count every such job of the queue; completed and cancelled count the jobs
 * that finished within the last hour, since counting every finished job costs a scan of
 * throughput x retention rows (the same window as runner.queue_summary's
 * completed_last_hour). Only the queues this instance works (worker.queues) are
 * reported, zero-filled for every state, so the label sets are bounded by the
 * configuration; several instances of one queue report the same numbers (aggregate with
 * max by queue). */
#include "qstats.h"
#include "db.h"
#include "job.h"
#include "log.h"
#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The job states of runner.jobs (job.h): the list the zero-fill and the rendering use.
 * A new state is also added to the WHERE clause of stats_sql below, spelled
 * "state = '...'" so that the partial index of that state serves it (a state = ANY($n)
 * would read the whole table). */
static const char *const job_states[] = {JOB_STATE_NAMES};
#define NSTATES ARRAY_LEN(job_states)

/* Window of the finished states (completed, cancelled). */
#define FINISHED_WINDOW "1 hour"
/* Next refresh no sooner than this many times the last query's duration after it. */
#define COST_FACTOR 50

static const char stats_sql[] =
    "SELECT queue, state, count(*),"
    "       coalesce(extract(epoch FROM now() - min(run_at)"
    "                FILTER (WHERE state = 'available' AND run_at <= now())), 0)"
    "  FROM runner.jobs"
    " WHERE queue = ANY($1::text[])"
    "   AND (state = 'scheduled' OR state = 'available' OR state = 'running'"
    "        OR state = 'failed'"
    "        OR ((state = 'completed' OR state = 'cancelled')"
    "            AND finished_at > now() - $2::interval))"
    " GROUP BY queue, state";

struct qstats {
    char *url;
    char **queues;
    size_t nqueues;
    char *queue_array; /* $1 */
    int64_t interval_ms;

    pthread_mutex_t refresh; /* held by the one thread querying; guards conn and below */
    PGconn *conn;
    int64_t next_refresh;
    bool failing; /* last refresh failed: logged once per change */

    pthread_mutex_t cache; /* guards text */
    strbuf text;           /* the rendered families, "" when there is nothing to show */
};

qstats *qstats_create(const char *url, const char *const *queues, size_t nqueues,
                      int64_t interval_ms)
{
    qstats *q = xcalloc(1, sizeof *q);
    q->url = url ? xstrdup(url) : NULL;
    q->nqueues = nqueues < METRICS_MAX_QUEUES ? nqueues : METRICS_MAX_QUEUES;
    q->queues = xcalloc(q->nqueues ? q->nqueues : 1, sizeof *q->queues);
    for (size_t i = 0; i < q->nqueues; i++)
        q->queues[i] = xstrdup(queues[i]);
    q->queue_array = db_text_array((const char *const *)q->queues, q->nqueues);
    q->interval_ms = interval_ms > 0 ? interval_ms : QSTATS_INTERVAL_MS;
    pthread_mutex_init(&q->refresh, NULL);
    pthread_mutex_init(&q->cache, NULL);
    sb_init(&q->text);
    return q;
}

void qstats_destroy(qstats *q)
{
    if (!q)
        return;
    if (q->conn)
        PQfinish(q->conn);
    for (size_t i = 0; i < q->nqueues; i++)
        free(q->queues[i]);
    free(q->queues);
    free(q->queue_array);
    free(q->url);
    sb_free(&q->text);
    pthread_mutex_destroy(&q->refresh);
    pthread_mutex_destroy(&q->cache);
    free(q);
}

static int state_index(const char *s)
{
    for (size_t i = 0; i < NSTATES; i++)
        if (!strcmp(job_states[i], s))
            return (int)i;
    return -1;
}

static int queue_index(const qstats *q, const char *s)
{
    for (size_t i = 0; i < q->nqueues; i++)
        if (!strcmp(q->queues[i], s))
            return (int)i;
    return -1;
}

/* query reads the statistics and renders them into out; *took_ms: the statement's time. */
static int query(qstats *q, strbuf *out, int64_t *took_ms, char *err, size_t errlen)
{
    if (!q->conn) {
        q->conn = db_connect(q->url, "runner metrics", QSTATS_TIMEOUT_MS, err, errlen);
        if (!q->conn)
            return -1;
    }
    const char *params[] = {q->queue_array, FINISHED_WINDOW};
    bool broken = false;
    int64_t t0 = now_ms();
    /* the client-side timeout of db_exec cancels the statement on the server too */
    PGresult *res =
        db_exec(q->conn, stats_sql, 2, params, QSTATS_TIMEOUT_MS, NULL, NULL, &broken, err, errlen);
    *took_ms = now_ms() - t0;
    if (!res) {
        if (broken) {
            PQfinish(q->conn);
            q->conn = NULL;
        }
        return -1;
    }
    if (PQnfields(res) != 4) {
        errf(err, errlen, "queue statistics: got %d fields, expected 4", PQnfields(res));
        PQclear(res);
        return -1;
    }
    int64_t *counts = xcalloc(q->nqueues * NSTATES + 1, sizeof *counts);
    double *oldest = xcalloc(q->nqueues + 1, sizeof *oldest);
    for (int r = 0; r < PQntuples(res); r++) {
        int qi = queue_index(q, PQgetvalue(res, r, 0)), si = state_index(PQgetvalue(res, r, 1));
        if (qi < 0 || si < 0) /* a state this build does not know yet: not reported */
            continue;
        counts[(size_t)qi * NSTATES + (size_t)si] = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        double age = strtod(PQgetvalue(res, r, 3), NULL);
        if (age > oldest[qi])
            oldest[qi] = age;
    }
    PQclear(res);

    sb_puts(out, "# HELP runner_queue_jobs Jobs of the queue by state (completed and cancelled: "
                 "finished within the last hour), read from the database every few seconds.\n"
                 "# TYPE runner_queue_jobs gauge\n");
    for (size_t i = 0; i < q->nqueues; i++) {
        for (size_t s = 0; s < NSTATES; s++) {
            sb_puts(out, "runner_queue_jobs{queue=\"");
            metrics_escape_label(out, q->queues[i]);
            sb_printf(out, "\",state=\"%s\"} %" PRId64 "\n", job_states[s],
                      counts[i * NSTATES + s]);
        }
    }
    sb_puts(out, "# HELP runner_queue_oldest_waiting_seconds How long the oldest due job of the "
                 "queue has waited (0: none waiting).\n"
                 "# TYPE runner_queue_oldest_waiting_seconds gauge\n");
    for (size_t i = 0; i < q->nqueues; i++) {
        sb_puts(out, "runner_queue_oldest_waiting_seconds{queue=\"");
        metrics_escape_label(out, q->queues[i]);
        sb_printf(out, "\"} %.3f\n", oldest[i]);
    }
    free(counts);
    free(oldest);
    return 0;
}

/* refresh queries and swaps the cached text; the caller holds q->refresh. */
static void refresh(qstats *q)
{
    char err[ERR_LEN];
    strbuf fresh;
    sb_init(&fresh);
    int64_t took = 0;
    int rc = query(q, &fresh, &took, err, sizeof err);
    int64_t wait = took * COST_FACTOR > q->interval_ms ? took * COST_FACTOR : q->interval_ms;
    q->next_refresh = now_ms() + wait;
    if (rc < 0) {
        sb_reset(&fresh);
        if (!q->failing)
            log_event(LOG_WARN, "could not read queue statistics for /metrics", "error", err, NULL);
    } else if (q->failing) {
        log_event(LOG_INFO, "queue statistics for /metrics readable again", NULL);
    }
    q->failing = rc < 0;
    pthread_mutex_lock(&q->cache);
    strbuf old = q->text;
    q->text = fresh;
    pthread_mutex_unlock(&q->cache);
    sb_free(&old);
}

void qstats_render(qstats *q, strbuf *out, int64_t now)
{
    if (pthread_mutex_trylock(&q->refresh) == 0) {
        if (now >= q->next_refresh)
            refresh(q);
        pthread_mutex_unlock(&q->refresh);
    }
    pthread_mutex_lock(&q->cache);
    if (q->text.len)
        sb_append(out, q->text.data, q->text.len);
    pthread_mutex_unlock(&q->cache);
}

const char *qstats_statement(void)
{
    return stats_sql;
}
