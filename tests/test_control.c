/* test_control.c - what the control loop does for admins and schedules, with the real
 * binary: paused queues, per-queue concurrency limits, cancelling running and claimed
 * jobs, cron ticks from three instances at once, the warning about kinds nobody handles,
 * SIGTERM while the runner is still starting, retrying a failed job from SQL, and the
 * completions rollup catching up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* A job that records its pid (the leader of its process group) and then becomes a sleep:
 * the recorded pid is the process a cancel must stop. */
/* A job that records its pid and its id as the effect. */
#define MARK_COMMAND                                                                               \
    "[\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"']"

/* config writes a runner.yaml: the worker section, then the kinds (and whatever else
 * follows them, e.g. schedules). */
static const char *config(const char *queues, int concurrency, const char *poll_interval,
                          const char *rest)
{
    return th_write_config("worker:\n"
                           "  queues: %s\n"
                           "  concurrency: %d\n"
                           "  poll_interval: %s\n"
                           "  lease: 30s\n"
                           "  heartbeat: 1s\n"
                           "shutdown:\n"
                           "  grace: 10s\n"
                           "  kill_after: 1s\n"
                           "log:\n"
                           "  level: debug\n"
                           "%s",
                           queues, concurrency, poll_interval, rest);
}

static const char *id_text(int64_t id)
{
    return th_fmt("%lld", (long long)id);
}

static bool query_bool(PGconn *conn, const char *sql, const char *param)
{
    char *v = th_query_text(conn, sql, param, NULL);
    return v != NULL && strcmp(v, "t") == 0;
}

static char *job_state(PGconn *conn, int64_t id)
{
    char *s = th_query_text(conn, "SELECT state FROM runner.jobs WHERE id = $1::bigint",
                            id_text(id), NULL);
    return s != NULL ? s : "(none)";
}

static void wait_registered(PGconn *conn, int n)
{
    th_expect_until(conn, 10000, th_fmt("%d instance(s) registered and running", n),
                    "SELECT count(*) = $1::int FROM runner.instances WHERE state = 'running'",
                    th_fmt("%d", n), NULL);
}

static void stop(th_proc *r, const char *what)
{
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, what);
}

/* count_lines_with counts the lines of a file that contain both a and b. */
static int count_lines_with(const char *path, const char *a, const char *b)
{
    char *text = th_read_file(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        n += strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    return n;
}

/* has_line: the file has a line that is exactly `line`. */
static bool has_line(const char *path, const char *line)
{
    return strstr(th_fmt("\n%s", th_read_file(path)), th_fmt("\n%s\n", line)) != NULL;
}

/* dump prints a query's rows to stderr (for the record when an assertion follows). */
static void dump(PGconn *conn, const char *title, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    fprintf(stderr, "----- %s -----\n", title);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(res); i++) {
            for (int k = 0; k < PQnfields(res); k++)
                fprintf(stderr, "%s%s=%s", k ? " " : "", PQfname(res, k),
                        PQgetisnull(res, i, k) ? "NULL" : PQgetvalue(res, i, k));
            fputc('\n', stderr);
        }
    } else {
        fprintf(stderr, "%s", PQresultErrorMessage(res));
    }
    PQclear(res);
}

/* ---- 1. paused queue ---- */

/* A paused queue is not claimed from, while the other queues go on; resume_queue wakes
 * the idle instance at once (poll_interval is 10 s, so only the NOTIFY can do it). */
Test(control, paused_queue, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(true);
    th_assert(query_bool(db->conn, "SELECT runner.pause_queue($1)", "default"),
              "pause_queue('default') returns true");
    th_proc *r = th_runner_start(
        db->url,
        config("[default, other]", 2, "10s", "kinds:\n  mark:\n    command: " MARK_COMMAND "\n"),
        th_job_env());
    wait_registered(db->conn, 1);

    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('mark')", NULL);
    int64_t enqueued_at = th_now_ms();
    int64_t other =
        th_query_int64(db->conn, "SELECT runner.enqueue('mark', queue => 'other')", NULL);
    th_expect_until(db->conn, 3000, "a job of the queue that is not paused completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint",
                    id_text(other), NULL);

    /* two seconds of a paused queue with a due job and an idle, working instance */
    while (th_now_ms() - enqueued_at < 2000) {
        th_assert(strcmp(job_state(db->conn, id), "available") == 0,
                  "job %lld of the paused queue left 'available' after %lld ms: %s", (long long)id,
                  (long long)(th_now_ms() - enqueued_at), job_state(db->conn, id));
        th_sleep_ms(100);
    }
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'available' AND attempt = 0 AND lease_owner IS NULL",
                                id_text(id), NULL),
                 1, "job of the paused queue: available, attempt 0, no lease");
    th_assert(!has_line(th_path("effects"), id_text(id)), "the paused queue's job ran");

    th_assert(query_bool(db->conn, "SELECT runner.resume_queue($1)", "default"),
              "resume_queue('default') returns true");
    th_expect_until(db->conn, 3000, "the job completed within 3 s of resume_queue",
                    "SELECT state = 'completed' AND attempt = 1 FROM runner.jobs"
                    " WHERE id = $1::bigint",
                    id_text(id), NULL);
    th_assert(has_line(th_path("effects"), id_text(id)), "no effect of job %lld", (long long)id);
    stop(r, "runner after SIGTERM");
}

/* ---- 2. per-queue concurrency ---- */

/* Each job logs "<queue> start <ns>" and "<queue> end <ns>" around a sleep of 0.6 s (odd
 * ids) or 0.7 s (even ids). The two limited jobs that start together thus never end
 * together. (When two jobs of a limited queue end within one round trip, the database can
 * show limit + 1 of them 'running' for a few milliseconds: the loop frees a job's slot when
 * its handler returns, before its completion is written, and may claim in between. The
 * processes never exceed the limit; that moment is not what this test samples.) The
 * limited jobs are ids 1..8, and each of the two slots keeps its parity. */
#define TIMED_NAP                                                                                  \
    "[\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; "                                                \
    "echo \"$RUNNER_JOB_QUEUE start $(date +%s%N) $RUNNER_JOB_ID\" >> \"$EFFECTS\"; "              \
    "sleep 0.$((6 + RUNNER_JOB_ID % 2)); "                                                         \
    "echo \"$RUNNER_JOB_QUEUE end $(date +%s%N) $RUNNER_JOB_ID\" >> \"$EFFECTS\"']"

typedef struct span {
    char queue[32];
    int64_t id;
    long long start, end;
} span;

/* read_spans pairs the start and end lines of each job in the effects file. */
static int read_spans(const char *path, span *spans, int max)
{
    char *text = th_read_file(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char queue[32], what[8];
        long long ns, id;
        if (sscanf(line, "%31s %7s %lld %lld", queue, what, &ns, &id) != 4)
            th_fail("unexpected effects line \"%s\"", line);
        int i = 0;
        while (i < n && spans[i].id != id)
            i++;
        if (i == n) {
            th_assert(n < max, "more than %d jobs in the effects file", max);
            spans[n++] = (span){.id = id};
            snprintf(spans[i].queue, sizeof spans[i].queue, "%s", queue);
        }
        if (strcmp(what, "start") == 0)
            spans[i].start = ns;
        else
            spans[i].end = ns;
    }
    return n;
}

/* max_overlap: the most jobs of `queue` whose [start, end] spans contain one instant. */
static int max_overlap(const span *spans, int n, const char *queue)
{
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(spans[i].queue, queue) != 0)
            continue;
        int at = 0;
        for (int k = 0; k < n; k++)
            at += strcmp(spans[k].queue, queue) == 0 && spans[k].start <= spans[i].start &&
                  spans[i].start <= spans[k].end;
        best = at > best ? at : best;
    }
    return best;
}

/* worker.queues [default, {name: limited, concurrency: 2}] with 8 workers: never more
 * than 2 limited jobs at once (by the database's view, sampled every 100 ms, and by the
 * processes' own clocks), while default jobs take the other workers in parallel. */
Test(control, per_queue_concurrency, .init = th_setup, .fini = th_teardown, .timeout = 40)
{
    th_db *db = th_fresh_db(true);
    enum { LIMITED = 8, DEFAULT = 5 };
    th_enqueue_many(db->conn, LIMITED, "nap", "{}", "limited");
    th_proc *r = th_runner_start(db->url,
                                 config("[default, {name: limited, concurrency: 2}]", 8, "200ms",
                                        "kinds:\n  nap:\n    command: " TIMED_NAP "\n"),
                                 th_job_env());

    int max_limited = 0, max_default_beside = 0, samples = 0;
    bool default_enqueued = false;
    int64_t deadline = th_now_ms() + 20000;
    for (;;) {
        char *s = th_query_text(db->conn,
                                "SELECT format('%s %s %s',"
                                "  count(*) FILTER (WHERE state = 'running' AND queue = 'limited'),"
                                "  count(*) FILTER (WHERE state = 'running' AND queue = 'default'),"
                                "  count(*) FILTER (WHERE state <> 'completed'))"
                                " FROM runner.jobs",
                                NULL);
        int limited = 0, dflt = 0, open = 0;
        th_assert(sscanf(s, "%d %d %d", &limited, &dflt, &open) == 3, "sample \"%s\"", s);
        samples++;
        th_assert(limited <= 2, "%d jobs of queue 'limited' running at once (limit 2)", limited);
        max_limited = limited > max_limited ? limited : max_limited;
        if (limited > 0 && dflt > max_default_beside)
            max_default_beside = dflt;
        if (!default_enqueued && limited > 0) {
            /* the limited queue is busy: default jobs must still get the free workers */
            th_enqueue_many(db->conn, DEFAULT, "nap", "{}", "default");
            default_enqueued = true;
        } else if (default_enqueued && open == 0) {
            break;
        }
        th_assert(th_now_ms() < deadline,
                  "jobs not all completed within 20 s (%d limited and %d default running, %d "
                  "not completed)",
                  limited, dflt, open);
        th_sleep_ms(100);
    }
    th_assert(samples >= 15, "only %d samples over 8 limited jobs of ~0.65 s at 2 at a time",
              samples);
    th_assert_eq(max_limited, 2, "most limited jobs seen running at once (database)");
    th_assert_eq(max_default_beside, DEFAULT,
                 "default jobs seen running together while limited jobs ran (database)");

    span spans[LIMITED + DEFAULT + 1];
    int n = read_spans(th_path("effects"), spans, LIMITED + DEFAULT + 1);
    th_assert_eq(n, LIMITED + DEFAULT, "jobs in the effects file");
    for (int i = 0; i < n; i++)
        th_assert(spans[i].start > 0 && spans[i].end >= spans[i].start,
                  "job %lld has no complete start/end record", (long long)spans[i].id);
    th_assert_eq(max_overlap(spans, n, "limited"), 2,
                 "most limited job processes running at once (their own clocks)");
    th_assert_eq(max_overlap(spans, n, "default"), DEFAULT,
                 "default job processes running at once (their own clocks)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'"
                                 " AND attempt = 1"),
                 LIMITED + DEFAULT, "jobs completed on attempt 1");
    stop(r, "runner after SIGTERM");
}

/* A limited queue with a backlog: when one of its jobs ends, the next is claimed at once,
 * not at the next poll_interval (10 s here). Five jobs of 0.2 s at one at a time take
 * about a second. */
Test(control, limited_queue_backlog_drains, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(true);
    th_enqueue_many(db->conn, 5, "nap", "{}", "limited");
    th_proc *r = th_runner_start(db->url,
                                 config("[default, {name: limited, concurrency: 1}]", 4, "10s",
                                        "kinds:\n  nap:\n    command: [\"sleep\", \"0.2\"]\n"),
                                 th_job_env());
    th_expect_until(db->conn, 10000, "the first limited job started",
                    "SELECT count(*) > 0 FROM runner.jobs WHERE state <> 'available'", NULL);
    bool done = th_wait_until(
        db->conn, 4000, "SELECT count(*) = 5 FROM runner.jobs WHERE state = 'completed'", NULL);
    if (!done)
        dump(db->conn, "limited jobs",
             "SELECT id, state, started_at, finished_at FROM runner.jobs ORDER BY id");
    th_assert(done, "5 limited jobs of 0.2 s (limit 1) not completed within 4 s of the first start "
                    "(poll_interval is 10 s: a freed slot must not wait for it)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM (SELECT started_at - lag(finished_at)"
                                 "  OVER (ORDER BY started_at) AS gap FROM runner.jobs) g"
                                 " WHERE gap > interval '500 ms'"),
                 0, "gaps over 500 ms between one limited job's end and the next one's start");
    stop(r, "runner after SIGTERM");
}

/* ---- 3. cancel a running exec job ---- */

Test(control, cancel_running_exec, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(true);
    const char *kinds =
        "kinds:\n"
        "  nap:\n    command: " TH_EXEC_SLEEP("30") "\n"
                                                 "  mark:\n    command: " MARK_COMMAND "\n";
    th_proc *r = th_runner_start(db->url, config("[default]", 2, "200ms", kinds), th_job_env());
    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('nap')", NULL);
    th_assert(th_wait_lines(th_pids_file(), 1, 10000), "the sleep job did not start in 10 s");
    pid_t pid;
    th_assert_eq(th_read_pids(th_pids_file(), &pid, 1), 1, "pids recorded");
    th_assert(!th_pid_gone(pid), "sleep process %d already gone", (int)pid);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'running'",
                                id_text(id), NULL),
                 1, "the sleep job running");

    int64_t t0 = th_now_ms();
    th_assert(query_bool(db->conn, "SELECT runner.cancel_job($1::bigint)", id_text(id)),
              "cancel_job returns true");
    th_expect_until(db->conn, 1500, "the running job 'cancelled' within 1.5 s of cancel_job",
                    "SELECT state = 'cancelled' FROM runner.jobs WHERE id = $1::bigint",
                    id_text(id), NULL);
    int64_t took = th_now_ms() - t0;
    while (!(th_pid_gone(pid) && th_group_gone(pid)) && th_now_ms() - t0 < 1500)
        th_sleep_ms(10);
    th_assert(th_pid_gone(pid), "sleep process %d alive %lld ms after cancel_job", (int)pid,
              (long long)(th_now_ms() - t0));
    th_assert(th_group_gone(pid), "process group %d not empty after cancel_job", (int)pid);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND finished_at IS NOT NULL AND lease_owner IS NULL"
                                "  AND last_error = 'cancelled by admin' AND attempt = 1"
                                "  AND cancel_requested_at IS NOT NULL",
                                id_text(id), NULL),
                 1, "cancelled job: finished, no lease, 'cancelled by admin', attempt 1");
    th_assert(
        count_lines_with(r->log_path, "job cancelled", th_fmt("job_id=%lld", (long long)id)) == 1,
        "the log has no \"job cancelled\" line for job %lld", (long long)id);
    cr_log_info("cancel_job -> cancelled in %lld ms", (long long)took);

    /* the runner goes on working */
    int64_t next = th_query_int64(db->conn, "SELECT runner.enqueue('mark')", NULL);
    th_expect_until(db->conn, 5000, "a job enqueued after the cancel completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint",
                    id_text(next), NULL);
    th_assert(th_alive(r), "runner exited");
    stop(r, "runner after SIGTERM");
}

/* ---- 4. cancel a job that is claimed but not started ---- */

/* Claims are made slow (300 ms, a statement trigger on the claim) so the loop prefetches
 * beyond its single worker: a long job A and a job B are claimed together, A runs and B
 * waits in the runner's memory, 'running' in the table. cancel_job(B) must then record B
 * as cancelled without ever running it. */
Test(control, cancel_claimed_unstarted, .init = th_setup, .fini = th_teardown, .timeout = 40)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "CREATE FUNCTION public.slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            "  IF current_query() LIKE '% picked AS (%' THEN PERFORM pg_sleep(0.3); END IF;"
            "  RETURN NULL;"
            " END $$",
            NULL);
    th_exec(db->conn,
            "CREATE TRIGGER slow_claim BEFORE UPDATE ON runner.jobs"
            " FOR EACH STATEMENT EXECUTE FUNCTION public.slow_claim()",
            NULL);
    const char *kinds =
        "kinds:\n"
        "  quick:\n    command: [\"true\"]\n"
        "  nap:\n    command: " TH_EXEC_SLEEP("3") "\n"
                                                "  mark:\n    command: " MARK_COMMAND "\n";
    th_proc *r = th_runner_start(db->url, config("[default]", 1, "100ms", kinds), th_job_env());
    wait_registered(db->conn, 1);
    /* short jobs against slow claims: the loop learns to prefetch */
    th_enqueue_many(db->conn, 3, "quick", "{}", NULL);
    th_expect_until(db->conn, 10000, "warm-up jobs completed",
                    "SELECT count(*) = 3 FROM runner.jobs WHERE state = 'completed'", NULL);

    char *ids = th_query_text(db->conn,
                              "SELECT runner.enqueue('nap', priority => 0) || ' ' ||"
                              "       runner.enqueue('mark', priority => 1)",
                              NULL);
    long long a, b;
    th_assert(sscanf(ids, "%lld %lld", &a, &b) == 2, "ids \"%s\"", ids);
    th_assert(th_wait_lines(th_pids_file(), 1, 5000), "job A did not start in 5 s");
    th_expect_until(db->conn, 2000,
                    "job B claimed together with A (prefetch) while the only worker runs A",
                    "SELECT state = 'running' AND lease_owner IS NOT NULL FROM runner.jobs"
                    " WHERE id = $1::bigint",
                    id_text(b), NULL);
    th_assert_eq(th_count_lines(th_pids_file()), 1, "job processes started (only A)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'running'",
                                id_text(a), NULL),
                 1, "job A running");

    th_assert(query_bool(db->conn, "SELECT runner.cancel_job($1::bigint)", id_text(b)),
              "cancel_job(B) returns true");
    th_expect_until(db->conn, 1500, "job B 'cancelled' within 1.5 s while A still runs",
                    "SELECT state = 'cancelled' FROM runner.jobs WHERE id = $1::bigint", id_text(b),
                    NULL);
    th_assert(strcmp(job_state(db->conn, a), "running") == 0, "job A %s, expected running",
              job_state(db->conn, a));

    th_expect_until(db->conn, 8000, "job A completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", id_text(a),
                    NULL);
    th_sleep_ms(500);
    th_assert_eq(th_count_lines(th_pids_file()), 1, "job processes started (B must never run)");
    th_assert(!has_line(th_path("effects"), id_text(b)), "cancelled job B ran");
    th_assert(strcmp(job_state(db->conn, b), "cancelled") == 0, "job B %s, expected cancelled",
              job_state(db->conn, b));
    stop(r, "runner after SIGTERM");
}

/* ---- 5. schedules on three instances ---- */

Test(control, schedule_three_instances, .init = th_setup, .fini = th_teardown, .timeout = 40)
{
    th_db *db = th_fresh_db(true);
    const char *cfg = config("[default]", 2, "200ms",
                             "kinds:\n"
                             "  tick:\n    command: [\"true\"]\n"
                             "schedules:\n"
                             "  tick:\n"
                             "    cron: \"@every 1s\"\n"
                             "    kind: tick\n");
    th_proc *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = th_runner_start(db->url, cfg, th_job_env());
    wait_registered(db->conn, 3);
    th_sleep_ms(5500);
    /* stop half way between two ticks, when no tick job is claimed but not yet started: a
     * shutdown hands such a job back with run_at = now() (finish.c), and it would no longer
     * carry its tick's time */
    int64_t ms = th_count(db->conn, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
                                 " % 1000");
    th_sleep_ms((1500 - ms) % 1000);
    for (int i = 0; i < 3; i++)
        th_signal(r[i], SIGTERM);
    char *stopped_at = th_query_text(db->conn, "SELECT now()::text", NULL);
    for (int i = 0; i < 3; i++)
        th_expect_exit0(r[i], 15000, "runner after SIGTERM");

    int64_t ticks = th_count(db->conn, "SELECT count(*) FROM runner.schedule_ticks");
    int64_t joined = th_count(db->conn, "SELECT count(*) FROM runner.schedule_ticks t"
                                     "  JOIN runner.jobs j ON j.id = t.job_id"
                                     " WHERE j.kind = 'tick' AND j.run_at = t.fire_at");
    if (joined != ticks)
        dump(db->conn, "schedule ticks and their jobs",
             "SELECT t.fire_at, t.enqueued_at, t.job_id, j.state, j.attempt, j.run_at,"
             "  j.started_at, j.finished_at, j.errors FROM runner.schedule_ticks t"
             "  LEFT JOIN runner.jobs j ON j.id = t.job_id ORDER BY t.fire_at");
    /* fired at whole seconds from the definition (first start) to the SIGTERM */
    int64_t window = th_query_int64(db->conn,
                                    "SELECT extract(epoch FROM $1::timestamptz - defined_at)::int"
                                    " FROM runner.schedules WHERE name = 'tick'",
                                    stopped_at, NULL);
    th_assert(ticks >= 4 && ticks <= 8, "%lld ticks in ~6 s, expected 4..8", (long long)ticks);
    th_assert(ticks >= window - 1 && ticks <= window + 1,
              "%lld ticks for %lld s between definition and SIGTERM", (long long)ticks,
              (long long)window);
    th_assert_eq(th_count(db->conn, "SELECT count(DISTINCT fire_at) FROM runner.schedule_ticks"),
                 ticks, "distinct tick times");
    th_assert_eq(joined, ticks, "ticks with their job (kind tick, run_at = fire_at)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE kind = 'tick'"), ticks,
                 "tick jobs");
    th_assert_eq(th_count(db->conn, "SELECT count(DISTINCT run_at) FROM runner.jobs"
                                 " WHERE kind = 'tick'"),
                 ticks, "distinct run_at of the tick jobs");
    th_assert_eq(th_count(db->conn, "SELECT extract(epoch FROM max(fire_at) - min(fire_at))::int"
                                 " FROM runner.schedule_ticks"),
                 ticks - 1, "seconds from the first to the last tick (none left out)");
    th_assert_eq(th_count(db->conn,
                       "SELECT count(*) FROM runner.schedule_ticks"
                       " WHERE extract(microseconds FROM fire_at)::bigint % 1000000 <> 0"),
                 0, "ticks off the 1 s grid");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.schedule_ticks t, runner.schedules s"
                                 " WHERE t.fire_at <= s.defined_at"),
                 0, "ticks at or before the schedule was defined");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE kind = 'tick'"
                                 "  AND NOT (state = 'completed' AND attempt = 1"
                                 "           OR state = 'available' AND attempt = 0)"),
                 0, "tick jobs neither completed once nor waiting");
    int logged = 0;
    for (int i = 0; i < 3; i++)
        logged += count_lines_with(r[i]->log_path, "schedule tick enqueued", "schedule=tick");
    th_assert_eq(logged, ticks, "\"schedule tick enqueued\" lines in the three logs");
}

/* ---- 6. unknown kind ---- */

Test(control, unknown_kind_warned_once, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(true);
    const char *waited = "SELECT runner.enqueue('mystery', run_at => now() - interval '6 minutes')";
    int64_t id = th_query_int64(db->conn, waited, NULL);
    int64_t id2 = th_query_int64(db->conn, waited, NULL);
    /* waiting, but not for five minutes yet: not worth a warning */
    th_query_int64(db->conn, "SELECT runner.enqueue('fresh_mystery')", NULL);
    th_proc *r = th_runner_start(
        db->url, config("[default]", 2, "200ms", "kinds:\n  known:\n    command: [\"true\"]\n"),
        th_job_env());
    const char *msg = "jobs waiting for a kind that no running instance handles";
    int64_t deadline = th_now_ms() + 10000;
    while (count_lines_with(r->log_path, msg, "kind=mystery") == 0 && th_now_ms() < deadline)
        th_sleep_ms(100);
    th_assert(count_lines_with(r->log_path, msg, "kind=mystery") > 0,
              "no \"%s\" line with kind=mystery within 10 s", msg);
    th_sleep_ms(1000);
    th_assert_eq(count_lines_with(r->log_path, msg, "kind=mystery"), 1,
                 "warnings about kind mystery (two jobs: one line)");
    th_assert_eq(count_lines_with(r->log_path, msg, NULL), 1,
                 "warnings in all (fresh_mystery has not waited five minutes)");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id IN ($1::bigint,"
                                "  $2::bigint) AND state = 'available' AND attempt = 0",
                                id_text(id), id_text(id2), NULL),
                 2, "mystery jobs still available, never attempted");
    stop(r, "runner after SIGTERM");
}

/* ---- 7. SIGTERM while starting ---- */

/* wait_main waits until the runner's main() holds SIGTERM (blocked or caught): before
 * that (fork, exec, the dynamic loader) no program can decide what SIGTERM does, so "right
 * after start" counts from there. Returns false on timeout. */
static bool wait_main(th_proc *p, int64_t timeout_ms)
{
    char exe_want[4096], exe_path[64], exe[4096], status_path[64];
    if (realpath(th_runner_bin(), exe_want) == NULL)
        th_fail("realpath %s failed", th_runner_bin());
    snprintf(exe_path, sizeof exe_path, "/proc/%d/exe", (int)p->pid);
    snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)p->pid);
    unsigned long long bit = 1ULL << (SIGTERM - 1);
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        ssize_t n = readlink(exe_path, exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            if (strcmp(exe, exe_want) == 0) {
                FILE *f = fopen(status_path, "r");
                char line[256];
                unsigned long long blk = 0, cgt = 0;
                while (f != NULL && fgets(line, sizeof line, f) != NULL) {
                    sscanf(line, "SigBlk: %llx", &blk);
                    sscanf(line, "SigCgt: %llx", &cgt);
                }
                if (f != NULL)
                    fclose(f);
                if ((blk | cgt) & bit)
                    return true;
            }
        }
        if (!th_alive(p))
            return false;
    }
    return false;
}

/* A deploy tool may SIGTERM a runner that is still starting: it must stop cleanly (exit
 * 0, not killed by the signal), whether it gets the signal before it connected, while it
 * registers, or just after its first claim. */
Test(control, sigterm_right_after_start, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *cfg = config("[default]", 2, "200ms",
                             "kinds:\n  mark:\n    command: " MARK_COMMAND "\n"
                             "schedules:\n"
                             "  tick:\n"
                             "    cron: \"@every 1h\"\n"
                             "    kind: mark\n");
    th_enqueue_many(db->conn, 3, "mark", "{}", NULL);
    const int delays[] = {0, 5, 50};
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        th_proc *r = th_runner_start(db->url, cfg, th_job_env());
        th_assert(wait_main(r, 5000), "runner (pid %d) never reached main() with SIGTERM held",
                  (int)r->pid);
        if (delays[i] > 0)
            th_sleep_ms(delays[i]);
        th_signal(r, SIGTERM);
        th_expect_exit0(r, 10000, th_fmt("runner SIGTERMed %d ms after start", delays[i]));
    }
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.instances WHERE state <> 'stopped'"),
                 0, "instances not marked stopped");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs"
                                 " WHERE NOT (state = 'completed' AND attempt = 1"
                                 "            OR state = 'available' AND attempt = 0"
                                 "               AND lease_owner IS NULL)"),
                 0, "jobs neither completed once nor untouched");

    /* and the jobs are all there for the next instance */
    th_proc *r = th_runner_start(db->url, cfg, th_job_env());
    wait_registered(db->conn, 1);
    th_expect_until(db->conn, 10000, "every job completed by a runner left alone",
                    "SELECT count(*) = 3 FROM runner.jobs WHERE state = 'completed'"
                    " AND attempt = 1",
                    NULL);
    stop(r, "runner after SIGTERM");
}

/* ---- 8. retry a failed job from SQL ---- */

Test(control, retry_failed_job, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = th_runner_start(db->url,
                                 config("[default]", 2, "10s",
                                        "kinds:\n"
                                        "  flaky:\n"
                                        "    command: [\"/bin/sh\", \"-c\", "
                                        "'echo no ok file >&2; test -e \"$OKFILE\"']\n"),
                                 th_job_env());
    wait_registered(db->conn, 1);
    int64_t id =
        th_query_int64(db->conn, "SELECT runner.enqueue('flaky', max_attempts => 1)", NULL);
    th_expect_until(db->conn, 5000, "the job failed (max_attempts 1, exit 1)",
                    "SELECT state = 'failed' AND attempt = 1 FROM runner.jobs"
                    " WHERE id = $1::bigint",
                    id_text(id), NULL);
    char *err = th_query_text(db->conn, "SELECT last_error FROM runner.jobs WHERE id = $1::bigint",
                              id_text(id), NULL);
    th_assert(err != NULL && strstr(err, "no ok file") != NULL,
              "last_error \"%s\" lacks the command's stderr", err ? err : "(null)");

    th_write_file("ok", "");
    th_assert(query_bool(db->conn, "SELECT runner.retry_job($1::bigint)", id_text(id)),
              "retry_job returns true");
    /* poll_interval is 10 s: only retry_job's NOTIFY can make this quick */
    th_expect_until(db->conn, 3000, "the retried job completed within 3 s",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint",
                    id_text(id), NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND attempt = 1 AND max_attempts = 1 AND finished_at IS NOT NULL"
                                "  AND errors -> 0 ->> 'outcome' = 'retry'"
                                "  AND errors -> 1 ->> 'outcome' = 'retried'"
                                "  AND jsonb_array_length(errors) = 2",
                                id_text(id), NULL),
                 1, "completed on attempt 1 with the failure and the retry in its history");
    stop(r, "runner after SIGTERM");
}

/* ---- completions rollup ---- */

/* A running instance rolls the last hour's completions up (runner.completed_minutes)
 * without waiting for its prune, catching up quickly when it starts behind, so that
 * queue_summary never counts more than a few seconds of completions row by row. */
Test(control, rollup_catches_up, .init = th_setup, .fini = th_teardown, .timeout = 40)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, started_at,"
            "  finished_at)"
            " SELECT 'default', 'k', 'completed', 1, 3, now() - i * interval '1 s',"
            "        now() - i * interval '1 s'"
            "   FROM generate_series(30, 3000) i",
            NULL);
    th_proc *r = th_runner_start(db->url,
                                 config("[default]", 1, "10s",
                                        "kinds:\n"
                                        "  k:\n"
                                        "    command: [\"/bin/true\"]\n"),
                                 NULL);
    wait_registered(db->conn, 1);
    /* 50 minutes behind: 25 steps of two minutes; at one step per 5 s that is 2 minutes */
    th_expect_until(db->conn, 15000, "the rollup caught up within 15 s",
                    "SELECT through > now() - interval '40 s' FROM runner.rollup_progress", NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT (SELECT sum(completed) FROM runner.completed_minutes)"
                                "     - (SELECT count(*) FROM runner.jobs"
                                "         WHERE finished_at < (SELECT through"
                                "                                FROM runner.rollup_progress))",
                                NULL),
                 0, "every completion before `through` counted once");
    stop(r, "runner after SIGTERM");
}

/* Retention prunes finished jobs past `retention` soon after the start, in batches, on a
 * connection of its own ("runner upkeep"), while the instance works jobs on its main one;
 * completed jobs are counted by the rollup before they go. */
Test(control, retention_prunes_on_upkeep_connection, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, started_at,"
            "  finished_at)"
            " SELECT 'default', 'k', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,"
            "        1, 3, now() - interval '5 min', now() - interval '5 min'"
            "   FROM generate_series(1, 3500) i",
            NULL);
    th_proc *r = th_runner_start(db->url,
                                 config("[default]", 2, "10s",
                                        "retention: 1m\n"
                                        "kinds:\n"
                                        "  k:\n"
                                        "    command: [\"/bin/true\"]\n"),
                                 NULL);
    wait_registered(db->conn, 1);
    th_enqueue_many(db->conn, 20, "k", "{}", NULL);
    th_expect_until(db->conn, 30000, "the old jobs pruned and the new ones done within 30 s",
                    "SELECT count(*) = 20 AND bool_and(finished_at > now() - interval '1 min')"
                    "  FROM runner.jobs",
                    NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                                "   AND application_name = 'runner upkeep'",
                                NULL),
                 1, "the instance's upkeep connection");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT coalesce(sum(completed), 0) FROM runner.completed_minutes",
                                NULL) >= 3150,
                 1, "the pruned completions were counted first");
    char *log = th_read_file(r->log_path);
    th_assert(count_lines_with(r->log_path, "pruned finished jobs", NULL) >= 4,
              "fewer than four prune batches logged:\n%s", log);
    stop(r, "runner after SIGTERM");
}
