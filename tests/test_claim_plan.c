/* test_claim_plan.c - the claim reads only rows it may take: its buffer count does not
 * grow with jobs of other kinds, paused queues, other queues or jobs due later at a better
 * priority (EXPLAIN ANALYZE BUFFERS of the real statement, 1 and 500 queues, custom and
 * generic plans); scheduled jobs, their promotion, and priorities across queues. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claim.h"
#include "harness.h"

static const char *const OWNER = "00000000-0000-0000-0000-0000000000bb";

/* Skipped rows of each sort; the brief's figure is 200k. */
#define SKIPPED_EACH 200000

/* queue_array is '{mine0,...,mineN-1}' (or '{default}' for one queue). */
static char *queue_array(int nqueues)
{
    if (nqueues == 1)
        return th_fmt("{default}");
    size_t cap = (size_t)nqueues * 12 + 4, len = 0;
    char *s = malloc(cap);
    s[len++] = '{';
    for (int i = 0; i < nqueues; i++)
        len += (size_t)snprintf(s + len, cap - len, "%smine%d", i ? "," : "", i);
    snprintf(s + len, cap - len, "}");
    char *out = th_fmt("%s", s);
    free(s);
    return out;
}

/* claim_buffers EXPLAINs (ANALYZE, BUFFERS) one claim of `limit` jobs over the queues
 * (plus the paused queue "paused") and kinds {work, other}, with the plan cache mode given,
 * inside a transaction that is rolled back. Returns the shared buffers the execution
 * touched (hit + read; planning not counted) and sets *claimed. */
static long claim_buffers(th_db *db, const char *queues, int limit, const char *mode, long *claimed)
{
    th_exec(db->conn, "BEGIN", NULL);
    th_exec(db->conn, "SELECT set_config('plan_cache_mode', $1, true)", mode, NULL);
    char *prep = th_fmt("PREPARE claim_plan_stmt(text[], text[], int, uuid, bigint, int[], int[]) AS %s",
                        claim_sql);
    th_exec(db->conn, prep, NULL);
    /* EXECUTE takes no bind parameters: the arguments go in as escaped literals */
    char *scope = th_fmt("%.*s,paused}", (int)strlen(queues) - 1, queues);
    char *lit = PQescapeLiteral(db->conn, scope, strlen(scope));
    char *explain = th_fmt("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim_plan_stmt(%s,"
                           " '{work,other}', %d, '%s', 30000, '{0,0}', '{-1,-1}')",
                           lit, limit, OWNER);
    PQfreemem(lit);
    PGresult *r = PQexec(db->conn, explain);
    th_assert(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
              "EXPLAIN of the claim failed: %s", PQresultErrorMessage(r));
    char *plan = th_fmt("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    th_exec(db->conn, "ROLLBACK", NULL);
    th_exec(db->conn, "DEALLOCATE claim_plan_stmt", NULL);
    long buffers =
        (long)th_query_int64(db->conn,
                             "SELECT (($1::json)->0->'Plan'->>'Shared Hit Blocks')::int"
                             "     + (($1::json)->0->'Plan'->>'Shared Read Blocks')::int",
                             plan, NULL);
    *claimed = (long)th_query_int64(db->conn, "SELECT (($1::json)->0->'Plan'->>'Actual Rows')::int",
                                    plan, NULL);
    return buffers;
}

/* add_skipped inserts SKIPPED_EACH rows of each sort the claim must not read, all ahead of
 * the claimable jobs in (priority, run_at) order: a kind no handler knows, in the
 * instance's queues, due an hour ago; due jobs of a paused queue in its scope; jobs due
 * tomorrow at a better priority, in its queues; due jobs of 500 queues it does not work. */
static void add_skipped(th_db *db, const char *queues)
{
    char *n = th_fmt("%d", SKIPPED_EACH);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, run_at)"
            " SELECT 'foreign', ($1::text[])[1 + i % cardinality($1::text[])],"
            "        now() - interval '1 hour'"
            "   FROM generate_series(1, $2::int) i",
            queues, n, NULL);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, run_at)"
            " SELECT 'work', 'paused', now() - interval '1 hour' FROM generate_series(1, $1::int)",
            n, NULL);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, priority, run_at)"
            " SELECT 'work', ($1::text[])[1 + i % cardinality($1::text[])], -1,"
            "        now() + interval '1 day'"
            "   FROM generate_series(1, $2::int) i",
            queues, n, NULL);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue, run_at)"
            " SELECT 'work', 'elsewhere' || (i % 500), now() - interval '1 hour'"
            "   FROM generate_series(1, $1::int) i",
            n, NULL);
    th_exec(db->conn, "ANALYZE runner.jobs", NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = 'scheduled'", NULL),
                 SKIPPED_EACH, "jobs due tomorrow are scheduled");
}

/* flat: 1,000 claimable jobs spread over nqueues queues; one claim of 20 with nothing
 * else in the table, then with 4 x 200k skipped rows: the same order of buffers. */
static void flat(int nqueues)
{
    th_db *db = th_fresh_db(true);
    char *queues = queue_array(nqueues);
    th_exec(db->conn, "SELECT runner.pause_queue('paused')", NULL);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (kind, queue)"
            " SELECT 'work', ($1::text[])[1 + i % cardinality($1::text[])]"
            "   FROM generate_series(1, 1000) i",
            queues, NULL);
    th_exec(db->conn, "ANALYZE runner.jobs", NULL);
    const char *modes[] = {"force_custom_plan", "force_generic_plan"};
    long before[2], after[2], claimed;
    for (int m = 0; m < 2; m++) {
        before[m] = claim_buffers(db, queues, 20, modes[m], &claimed);
        th_assert_eq(claimed, 20, "jobs claimed from the table without skipped rows");
    }
    add_skipped(db, queues);
    for (int m = 0; m < 2; m++) {
        after[m] = claim_buffers(db, queues, 20, modes[m], &claimed);
        th_assert_eq(claimed, 20, "jobs claimed beside the skipped rows");
        fprintf(stderr,
                "claim_plan: %d queues, %s: %ld buffers without skipped rows, %ld beside %d\n",
                nqueues, modes[m], before[m], after[m], 4 * SKIPPED_EACH);
        th_assert(after[m] <= 2 * before[m] + 50,
                  "%d queues, %s: a claim read %ld buffers beside %d skipped rows, %ld without",
                  nqueues, modes[m], after[m], 4 * SKIPPED_EACH, before[m]);
    }
}

Test(claim_plan, flat_one_queue, .init = th_setup, .fini = th_teardown, .timeout = 300)
{
    flat(1);
}

Test(claim_plan, flat_500_queues, .init = th_setup, .fini = th_teardown, .timeout = 300)
{
    flat(500);
}

/* claim runs claim_jobs over the queues and kinds {work} on the test's connection and
 * returns how many it took; the first job's id goes to *first. */
static int claim(th_db *db, const char *const *queues, size_t nqueues, int limit, int64_t *first)
{
    const char *kinds[] = {"work"};
    const int maxes[] = {0};
    claim_scope scope = {.instance_id = OWNER,
                         .queues = queues,
                         .nqueues = nqueues,
                         .kinds = kinds,
                         .kind_max_attempts = maxes,
                         .nkinds = 1,
                         .lease_ms = 30000};
    job **jobs;
    bool broken;
    char err[256];
    int n = claim_jobs(db->conn, &scope, limit, &jobs, 10000, &broken, err, sizeof err);
    th_assert(n >= 0, "claim failed: %s", err);
    if (n > 0 && first)
        *first = jobs[0]->id;
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    return n;
}

Test(claim_plan, priorities_across_queues, .init = th_setup, .fini = th_teardown)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn, "SELECT runner.enqueue('work', '{}', 'a', 5)", NULL);
    int64_t b = th_query_int64(db->conn, "SELECT runner.enqueue('work', '{}', 'b', 1)", NULL);
    th_exec(db->conn, "SELECT runner.enqueue('other', '{}', 'b', 0)", NULL);
    int64_t c = th_query_int64(db->conn, "SELECT runner.enqueue('work', '{}', 'c', 0)", NULL);
    th_exec(db->conn, "SELECT runner.pause_queue('c')", NULL);
    const char *queues[] = {"a", "b", "c"};
    int64_t first = 0;
    th_assert_eq(claim(db, queues, 3, 1, &first), 1, "claimed");
    th_assert_eq(first, b, "the best priority of the unpaused queues, of a known kind");
    th_assert_eq(claim(db, queues, 3, 10, NULL), 1, "the rest: one job of queue a");
    th_exec(db->conn, "SELECT runner.resume_queue('c')", NULL);
    th_assert_eq(claim(db, queues, 3, 10, &first), 1, "claimed after resume");
    th_assert_eq(first, c, "the resumed queue's job");
}

Test(claim_plan, scheduled_jobs, .init = th_setup, .fini = th_teardown)
{
    th_db *db = th_fresh_db(true);
    int64_t later = th_query_int64(
        db->conn, "SELECT runner.enqueue('work', run_at => now() + interval '400 ms')", NULL);
    char *id = th_fmt("%lld", (long long)later);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "   AND state = 'scheduled'",
                                id, NULL),
                 1, "a job due later is scheduled");
    /* the unique key is held while scheduled */
    int64_t k1 = th_query_int64(
        db->conn,
        "SELECT runner.enqueue('work', run_at => now() + interval '1 h', unique_key => 'k')", NULL);
    int64_t k2 = th_query_int64(db->conn, "SELECT runner.enqueue('work', unique_key => 'k')", NULL);
    th_assert_eq(k2, k1, "enqueue with the key of a scheduled job returns that job");
    char *k1s = th_fmt("%lld", (long long)k1);
    th_assert_eq(th_query_int64(db->conn, "SELECT runner.cancel_job($1::bigint)::int", k1s, NULL),
                 1, "a scheduled job can be cancelled");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "   AND state = 'cancelled'",
                                k1s, NULL),
                 1, "cancelled at once");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT available + scheduled FROM runner.queue_summary"
                                " WHERE queue = 'default'",
                                NULL),
                 1, "queue_summary counts the scheduled job");

    const char *queues[] = {"default"};
    th_assert_eq(claim(db, queues, 1, 10, NULL), 0, "nothing is due yet");
    th_sleep_ms(500);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT available FROM runner.queue_summary"
                                " WHERE queue = 'default'",
                                NULL),
                 1, "queue_summary counts a due scheduled job as available");
    /* the claim that finds it due promotes it (and NOTIFYs); the next one takes it */
    th_exec(db->conn, "LISTEN runner_jobs", NULL);
    th_assert_eq(claim(db, queues, 1, 10, NULL), 0, "promoted, not yet visible to the claim");
    PQconsumeInput(db->conn);
    PGnotify *note = PQnotifies(db->conn);
    th_assert(note && strcmp(note->extra, "default") == 0, "the promotion woke queue default");
    PQfreemem(note);
    int64_t first = 0;
    th_assert_eq(claim(db, queues, 1, 10, &first), 1, "claimed once promoted");
    th_assert_eq(first, later, "the scheduled job");

    /* a failed attempt retried later is scheduled again (the finish path sets available) */
    th_exec(db->conn,
            "UPDATE runner.jobs SET state = 'available', lease_owner = NULL,"
            "  lease_expires_at = NULL, run_at = now() + interval '1 h' WHERE id = $1::bigint",
            id, NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "   AND state = 'scheduled'",
                                id, NULL),
                 1, "a retry with backoff is scheduled");
    th_exec(db->conn, "UPDATE runner.jobs SET run_at = now() WHERE id = $1::bigint", id, NULL);
    th_assert_eq(th_query_int64(db->conn, "SELECT runner.promote_scheduled()", NULL), 1,
                 "promote_scheduled promotes it once due");
}

/* notified returns the queue of the first runner_jobs notification the listener has
 * received (malloc'd), or NULL. Two round trips first: a notification committed before
 * them reaches the listener when its backend goes idle after the first. */
static char *notified(PGconn *listener)
{
    for (int i = 0; i < 2; i++)
        th_exec(listener, "SELECT 1", NULL);
    PQconsumeInput(listener);
    char *queue = NULL;
    PGnotify *n;
    while ((n = PQnotifies(listener)) != NULL) {
        if (!queue && strcmp(n->relname, "runner_jobs") == 0)
            queue = th_fmt("%s", n->extra);
        PQfreemem(n);
    }
    return queue;
}

/* An enqueue notifies only while a running instance waits on the queue: its last claim
 * of the queue was not full. */
Test(claim_plan, wakeup_only_while_waiting, .init = th_setup, .fini = th_teardown)
{
    th_db *db = th_fresh_db(true);
    PGconn *listener = PQconnectdb(db->url);
    th_assert(PQstatus(listener) == CONNECTION_OK, "listener: %s", PQerrorMessage(listener));
    th_exec(listener, "LISTEN runner_jobs", NULL);
    th_exec(db->conn,
            "INSERT INTO runner.instances (id, host, pid, version, concurrency, queues, lease)"
            " VALUES ($1::uuid, 'test-host', 42, 'test', 4, '{default}', interval '30 s')",
            OWNER, NULL);

    th_exec(db->conn, "SELECT runner.enqueue('work')", NULL);
    th_assert(notified(listener) == NULL, "no instance waits yet: no NOTIFY");

    const char *queues[] = {"default"};
    th_assert_eq(claim(db, queues, 1, 10, NULL), 1, "claimed");
    char *q = notified(listener);
    th_assert(q && strcmp(q, "default") == 0,
              "a claim that starts waiting notifies itself (one more claim)");
    th_exec(db->conn, "SELECT runner.enqueue('work')", NULL);
    q = notified(listener);
    th_assert(q && strcmp(q, "default") == 0, "the waiting instance is woken");
    th_exec(db->conn, "SELECT runner.enqueue('work', queue => 'other')", NULL);
    th_assert(notified(listener) == NULL, "no instance waits on queue other");

    th_exec(db->conn, "SELECT runner.enqueue('work')", NULL);
    th_assert_eq(claim(db, queues, 1, 2, NULL), 2, "a full claim");
    (void)notified(listener);
    th_exec(db->conn, "SELECT runner.enqueue('work')", NULL);
    th_assert(notified(listener) == NULL, "after a full claim the instance claims on its own");

    th_assert_eq(claim(db, queues, 1, 10, NULL), 1, "claimed");
    (void)notified(listener);
    th_exec(db->conn, "UPDATE runner.instances SET state = 'stopped' WHERE id = $1::uuid", OWNER,
            NULL);
    th_exec(db->conn, "SELECT runner.enqueue('work')", NULL);
    th_assert(notified(listener) == NULL, "a stopped instance is not woken");
    th_assert_eq(th_query_int64(db->conn, "SELECT runner.prune('1 h')", NULL), 0, "pruned");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.claim_waiters", NULL), 0,
                 "prune removes the rows of instances that no longer run");
    PQfinish(listener);
}

/* The migration moves existing rows: a waiting job due later becomes scheduled, one due
 * now stays available, and the claim finds the latter. */
Test(claim_plan, migration_moves_rows, .init = th_setup, .fini = th_teardown)
{
    th_db *db = th_fresh_db(false);
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    th_assert(root != NULL, "RUNNER_SOURCE_ROOT is not set");
    const char *files[] = {"001_init.sql", "002_admin.sql", "003_fast_paths.sql"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *text = th_read_file(th_fmt("%s/sql/%s", root, files[i]));
        PGresult *r = PQexec(db->conn, text);
        th_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", files[i],
                  PQresultErrorMessage(r));
        PQclear(r);
    }
    int64_t later = th_query_int64(
        db->conn, "SELECT runner.enqueue('work', run_at => now() + interval '1 h')", NULL);
    int64_t now = th_query_int64(db->conn, "SELECT runner.enqueue('work')", NULL);
    th_output o = th_run(30000, NULL, "--database-url", db->url, "migrate", NULL);
    th_assert(o.exit_code == 0, "migrate: exit %d\n%s", o.exit_code, o.err);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "   AND state = 'scheduled'",
                                th_fmt("%lld", (long long)later), NULL),
                 1, "the job due later is scheduled");
    const char *queues[] = {"default"};
    int64_t first = 0;
    th_assert_eq(claim(db, queues, 1, 10, &first), 1, "one job due");
    th_assert_eq(first, now, "the job due now");
}
