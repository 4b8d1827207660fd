/* test_jobs.c - jobs through the real runner binary: many jobs on two instances, the
 * enqueue command, retries to failure, unknown kinds, and input errors. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The exec command every effect job runs: its id appended to $EFFECTS, so the file shows
 * exactly which jobs ran and how often. */
#define EFFECT_COMMAND "[\"/bin/sh\", \"-c\", 'echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"']"

static const char *config_with_kinds(int concurrency, const char *kinds_yaml)
{
    return th_write_config("worker:\n"
                           "  queues: [default, mail]\n"
                           "  concurrency: %d\n"
                           "  poll_interval: 200ms\n"
                           "  lease: 30s\n"
                           "  heartbeat: 1s\n"
                           "shutdown:\n"
                           "  grace: 10s\n"
                           "  kill_after: 1s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "%s",
                           concurrency, kinds_yaml);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* read_ids parses one id per line; returns how many (sorted). */
static int read_ids(const char *path, int64_t *ids, int max)
{
    char *text = th_read_file(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line != NULL && n < max; line = strtok(NULL, "\n"))
        ids[n++] = strtoll(line, NULL, 10);
    qsort(ids, (size_t)n, sizeof(ids[0]), cmp_i64);
    return n;
}

/* effects_env is the environment the runners get: where job commands leave their
 * effects and pids. */
static const char *const *effects_env(const char *effects)
{
    static const char *env[3];
    env[0] = th_fmt("EFFECTS=%s", effects);
    env[1] = th_fmt("PIDS=%s", th_pids_file());
    env[2] = NULL;
    return env;
}

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(jobs, two_instances_thousand_jobs, .init = th_setup, .fini = th_teardown, .timeout = 180)
{
    enum { N = 1000 };
    th_db *db = th_fresh_db(true);
    const char *effects = th_path("effects");
    const char *config = config_with_kinds(8, "  effect:\n    command: " EFFECT_COMMAND "\n");
    const char *const *env = effects_env(effects);

    th_proc *a = th_runner_start(db->url, config, env);
    th_proc *b = th_runner_start(db->url, config, env);
    th_expect_until(db->conn, 15000, "both instances registered as running",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(db->conn, N, "effect", "{}", NULL);

    th_expect_until(db->conn, 120000, "all 1000 jobs completed",
                    "SELECT count(*) = 1000 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), N,
                 "jobs in the table");
    th_assert_eq(
        th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs WHERE attempt <> 1", NULL), 0,
        "jobs that took more than one attempt");

    /* Each job ran exactly once: the effects are the job ids, each once. */
    static int64_t ids[N + 100];
    int n = read_ids(effects, ids, N + 100);
    th_assert_eq(n, N, "lines in the effects file");
    for (int i = 1; i < n; i++)
        th_assert(ids[i] != ids[i - 1], "job %lld ran more than once", (long long)ids[i]);
    th_assert_eq(th_query_int64(db->conn, "SELECT min(id) FROM runner.jobs", NULL), ids[0],
                 "smallest id in the effects file");
    th_assert_eq(th_query_int64(db->conn, "SELECT max(id) FROM runner.jobs", NULL), ids[n - 1],
                 "largest id in the effects file");
    /* n distinct ids within [min, max] of exactly n consecutive identity values: all of them */
    th_assert_eq(ids[n - 1] - ids[0] + 1, N, "span of the job ids");

    th_signal(a, SIGTERM);
    th_signal(b, SIGTERM);
    th_expect_exit0(a, 15000, "instance a after SIGTERM");
    th_expect_exit0(b, 15000, "instance b after SIGTERM");
    /* Both shared the work (a finished job keeps no owner, so ask their logs). */
    th_assert(count_occurrences(th_read_file(a->log_path), "job completed") > 0,
              "instance a completed no job");
    th_assert(count_occurrences(th_read_file(b->log_path), "job completed") > 0,
              "instance b completed no job");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.instances WHERE state = 'stopped'",
                                NULL),
                 2, "instances recorded as stopped");
}

static int64_t parse_id(const char *out)
{
    char *end;
    long long v = strtoll(out, &end, 10);
    while (*end == '\n' || *end == ' ' || *end == '\r')
        end++;
    return (end == out || *end != '\0') ? -1 : v;
}

Test(jobs, enqueue_command, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *config = config_with_kinds(1, "  effect:\n    command: " EFFECT_COMMAND "\n");

    th_output o = th_run(30000, NULL, "--config", config, "--database-url", db->url, "enqueue",
                         "effect", "{\"n\": 7}", "--queue", "mail", "--priority", "5", NULL);
    th_assert(o.exit_code == 0, "enqueue: exit %d\nstderr:\n%s", o.exit_code, o.err);
    int64_t id = parse_id(o.out);
    th_assert(id > 0, "enqueue did not print just a job id on stdout: \"%s\"", o.out);
    const char *sid = th_fmt("%lld", (long long)id);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND kind = 'effect' AND queue = 'mail' AND priority = 5 "
                                "AND args = '{\"n\": 7}' AND state = 'available'",
                                sid, NULL),
                 1, "job with the given kind, queue, priority and args");

    /* Defaults: args {}, queue default, priority 0. */
    o = th_run(30000, NULL, "--config", config, "--database-url", db->url, "enqueue", "effect",
               NULL);
    th_assert(o.exit_code == 0, "enqueue without JSON: exit %d\nstderr:\n%s", o.exit_code, o.err);
    int64_t id2 = parse_id(o.out);
    th_assert(id2 > 0 && id2 != id, "second enqueue printed \"%s\"", o.out);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND queue = 'default' AND priority = 0 AND args = '{}'",
                                th_fmt("%lld", (long long)id2), NULL),
                 1, "job enqueued with the defaults");

    /* --max-attempts and --unique-key; the same key again returns the same job. */
    o = th_run(30000, NULL, "--config", config, "--database-url", db->url, "enqueue", "effect",
               "{}", "--max-attempts", "4", "--unique-key", "k1", NULL);
    th_assert(o.exit_code == 0, "enqueue --unique-key: exit %d\nstderr:\n%s", o.exit_code, o.err);
    int64_t id3 = parse_id(o.out);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND max_attempts = 4 AND unique_key = 'k1'",
                                th_fmt("%lld", (long long)id3), NULL),
                 1, "job with max_attempts 4 and unique_key k1");
    o = th_run(30000, NULL, "--config", config, "--database-url", db->url, "enqueue", "effect",
               "{}", "--unique-key", "k1", NULL);
    th_assert(o.exit_code == 0, "enqueue same --unique-key: exit %d\nstderr:\n%s", o.exit_code,
              o.err);
    th_assert_eq(parse_id(o.out), id3, "id printed for a duplicate unique key");
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), 3,
                 "jobs in the table");
}

Test(jobs, failing_command_retries_then_fails, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *config =
        config_with_kinds(2, "  boom:\n"
                             "    command: [\"/bin/sh\", \"-c\", \"echo boom >&2; exit 1\"]\n"
                             "    max_attempts: 3\n"
                             "    backoff: {base: 10ms, max: 50ms}\n");
    th_proc *r = th_runner_start(db->url, config, NULL);
    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('boom')", NULL);
    const char *sid = th_fmt("%lld", (long long)id);

    th_expect_until(db->conn, 30000, "the boom job reached state failed",
                    "SELECT state = 'failed' FROM runner.jobs WHERE id = $1::bigint", sid, NULL);
    th_assert_eq(th_query_int64(db->conn, "SELECT attempt FROM runner.jobs WHERE id = $1::bigint",
                                sid, NULL),
                 3, "attempt of the failed job");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT jsonb_array_length(errors) FROM runner.jobs "
                                "WHERE id = $1::bigint",
                                sid, NULL),
                 3, "entries in the errors history");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs j, "
                                "jsonb_array_elements(j.errors) e "
                                "WHERE j.id = $1::bigint AND e->>'error' LIKE '%boom%'",
                                sid, NULL),
                 3, "errors entries that carry the command's stderr (boom)");
    char *attempts = th_query_text(db->conn,
                                   "SELECT string_agg(e->>'attempt', ',' ORDER BY "
                                   "(e->>'attempt')::int) FROM runner.jobs j, "
                                   "jsonb_array_elements(j.errors) e WHERE j.id = $1::bigint",
                                   sid, NULL);
    th_assert(attempts != NULL && strcmp(attempts, "1,2,3") == 0,
              "errors history attempts: expected 1,2,3, got %s", attempts ? attempts : "NULL");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND last_error LIKE '%boom%' AND finished_at IS NOT NULL "
                                "AND lease_owner IS NULL",
                                sid, NULL),
                 1, "failed job with last_error, finished_at and no lease");

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
}

/* A job whose kind this instance has no handler for must survive: not completed, not
 * cancelled, not deleted; and once an instance that knows the kind runs, it runs. */
Test(jobs, unknown_kind_not_lost, .init = th_setup, .fini = th_teardown, .timeout = 90)
{
    th_db *db = th_fresh_db(true);
    const char *effects = th_path("effects");
    const char *const *env = effects_env(effects);
    const char *config = config_with_kinds(2, "  effect:\n    command: " EFFECT_COMMAND "\n");
    th_proc *a = th_runner_start(db->url, config, env);

    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('nosuchkind')", NULL);
    const char *sid = th_fmt("%lld", (long long)id);
    int64_t canary = th_query_int64(db->conn, "SELECT runner.enqueue('effect')", NULL);
    th_expect_until(db->conn, 15000, "a known job enqueued after the unknown one completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint",
                    th_fmt("%lld", (long long)canary), NULL);
    th_sleep_ms(1000);

    char *state =
        th_query_text(db->conn, "SELECT state FROM runner.jobs WHERE id = $1::bigint", sid, NULL);
    th_assert(strcmp(state, "available") == 0 || strcmp(state, "running") == 0 ||
                  strcmp(state, "failed") == 0,
              "job of an unknown kind ended in state %s", state);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND attempt > 0 AND coalesce(last_error, '') NOT LIKE "
                                "'%nosuchkind%'",
                                sid, NULL),
                 0, "attempted unknown-kind jobs whose last_error does not name the kind");

    th_signal(a, SIGTERM);
    th_expect_exit0(a, 15000, "instance without the kind after SIGTERM");

    /* An admin retries it (if it failed or waits for a backoff) and a new instance that
     * knows the kind runs it. */
    th_exec(db->conn,
            "UPDATE runner.jobs SET state = 'available', run_at = now(), finished_at = NULL, "
            "max_attempts = greatest(coalesce(max_attempts, 1), attempt + 1) "
            "WHERE id = $1::bigint AND state IN ('available', 'failed')",
            sid, NULL);
    const char *config2 =
        config_with_kinds(2, "  effect:\n    command: " EFFECT_COMMAND
                             "\n  nosuchkind:\n    command: " EFFECT_COMMAND "\n");
    th_proc *b = th_runner_start(db->url, config2, env);
    th_expect_until(db->conn, 15000,
                    "the formerly unknown job completed on an instance that knows it",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", sid, NULL);
    char *text = th_read_file(effects);
    th_assert(strstr(text, th_fmt("%s\n", sid)) != NULL, "job %s left no effect:\n%s", sid, text);
    th_signal(b, SIGTERM);
    th_expect_exit0(b, 15000, "instance with the kind after SIGTERM");
}

Test(jobs, enqueue_bad_json, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const char *bad[] = {"{not json", "{\"a\": 1", "", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        th_output o =
            th_run(30000, NULL, "--database-url", db->url, "enqueue", "effect", bad[i], NULL);
        th_assert(o.exit_code > 0, "enqueue with args '%s' exited %d, expected an error", bad[i],
                  o.exit_code);
        th_assert(strcasestr(o.err, "json") != NULL,
                  "the error for args '%s' does not mention JSON:\n%s", bad[i], o.err);
        th_assert(parse_id(o.out) < 0, "enqueue with bad JSON printed an id: %s", o.out);
    }
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), 0,
                 "jobs inserted by enqueue with bad JSON");
}

/* expect_config_error runs a command with a broken config and checks that it fails
 * with the file:line:col of the problem. */
static void expect_config_error(const char *config, int line, const char *url, const char *cmd)
{
    th_output o;
    if (strcmp(cmd, "enqueue") == 0)
        o = th_run(15000, NULL, "--config", config, "--database-url", url, cmd, "effect", NULL);
    else
        o = th_run(15000, NULL, "--config", config, "--database-url", url, cmd, NULL);
    th_assert(o.exit_code != -1, "%s with a broken config kept running for 15 s", cmd);
    th_assert(o.exit_code > 0, "%s with a broken config exited %d, expected an error", cmd,
              o.exit_code);
    const char *where = th_fmt("%s:%d:", config, line);
    const char *at = strstr(o.err, where);
    th_assert(at != NULL && at[strlen(where)] >= '0' && at[strlen(where)] <= '9',
              "%s: the error does not name %s<column>:\n%s", cmd, where, o.err);
}

Test(jobs, broken_config, .init = th_setup, .fini = th_teardown, .timeout = 90)
{
    struct {
        const char *yaml;
        int line;
    } cases[] = {
        {"worker:\n  concurrency: 4\n  lease: banana\n", 3},         /* bad value */
        {"worker:\n  concurrency: 4\n  colour: blue\n", 3},          /* unrecognized key */
        {"worker:\n  concurrency: [4\nshutdown:\n  grace: 1s\n", 3}, /* YAML syntax */
        {"worker:\n  concurrency: four\n", 2},                       /* wrong type */
    };
    th_db *migrated = th_fresh_db(true);
    th_db *empty = th_fresh_db(false);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *config = th_write_config("%s", cases[i].yaml);
        expect_config_error(config, cases[i].line, empty->url, "migrate");
        expect_config_error(config, cases[i].line, migrated->url, "run");
        expect_config_error(config, cases[i].line, migrated->url, "enqueue");
    }
    /* The database was not touched: no schema created, no instance, no job. */
    th_assert_eq(th_query_int64(empty->conn,
                                "SELECT count(*) FROM pg_namespace WHERE nspname = 'runner'", NULL),
                 0, "schema created by migrate with a broken config");
    th_assert_eq(th_query_int64(migrated->conn, "SELECT count(*) FROM runner.instances", NULL), 0,
                 "instances registered by run with a broken config");
    th_assert_eq(th_query_int64(migrated->conn, "SELECT count(*) FROM runner.jobs", NULL), 0,
                 "jobs inserted by enqueue with a broken config");
}
