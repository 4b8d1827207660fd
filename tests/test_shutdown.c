/* test_shutdown.c - the shutdown protocol with the real binary and real signals: drain
 * within the grace period, release at the deadline or on a second signal, rescue after
 * SIGKILL, and a terminal's Ctrl+C that reaches only the runner. */
#include <string.h>

#include "harness.h"

/* A job that records its pid (it leads the job's process group), sleeps, then records
 * its id as the effect. */
#define SLEEP_THEN_EFFECT(secs)                                                                    \
    "[\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; sleep " secs                                     \
    "; echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"']"
/* A job that becomes the sleep itself, so its recorded pid is the process that must die
 * with the runner (PR_SET_PDEATHSIG). */

static const char *config(int concurrency, const char *grace, const char *kill_after,
                          const char *lease, const char *heartbeat, const char *command)
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
                           "  level: debug\n"
                           "kinds:\n"
                           "  nap:\n"
                           "    command: %s\n",
                           concurrency, lease, heartbeat, grace, kill_after, command);
}

/* wait_started waits until n job commands have recorded their pid. */
static void wait_started(int n)
{
    th_assert(th_wait_lines(th_pids_file(), n, 20000), "only %d of %d jobs started within 20 s",
              th_count_lines(th_pids_file()), n);
}

/* expect_children_gone asserts that every job process group recorded in the pids file is
 * empty within timeout_ms. */
static void expect_children_gone(int64_t timeout_ms)
{
    pid_t pids[64];
    int n = th_read_pids(th_pids_file(), pids, 64);
    int64_t deadline = th_now_ms() + timeout_ms;
    for (int i = 0; i < n; i++) {
        while (!(th_pid_gone(pids[i]) && th_group_gone(pids[i])) && th_now_ms() < deadline)
            th_sleep_ms(20);
        th_assert(th_pid_gone(pids[i]), "job process %d still alive", (int)pids[i]);
        th_assert(th_group_gone(pids[i]), "job process group %d still has processes", (int)pids[i]);
    }
}

/* SIGTERM with a grace period longer than the jobs: they finish, nothing is released,
 * jobs never started stay untouched, exit 0. */
Test(shutdown, sigterm_drains_within_grace, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *cfg = config(4, "10s", "1s", "30s", "10s", SLEEP_THEN_EFFECT("2"));
    th_enqueue_many(db->conn, 8, "nap", "{}", NULL);
    th_proc *r = th_runner_start(db->url, cfg, th_job_env());
    wait_started(4);
    th_sleep_ms(200);

    th_signal(r, SIGTERM);
    th_expect_until(db->conn, 5000, "instance draining after SIGTERM",
                    "SELECT state IN ('draining', 'stopped') FROM runner.instances", NULL);
    th_expect_exit0(r, 15000, "runner after SIGTERM with a 10 s grace");

    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'"), 4,
                 "running jobs completed during the grace period");
    th_assert_eq(th_count_lines(th_path("effects")), 4, "effects of the completed jobs");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed' "
                                 "AND attempt = 1"),
                 4, "completed jobs on their first attempt");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'available' "
                                 "AND attempt = 0 AND lease_owner IS NULL"),
                 4, "jobs never started: available, attempt 0, no lease");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs "
                                 "WHERE errors::text ILIKE '%interrupt%' "
                                 "OR jsonb_array_length(errors) > 0"),
                 0, "jobs with an error entry (nothing may be released or failed)");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.instances WHERE state = 'stopped'"),
                 1, "instance recorded as stopped");
    expect_children_gone(1000);
}

/* SIGTERM with a short grace while jobs sleep 30 s: cancelled at the deadline, released
 * without charging the attempt, exit 0 in time; a second instance then runs them. */
Test(shutdown, sigterm_releases_at_deadline, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_enqueue_many(db->conn, 3, "nap", "{}", NULL);
    th_proc *r = th_runner_start(
        db->url, config(3, "1s", "1s", "30s", "10s", SLEEP_THEN_EFFECT("30")), th_job_env());
    wait_started(3);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'running' "
                                 "AND attempt = 1"),
                 3, "running jobs on attempt 1");

    th_signal(r, SIGTERM);
    int64_t elapsed;
    bool exited = th_wait_exit(r, 3000, &elapsed);
    th_assert(exited, "runner still running 3 s after SIGTERM (grace 1s + kill_after 1s + 1s)");
    th_expect_exit0(r, 0, "runner after the grace deadline");

    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'available' "
                                 "AND attempt = 0 AND lease_owner IS NULL "
                                 "AND lease_expires_at IS NULL AND run_at <= now()"),
                 3, "released jobs: available now, attempt back to 0, no lease");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs j WHERE EXISTS ("
                                 "SELECT 1 FROM jsonb_array_elements(j.errors) e "
                                 "WHERE e->>'error' ILIKE '%interrupted by shutdown%')"),
                 3, "released jobs whose history says \"interrupted by shutdown\"");
    th_assert_eq(th_count_lines(th_path("effects")), 0, "effects of the interrupted jobs");
    expect_children_gone(1000);

    th_proc *b = th_runner_start(
        db->url, config(3, "10s", "1s", "30s", "10s", SLEEP_THEN_EFFECT("0.1")), th_job_env());
    th_expect_until(db->conn, 10000, "the released jobs completed on a second instance",
                    "SELECT count(*) = 3 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE attempt = 1"), 3,
                 "jobs completed on attempt 1 (the interrupted attempt was not charged)");
    th_signal(b, SIGTERM);
    th_expect_exit0(b, 15000, "second instance after SIGTERM");
}

/* A second SIGTERM during the grace period cancels and releases at once. */
Test(shutdown, second_signal_releases_now, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_enqueue_many(db->conn, 2, "nap", "{}", NULL);
    th_proc *r = th_runner_start(
        db->url, config(2, "20s", "1s", "30s", "10s", SLEEP_THEN_EFFECT("30")), th_job_env());
    wait_started(2);

    th_signal(r, SIGTERM);
    th_expect_until(db->conn, 5000, "instance draining after the first SIGTERM",
                    "SELECT state = 'draining' FROM runner.instances", NULL);
    th_sleep_ms(300);
    th_assert(th_alive(r), "runner exited during a 20 s grace period with jobs running");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'running'"), 2,
                 "jobs still running during the grace period");

    th_signal(r, SIGTERM);
    int64_t elapsed;
    th_assert(th_wait_exit(r, 3000, &elapsed),
              "runner still running 3 s after the second SIGTERM (kill_after is 1 s)");
    th_expect_exit0(r, 0, "runner after the second SIGTERM");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'available' "
                                 "AND attempt = 0 AND lease_owner IS NULL"),
                 2, "released jobs: available, attempt back to 0");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs j WHERE EXISTS ("
                                 "SELECT 1 FROM jsonb_array_elements(j.errors) e "
                                 "WHERE e->>'error' ILIKE '%interrupted by shutdown%')"),
                 2, "released jobs whose history says \"interrupted by shutdown\"");
    expect_children_gone(1000);
}

/* SIGKILL: the leases expire and another live instance rescues the jobs, charging the
 * attempt; the killed runner's job processes die with it. */
Test(shutdown, sigkill_jobs_rescued, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_proc *a =
        th_runner_start(db->url, config(2, "10s", "1s", "3s", "1s", TH_EXEC_SLEEP("30")), th_job_env());
    th_enqueue_many(db->conn, 2, "nap", "{}", NULL);
    wait_started(2);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'running'"), 2,
                 "jobs running on the first instance");

    /* The rescuer runs quick jobs; it starts only now so the first instance has them all. */
    const char *quick = "[\"/bin/sh\", \"-c\", 'echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"']";
    th_proc *b = th_runner_start(db->url, config(2, "10s", "1s", "3s", "1s", quick), th_job_env());
    th_expect_until(db->conn, 10000, "second instance registered",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running'", NULL);

    int64_t killed_at = th_now_ms();
    th_signal(a, SIGKILL);
    th_assert(th_wait_exit(a, 2000, NULL), "runner survived SIGKILL");
    th_assert(WIFSIGNALED(a->status) && WTERMSIG(a->status) == SIGKILL, "runner did not die of "
                                                                        "SIGKILL");
    /* PR_SET_PDEATHSIG: the sleeps die with their runner. */
    expect_children_gone(2000);

    /* lease 3 s + heartbeat 1 s + slack for the rescue sweep and the claim */
    th_expect_until(db->conn, 8000 - (th_now_ms() - killed_at),
                    "jobs of the killed instance rescued and completed by the other instance",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE attempt = 2"), 2,
                 "rescued jobs with the lost attempt charged (attempt 2)");
    th_assert_eq(th_count_lines(th_path("effects")), 2, "effects of the rescued jobs");

    th_signal(b, SIGTERM);
    th_expect_exit0(b, 15000, "rescuing instance after SIGTERM");
}

/* Ctrl+C in a terminal: SIGINT to the whole foreground process group. Only the runner
 * may see it (job processes run in their own groups); with a long grace the jobs finish. */
Test(shutdown, sigint_to_process_group, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    th_enqueue_many(db->conn, 3, "nap", "{}", NULL);
    th_proc *r = th_runner_start(
        db->url, config(3, "10s", "1s", "30s", "10s", SLEEP_THEN_EFFECT("2")), th_job_env());
    wait_started(3);

    th_signal_group(r, SIGINT);
    th_expect_exit0(r, 12000, "runner after SIGINT to its process group");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed' "
                                 "AND attempt = 1"),
                 3, "jobs completed after Ctrl+C (their processes were not interrupted)");
    th_assert_eq(th_count_lines(th_path("effects")), 3, "effects of the jobs");
    th_assert_eq(th_count(db->conn, "SELECT count(*) FROM runner.jobs "
                                 "WHERE jsonb_array_length(errors) > 0"),
                 0, "jobs with an error entry");
}
