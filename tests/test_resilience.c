/* test_resilience.c - the runner survives its database going away: a server restart and
 * terminated backends mid-run lose no job and do not stop the process. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { N = 200 };

static const char *config(void)
{
    return th_write_config("worker:\n"
                           "  concurrency: 4\n"
                           "  poll_interval: 200ms\n"
                           "  lease: 30s\n"
                           "  heartbeat: 2s\n"
                           "shutdown:\n"
                           "  grace: 10s\n"
                           "  kill_after: 1s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "  tick:\n"
                           "    command: [\"/bin/sh\", \"-c\", 'sleep 0.1; echo \"$RUNNER_JOB_ID\" "
                           ">> \"$EFFECTS\"']\n");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* expect_every_job_ran: every job id appears in the effects file (at least once: a job
 * whose completion could not be written may run again). */
static void expect_every_job_ran(th_db *db)
{
    static int64_t ids[4 * N];
    char *text = th_read_file(th_path("effects"));
    int n = 0;
    for (char *line = strtok(text, "\n"); line != NULL && n < 4 * N; line = strtok(NULL, "\n"))
        ids[n++] = strtoll(line, NULL, 10);
    qsort(ids, (size_t)n, sizeof(ids[0]), cmp_i64);
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || ids[i] != ids[i - 1])
            distinct++;
    }
    th_assert_eq(distinct, N, "distinct job ids in the effects file");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), N,
                 "jobs in the table");
}

/* start_and_wait_progress starts a runner, enqueues N jobs of ~100 ms and waits until
 * some have completed; returns the runner. */
static th_proc *start_and_wait_progress(th_db *db)
{
    th_proc *r = th_runner_start(db->url, config(), th_job_env());
    th_expect_until(db->conn, 15000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(db->conn, N, "tick", "{}", NULL);
    th_expect_until(db->conn, 30000, "the first 20 jobs completed",
                    "SELECT count(*) >= 20 FROM runner.jobs WHERE state = 'completed'", NULL);
    return r;
}

static void expect_all_completed_and_alive(th_db *db, th_proc *r)
{
    th_expect_until(db->conn, 90000, "all jobs completed",
                    "SELECT count(*) = 200 FROM runner.jobs WHERE state = 'completed'", NULL);
    expect_every_job_ran(db);
    th_sleep_ms(500);
    th_assert(th_alive(r), "the runner exited after losing its database");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}

Test(resilience, postgres_restart, .init = th_setup, .fini = th_teardown, .timeout = 180)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = start_and_wait_progress(db);

    th_pg_ctl("restart", "-m", "fast", NULL);
    int64_t done = th_query_int64(
        db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert(done < N,
              "all jobs were done before the restart took effect: the test proves nothing");
    th_assert(th_alive(r), "the runner exited when PostgreSQL restarted");

    expect_all_completed_and_alive(db, r);
}

Test(resilience, backends_terminated, .init = th_setup, .fini = th_teardown, .timeout = 180)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = start_and_wait_progress(db);

    static const char *const kill_sql =
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()";
    int64_t killed = th_query_int64(db->conn, kill_sql, NULL);
    th_assert(killed >= 1, "no runner connection to terminate");
    for (int i = 0; i < 3; i++) {
        th_sleep_ms(700);
        th_query_int64(db->conn, kill_sql, NULL);
    }
    th_assert(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'",
                             NULL) < N,
              "all jobs were done before the connections were cut: the test proves nothing");
    th_assert(th_alive(r), "the runner exited when its connections were terminated");

    expect_all_completed_and_alive(db, r);
}

/* A role allowed one connection: the runner's main connection takes it, its outcome
 * connection cannot be opened, and outcomes are written on the main connection instead
 * (logged once). Every job still completes. */
Test(resilience, outcome_connection_refused, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "DO $$ BEGIN CREATE ROLE runner_one_conn LOGIN CONNECTION LIMIT 1;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            NULL);
    th_exec(db->conn, "GRANT USAGE ON SCHEMA runner TO runner_one_conn", NULL);
    th_exec(db->conn, "GRANT ALL ON ALL TABLES IN SCHEMA runner TO runner_one_conn", NULL);
    th_exec(db->conn, "GRANT ALL ON ALL SEQUENCES IN SCHEMA runner TO runner_one_conn", NULL);
    th_exec(db->conn, "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA runner TO runner_one_conn", NULL);
    const char *url = th_fmt("%s%suser=runner_one_conn", db->url, strchr(db->url, '?') ? "&" : "?");
    th_proc *r = th_runner_start(url, config(), th_job_env());
    th_expect_until(db->conn, 15000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(db->conn, N, "tick", "{}", NULL);
    th_expect_until(db->conn, 90000, "all jobs completed",
                    "SELECT count(*) = 200 FROM runner.jobs WHERE state = 'completed'", NULL);
    expect_every_job_ran(db);
    char *log = th_read_file(r->log_path);
    th_assert(strstr(log, "outcome connection unavailable") != NULL,
              "the log does not say that the outcome connection was refused:\n%s", log);
    th_assert(strstr(log, "too many connections") != NULL,
              "the refusal's reason is not in the log:\n%s", log);
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}

/* count_in counts the lines of the runner's log that contain text. */
static int count_in(th_proc *r, const char *text)
{
    int n = 0;
    for (const char *p = th_read_file(r->log_path); (p = strstr(p, text)) != NULL; p++)
        n++;
    return n;
}

/* A statement that fails turn after turn on a working connection (here the claim, while
 * a table it reads is renamed away) is logged once when it starts failing and once, with
 * the number of repeats, when it works again: not once per claim. */
Test(resilience, repeated_error_logged_once, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = th_runner_start(db->url, config(), th_job_env());
    th_expect_until(db->conn, 10000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_exec(db->conn, "ALTER TABLE runner.queues RENAME TO queues_away", NULL);
    th_enqueue_many(db->conn, 5, "tick", "{}", NULL);
    th_sleep_ms(2000); /* ten poll intervals: ten failed claims at least */
    th_assert_eq(count_in(r, "could not claim jobs"), 1, "log lines of the failing claim");
    th_exec(db->conn, "ALTER TABLE runner.queues_away RENAME TO queues", NULL);
    th_expect_until(db->conn, 10000, "the jobs ran once the claim worked again",
                    "SELECT count(*) = 5 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(count_in(r, "could not claim jobs"), 2,
                 "log lines of the claim: its first failure, and its recovery");
    th_assert(count_in(r, "statement succeeds again") == 1 && count_in(r, "repeats=") >= 1,
              "the recovery line with the count of repeats");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}
