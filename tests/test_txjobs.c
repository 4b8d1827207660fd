/* test_txjobs.c - transactional jobs (kinds.<name>.sql and runner_register_tx) with the real
 * binary: effects commit together with the completion, failures and timeouts roll back
 * with the PostgreSQL error in the history, shutdown cancels and releases, a lost lease
 * rolls the former owner's work back, exactly-once effects while instances are killed,
 * stopped and restarted, the embedding example, and C handlers run in-process. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "runner.h"

/* The work of most kinds here: one row per run, keyed by the job id, in a table with no
 * unique constraint, so a second run would show as a second row. */
#define INSERT_EFFECT "INSERT INTO effects (job_id, payload) VALUES ($2, $1)"
/* A statement that sleeps, then records the attempt it saw (its snapshot of the job). */
#define SLOW_EFFECT(secs)                                                                          \
    "INSERT INTO effects (job_id, payload)"                                                        \
    " SELECT $2, jsonb_build_object('attempt', j.attempt)"                                         \
    " FROM runner.jobs j, pg_sleep(" secs ") WHERE j.id = $2"

static const char *config(int concurrency, const char *lease, const char *heartbeat,
                          const char *grace, const char *kill_after, const char *kinds)
{
    return th_write_config("worker:\n"
                           "  concurrency: %d\n"
                           "  poll_interval: 100ms\n"
                           "  lease: %s\n"
                           "  heartbeat: %s\n"
                           "shutdown:\n"
                           "  grace: %s\n"
                           "  kill_after: %s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "%s",
                           concurrency, lease, heartbeat, grace, kill_after, kinds);
}

/* sql_kind is the YAML of one sql kind with extra settings (each "key: value\n"). */
static const char *sql_kind(const char *name, const char *sql, const char *extra)
{
    return th_fmt("  %s:\n    sql: \"%s\"\n%s", name, sql, extra ? extra : "");
}

static th_db *fresh_db_with_effects(void)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn, "CREATE TABLE effects (job_id bigint NOT NULL, payload jsonb)", NULL);
    return db;
}

/* wait_sleeping waits until n statements of this database run pg_sleep. */
static void wait_sleeping(th_db *db, int n)
{
    th_expect_until(db->conn, 15000, th_fmt("%d statements sleeping in pg_sleep", n),
                    "SELECT count(*) >= $1::int FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    "   AND state = 'active' AND query LIKE '%pg_sleep%'",
                    th_fmt("%d", n), NULL);
}

/* no_sleepers: no statement of this database is still in pg_sleep. */
static const char NO_SLEEPERS[] = "SELECT count(*) = 0 FROM pg_stat_activity"
                                  " WHERE datname = current_database()"
                                  "   AND pid <> pg_backend_pid() AND state = 'active'"
                                  "   AND query LIKE '%pg_sleep%'";

/* a. Fifty sql jobs: each completed once, each with exactly one effect row carrying its
 * own args. */
Test(txjobs, sql_kind_commits_work_with_completion, .init = th_setup, .fini = th_teardown,
     .timeout = 90)
{
    enum { N = 50 };
    th_db *db = fresh_db_with_effects();
    th_assert_eq(th_count(db->conn,
                       "SELECT count(runner.enqueue('effect', jsonb_build_object('n', g)))"
                       " FROM generate_series(1, 50) g"),
                 N, "jobs enqueued");
    th_proc *r = th_runner_start(
        db->url, config(4, "30s", "1s", "10s", "1s", sql_kind("effect", INSERT_EFFECT, NULL)),
        NULL);
    th_expect_until(db->conn, 30000, "all 50 jobs completed",
                    "SELECT count(*) = 50 FROM runner.jobs WHERE state = 'completed'", NULL);

    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), N, "effect rows");
    th_assert_eq(th_count(db->conn, "SELECT count(DISTINCT job_id) FROM effects"), N,
                 "distinct jobs among the effect rows");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs j JOIN effects e"
                                 " ON e.job_id = j.id AND e.payload = j.args"),
                 N, "effect rows whose payload ($1) is their job's args and job_id ($2) its id");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE attempt = 1"
                                 " AND lease_owner IS NULL AND lease_expires_at IS NULL"
                                 " AND finished_at IS NOT NULL AND errors = '[]'"),
                 N, "completed jobs on attempt 1, without lease and without errors");

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 10000, "runner after SIGTERM");
}

/* b. A failing statement rolls back (its partial work too) and records the PostgreSQL
 * error - message, SQLSTATE and detail - for every attempt, then fails the job. */
Test(txjobs, failing_statement_rolls_back_and_records_error, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    th_exec(db->conn, "CREATE TABLE strict (job_id bigint, n int CHECK (n > 0))", NULL);
    /* one statement: the effect row is written first, then the CHECK fails */
    const char *kind = sql_kind("bad",
                                "WITH e AS (" INSERT_EFFECT " RETURNING job_id)"
                                " INSERT INTO strict SELECT job_id, ($1->>'n')::int FROM e",
                                "    max_attempts: 3\n"
                                "    backoff: {base: 10ms, max: 50ms}\n");
    th_proc *r = th_runner_start(db->url, config(2, "30s", "1s", "10s", "1s", kind), NULL);
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('bad', '{\"n\": -1}')", NULL);

    th_expect_until(db->conn, 30000, "the job failed after 3 attempts",
                    "SELECT state = 'failed' FROM runner.jobs WHERE id = $1::bigint", id, NULL);
    th_assert_eq(
        th_query_int64(db->conn, "SELECT attempt FROM runner.jobs WHERE id = $1::bigint", id, NULL),
        3, "attempts");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT jsonb_array_length(errors) FROM runner.jobs"
                                " WHERE id = $1::bigint",
                                id, NULL),
                 3, "entries in the errors history");
    th_assert_eq(
        th_query_int64(db->conn,
                       "SELECT count(*) FROM runner.jobs j, jsonb_array_elements(j.errors) e"
                       " WHERE j.id = $1::bigint"
                       "   AND e->>'error' LIKE '%violates check constraint%'"
                       "   AND e->>'error' LIKE '%23514%'"
                       "   AND e->>'error' LIKE '%Failing row contains%'",
                       id, NULL),
        3, "errors entries with the message, SQLSTATE 23514 and the detail");
    char *last = th_query_text(db->conn, "SELECT last_error FROM runner.jobs WHERE id = $1::bigint",
                               id, NULL);
    th_assert(last != NULL && strstr(last, "23514") != NULL && strstr(last, "strict") != NULL,
              "last_error: %s", last ? last : "NULL");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 0,
                 "effect rows (the failed statement's first half must roll back)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM strict"), 0, "rows in strict");

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 10000, "runner after SIGTERM");
}

/* c. kinds.<name>.timeout is the statement_timeout: a statement sleeping 10 s is stopped
 * after 300 ms, retried, failed, and the runner goes on working. */
Test(txjobs, timeout_cancels_statement, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    const char *kinds = th_fmt("%s%s",
                               sql_kind("slow", "SELECT pg_sleep(10)",
                                        "    timeout: 300ms\n"
                                        "    max_attempts: 2\n"
                                        "    backoff: {base: 10ms, max: 20ms}\n"),
                               sql_kind("effect", INSERT_EFFECT, NULL));
    th_proc *r = th_runner_start(db->url, config(2, "30s", "1s", "10s", "1s", kinds), NULL);
    th_expect_until(db->conn, 15000, "instance running",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    int64_t start = th_now_ms();
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('slow')", NULL);

    th_expect_until(db->conn, 8000, "the slow job failed after 2 timed-out attempts",
                    "SELECT state = 'failed' FROM runner.jobs WHERE id = $1::bigint", id, NULL);
    int64_t took = th_now_ms() - start;
    th_assert(took < 5000, "two attempts of 300 ms took %lld ms: the timeout did not stop them",
              (long long)took);
    th_assert_eq(
        th_query_int64(db->conn,
                       "SELECT count(*) FROM runner.jobs j, jsonb_array_elements(j.errors) e"
                       " WHERE j.id = $1::bigint AND e->>'error' LIKE '%statement timeout%'"
                       "   AND e->>'error' LIKE '%57014%'",
                       id, NULL),
        2, "errors entries naming the statement timeout (SQLSTATE 57014)");
    th_expect_until(db->conn, 2000, "no statement left sleeping", NO_SLEEPERS, NULL);

    /* not stuck: the same workers and pool connections run the next jobs */
    th_enqueue_many(db->conn, 5, "effect", "{}", NULL);
    th_expect_until(db->conn, 10000, "5 effect jobs completed after the timeouts",
                    "SELECT count(*) = 5 FROM runner.jobs WHERE kind = 'effect'"
                    " AND state = 'completed'",
                    NULL);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 5, "effect rows");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 5000, "runner after SIGTERM");
}

/* d. Statements outliving shutdown.grace are cancelled (PQcancel), roll back and are
 * released without charging the attempt; a second instance then runs them once. */
Test(txjobs, shutdown_cancels_statement_and_releases, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    th_enqueue_many(db->conn, 2, "effect", "{}", NULL);
    th_proc *r = th_runner_start(
        db->url,
        config(2, "30s", "10s", "1s", "1s",
               sql_kind("effect", "INSERT INTO effects SELECT $2, $1 FROM pg_sleep(30)", NULL)),
        NULL);
    wait_sleeping(db, 2);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'running'"
                                 " AND attempt = 1"),
                 2, "jobs running on attempt 1");

    th_signal(r, SIGTERM);
    int64_t elapsed;
    th_assert(th_wait_exit(r, 10000, &elapsed), "runner still running 10 s after SIGTERM");
    th_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
              "runner did not exit 0 after SIGTERM (status 0x%x)", r->status);
    fprintf(stderr, "txjobs: exit %lld ms after SIGTERM (grace 1 s, kill_after 1 s)\n",
            (long long)elapsed);
    th_assert(elapsed <= 3000, "exit took %lld ms, more than grace + kill_after + 1 s",
              (long long)elapsed);
    th_expect_until(db->conn, 2000, "cancelled statements gone from the server", NO_SLEEPERS, NULL);

    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 0, "effect rows");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'available'"
                                 " AND attempt = 0 AND lease_owner IS NULL"),
                 2, "released jobs: available, attempt not charged, no lease");
    th_assert_eq(th_count(db->conn,
                       "SELECT count(*) FROM runner.jobs j, jsonb_array_elements(j.errors) e"
                       " WHERE e->>'error' = 'interrupted by shutdown of instance '"
                       "   || (SELECT id FROM runner.instances)"),
                 2, "errors entries \"interrupted by shutdown of instance <id>\"");

    th_proc *r2 = th_runner_start(
        db->url, config(2, "30s", "10s", "10s", "1s", sql_kind("effect", INSERT_EFFECT, NULL)),
        NULL);
    th_expect_until(db->conn, 15000, "both jobs completed by a second instance",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'completed'"
                    " AND attempt = 1",
                    NULL);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 2, "effect rows");
    th_assert_eq(th_count(db->conn, "SELECT count(DISTINCT job_id) FROM effects"), 2,
                 "distinct jobs among the effect rows");
    th_signal(r2, SIGTERM);
    th_expect_exit0(r2, 5000, "second runner after SIGTERM");
}

/* e. The lease is taken over while the statement runs (a peer claimed the job): the
 * fenced completion matches nothing, the work rolls back, and the former owner writes
 * nothing over the new owner's row. */
Test(txjobs, lost_lease_rolls_back_at_completion, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    /* heartbeat 20 s: no renewal runs during the statement, so the completion's fence is
     * what must notice the takeover */
    th_proc *r = th_runner_start(
        db->url, config(1, "60s", "20s", "10s", "1s", sql_kind("effect", SLOW_EFFECT("3"), NULL)),
        NULL);
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('effect')", NULL);
    wait_sleeping(db, 1);
    const char *thief = th_query_text(db->conn, "SELECT gen_random_uuid()::text", NULL);
    th_exec(db->conn,
            "UPDATE runner.jobs SET lease_owner = $2::uuid, attempt = attempt + 1,"
            "  lease_expires_at = now() + interval '1 hour'"
            " WHERE id = $1::bigint AND state = 'running'",
            id, thief, NULL);

    /* the statement ends after 3 s, the fence finds the lease gone and raises, the
     * COMMIT behind it is skipped and a ROLLBACK ends the transaction */
    th_expect_until(db->conn, 10000, "the former owner's transaction ended",
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle'"
                    "   AND query IN ('ROLLBACK', 'COMMIT'))",
                    NULL);
    th_sleep_ms(300); /* let the control loop handle the outcome */
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 0, "effect rows");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'running' AND lease_owner = $2::uuid"
                                " AND attempt = 2 AND finished_at IS NULL",
                                id, thief, NULL),
                 1, "job still running under the new owner (not completed by the former one)");
    th_assert(th_alive(r), "runner died after losing a lease");

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 5000, "runner after SIGTERM");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'running' AND lease_owner = $2::uuid",
                                id, thief, NULL),
                 1, "job untouched by the former owner's shutdown release");
}

/* The statement runs inside the job's transaction block even though BEGIN, statement,
 * fence and COMMIT go out in one pipeline: a procedure that COMMITs and a VACUUM are
 * refused instead of committing their work apart from the fence. */
Test(txjobs, statement_cannot_commit_apart_from_the_fence, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    th_exec(db->conn,
            "CREATE PROCEDURE commit_inside(p jsonb, id bigint) LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO effects VALUES (id, p); COMMIT; END $$",
            NULL);
    const char *kinds = th_fmt("%s%s", sql_kind("proc", "CALL commit_inside($1, $2)", NULL),
                               sql_kind("vac", "VACUUM effects", NULL));
    th_proc *r = th_runner_start(db->url, config(2, "30s", "1s", "10s", "1s", kinds), NULL);
    const char *proc =
        th_query_text(db->conn, "SELECT runner.enqueue('proc', max_attempts => 1)", NULL);
    const char *vac =
        th_query_text(db->conn, "SELECT runner.enqueue('vac', max_attempts => 1)", NULL);

    th_expect_until(db->conn, 15000, "both jobs failed",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'failed'", NULL);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 0,
                 "effect rows (the procedure's COMMIT must not have committed its insert)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND last_error LIKE '%SQLSTATE 2D000%'",
                                proc, NULL),
                 1, "procedure job failed with invalid transaction termination (2D000)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND last_error LIKE '%SQLSTATE 25001%'",
                                vac, NULL),
                 1, "VACUUM job failed as inside a transaction block (25001)");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 10000, "runner after SIGTERM");
}

/* Statements are prepared once per connection. When a prepared statement goes stale on
 * the server (the table it selects from changed shape: "cached plan must not change
 * result type", 0A000), that job's attempt fails and its connection is replaced, so the
 * retry and every later job run instead of failing on the same connection forever. */
Test(txjobs, stale_prepared_statement_replaces_the_connection, .init = th_setup,
     .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    th_exec(db->conn, "CREATE TABLE shape (id bigint)", NULL);
    const char *kind = sql_kind("peek", "SELECT * FROM shape WHERE id = $2 AND $1 IS NOT NULL",
                                "    max_attempts: 5\n"
                                "    backoff: {base: 10ms, max: 50ms}\n");
    /* one worker: every job runs on the same pooled connection unless it is replaced */
    th_proc *r = th_runner_start(db->url, config(1, "30s", "1s", "10s", "1s", kind), NULL);
    const char *first = th_query_text(db->conn, "SELECT runner.enqueue('peek')", NULL);
    th_expect_until(db->conn, 15000, "the first job completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", first,
                    NULL);

    th_exec(db->conn, "ALTER TABLE shape ADD COLUMN extra int", NULL);
    const char *second = th_query_text(db->conn, "SELECT runner.enqueue('peek')", NULL);
    th_expect_until(db->conn, 15000, "the job after the ALTER completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", second,
                    NULL);
    th_assert_eq(th_query_int64(db->conn, "SELECT attempt FROM runner.jobs WHERE id = $1::bigint",
                                second, NULL),
                 2, "attempts of the job after the ALTER (the first hit the stale statement)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND last_error LIKE '%SQLSTATE 0A000%'",
                                second, NULL),
                 1, "its failed attempt recorded 0A000");
    const char *third = th_query_text(db->conn, "SELECT runner.enqueue('peek')", NULL);
    th_expect_until(db->conn, 15000, "a later job completed",
                    "SELECT state = 'completed' AND attempt = 1 FROM runner.jobs"
                    " WHERE id = $1::bigint",
                    third, NULL);
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 10000, "runner after SIGTERM");
}

/* e. The same with a real rescuer: the owner stalls (its lease is made to expire), a peer
 * rescues and reruns the job; only the peer's attempt commits. */
Test(txjobs, rescued_job_commits_once, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    const char *kind = sql_kind("effect", SLOW_EFFECT("3"), NULL);
    th_proc *a = th_runner_start(db->url, config(1, "60s", "20s", "10s", "1s", kind), NULL);
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('effect')", NULL);
    wait_sleeping(db, 1);
    /* the peer scans for expired leases every ~250 ms */
    th_proc *b = th_runner_start(db->url, config(1, "60s", "500ms", "10s", "1s", kind), NULL);
    th_expect_until(db->conn, 15000, "peer registered",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running'", NULL);
    th_exec(db->conn,
            "UPDATE runner.jobs SET lease_expires_at = now() - interval '1 s'"
            " WHERE id = $1::bigint AND state = 'running'",
            id, NULL);

    th_expect_until(db->conn, 20000, "job completed by the peer",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", id, NULL);
    th_sleep_ms(500);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 1, "effect rows");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects WHERE payload->>'attempt' = '2'"), 1,
                 "effect rows written by attempt 2 (the peer's)");
    th_assert_eq(
        th_query_int64(db->conn, "SELECT attempt FROM runner.jobs WHERE id = $1::bigint", id, NULL),
        2, "attempt of the completed job");
    th_assert_eq(
        th_query_int64(db->conn,
                       "SELECT count(*) FROM runner.jobs j, jsonb_array_elements(j.errors) e"
                       " WHERE j.id = $1::bigint AND e->>'outcome' = 'rescued'",
                       id, NULL),
        1, "rescue entries in the history");
    th_signal(a, SIGTERM);
    th_signal(b, SIGTERM);
    th_expect_exit0(a, 5000, "stalled owner after SIGTERM");
    th_expect_exit0(b, 5000, "peer after SIGTERM");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'completed'",
                                id, NULL),
                 1, "job still completed after both shut down");
}

/* e. A renewal that finds the job gone stops the statement at once (PQcancel) instead of
 * letting it run on. */
Test(txjobs, lost_lease_cancels_statement, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    th_proc *r = th_runner_start(
        db->url,
        config(1, "30s", "300ms", "10s", "1s", sql_kind("effect", SLOW_EFFECT("30"), NULL)), NULL);
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('effect')", NULL);
    wait_sleeping(db, 1);
    th_exec(db->conn,
            "UPDATE runner.jobs SET lease_owner = gen_random_uuid(), attempt = attempt + 1,"
            "  lease_expires_at = now() + interval '1 hour'"
            " WHERE id = $1::bigint AND state = 'running'",
            id, NULL);
    th_expect_until(db->conn, 3000, "statement cancelled after the lease was lost", NO_SLEEPERS,
                    NULL);
    th_sleep_ms(300);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM effects"), 0, "effect rows");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'running' AND attempt = 2",
                                id, NULL),
                 1, "job left to its new owner");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 5000, "runner after SIGTERM");
}

/* ---- f. exactly once under chaos ---- */

/* Three instances share the jobs while the test attacks them: A is SIGKILLed and
 * restarted every 1-2 s (its leases expire and are rescued), B gets SIGTERM with a 300 ms
 * grace and is restarted (its long statements are cancelled and released), S is frozen
 * with SIGSTOP for longer than its lease and then thawed (a zombie owner: its leases are
 * rescued and rerun by a peer while its finished statements wait to commit, so only the
 * fence keeps them out). Then a clean instance finishes. Every job must complete with
 * exactly one effect row. */

#define CHAOS_JOBS 2400
#define CHAOS_MS 24000
/* the jobs fall due evenly over the chaos window, so there is always work in flight */
#define CHAOS_SPREAD_MS CHAOS_MS
#define CHAOS_STALL_MS 3000 /* > lease (2 s) + a rescue scan */
/* th_runner_start tracks at most 64 children per test */
#define CHAOS_MAX_STARTS 50

static int64_t rand_between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rand() % (int)(hi - lo + 1));
}

typedef struct chaos {
    th_db *db;
    const char *cfg;
    th_proc *a, *b, *s;
    int starts, kills, terms, stalls;
    int64_t next_kill, next_term, term_sent, next_stall, stalled_at, max_term_ms;
} chaos;

/* log_says waits (bounded) until the runner's log contains text. */
static bool log_says(const th_proc *p, const char *text, int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    do {
        FILE *f = fopen(p->log_path, "r");
        if (f) {
            char line[4096];
            bool found = false;
            while (!found && fgets(line, sizeof line, f))
                found = strstr(line, text) != NULL;
            fclose(f);
            if (found)
                return true;
        }
        usleep(50 * 1000);
    } while (th_now_ms() < deadline);
    return false;
}

static th_proc *chaos_start(chaos *c)
{
    c->starts++;
    return th_runner_start(c->db->url, c->cfg, NULL);
}

/* chaos_kill: SIGKILL A and start it again. */
static void chaos_kill(chaos *c, int64_t now)
{
    if (now < c->next_kill)
        return;
    th_assert(th_alive(c->a), "instance A died on its own (status 0x%x)", c->a->status);
    th_signal(c->a, SIGKILL);
    th_assert(th_wait_exit(c->a, 5000, NULL), "instance A survived SIGKILL");
    c->kills++;
    c->a = chaos_start(c);
    c->next_kill = th_now_ms() + rand_between(1000, 2000);
}

/* chaos_term: SIGTERM B; once it has exited 0 (bounded), start it again. */
static void chaos_term(chaos *c, int64_t now)
{
    if (c->term_sent == 0 && now >= c->next_term) {
        th_assert(th_alive(c->b), "instance B died on its own (status 0x%x)", c->b->status);
        th_signal(c->b, SIGTERM);
        c->term_sent = now;
        c->terms++;
    } else if (c->term_sent != 0 && !th_alive(c->b)) {
        th_assert(WIFEXITED(c->b->status) && WEXITSTATUS(c->b->status) == 0,
                  "instance B did not exit 0 after SIGTERM (status 0x%x)", c->b->status);
        if (now - c->term_sent > c->max_term_ms)
            c->max_term_ms = now - c->term_sent;
        c->b = chaos_start(c);
        c->term_sent = 0;
        c->next_term = th_now_ms() + rand_between(1000, 2500);
    } else if (c->term_sent != 0) {
        th_assert(now - c->term_sent < 5000,
                  "instance B still running %lld ms after SIGTERM (grace 300 ms)",
                  (long long)(now - c->term_sent));
    }
}

/* chaos_stall: freeze S for CHAOS_STALL_MS, then let it go on. */
static void chaos_stall(chaos *c, int64_t now)
{
    if (c->stalled_at == 0 && now >= c->next_stall) {
        th_assert(th_alive(c->s), "instance S died on its own (status 0x%x)", c->s->status);
        th_signal(c->s, SIGSTOP);
        c->stalled_at = now;
        c->stalls++;
    } else if (c->stalled_at != 0 && now - c->stalled_at >= CHAOS_STALL_MS) {
        th_signal(c->s, SIGCONT);
        c->stalled_at = 0;
        c->next_stall = now + rand_between(1000, 2000);
    }
}

Test(txjobs, exactly_once_under_chaos, .init = th_setup, .fini = th_teardown, .timeout = 150)
{
    th_db *db = fresh_db_with_effects();
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    const char *seed_env = getenv("RUNNER_CHAOS_SEED");
    if (seed_env != NULL && seed_env[0] != '\0')
        seed = (unsigned)strtoul(seed_env, NULL, 10);
    srand(seed);
    /* mostly 0-20 ms; one job in 20 takes 0.3-0.8 s and so outlives B's grace period */
    const char *kind = sql_kind("effect",
                                "INSERT INTO effects (job_id, payload) SELECT $2, $1"
                                " FROM pg_sleep(CASE WHEN random() < 0.05 THEN 0.3 + random() / 2"
                                "                    ELSE random() * 0.02 END)",
                                NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(runner.enqueue('effect', jsonb_build_object('n', g),"
                                "  run_at => now() + g * ($2::float8 / $1::int) * interval '1 ms'))"
                                " FROM generate_series(1, $1::int) g",
                                th_fmt("%d", CHAOS_JOBS), th_fmt("%d", CHAOS_SPREAD_MS), NULL),
                 CHAOS_JOBS, "jobs enqueued");

    chaos c = {.db = db, .cfg = config(8, "2s", "500ms", "300ms", "300ms", kind)};
    c.a = chaos_start(&c);
    c.b = chaos_start(&c);
    c.s = chaos_start(&c);
    int64_t t0 = th_now_ms(), now;
    c.next_kill = t0 + rand_between(1000, 2000);
    c.next_term = t0 + rand_between(1000, 2500);
    c.next_stall = t0 + rand_between(1000, 2000);
    while ((now = th_now_ms()) < t0 + CHAOS_MS && c.starts < CHAOS_MAX_STARTS) {
        chaos_kill(&c, now);
        chaos_term(&c, now);
        chaos_stall(&c, now);
        th_sleep_ms(20);
    }
    int64_t chaos_ms = th_now_ms() - t0;
    int64_t done_in_chaos =
        th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'");

    /* A dies one last time (its leases must expire and be rescued); B and S stop cleanly */
    th_signal(c.a, SIGKILL);
    c.kills++;
    th_assert(th_wait_exit(c.a, 5000, NULL), "instance A survived SIGKILL");
    if (c.term_sent == 0)
        th_signal(c.b, SIGTERM);
    if (c.stalled_at != 0)
        th_signal(c.s, SIGCONT);
    th_signal(c.s, SIGTERM);
    th_expect_exit0(c.b, 5000, "instance B after the last SIGTERM");
    th_expect_exit0(c.s, 5000, "instance S after SIGTERM");
    c.cfg = config(8, "2s", "500ms", "10s", "1s", kind);
    th_proc *last = chaos_start(&c);
    bool all_done = th_wait_until(db->conn, 60000,
                                  "SELECT count(*) = $1::int FROM runner.jobs"
                                  " WHERE state = 'completed'",
                                  th_fmt("%d", CHAOS_JOBS), NULL);
    int64_t elapsed = th_now_ms() - t0;

    int64_t completed =
        th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'");
    int64_t rows = th_count(db->conn, "SELECT count(*) FROM effects");
    int64_t distinct = th_count(db->conn, "SELECT count(DISTINCT job_id) FROM effects");
    int64_t lost =
        th_count(db->conn, "SELECT count(*) FROM runner.jobs j WHERE state = 'completed'"
                        " AND NOT EXISTS (SELECT 1 FROM effects e WHERE e.job_id = j.id)");
    int64_t strays = th_count(db->conn, "SELECT count(*) FROM effects e WHERE NOT EXISTS"
                                     " (SELECT 1 FROM runner.jobs j WHERE j.id = e.job_id"
                                     "  AND j.state = 'completed')");
    int64_t rescued = th_count(db->conn, "SELECT count(*) FROM runner.jobs"
                                      " WHERE errors @> '[{\"outcome\": \"rescued\"}]'");
    int64_t released = th_count(db->conn, "SELECT count(*) FROM runner.jobs"
                                       " WHERE errors::text LIKE '%interrupted by shutdown%'");
    int64_t max_attempt = th_count(db->conn, "SELECT max(attempt) FROM runner.jobs");
    fprintf(stderr,
            "txjobs chaos: seed=%u jobs=%d completed=%lld (%lld during chaos) effect_rows=%lld "
            "duplicates=%lld lost=%lld strays=%lld kills=%d terminations=%d stalls=%d "
            "starts=%d max_sigterm_exit_ms=%lld rescued_jobs=%lld released_jobs=%lld "
            "max_attempt=%lld chaos_ms=%lld elapsed_ms=%lld\n",
            seed, CHAOS_JOBS, (long long)completed, (long long)done_in_chaos, (long long)rows,
            (long long)(rows - distinct), (long long)lost, (long long)strays, c.kills, c.terms,
            c.stalls, c.starts, (long long)c.max_term_ms, (long long)rescued, (long long)released,
            (long long)max_attempt, (long long)chaos_ms, (long long)elapsed);

    th_assert(all_done, "only %lld of %d jobs completed 60 s after the chaos ended",
              (long long)completed, CHAOS_JOBS);
    th_assert_eq(rows, CHAOS_JOBS, "effect rows");
    th_assert_eq(distinct, CHAOS_JOBS, "distinct jobs among the effect rows");
    th_assert_eq(lost, 0, "completed jobs without an effect row");
    th_assert_eq(strays, 0, "effect rows of jobs that are not completed");
    th_assert(c.kills >= 10 && c.terms >= 5 && c.stalls >= 3,
              "too little chaos: %d kills, %d terminations, %d stalls", c.kills, c.terms, c.stalls);
    /* all jobs may have finished during the chaos: wait until this instance is up (its
     * row exists) so that the SIGTERM tests the protocol, not process start-up */
    th_assert(log_says(last, "runner started", 10000), "final instance did not start within 10 s");
    th_signal(last, SIGTERM);
    th_expect_exit0(last, 10000, "final instance after SIGTERM");
}

/* ---- g. the embedding example ---- */

static const char *example_bin(void)
{
    const char *bin = getenv("RUNNER_EXAMPLE_BIN");
    th_assert(bin != NULL && access(bin, X_OK) == 0,
              "RUNNER_EXAMPLE_BIN (examples/embed) is not set or not executable: run through "
              "meson test");
    return bin;
}

/* start_example runs examples/embed against db with its stdout in out (its stderr is the
 * log the harness shows on failure). */
static th_proc *start_example(th_db *db, const char *out, const char *env[])
{
    const char *argv[] = {"/bin/sh", "-c", "exec \"$0\" \"$1\" > \"$2\"", example_bin(), db->url,
                          out,       NULL};
    return th_spawn(argv, env);
}

/* check_example asserts what the example leaves behind: one committed order whose two jobs
 * completed - the ledger row written exactly once, the log line printed - and nothing of
 * the rolled-back order. */
static void check_example(th_db *db, const char *out)
{
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs"), 2,
                 "jobs (the rolled-back transaction must leave none)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'"
                                 " AND args = '{\"item\": \"book\"}'"),
                 2, "completed jobs of the committed order");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM orders"), 1, "orders");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM orders WHERE item = 'ghost'"), 0,
                 "rolled-back orders");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM ledger"), 1, "ledger rows");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM ledger l JOIN runner.jobs j"
                                 " ON j.kind = 'ledger' AND j.args = l.args AND j.attempt = 1"),
                 1, "ledger rows of the ledger job, written on its first attempt");
    char *text = th_read_file(out);
    const char *log_id =
        th_query_text(db->conn, "SELECT id FROM runner.jobs WHERE kind = 'log'", NULL);
    th_assert(strstr(text, th_fmt("log job %s: {\"item\": \"book\"}", log_id)) != NULL,
              "the plain handler's line is missing from the output:\n%s", text);
    int lines = 0;
    for (const char *s = text; (s = strstr(s, "log job")) != NULL; s++)
        lines++;
    th_assert_eq(lines, 1, "lines of the plain handler (one job, once)");
}

Test(txjobs, example_embeds_runner_until_sigterm, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *out = th_path("embed.out");
    th_proc *p = start_example(db, out, NULL);
    th_expect_until(db->conn, 15000, "the example's two jobs completed",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert(th_alive(p), "the example exited before SIGTERM (status 0x%x)", p->status);
    th_signal(p, SIGTERM);
    th_expect_exit0(p, 10000, "example after SIGTERM");
    check_example(db, out);
}

Test(txjobs, example_stops_with_runner_stop, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *out = th_path("embed.out");
    const char *env[] = {"EMBED_EXIT_AFTER_MS=3000", NULL};
    th_proc *p = start_example(db, out, env);
    th_expect_exit0(p, 15000, "example with EMBED_EXIT_AFTER_MS=3000");
    check_example(db, out);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.instances WHERE state = 'stopped'"),
                 1, "instance recorded as stopped");
}

/* ---- C handlers in-process (runner_register_tx / runner_register) ---- */

/* A runner embedded in the test process, its runner_run on a thread of its own. */
typedef struct inproc {
    runner *r;
    pthread_t thread;
    atomic_bool done;
    int rc;
    char err[RUNNER_ERR_LEN];
} inproc;

static void *inproc_main(void *arg)
{
    inproc *p = arg;
    p->rc = runner_run(p->r, p->err, sizeof p->err);
    atomic_store(&p->done, true);
    return NULL;
}

static inproc *inproc_create(th_db *db, const char *yaml)
{
    inproc *p = calloc(1, sizeof *p);
    th_assert(p != NULL, "out of memory");
    p->r = runner_create_from_yaml(yaml, "inproc.yaml", p->err, sizeof p->err);
    th_assert(p->r != NULL, "runner_create_from_yaml: %s", p->err);
    th_assert_eq(runner_set_database_url(p->r, db->url), RUNNER_OK, "runner_set_database_url");
    return p;
}

static void inproc_start(inproc *p)
{
    th_assert(pthread_create(&p->thread, NULL, inproc_main, p) == 0, "pthread_create failed");
}

/* inproc_stop calls runner_stop and waits at most timeout_ms for runner_run to return 0;
 * returns how long it took. A runner_run that never returns is left behind (the test
 * process ends with the test). */
static int64_t inproc_stop(inproc *p, int64_t timeout_ms)
{
    int64_t start = th_now_ms();
    runner_stop(p->r);
    while (!atomic_load(&p->done) && th_now_ms() - start < timeout_ms)
        th_sleep_ms(10);
    int64_t took = th_now_ms() - start;
    th_assert(atomic_load(&p->done), "runner_run still running %lld ms after runner_stop",
              (long long)took);
    pthread_join(p->thread, NULL);
    th_assert(p->rc == RUNNER_OK, "runner_run returned %d (%s): %s", p->rc, runner_strerror(p->rc),
              p->err);
    runner_destroy(p->r);
    free(p);
    return took;
}

static atomic_int plain_calls, plain_had_conn;

/* flaky writes its row through the job's transaction and fails its first attempt: that
 * row must roll back; the second attempt's commits with the completion. */
static runner_outcome flaky(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)userdata;
    char id[24], attempt[16];
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    const char *params[] = {id, attempt};
    PGconn *conn = runner_ctx_conn(ctx);
    if (conn == NULL) {
        runner_ctx_set_error(ctx, "no connection in a transactional handler");
        return RUNNER_JOB_DISCARD;
    }
    PGresult *res = PQexecParams(conn,
                                 "INSERT INTO effects (job_id, payload)"
                                 " VALUES ($1::bigint, jsonb_build_object('attempt', $2::int))",
                                 2, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || job->attempt == 1) {
        runner_ctx_set_error(ctx, ok ? "flaky: first attempt fails" : PQerrorMessage(conn));
        runner_ctx_retry_in(ctx, 0);
        return RUNNER_JOB_RETRY;
    }
    return RUNNER_JOB_SUCCESS;
}

/* doomed writes a row, then gives up for good: the row rolls back, the job fails. */
static runner_outcome doomed(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)userdata;
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    const char *params[] = {id};
    PQclear(PQexecParams(runner_ctx_conn(ctx), "INSERT INTO effects (job_id) VALUES ($1::bigint)",
                         1, NULL, params, NULL, NULL, 0));
    runner_ctx_set_error(ctx, "doomed: discarded");
    return RUNNER_JOB_DISCARD;
}

static runner_outcome plain(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)job;
    (void)userdata;
    atomic_fetch_add(&plain_calls, 1);
    if (runner_ctx_conn(ctx) != NULL)
        atomic_fetch_add(&plain_had_conn, 1);
    return RUNNER_JOB_SUCCESS;
}

Test(txjobs, c_tx_handler_retry_rolls_back, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    inproc *p = inproc_create(db, "worker: {concurrency: 2, poll_interval: 100ms}\n"
                                  "log: {level: warn}\n"
                                  "kinds: {flaky: {max_attempts: 3}, doomed: {max_attempts: 5}}\n");
    th_assert_eq(runner_register_tx(p->r, "flaky", flaky, NULL), RUNNER_OK, "register flaky");
    th_assert_eq(runner_register_tx(p->r, "doomed", doomed, NULL), RUNNER_OK, "register doomed");
    th_assert_eq(runner_register(p->r, "plain", plain, NULL), RUNNER_OK, "register plain");
    const char *flaky_id = th_query_text(db->conn, "SELECT runner.enqueue('flaky')", NULL);
    const char *doomed_id = th_query_text(db->conn, "SELECT runner.enqueue('doomed')", NULL);
    th_enqueue_many(db->conn, 3, "plain", "{}", NULL);
    inproc_start(p);

    th_expect_until(db->conn, 20000, "all jobs finished",
                    "SELECT count(*) = 0 FROM runner.jobs"
                    " WHERE state NOT IN ('completed', 'failed')",
                    NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'completed' AND attempt = 2"
                                " AND errors->0->>'error' = 'flaky: first attempt fails'",
                                flaky_id, NULL),
                 1, "flaky job completed on attempt 2 with attempt 1's error in the history");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM effects WHERE job_id = $1::bigint",
                                flaky_id, NULL),
                 1, "rows of the flaky job (attempt 1's must have rolled back)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM effects WHERE job_id = $1::bigint"
                                " AND payload->>'attempt' = '2'",
                                flaky_id, NULL),
                 1, "row written by attempt 2");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'failed' AND attempt = 1"
                                " AND last_error = 'doomed: discarded'",
                                doomed_id, NULL),
                 1, "discarded job failed at once with its error");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM effects WHERE job_id = $1::bigint",
                                doomed_id, NULL),
                 0, "rows of the discarded job");
    th_assert_eq(atomic_load(&plain_calls), 3, "plain handler calls");
    th_assert_eq(atomic_load(&plain_had_conn), 0, "plain handler calls that got a connection");
    inproc_stop(p, 10000);
}

static runner_outcome stubborn(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)job;
    (void)userdata;
    /* a blocking libpq call: the handler cannot watch its cancel flag meanwhile */
    PQclear(PQexec(runner_ctx_conn(ctx), "SELECT pg_sleep(30)"));
    return runner_ctx_cancelled(ctx) ? RUNNER_JOB_RETRY : RUNNER_JOB_SUCCESS;
}

/* At the shutdown deadline the runner cancels the statement a transactional C handler is
 * blocked in (it owns that connection): the work rolls back, runner_run returns within
 * grace + kill_after + 1 s, and the job is released without charging the attempt. */
Test(txjobs, c_tx_handler_cancelled_at_deadline, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    inproc *p = inproc_create(db, "worker: {concurrency: 1, poll_interval: 100ms}\n"
                                  "shutdown: {grace: 1s, kill_after: 1s}\n"
                                  "log: {level: warn}\n"
                                  "kinds: {stubborn: {}}\n");
    th_assert_eq(runner_register_tx(p->r, "stubborn", stubborn, NULL), RUNNER_OK, "register");
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('stubborn')", NULL);
    inproc_start(p);
    wait_sleeping(db, 1);
    int64_t took = inproc_stop(p, 20000);
    th_assert(took <= 3500,
              "runner_run returned %lld ms after runner_stop (grace 1 s, "
              "kill_after 1 s)",
              (long long)took);
    th_expect_until(db->conn, 2000, "the handler's statement cancelled", NO_SLEEPERS, NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'available' AND attempt = 0"
                                " AND errors::text LIKE '%interrupted by shutdown%'",
                                id, NULL),
                 1, "job released, attempt not charged");
}

static atomic_bool deaf_started, deaf_returned;

/* deaf ignores its cancel flag: it sleeps 5 s whatever happens (a C handler stuck in a
 * library call that cannot be interrupted). */
static runner_outcome deaf(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)ctx, (void)job, (void)userdata;
    atomic_store(&deaf_started, true);
    nanosleep(&(struct timespec){.tv_sec = 5}, NULL);
    atomic_store(&deaf_returned, true);
    return RUNNER_JOB_SUCCESS;
}

/* loop_turns reads the "control loop ended" line's count of turns in a phase. */
static long loop_turns(const char *log, const char *field)
{
    FILE *f = fopen(log, "r");
    th_assert(f != NULL, "cannot read %s", log);
    char line[1024];
    long turns = -1;
    while (fgets(line, sizeof line, f)) {
        const char *at = strstr(line, field);
        if (strstr(line, "control loop ended") && at)
            turns = strtol(at + strlen(field) + 1, NULL, 10);
    }
    fclose(f);
    return turns;
}

/* While a cancelled handler ignores its flag, the control loop sleeps until the deadlines
 * of the cancelling phase (shutdown.h) instead of polling with a zero timeout: it wakes
 * once when the handlers' deadline passes (to write what did return) and once to end at
 * the loop's. Counted in loop turns, not time: a spinning loop turns thousands of times in
 * the half second between the two deadlines, a sleeping one a handful. */
Test(txjobs, ignored_cancel_does_not_spin_the_loop, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    inproc *p = inproc_create(db, "worker: {concurrency: 1, poll_interval: 100ms}\n"
                                  "shutdown: {grace: 200ms, kill_after: 1s}\n"
                                  "log: {level: debug}\n"
                                  "kinds: {deaf: {}}\n");
    th_assert_eq(runner_register(p->r, "deaf", deaf, NULL), RUNNER_OK, "register");
    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('deaf')", NULL);
    const char *log = th_path("inproc.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    th_assert(fd >= 0 && saved >= 0 && dup2(fd, 2) == 2, "cannot redirect stderr to %s", log);
    close(fd);
    inproc_start(p);
    int64_t start = th_now_ms();
    while (!atomic_load(&deaf_started) && th_now_ms() - start < 10000)
        th_sleep_ms(10);
    inproc_stop(p, 10000);
    bool waited = atomic_load(&deaf_returned);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    th_assert(atomic_load(&deaf_started), "the handler never started");
    long turns = loop_turns(log, "turns_cancelling");
    th_assert(turns >= 1, "no \"control loop ended\" line with turns_cancelling in %s", log);
    th_assert(turns < 50, "the loop turned %ld times while cancelling (spinning)", turns);
    th_assert(!waited, "runner_run waited for the handler that ignored its cancel");
    /* never released while its handler may still run: its lease runs out instead */
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'running' AND attempt = 1",
                                id, NULL),
                 1, "job left to its lease");
}

static atomic_int own_sigterms;

static void own_sigterm(int sig)
{
    (void)sig;
    atomic_fetch_add(&own_sigterms, 1);
}

/* A program that owns its signals: with runner_set_signals(r, 0) a SIGTERM reaches the
 * program's own handler and the runner keeps working until runner_stop; the handler is
 * still the program's after runner_run returns. */
Test(txjobs, program_keeps_its_signals, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = fresh_db_with_effects();
    struct sigaction sa = {.sa_handler = own_sigterm};
    sigemptyset(&sa.sa_mask);
    th_assert(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction");
    inproc *p = inproc_create(db, "worker: {concurrency: 1, poll_interval: 100ms}\n"
                                  "log: {level: warn}\n"
                                  "kinds: {plain: {}}\n");
    th_assert_eq(runner_register(p->r, "plain", plain, NULL), RUNNER_OK, "register");
    th_assert_eq(runner_set_signals(p->r, 0), RUNNER_OK, "runner_set_signals");
    inproc_start(p);
    th_enqueue_many(db->conn, 1, "plain", "{}", NULL);
    th_expect_until(db->conn, 10000, "the first job done",
                    "SELECT count(*) = 1 FROM runner.jobs WHERE state = 'completed'", NULL);
    kill(getpid(), SIGTERM);
    int64_t start = th_now_ms();
    while (atomic_load(&own_sigterms) == 0 && th_now_ms() - start < 5000)
        th_sleep_ms(10);
    th_assert_eq(atomic_load(&own_sigterms), 1, "SIGTERMs seen by the program's handler");
    th_enqueue_many(db->conn, 1, "plain", "{}", NULL);
    th_expect_until(db->conn, 10000, "a job after the SIGTERM done: the runner did not stop",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert(!atomic_load(&p->done), "runner_run returned on a signal it does not own");
    inproc_stop(p, 10000);
    struct sigaction now;
    sigaction(SIGTERM, NULL, &now);
    th_assert(now.sa_handler == own_sigterm, "the program's SIGTERM handler was replaced");
}
