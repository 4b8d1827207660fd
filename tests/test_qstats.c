/* test_qstats.c - the queue statistics of /metrics against a real PostgreSQL: counts per
 * state, zero-fill, the oldest waiting job, caching, reconnects and the plan's indexes. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "job.h"
#include "metrics.h"
#include "prom.h"
#include "qstats.h"

static const char *const OWNER = "00000000-0000-0000-0000-0000000000aa";

/* add_jobs inserts n jobs of queue in state; waiting ones became due due_ago ago, finished
 * ones finished finished_ago ago. */
static void add_jobs(th_db *db, int n, const char *queue, const char *state, const char *due_ago,
                     const char *finished_ago)
{
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, state, run_at, attempt, max_attempts,"
            "  lease_owner, lease_expires_at, finished_at)"
            " SELECT $1, 'k', $2, now() - $4::interval, 1, 3,"
            "  CASE WHEN $2 = 'running' THEN $5::uuid END,"
            "  CASE WHEN $2 = 'running' THEN now() + interval '30 s' END,"
            "  CASE WHEN $2 IN ('completed', 'failed', 'cancelled')"
            "       THEN now() - $6::interval END"
            "   FROM generate_series(1, $3::int)",
            queue, state, th_fmt("%d", n), due_ago ? due_ago : "0 s", OWNER,
            finished_ago ? finished_ago : "0 s", NULL);
}

static char *render(qstats *q)
{
    strbuf sb;
    sb_init(&sb);
    qstats_render(q, &sb, now_ms());
    sb_puts(&sb, "");
    return sb.data;
}

static double jobs(const char *text, const char *queue, const char *state)
{
    return prom_value(text, th_fmt("runner_queue_jobs{queue=\"%s\",state=\"%s\"}", queue, state));
}

Test(qstats, counts_zero_fill_and_oldest, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    add_jobs(db, 3, "default", "available", "10 s", NULL);
    add_jobs(db, 1, "default", "available", "-1 h", NULL); /* scheduled: counted, not waiting */
    add_jobs(db, 2, "default", "running", NULL, NULL);
    add_jobs(db, 4, "default", "completed", NULL, "1 min");
    add_jobs(db, 5, "default", "completed", NULL, "2 h"); /* outside the window */
    add_jobs(db, 2, "default", "failed", NULL, "3 d");    /* failed: all of them */
    add_jobs(db, 1, "default", "cancelled", NULL, "1 min");
    add_jobs(db, 7, "other", "available", "1 h", NULL); /* a queue this instance does not work */

    const char *queues[] = {"default", "quiet \"one\""};
    qstats *q = qstats_create(db->url, queues, 2, 0);
    char *text = render(q);
    cr_assert(strstr(text, "# TYPE runner_queue_jobs gauge\n"), "%s", text);
    cr_expect_eq(jobs(text, "default", "available"), 3);
    cr_expect_eq(jobs(text, "default", "scheduled"), 1, "due later: scheduled (sql/004)");
    cr_expect_eq(jobs(text, "default", "running"), 2);
    cr_expect_eq(jobs(text, "default", "completed"), 4);
    cr_expect_eq(jobs(text, "default", "failed"), 2);
    cr_expect_eq(jobs(text, "default", "cancelled"), 1);
    const char *states[] = {JOB_STATE_NAMES};
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
        cr_expect_eq(jobs(text, "quiet \\\"one\\\"", states[i]), 0, "zero-filled %s", states[i]);
    cr_expect_null(strstr(text, "queue=\"other\""), "an unconfigured queue was reported");
    double oldest = prom_value(text, "runner_queue_oldest_waiting_seconds{queue=\"default\"}");
    cr_expect(oldest >= 9.5 && oldest < 60, "oldest waiting %f s, expected about 10", oldest);
    cr_expect_eq(
        prom_value(text, "runner_queue_oldest_waiting_seconds{queue=\"quiet \\\"one\\\"\"}"), 0);

    /* together with the registry it is one valid exposition */
    metrics *m = metrics_create();
    strbuf all;
    sb_init(&all);
    metrics_render(m, &all, now_ms());
    sb_puts(&all, text);
    prom_check_metrics(all.data);
    sb_free(&all);
    metrics_destroy(m);
    free(text);
    qstats_destroy(q);
}

Test(qstats, cached_between_refreshes, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    add_jobs(db, 1, "default", "available", NULL, NULL);
    const char *queues[] = {"default"};
    qstats *q = qstats_create(db->url, queues, 1, 1000);
    char *text = render(q);
    int64_t t0 = th_now_ms();
    cr_expect_eq(jobs(text, "default", "available"), 1);
    free(text);
    add_jobs(db, 2, "default", "available", NULL, NULL);
    /* many scrapes within the interval: one query, the cached numbers */
    for (int i = 0; i < 50; i++) {
        text = render(q);
        if (th_now_ms() - t0 < 900)
            cr_expect_eq(jobs(text, "default", "available"), 1, "scrape %d queried again", i);
        free(text);
    }
    /* refreshed after the interval (later when the query was slow: 50 times its duration) */
    double n = 0;
    for (int64_t deadline = t0 + 5000; n != 3 && th_now_ms() < deadline;) {
        th_sleep_ms(100);
        text = render(q);
        n = jobs(text, "default", "available");
        free(text);
    }
    cr_expect_eq(n, 3, "not refreshed within 5 s");
    cr_expect_geq(th_now_ms() - t0, 1000, "refreshed before the interval");
    qstats_destroy(q);
}

Test(qstats, reconnects_after_a_lost_connection, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *queues[] = {"default"};
    qstats *q = qstats_create(db->url, queues, 1, 200);
    char *text = render(q);
    cr_expect_eq(jobs(text, "default", "available"), 0);
    free(text);
    cr_assert_eq(th_query_int64(db->conn,
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE application_name = 'runner metrics' AND datname = $1",
                                db->name, NULL),
                 1, "no \"runner metrics\" connection to terminate");
    th_sleep_ms(1000); /* past the interval, and past 50 times the first query's duration */
    text = render(q);
    cr_expect_null(strstr(text, "runner_queue_jobs"), "numbers shown without a database:\n%s",
                   text);
    free(text);
    bool back = false;
    for (int64_t deadline = th_now_ms() + 5000; !back && th_now_ms() < deadline;) {
        th_sleep_ms(250);
        text = render(q);
        back = strstr(text, "runner_queue_jobs{") != NULL;
        free(text);
    }
    cr_expect(back, "the statistics did not come back after a reconnect");
    qstats_destroy(q);
}

/* With many finished jobs in the table, the statement reads them through no sequential
 * scan: only the partial indexes of live states and the finished window. */
Test(qstats, plan_uses_indexes, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    add_jobs(db, 50000, "default", "completed", NULL, "2 d");
    add_jobs(db, 10, "default", "available", NULL, NULL);
    add_jobs(db, 10, "default", "running", NULL, NULL);
    th_exec(db->conn, "ANALYZE runner.jobs", NULL);
    PGresult *res = PQexecParams(db->conn, th_fmt("EXPLAIN %s", qstats_statement()), 2, NULL,
                                 (const char *const[]){"{default}", "1 hour"}, NULL, NULL, 0);
    th_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "EXPLAIN failed: %s",
              PQresultErrorMessage(res));
    strbuf plan;
    sb_init(&plan);
    for (int i = 0; i < PQntuples(res); i++)
        sb_printf(&plan, "%s\n", PQgetvalue(res, i, 0));
    PQclear(res);
    cr_expect_null(strstr(plan.data, "Seq Scan"), "the statistics scan the table:\n%s", plan.data);
    sb_free(&plan);
}
