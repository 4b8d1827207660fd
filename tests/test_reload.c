/* test_reload.c - SIGHUP re-reads runner.yaml with the real binary: kinds added and
 * removed, concurrency and queues changed live (the instance row shows it at once), jobs
 * already running finish under their old settings, an invalid file changes nothing, and
 * what only a restart changes is named in the log and kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A job of kind `kind` that appends "<kind> <id>" to $EFFECTS after sleeping secs. */
#define MARK(kind, secs)                                                                           \
    "[\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; sleep " secs "; echo " kind                     \
    " $RUNNER_JOB_ID >> \"$EFFECTS\"']"

/* write_yaml (re)writes the one runner.yaml this test reloads. */
static const char *write_yaml(const char *text)
{
    return th_write_file("runner.yaml", text);
}

static bool log_has(th_proc *p, const char *text)
{
    return strstr(th_read_file(p->log_path), text) != NULL;
}

static void wait_log(th_proc *p, const char *text)
{
    int64_t start = th_now_ms();
    while (!log_has(p, text) && th_now_ms() - start < 10000)
        th_sleep_ms(50);
    th_assert(log_has(p, text), "no \"%s\" in the runner's log", text);
}

static const char CONFIG_A[] = "worker:\n"
                               "  queues: [default]\n"
                               "  concurrency: 1\n"
                               "  poll_interval: 200ms\n"
                               "  lease: 30s\n"
                               "shutdown: {grace: 10s, kill_after: 1s}\n"
                               "kinds:\n"
                               "  old:\n"
                               "    command: " MARK("old", "2") "\n";

Test(reload, kinds_queues_concurrency_change_live, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *path = write_yaml(CONFIG_A);
    th_proc *r = th_runner_start(db->url, path, th_job_env());
    const char *first = th_query_text(db->conn, "SELECT runner.enqueue('old')", NULL);
    th_expect_until(db->conn, 10000, "the old kind's job running",
                    "SELECT state = 'running' FROM runner.jobs WHERE id = $1::bigint", first,
                    NULL);

    write_yaml("worker:\n"
               "  queues: [default, {name: extra, concurrency: 2}]\n"
               "  concurrency: 3\n"
               "  poll_interval: 200ms\n"
               "  lease: 30s\n"
               "shutdown: {grace: 10s, kill_after: 1s}\n"
               "kinds:\n"
               "  new:\n"
               "    command: " MARK("new", "0") "\n");
    th_signal(r, SIGHUP);
    th_expect_until(db->conn, 5000, "the instance row shows the reload",
                    "SELECT kinds = '{new}' AND concurrency = 3 AND queues = '{default,extra}'"
                    "  FROM runner.instances WHERE state = 'running'",
                    NULL);
    wait_log(r, "configuration reloaded");
    th_assert(log_has(r, "kinds_added=new") && log_has(r, "kinds_removed=old"),
              "the reload's log line names the kinds it added and removed");

    /* claimed before the reload: finishes under the old settings */
    th_expect_until(db->conn, 10000, "the running job of the removed kind completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", first,
                    NULL);
    const char *stale = th_query_text(db->conn, "SELECT runner.enqueue('old')", NULL);
    th_enqueue_many(db->conn, 3, "new", "{}", "extra");
    th_expect_until(db->conn, 10000, "the new kind's jobs in the new queue completed",
                    "SELECT count(*) = 3 FROM runner.jobs WHERE kind = 'new'"
                    "  AND queue = 'extra' AND state = 'completed'",
                    NULL);
    th_sleep_ms(600); /* three poll intervals: a claim of the removed kind would have run */
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                "  AND state = 'available' AND attempt = 0",
                                stale, NULL),
                 1, "jobs of the removed kind wait for an instance that has it");
    char *effects = th_read_file(th_path("effects"));
    th_assert(strstr(effects, th_fmt("old %s\n", first)) != NULL,
              "the old kind's job ran its old command to the end: %s", effects);

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}

Test(reload, invalid_file_changes_nothing, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *path = write_yaml(CONFIG_A);
    th_proc *r = th_runner_start(db->url, path, th_job_env());
    th_expect_until(db->conn, 10000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);

    write_yaml("worker:\n"
               "  concurrency: 3\n"
               "  concurency: 4\n"
               "kinds:\n"
               "  new:\n"
               "    command: [\"/bin/true\"]\n");
    th_signal(r, SIGHUP);
    wait_log(r, "could not reload the configuration, keeping the running one");
    th_assert(log_has(r, "unrecognized key \\\"worker.concurency\\\" at ") &&
                  log_has(r, "runner.yaml:3:3"),
              "the error names the key and file:line:column");
    th_assert(th_alive(r), "the runner exited on an invalid reload");

    const char *id = th_query_text(db->conn, "SELECT runner.enqueue('old')", NULL);
    th_expect_until(db->conn, 10000, "a job of the running configuration's kind completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", id,
                    NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.instances"
                                "  WHERE kinds = '{old}' AND concurrency = 1",
                                NULL),
                 1, "the instance row still shows the running configuration");

    /* what only a restart changes is named and kept; the rest applies */
    write_yaml("worker:\n"
               "  queues: [default]\n"
               "  concurrency: 2\n"
               "  poll_interval: 200ms\n"
               "  lease: 60s\n"
               "kinds:\n"
               "  old:\n"
               "    command: " MARK("old", "0") "\n");
    th_signal(r, SIGHUP);
    wait_log(r, "worker.lease and worker.heartbeat changed: take effect at the next restart");
    th_expect_until(db->conn, 5000, "concurrency reloaded, lease kept",
                    "SELECT concurrency = 2 AND lease = interval '30 s' FROM runner.instances"
                    "  WHERE state = 'running'",
                    NULL);
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}
