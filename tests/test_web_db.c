/* test_web_db.c - the dashboard's SQL against a real PostgreSQL: keyset pages and filter
 * windows visit every matching job exactly once and in order (by id, and by finished_at
 * for completed jobs, ties included), newer pages mirror older ones, and the bulk forms
 * count and change exactly what their filter matches. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"
#include "web_query.h"
#include "web_url.h"

static PGresult *run(PGconn *conn, const web_sql *q)
{
    PGresult *res = PQexecParams(conn, q->sql.data, q->n, NULL, q->params, NULL, NULL, 0);
    th_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s\n%s", PQresultErrorMessage(res),
              q->sql.data);
    return res;
}

static job_filter filter(web_params *p, const char *query)
{
    char err[ERR_LEN];
    *p = (web_params){0};
    th_assert(web_form_parse(query, strlen(query), p, err, sizeof err) == 0, "%s", err);
    job_filter f;
    th_assert(job_filter_parse(p, &f, err, sizeof err) == 0, "%s", err);
    return f;
}

/* walk follows the jobs page from its first page to its last, older and older, the way
 * page_jobs picks its cursors, and returns the ids shown, in order (*n of them). */
static int64_t *walk(PGconn *conn, const char *query, size_t *n, int *pages)
{
    web_params p;
    job_filter f = filter(&p, query);
    int64_t *ids = NULL;
    *n = 0;
    *pages = 0;
    for (;;) {
        web_sql q;
        web_sql_init(&q);
        job_list_sql(&f, false, &q);
        PGresult *res = run(conn, &q);
        web_sql_free(&q);
        (*pages)++;
        th_assert(*pages < 1000, "the walk does not end");
        int rows = PQntuples(res);
        bool none = rows == 0 || PQgetisnull(res, 0, 4);
        int shown = none ? 0 : rows > WEB_PAGE_ROWS ? WEB_PAGE_ROWS : rows;
        for (int i = 0; i < shown; i++) {
            ids = xrealloc(ids, (*n + 1) * sizeof *ids);
            ids[(*n)++] = strtoll(PQgetvalue(res, i, 4 + JC_ID), NULL, 10);
        }
        bool windowed = !PQgetisnull(res, 0, 0);
        int64_t next = 0;
        if (rows > WEB_PAGE_ROWS)
            next = ids[*n - 1];
        else if (windowed && strtoll(PQgetvalue(res, 0, 0), NULL, 10) >= WEB_SCAN_WINDOW)
            next = strtoll(PQgetvalue(res, 0, 1), NULL, 10); /* "search older" */
        PQclear(res);
        if (!next)
            break;
        f.before = next;
    }
    web_params_free(&p);
    return ids;
}

static void expect_ids(PGconn *conn, const int64_t *ids, size_t n, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    th_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    th_assert_eq(n, PQntuples(res), "jobs visited");
    for (size_t i = 0; i < n; i++) {
        int64_t want = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        th_assert(ids[i] == want, "position %zu: got job %lld, expected %lld", i,
                  (long long)ids[i], (long long)want);
    }
    PQclear(res);
}

/* 25,000 jobs: every 7th of kind "a"; completed ones finish in an order unrelated to
 * their ids, 40 at a time (batch completions share a finished_at). */
static th_db *seed(void)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, state, args, finished_at)"
            " SELECT CASE WHEN g % 7 = 0 THEN 'a' ELSE 'b' END, 'q' || (g % 3),"
            "  CASE WHEN g % 11 = 0 THEN 'failed' ELSE 'completed' END,"
            "  jsonb_build_object('n', g, 'tag', CASE WHEN g % 5 = 0 THEN 'Needle' ELSE 'hay' END),"
            "  timestamptz '2026-01-01' + ((g * 7919) % 25000 / 40) * interval '1 s'"
            " FROM generate_series(1, 25000) g",
            NULL);
    th_exec(db->conn, "ANALYZE runner.jobs", NULL);
    return db;
}

Test(web_db, windows_and_pages_visit_every_match_once, .init = th_setup, .fini = th_teardown,
     .timeout = 120)
{
    th_db *db = seed();
    size_t n;
    int pages;
    int64_t *ids = walk(db->conn, "kind=a", &n, &pages);
    expect_ids(db->conn, ids, n, "SELECT id FROM runner.jobs WHERE kind = 'a' ORDER BY id DESC");
    th_assert(pages > 25000 / WEB_SCAN_WINDOW, "the filter crossed windows (%d pages)", pages);
    free(ids);

    ids = walk(db->conn, "state=completed&kind=a", &n, &pages);
    expect_ids(db->conn, ids, n,
               "SELECT id FROM runner.jobs WHERE state = 'completed' AND kind = 'a'"
               " ORDER BY finished_at DESC, id DESC");
    free(ids);

    ids = walk(db->conn, "state=completed", &n, &pages);
    expect_ids(db->conn, ids, n,
               "SELECT id FROM runner.jobs WHERE state = 'completed'"
               " ORDER BY finished_at DESC, id DESC");
    free(ids);

    ids = walk(db->conn, "state=failed&queue=q1&q=needle", &n, &pages);
    expect_ids(db->conn, ids, n,
               "SELECT id FROM runner.jobs WHERE state = 'failed' AND queue = 'q1'"
               " AND args->>'tag' = 'Needle' ORDER BY id DESC");
    th_assert(n > 0, "the args search found nothing");
    free(ids);

    ids = walk(db->conn, "", &n, &pages);
    expect_ids(db->conn, ids, n, "SELECT id FROM runner.jobs ORDER BY id DESC");
    free(ids);
}

Test(web_db, newer_pages_mirror_older_ones, .init = th_setup, .fini = th_teardown,
     .timeout = 120)
{
    th_db *db = seed();
    const char *queries[] = {"state=completed", "state=failed", "kind=a&state=completed", ""};
    for (size_t k = 0; k < ARRAY_LEN(queries); k++) {
        size_t n;
        int pages;
        int64_t *ids = walk(db->conn, queries[k], &n, &pages);
        th_assert(n > 3 * WEB_PAGE_ROWS, "%s: too few jobs", queries[k]);
        /* the page after the third page's first job, newer, is the first two pages' tail */
        char *q = xasprintf("%s%safter=%lld", queries[k], *queries[k] ? "&" : "",
                            (long long)ids[2 * WEB_PAGE_ROWS]);
        web_params p;
        job_filter f = filter(&p, q);
        web_sql s;
        web_sql_init(&s);
        job_list_sql(&f, false, &s);
        PGresult *res = run(db->conn, &s);
        int rows = PQntuples(res);
        th_assert(rows == WEB_PAGE_ROWS + 1, "%s: %d rows", q, rows);
        /* ascending from the cursor: the jobs just before it in the newest-first list */
        for (int i = 0; i < WEB_PAGE_ROWS; i++) {
            int64_t got = strtoll(PQgetvalue(res, i, 4 + JC_ID), NULL, 10);
            th_assert(got == ids[2 * WEB_PAGE_ROWS - 1 - i], "%s: row %d is job %lld, expected %lld",
                      q, i, (long long)got, (long long)ids[2 * WEB_PAGE_ROWS - 1 - i]);
        }
        PQclear(res);
        web_sql_free(&s);
        web_params_free(&p);
        free(q);
        free(ids);
    }
}

Test(web_db, bulk_counts_and_changes_what_the_filter_matches, .init = th_setup,
     .fini = th_teardown, .timeout = 120)
{
    th_db *db = seed();
    web_params p;
    job_filter f = filter(&p, "state=failed&kind=a&queue=q2");
    web_sql q;
    web_sql_init(&q);
    job_bulk_sql(&f, "retry", false, 0, &q);
    PGresult *res = run(db->conn, &q);
    int64_t want = th_query_int64(db->conn,
                                  "SELECT count(*) FROM runner.jobs WHERE state = 'failed'"
                                  " AND kind = 'a' AND queue = 'q2'",
                                  NULL);
    th_assert(want > 2, "the seed has failed jobs of kind a in q2");
    th_assert_eq(strtoll(PQgetvalue(res, 0, 0), NULL, 10), want, "jobs to retry");
    int64_t max = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    web_sql_free(&q);
    /* a job that matches but arrives after the confirmation is left alone */
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, state, finished_at)"
            " VALUES ('a', 'q2', 'failed', now())",
            NULL);
    web_sql_init(&q);
    job_bulk_sql(&f, "retry", true, max, &q);
    res = run(db->conn, &q);
    th_assert_eq(strtoll(PQgetvalue(res, 0, 0), NULL, 10), want, "jobs retried");
    th_assert_eq(strtoll(PQgetvalue(res, 0, 1), NULL, 10), want, "jobs considered");
    PQclear(res);
    web_sql_free(&q);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = 'failed'"
                                " AND kind = 'a' AND queue = 'q2'",
                                NULL),
                 1, "failed jobs left: the late one");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = 'failed'"
                                " AND (kind <> 'a' OR queue <> 'q2')",
                                NULL),
                 th_query_int64(db->conn,
                                "SELECT count(*) FROM generate_series(1, 25000) g"
                                " WHERE g % 11 = 0 AND NOT (g % 7 = 0 AND g % 3 = 2)",
                                NULL),
                 "other failed jobs untouched");
    web_params_free(&p);
}
