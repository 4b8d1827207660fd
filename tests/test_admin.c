/* test_admin.c - the admin SQL surface against a real PostgreSQL: unique keys, pause and
 * resume, cancel and retry, retention, and the admin views on a known data set. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finish.h"
#include "harness.h"
#include "prune.h"

static const char *const OWNER = "00000000-0000-0000-0000-0000000000aa";

static void add_instance(th_db *db, const char *id, const char *state, const char *beat_ago)
{
    th_exec(db->conn,
            "INSERT INTO runner.instances (id, host, pid, version, state, heartbeat_at,"
            "  concurrency, queues, lease)"
            " VALUES ($1::uuid, 'test-host', 42, 'test', $2,"
            "  now() - $3::interval, 4, '{default}', interval '30 s')",
            id, state, beat_ago, NULL);
}

/* add_job inserts a job in any state; running jobs are leased by OWNER, finished ones get
 * finished_at = now() - finished_ago. Returns its id. */
static int64_t add_job(th_db *db, const char *queue, const char *state, int attempt,
                       const char *finished_ago)
{
    return th_query_int64(
        db->conn,
        "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, lease_owner,"
        "  lease_expires_at, started_at, finished_at)"
        " VALUES ($1, 'k', $2, $3::int, 3,"
        "  CASE WHEN $2 = 'running' THEN $4::uuid END,"
        "  CASE WHEN $2 = 'running' THEN now() + interval '30 s' END,"
        "  CASE WHEN $2 <> 'available' THEN now() - interval '1 min' END,"
        "  CASE WHEN $2 IN ('completed', 'failed', 'cancelled')"
        "       THEN now() - $5::interval END)"
        " RETURNING id",
        queue, state, th_fmt("%d", attempt), OWNER, finished_ago ? finished_ago : "0 s", NULL);
}

static char *id_text(int64_t id)
{
    return th_fmt("%lld", (long long)id);
}

/* prune_once runs the statement the instances' retention chore sends (runner/prune.h)
 * and returns the number of jobs it deleted. */
static int prune_once(PGconn *conn, int64_t retention_ms)
{
    char older[24], batch[16], err[256];
    const char *params[2];
    prune_params(retention_ms, older, batch, params);
    PGresult *res = PQexecParams(conn, PRUNE_SQL, 2, NULL, params, NULL, NULL, 0);
    th_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "prune: %s", PQresultErrorMessage(res));
    int n = prune_read(res, err, sizeof err);
    th_assert(n >= 0, "prune: %s", err);
    PQclear(res);
    return n;
}

/* expect_error runs sql with one parameter and asserts it fails with a message that
 * contains `needle`. */
static void expect_error(th_db *db, const char *sql, const char *param, const char *needle)
{
    const char *params[] = {param};
    PGresult *r = PQexecParams(db->conn, sql, 1, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    char *msg = th_fmt("%s", PQresultErrorMessage(r));
    PQclear(r);
    th_assert(st == PGRES_FATAL_ERROR, "expected %s to fail", sql);
    th_assert(strstr(msg, needle) != NULL, "error of %s: \"%s\" lacks \"%s\"", sql, msg, needle);
}

static bool query_bool(th_db *db, const char *sql, const char *param)
{
    char *v = th_query_text(db->conn, sql, param, NULL);
    return v != NULL && strcmp(v, "t") == 0;
}

Test(admin, unique_key, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *sql = "SELECT runner.enqueue('k', unique_key => 'report-42')";
    int64_t a = th_query_int64(db->conn, sql, NULL);
    int64_t b = th_query_int64(db->conn, sql, NULL);
    th_assert_eq(b, a, "second enqueue with the same unique key");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), 1, "jobs");
    th_exec(db->conn,
            "UPDATE runner.jobs SET state = 'completed', finished_at = now() WHERE id = $1::bigint",
            id_text(a), NULL);
    int64_t c = th_query_int64(db->conn, sql, NULL);
    th_assert(c != a, "after completion a new job is created (got %lld again)", (long long)c);
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), 2, "jobs");
}

Test(admin, pause_resume, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_enqueue_many(db->conn, 3, "k", "{}", "mail");
    th_assert(query_bool(db, "SELECT runner.pause_queue($1)", "mail"), "pause returns true");
    th_assert(!query_bool(db, "SELECT runner.pause_queue($1)", "mail"),
              "pausing again returns false");
    th_assert(query_bool(db, "SELECT paused FROM runner.queue_summary WHERE queue = $1", "mail"),
              "queue_summary shows mail paused");
    th_assert(query_bool(db, "SELECT runner.pause_queue($1)", "idle"), "pause an unused queue");
    th_assert(query_bool(db, "SELECT paused FROM runner.queue_summary WHERE queue = $1", "idle"),
              "a paused queue without jobs is listed");
    th_assert(query_bool(db, "SELECT runner.resume_queue($1)", "mail"), "resume returns true");
    th_assert(!query_bool(db, "SELECT runner.resume_queue($1)", "mail"),
              "resuming again returns false");
    th_assert(!query_bool(db, "SELECT runner.resume_queue($1)", "never"),
              "resuming an unknown queue returns false");
    th_assert(!query_bool(db, "SELECT paused FROM runner.queue_summary WHERE queue = $1", "mail"),
              "mail no longer paused");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT available FROM runner.queue_summary WHERE queue = 'mail'",
                                NULL),
                 3, "mail's jobs still there");
}

Test(admin, cancel_available, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('k')", NULL);
    th_assert(query_bool(db, "SELECT runner.cancel_job($1::bigint)", id_text(id)),
              "cancel returns true");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'cancelled' AND finished_at IS NOT NULL"
                                "  AND errors -> -1 ->> 'outcome' = 'cancelled'",
                                id_text(id), NULL),
                 1, "cancelled, finished_at set, history entry");
    th_assert(!query_bool(db, "SELECT runner.cancel_job($1::bigint)", id_text(id)),
              "cancelling a cancelled job returns false");
    int64_t done = add_job(db, "default", "completed", 1, "1 min");
    th_assert(!query_bool(db, "SELECT runner.cancel_job($1::bigint)", id_text(done)),
              "cancelling a completed job returns false");
    expect_error(db, "SELECT runner.cancel_job($1::bigint)", "999999", "does not exist");
}

/* A running job: cancel_job marks it and notifies runner_control; whatever then moves it
 * out of running towards available (release, retry, rescue) makes it cancelled. */
Test(admin, cancel_running, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    add_instance(db, OWNER, "running", "0 s");
    int64_t id = add_job(db, "default", "running", 1, NULL);

    PGconn *listener = PQconnectdb(db->url);
    th_assert(PQstatus(listener) == CONNECTION_OK, "listener: %s", PQerrorMessage(listener));
    PQclear(PQexec(listener, "LISTEN runner_control"));

    th_assert(query_bool(db, "SELECT runner.cancel_job($1::bigint)", id_text(id)),
              "cancel returns true");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'running' AND cancel_requested_at IS NOT NULL",
                                id_text(id), NULL),
                 1, "still running, cancel requested");
    th_assert(query_bool(db,
                         "SELECT cancel_requested_at IS NOT NULL FROM runner.running_jobs"
                         " WHERE id = $1::bigint",
                         id_text(id)),
              "running_jobs shows the request");

    char *expected = th_fmt("cancel:%lld", (long long)id);
    bool got = false;
    for (int64_t deadline = th_now_ms() + 5000; !got && th_now_ms() < deadline;) {
        struct pollfd pfd = {.fd = PQsocket(listener), .events = POLLIN};
        if (poll(&pfd, 1, 100) < 0 || !PQconsumeInput(listener))
            break;
        PGnotify *n;
        while ((n = PQnotifies(listener)) != NULL) {
            got = got || strcmp(n->extra, expected) == 0;
            PQfreemem(n);
        }
    }
    PQfinish(listener);
    th_assert(got, "no NOTIFY runner_control \"%s\" within 5 s", expected);

    /* the owner shuts down before the job stops: the release must not requeue it */
    finish_item item = {.id = id, .attempt = 1, .outcome = FINISH_RELEASED, .error = "interrupted"};
    char err[512];
    bool broken;
    PGconn *conn = PQconnectdb(db->url);
    db_call *call = finish_send(conn, OWNER, &item, 1);
    for (int i = 0; i < 1000 && !db_call_done(call); i++) {
        th_sleep_ms(10);
        db_call_poll(call);
    }
    th_assert(db_call_done(call), "the release statement did not answer within 10 s");
    PGresult *res = db_call_end(call, &broken, err, sizeof err);
    th_assert(res != NULL, "%s", err);
    finish_read(res, &item, 1);
    PQfinish(conn);
    th_assert(item.new_state != NULL && strcmp(item.new_state, "cancelled") == 0,
              "released job ended %s, expected cancelled", item.new_state ? item.new_state : "?");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'cancelled' AND finished_at IS NOT NULL"
                                "  AND lease_owner IS NULL",
                                id_text(id), NULL),
                 1, "cancelled in the table");

    /* the same for a job whose owner died: the rescue cancels it */
    int64_t orphan = add_job(db, "default", "running", 1, NULL);
    th_assert(query_bool(db, "SELECT runner.cancel_job($1::bigint)", id_text(orphan)),
              "cancel the orphan");
    th_exec(db->conn,
            "UPDATE runner.jobs SET state = 'available', lease_owner = NULL,"
            "  lease_expires_at = NULL WHERE id = $1::bigint",
            id_text(orphan), NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'cancelled'",
                                id_text(orphan), NULL),
                 1, "a requeued cancel-requested job is cancelled");
}

Test(admin, retry, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    int64_t failed = add_job(db, "default", "failed", 3, "1 hour");
    th_exec(db->conn,
            "UPDATE runner.jobs SET last_error = 'boom', errors = '[{\"error\": \"boom\"}]',"
            "  run_at = now() - interval '2 hours' WHERE id = $1::bigint",
            id_text(failed), NULL);
    th_assert(query_bool(db, "SELECT runner.retry_job($1::bigint)", id_text(failed)),
              "retry returns true");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'available' AND attempt = 0 AND finished_at IS NULL"
                                "  AND run_at > now() - interval '1 min'"
                                "  AND jsonb_array_length(errors) = 2"
                                "  AND errors -> -1 ->> 'outcome' = 'retried'",
                                id_text(failed), NULL),
                 1, "available now, attempt 0, history kept and noted");
    th_assert(!query_bool(db, "SELECT runner.retry_job($1::bigint)", id_text(failed)),
              "retrying an available job returns false");

    int64_t cancelled = add_job(db, "default", "cancelled", 0, "1 min");
    th_assert(query_bool(db, "SELECT runner.retry_job($1::bigint)", id_text(cancelled)),
              "a cancelled job can be retried");
    int64_t completed = add_job(db, "default", "completed", 1, "1 min");
    th_assert(!query_bool(db, "SELECT runner.retry_job($1::bigint)", id_text(completed)),
              "a completed job is not retried");

    /* unique keys: a failed job whose key a new job holds cannot come back */
    int64_t old = add_job(db, "default", "failed", 3, "1 min");
    th_exec(db->conn, "UPDATE runner.jobs SET unique_key = 'u1' WHERE id = $1::bigint",
            id_text(old), NULL);
    int64_t holder =
        th_query_int64(db->conn, "SELECT runner.enqueue('k', unique_key => 'u1')", NULL);
    expect_error(db, "SELECT runner.retry_job($1::bigint)", id_text(old),
                 th_fmt("job %lld holds its unique key \"u1\"", (long long)holder));
    th_exec(db->conn, "SELECT runner.cancel_job($1::bigint)", id_text(holder), NULL);
    th_assert(query_bool(db, "SELECT runner.retry_job($1::bigint)", id_text(old)),
              "retry once the holder is cancelled");
    expect_error(db, "SELECT runner.retry_job($1::bigint)", "999999", "does not exist");

    /* the bulk form of the cookbook */
    for (int i = 0; i < 3; i++)
        add_job(db, "bulk", "failed", 3, "1 min");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FILTER (WHERE runner.retry_job(id))"
                                "  FROM runner.jobs WHERE state = 'failed' AND queue = 'bulk'",
                                NULL),
                 3, "bulk retry");
}

Test(admin, prune, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *states[] = {"completed", "failed", "cancelled"};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 4; k++)
            add_job(db, "default", states[i], 1, "8 days");
        add_job(db, "default", states[i], 1, "6 days");
    }
    int64_t waiting = th_query_int64(db->conn,
                                     "SELECT runner.enqueue('k', run_at => now() - interval '30 "
                                     "days')",
                                     NULL);
    th_exec(db->conn,
            "INSERT INTO runner.schedule_ticks (schedule, fire_at)"
            " VALUES ('s', now() - interval '8 days'), ('s', now() - interval '1 day')",
            NULL);
    add_instance(db, "00000000-0000-0000-0000-000000000001", "stopped", "8 days");
    add_instance(db, "00000000-0000-0000-0000-000000000002", "lost", "8 days");
    add_instance(db, "00000000-0000-0000-0000-000000000003", "stopped", "1 day");
    add_instance(db, "00000000-0000-0000-0000-000000000004", "running", "8 days");

    th_assert_eq(th_query_int64(db->conn, "SELECT runner.prune('7 days', 5)", NULL), 5,
                 "first batch of 5");
    PGconn *conn = PQconnectdb(db->url);
    th_assert_eq(prune_once(conn, 7LL * 24 * 3600 * 1000), 7,
                 "the chore's prune deletes the rest");
    th_assert_eq(prune_once(conn, 7LL * 24 * 3600 * 1000), 0, "nothing left");
    PQfinish(conn);

    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state IN"
                                " ('completed', 'failed', 'cancelled')",
                                NULL),
                 3, "finished jobs younger than 7 days kept");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint",
                                id_text(waiting), NULL),
                 1, "an old available job is never pruned");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.schedule_ticks", NULL), 1,
                 "ticks kept");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.instances WHERE id IN"
                                " ('00000000-0000-0000-0000-000000000003',"
                                "  '00000000-0000-0000-0000-000000000004')",
                                NULL),
                 2, "recent and running instances kept");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.instances", NULL), 2,
                 "old stopped and lost instances deleted");
}

/* The views on a known data set. */
Test(admin, views, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *dead = "00000000-0000-0000-0000-0000000000dd";
    add_instance(db, OWNER, "running", "1 s");
    add_instance(db, dead, "running", "5 min");
    add_instance(db, "00000000-0000-0000-0000-0000000000ee", "stopped", "1 hour");

    /* default: 2 due (one retrying), 1 scheduled, 2 running (1 stuck), 1 failed,
     * 3 completed within the hour and 2 before it */
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, run_at, attempt) VALUES"
            " ('default', 'k', now() - interval '10 min', 0),"
            " ('default', 'k', now() - interval '1 min', 2),"
            " ('default', 'k', now() + interval '1 hour', 0),"
            " ('mail', 'k', now() - interval '30 s', 0)",
            NULL);
    add_job(db, "default", "running", 1, NULL);
    int64_t stuck = add_job(db, "default", "running", 1, NULL);
    th_exec(db->conn,
            "UPDATE runner.jobs SET lease_owner = $2::uuid,"
            "  lease_expires_at = now() - interval '2 min' WHERE id = $1::bigint",
            id_text(stuck), dead, NULL);
    add_job(db, "default", "failed", 3, "2 hours");
    for (int i = 0; i < 3; i++)
        add_job(db, "default", "completed", 1, "10 min");
    for (int i = 0; i < 2; i++)
        add_job(db, "default", "completed", 1, "2 hours");
    add_job(db, "reports", "completed", 1, "3 hours");
    th_exec(db->conn, "SELECT runner.pause_queue('mail')", NULL);

    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.queue_summary", NULL), 2,
                 "queues listed (reports has nothing current)");
    th_assert(query_bool(db,
                         "SELECT (available, scheduled, running, retrying, failed,"
                         "        completed_last_hour, paused)"
                         "     = (2::bigint, 1::bigint, 2::bigint, 1::bigint, 1::bigint,"
                         "        3::bigint, false)"
                         "   AND oldest_waiting_age BETWEEN interval '10 min'"
                         "                              AND interval '11 min'"
                         "  FROM runner.queue_summary WHERE queue = $1",
                         "default"),
              "queue_summary for default: %s",
              th_query_text(db->conn,
                            "SELECT row(q.*)::text FROM runner.queue_summary q WHERE queue ="
                            " 'default'",
                            NULL));
    th_assert(query_bool(db,
                         "SELECT (available, scheduled, running, paused) ="
                         "       (1::bigint, 0::bigint, 0::bigint, true)"
                         "  FROM runner.queue_summary WHERE queue = $1",
                         "mail"),
              "queue_summary for mail");

    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.running_jobs", NULL), 2,
                 "running_jobs");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.running_jobs WHERE host IS NOT NULL"
                                "  AND pid = 42 AND running_for >= interval '1 min'",
                                NULL),
                 2, "running_jobs with their owner");
    th_assert_eq(th_query_int64(db->conn, "SELECT id FROM runner.stuck_jobs", NULL), stuck,
                 "stuck_jobs");
    th_assert(query_bool(db,
                         "SELECT expired_for >= interval '2 min' AND instance = $1::uuid"
                         "  FROM runner.stuck_jobs",
                         dead),
              "stuck_jobs: how long and whose");

    th_assert_eq(
        th_query_int64(db->conn, "SELECT count(*) FROM runner.instance_status WHERE alive", NULL),
        1, "alive instances");
    th_assert(query_bool(db,
                         "SELECT alive AND running_jobs = 1 FROM runner.instance_status"
                         " WHERE id = $1::uuid",
                         OWNER),
              "the live instance and its job");
    th_assert(
        query_bool(db, "SELECT NOT alive FROM runner.instance_status WHERE id = $1::uuid", dead),
        "an instance without heartbeat for 5 min is not alive");

    /* schedule_status */
    th_exec(db->conn,
            "INSERT INTO runner.schedules (name, cron, timezone, kind, args, queue, priority,"
            "  catch_up, def_hash, defined_by, defined_at, last_fire_at, next_fire_at)"
            " VALUES ('nightly', '0 3 * * *', 'UTC', 'k', '{}', 'default', 0, 'latest', 'x',"
            "  $1::uuid, now() - interval '1 day', now() - interval '1 hour',"
            "  now() + interval '23 hours')",
            OWNER, NULL);
    int64_t job = th_query_int64(db->conn,
                                 "SELECT job FROM runner.schedule_fire('nightly', 'x',"
                                 "  ARRAY[date_trunc('minute', now())], NULL, NULL)",
                                 NULL);
    th_assert(query_bool(db,
                         "SELECT last_job_id = $1::bigint AND last_job_state = 'available'"
                         "   AND last_fire_at = date_trunc('minute', now()) AND definer_alive"
                         "   AND next_fire_at > now()"
                         "  FROM runner.schedule_status WHERE schedule = 'nightly'",
                         id_text(job)),
              "schedule_status");
}

/* view_buffers is the shared buffers (hit + read) one execution of sql touched. */
static long view_buffers(th_db *db, const char *sql)
{
    char *plan =
        th_query_text(db->conn, th_fmt("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) %s", sql), NULL);
    return (long)th_query_int64(db->conn,
                                "SELECT (($1::json)->0->'Plan'->>'Shared Hit Blocks')::int"
                                "     + (($1::json)->0->'Plan'->>'Shared Read Blocks')::int",
                                plan, NULL);
}

/* completed_last_hour comes from the per-minute rollup once it has caught up: the view
 * then reads a few buffers however many jobs completed within the hour, counts what it
 * counted before, and keeps counting jobs that retention has pruned since. */
Test(admin, completed_rollup, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, started_at,"
            "  finished_at)"
            " SELECT CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END, 'k', 'completed', 1, 3,"
            "        now() - (i % 4200) * interval '1 s', now() - (i % 4200) * interval '1 s'"
            "   FROM generate_series(1, 40000) i",
            NULL);
    th_exec(db->conn, "ANALYZE runner.jobs", NULL);
    /* a copy to count from once retention has deleted the jobs */
    th_exec(db->conn,
            "CREATE TABLE done_copy AS SELECT queue, finished_at FROM runner.jobs"
            " WHERE state = 'completed'",
            NULL);
    /* the view's figure minus the exact count, in one statement (one now()) */
    const char *off = "SELECT completed_last_hour - (SELECT count(*) FROM done_copy d"
                      "   WHERE d.queue = s.queue"
                      "     AND d.finished_at >= date_trunc('minute', now() - interval '1 hour'))"
                      "  FROM runner.queue_summary s WHERE s.queue = $1";
    const char *view = "SELECT * FROM runner.queue_summary";
    long before = view_buffers(db, view);

    for (int i = 0; i < 60 && th_query_int64(db->conn,
                                             "SELECT (through < now() - interval '20 s')::int"
                                             "  FROM runner.rollup_progress",
                                             NULL) == 1;
         i++) {
        PGresult *res = PQexec(db->conn, PRUNE_ROLLUP_SQL);
        bool more;
        char err[256];
        th_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "rollup: %s", PQresultErrorMessage(res));
        th_assert(prune_rollup_read(res, &more, err, sizeof err) >= 0, "rollup: %s", err);
        PQclear(res);
    }
    th_assert_eq(th_query_int64(db->conn, off, "a", NULL), 0, "completed in the hour, a");
    th_assert_eq(th_query_int64(db->conn, off, "b", NULL), 0, "completed in the hour, b");
    long after = view_buffers(db, view);
    fprintf(
        stderr,
        "admin: queue_summary beside 40,000 completed jobs: %ld buffers, %ld before the rollup\n",
        after, before);
    th_assert(after <= 250 && before > 10 * after,
              "queue_summary read %ld buffers after the rollup, %ld before", after, before);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT (SELECT sum(completed) FROM runner.completed_per_minute"
                                "         WHERE queue = 'a')"
                                "     - (SELECT count(*) FROM done_copy WHERE queue = 'a'"
                                "         AND finished_at >= date_trunc('minute', now())"
                                "                           - interval '59 min')",
                                NULL),
                 0, "completed_per_minute over the hour, a");

    /* retention deletes rolled-up jobs only, and the counts stay; the check's clock is
     * taken before the prunes (every prune's now() is later), so that no job that ages
     * past the minute after the last prune counts as missed */
    char *before_prune = th_query_text(db->conn, "SELECT now()::text", NULL);
    while (th_query_int64(db->conn, "SELECT runner.prune('1 min', 10000)", NULL) > 0)
        ;
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE finished_at <"
                                " (SELECT through FROM runner.rollup_progress)"
                                "   AND finished_at < $1::timestamptz - interval '1 min'",
                                before_prune, NULL),
                 0, "rolled-up jobs past the retention pruned");
    th_assert_eq(th_query_int64(db->conn, off, "a", NULL), 0,
                 "completed in the hour after pruning, a");
}

/* queue_summary counts waiting jobs from jobs_ready_idx and jobs_scheduled_idx alone
 * (sql/007): beside a vacuumed backlog it reads fewer buffers than the backlog's heap
 * has pages, and its counts are the exact ones. */
Test(admin, summary_counts_waiting_from_indexes, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, args, attempt, run_at)"
            " SELECT 'q' || (i % 3), 'k' || (i % 4), jsonb_build_object('pad', repeat('x', 300)),"
            "        i % 5, now() + CASE WHEN i % 4 = 0 THEN interval '1 hour'"
            "                             ELSE -interval '1 s' * (i % 100) END"
            "   FROM generate_series(1, 20000) i",
            NULL);
    th_exec(db->conn, "VACUUM ANALYZE runner.jobs", NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = 'scheduled'", NULL),
                 5000, "jobs due in an hour are scheduled");
    const char *wrong =
        "SELECT count(*) FROM runner.queue_summary s"
        "  FULL JOIN (SELECT queue, count(*) FILTER (WHERE run_at <= now()) AS available,"
        "                    count(*) FILTER (WHERE run_at > now()) AS scheduled,"
        "                    count(*) FILTER (WHERE attempt > 0) AS retrying"
        "               FROM runner.jobs GROUP BY queue) e USING (queue)"
        " WHERE (s.available, s.scheduled, s.retrying)"
        "       IS DISTINCT FROM (e.available, e.scheduled, e.retrying)";
    th_assert_eq(th_query_int64(db->conn, wrong, NULL), 0, "queues whose counts differ");
    long heap = (long)th_query_int64(
        db->conn, "SELECT pg_relation_size('runner.jobs') / current_setting('block_size')::int",
        NULL);
    long read = view_buffers(db, "SELECT * FROM runner.queue_summary");
    fprintf(stderr, "admin: queue_summary beside 20,000 waiting jobs: %ld buffers, heap %ld pages\n",
            read, heap);
    th_assert(read < heap / 2, "queue_summary read %ld buffers; the heap has %ld pages", read,
              heap);
}
