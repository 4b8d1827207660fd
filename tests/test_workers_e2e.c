/* test_workers_e2e.c - long-lived worker processes (kinds.<name>.worker) with the real
 * binary and real signals: the example workers (sh and Python) keep their processes
 * across jobs; a worker that hangs, one that crashes mid-job and one that writes garbage
 * fail their attempt with the reason and are replaced; SIGHUP rolls a kind whose
 * processes or argv changed without interrupting a job; SIGTERM releases (or lets finish)
 * what workers run and takes them along; SIGKILL of the runner takes them too.
 *
 * The small worker scripts are written into the test's tmpdir. Each records its pid in
 * $PIDS (teardown kills what is left) and one line per job event in $EFFECTS:
 * "<start|done> <job id> <pid> <version>". The example workers are found in
 * /proc as children of the runner. Every wait is bounded; nothing measures speed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PIDS 64

/* A worker in sh: answers ok after the job's optional "sleep":N seconds, and misbehaves
 * when the args ask for it ("hang", "crash", "garbage"). %s is its version. */
#define TEST_WORKER(version)                                                                       \
    "#!/bin/sh\n"                                                                                  \
    "echo $$ >> \"$PIDS\"\n"                                                                       \
    "while IFS= read -r line; do\n"                                                                \
    "  case $line in\n"                                                                            \
    "  '{\"cancel\":'*) continue ;;\n" /* a cancel is ignored: the runner's signals stop it */   \
    "  esac\n"                                                                                     \
    "  id=${line#'{\"id\":'}; id=${id%%,*}\n"                                                      \
    "  echo \"start $id $$ " version "\" >> \"$EFFECTS\"\n"                                        \
    "  case $line in\n"                                                                            \
    "  *'\"hang\":true'*) trap '' TERM; continue ;;\n" /* never answers, ignores SIGTERM */      \
    "  *'\"crash\":true'*) echo 'crashing in the middle of the job' >&2; exit 3 ;;\n"            \
    "  *'\"garbage\":true'*) echo 'this is {not json'; continue ;;\n"                             \
    "  *'\"sleep\":'*) s=${line#*'\"sleep\":'}; s=${s%%[!0-9]*}; sleep \"$s\" ;;\n"               \
    "  esac\n"                                                                                     \
    "  echo \"done $id $$ " version "\" >> \"$EFFECTS\"\n"                                         \
    "  printf '{\"id\":%s,\"ok\":true}\\n' \"$id\"\n"                                              \
    "done\n"

static const char *const *job_env(void)
{
    static const char *env[3];
    env[0] = th_fmt("EFFECTS=%s", th_path("effects"));
    env[1] = th_fmt("PIDS=%s", th_pids_file());
    env[2] = NULL;
    return env;
}

static const char *source_root(void)
{
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    th_assert(root && *root, "RUNNER_SOURCE_ROOT is not set (meson sets it)");
    return root;
}

static const char *python(void)
{
    /* not a version manager's shim on PATH when the system has its own */
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
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

/* worker_children lists the live children of parent whose command line has an argument
 * containing needle (the worker processes the runner forked). */
static int worker_children(pid_t parent, const char *needle, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    th_assert(d != NULL, "cannot open /proc");
    int n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        char state;
        int ppid;
        if (!p || sscanf(p + 2, "%c %d", &state, &ppid) != 2 || ppid != parent || state == 'Z')
            continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        bool match = false;
        for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
            if (strstr(buf + i, needle))
                match = true;
        if (match)
            out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* add_pids merges pids into the set (n its size); returns the new size. */
static int add_pids(pid_t *set, int n, const pid_t *pids, int npids)
{
    for (int i = 0; i < npids; i++) {
        bool seen = false;
        for (int j = 0; j < n; j++)
            seen = seen || set[j] == pids[i];
        if (!seen && n < MAX_PIDS)
            set[n++] = pids[i];
    }
    return n;
}

/* remember_pids appends pids to the pids file, so that teardown kills them on a failure. */
static void remember_pids(const pid_t *pids, int n)
{
    FILE *f = fopen(th_pids_file(), "a");
    th_assert(f != NULL, "cannot append to the pids file");
    for (int i = 0; i < n; i++)
        fprintf(f, "%d\n", (int)pids[i]);
    fclose(f);
}

/* expect_gone asserts that each pid and its process group are gone within timeout_ms. */
static void expect_gone(const pid_t *pids, int n, int64_t timeout_ms, const char *what)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (int i = 0; i < n; i++) {
        while (!(th_pid_gone(pids[i]) && th_group_gone(pids[i])) && th_now_ms() < deadline)
            th_sleep_ms(20);
        th_assert(th_pid_gone(pids[i]) && th_group_gone(pids[i]),
                  "%s: process %d (or its group) still running %d ms later", what, (int)pids[i],
                  (int)timeout_ms);
    }
}

/* effect finds the line "<event> <id> <pid> <version>" of the effects file: returns the
 * pid (0 when missing) and copies the version. */
static pid_t effect(const char *event, const char *id, char *version, size_t vlen)
{
    char *text = th_read_file(th_path("effects"));
    char *prefix = th_fmt("%s %s ", event, id);
    size_t plen = strlen(prefix);
    for (char *line = text; line && *line;) {
        char *next = strchr(line, '\n');
        if (strncmp(line, prefix, plen) == 0) {
            int pid = 0;
            char v[32] = "";
            if (sscanf(line + plen, "%d %31s", &pid, v) >= 1) {
                if (version)
                    snprintf(version, vlen, "%s", v);
                return (pid_t)pid;
            }
        }
        line = next ? next + 1 : NULL;
    }
    return 0;
}

static pid_t wait_effect(const char *event, const char *id, char *version, size_t vlen)
{
    int64_t deadline = th_now_ms() + 15000;
    pid_t pid;
    while ((pid = effect(event, id, version, vlen)) == 0 && th_now_ms() < deadline)
        th_sleep_ms(20);
    th_assert(pid != 0, "no \"%s %s\" in the effects within 15 s:\n%s", event, id,
              th_read_file(th_path("effects")));
    return pid;
}

static char *enqueue(th_db *db, const char *kind, const char *args)
{
    return th_query_text(db->conn, "SELECT runner.enqueue($1, $2::jsonb)", kind, args, NULL);
}

static int count_substr(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- a: the example workers keep their processes ---- */

Test(workers_e2e, example_workers_keep_their_processes, .init = th_setup, .fini = th_teardown,
     .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    const char *sh_path = th_fmt("%s/examples/workers/worker.sh", source_root());
    const char *py_path = th_fmt("%s/examples/workers/worker.py", source_root());
    const char *cfg = th_write_config("worker:\n"
                                      "  concurrency: 6\n"
                                      "  poll_interval: 100ms\n"
                                      "shutdown: {grace: 10s, kill_after: 2s}\n"
                                      "log: {level: debug}\n"
                                      "kinds:\n"
                                      "  shk:\n"
                                      "    worker: [\"/bin/sh\", \"%s\"]\n"
                                      "    processes: 2\n"
                                      "    max_attempts: 1\n"
                                      "  pyk:\n"
                                      "    worker: [\"%s\", \"%s\"]\n"
                                      "    processes: 2\n"
                                      "    max_attempts: 1\n",
                                      sh_path, python(), py_path);
    th_proc *r = th_runner_start(db->url, cfg, job_env());
    th_expect_until(db->conn, 10000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);

    th_enqueue_many(db->conn, 40, "shk", "{\"n\": 1}", "default");
    th_enqueue_many(db->conn, 40, "pyk", "{\"sleep_ms\": 5}", "default");
    const char *sh_fail = enqueue(db, "shk", "{\"fail\":true}");
    const char *py_fail = enqueue(db, "pyk", "{\"fail\": \"boom\"}");
    th_enqueue_many(db->conn, 20, "shk", "{}", "default");
    th_enqueue_many(db->conn, 20, "pyk", "{}", "default");

    /* every process seen while the jobs run */
    pid_t sh_seen[MAX_PIDS], py_seen[MAX_PIDS], now[MAX_PIDS];
    int nsh = 0, npy = 0;
    int64_t deadline = th_now_ms() + 60000;
    bool done = false;
    while (!done && th_now_ms() < deadline) {
        int n = worker_children(r->pid, "worker.sh", now, MAX_PIDS);
        remember_pids(now, n);
        nsh = add_pids(sh_seen, nsh, now, n);
        n = worker_children(r->pid, "worker.py", now, MAX_PIDS);
        remember_pids(now, n);
        npy = add_pids(py_seen, npy, now, n);
        done = th_query_int64(db->conn,
                              "SELECT count(*) FROM runner.jobs"
                              " WHERE state IN ('available', 'running')",
                              NULL) == 0;
        th_sleep_ms(10);
    }
    th_assert(done, "the jobs did not finish within 60 s");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = 'completed'"
                                " AND attempt = 1 AND errors = '[]'",
                                NULL),
                 120, "jobs completed on their first attempt");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'failed'"
                                " AND last_error = 'handle failed with status 3'",
                                sh_fail, NULL),
                 1, "worker.sh's failed job carries its answer's error");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'failed' AND last_error = 'RuntimeError: boom'",
                                py_fail, NULL),
                 1, "worker.py's failed job carries its answer's error");

    /* the same processes throughout: no more than processes: 2 of each, all still there */
    th_assert(nsh >= 1 && nsh <= 2, "worker.sh processes seen: %d (processes: 2)", nsh);
    th_assert(npy >= 1 && npy <= 2, "worker.py processes seen: %d (processes: 2)", npy);
    int n = worker_children(r->pid, "worker.sh", now, MAX_PIDS);
    th_assert_eq(add_pids(now, n, sh_seen, nsh), n, "every worker.sh process seen is alive");
    n = worker_children(r->pid, "worker.py", now, MAX_PIDS);
    th_assert_eq(add_pids(now, n, py_seen, npy), n, "every worker.py process seen is alive");
    char *log = th_read_file(r->log_path);
    th_assert(count_substr(log, "worker process started") <= 4,
              "at most 2 + 2 worker processes started, the log says %d",
              count_substr(log, "worker process started"));
    th_assert(!strstr(log, "worker process replaced"), "a worker process was replaced");

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    expect_gone(sh_seen, nsh, 3000, "worker.sh after the runner's exit");
    expect_gone(py_seen, npy, 3000, "worker.py after the runner's exit");
}

/* ---- b: misbehaving workers are replaced, the next job works ---- */

static void misbehave(const char *args, const char *reason)
{
    th_db *db = th_fresh_db(true);
    const char *script = th_write_file("bad.sh", TEST_WORKER("v1"));
    const char *cfg = th_write_config("worker:\n"
                                      "  concurrency: 2\n"
                                      "  poll_interval: 100ms\n"
                                      "shutdown: {grace: 5s, kill_after: 1s}\n"
                                      "log: {level: debug}\n"
                                      "kinds:\n"
                                      "  bad:\n"
                                      "    worker: [\"/bin/sh\", \"%s\"]\n"
                                      "    processes: 1\n"
                                      "    timeout: 1s\n"
                                      "    max_attempts: 1\n",
                                      script);
    th_proc *r = th_runner_start(db->url, cfg, job_env());

    /* a first good job, so that the misbehaving one meets a process that worked */
    const char *before = enqueue(db, "bad", "{}");
    th_expect_until(db->conn, 15000, "the job before completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", before,
                    NULL);
    pid_t good_pid = wait_effect("done", before, NULL, 0);

    const char *id = enqueue(db, "bad", args);
    th_expect_until(db->conn, 20000, "the misbehaving job's attempt failed",
                    "SELECT state = 'failed' FROM runner.jobs WHERE id = $1::bigint", id, NULL);
    pid_t bad_pid = wait_effect("start", id, NULL, 0);
    th_assert_eq(bad_pid, good_pid, "the misbehaving job ran on the process that had worked");
    char *last_error =
        th_query_text(db->conn, "SELECT last_error FROM runner.jobs WHERE id = $1::bigint", id,
                      NULL);
    th_assert(last_error && strstr(last_error, reason),
              "last_error names the reason \"%s\": %s", reason, last_error ? last_error : "NULL");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND jsonb_array_length(errors) = 1"
                                " AND strpos(errors -> 0 ->> 'error', $2) > 0",
                                id, reason, NULL),
                 1, "the errors history names the reason");
    /* the outcome is written once the process is gone */
    pid_t gone[1] = {bad_pid};
    expect_gone(gone, 1, 2000, "the misbehaving process");

    const char *after = enqueue(db, "bad", "{}");
    th_expect_until(db->conn, 15000, "the next job completed on a new process",
                    "SELECT state = 'completed' AND attempt = 1 AND errors = '[]'"
                    "  FROM runner.jobs WHERE id = $1::bigint",
                    after, NULL);
    pid_t new_pid = wait_effect("done", after, NULL, 0);
    th_assert(new_pid != bad_pid, "the next job ran on the replaced process %d", (int)bad_pid);
    wait_log(r, reason); /* the "job failed" line gives the reason too */

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    pid_t pids[MAX_PIDS];
    int n = th_read_pids(th_pids_file(), pids, MAX_PIDS);
    th_assert_eq(n, 2, "worker processes started (the first and its replacement)");
    expect_gone(pids, n, 3000, "worker processes after the runner's exit");
}

Test(workers_e2e, hanging_worker_is_replaced, .init = th_setup, .fini = th_teardown,
     .timeout = 90)
{
    /* no answer, the cancel ignored, SIGTERM ignored: SIGKILL at kill_after */
    misbehave("{\"hang\":true}", "timed out after 1s");
}

Test(workers_e2e, crashing_worker_is_replaced, .init = th_setup, .fini = th_teardown,
     .timeout = 90)
{
    misbehave("{\"crash\":true}", "exited with status 3: crashing in the middle of the job");
}

Test(workers_e2e, garbage_writing_worker_is_replaced, .init = th_setup, .fini = th_teardown,
     .timeout = 90)
{
    misbehave("{\"garbage\":true}", "worker process wrote a line that is not JSON");
}

/* ---- c: the rolling replacement on SIGHUP ---- */

static const char *roll_config(const char *script, const char *extra_arg, int processes)
{
    return th_write_file("runner.yaml",
                         th_fmt("worker:\n"
                                "  concurrency: 8\n"
                                "  poll_interval: 100ms\n"
                                "shutdown: {grace: 10s, kill_after: 1s}\n"
                                "log: {level: debug}\n"
                                "kinds:\n"
                                "  roll:\n"
                                "    worker: [\"/bin/sh\", \"%s\"%s]\n"
                                "    processes: %d\n",
                                script, extra_arg, processes));
}

static void rolling(const char *extra_arg_after, int processes_after)
{
    th_db *db = th_fresh_db(true);
    const char *script = th_write_file("roll.sh", TEST_WORKER("v1"));
    th_proc *r = th_runner_start(db->url, roll_config(script, "", 2), job_env());

    /* two long jobs, one on each v1 process */
    const char *old1 = enqueue(db, "roll", "{\"sleep\":4}");
    const char *old2 = enqueue(db, "roll", "{\"sleep\":4}");
    pid_t v1[2];
    char version[32];
    v1[0] = wait_effect("start", old1, version, sizeof version);
    th_assert(strcmp(version, "v1") == 0, "the first job ran v1, not %s", version);
    v1[1] = wait_effect("start", old2, version, sizeof version);
    th_assert(v1[0] != v1[1], "the two long jobs run on two processes");

    /* the hotfix: a new script renamed over the old one, and runner.yaml changed */
    th_write_file("roll.sh.new", TEST_WORKER("v2"));
    th_assert(rename(th_path("roll.sh.new"), script) == 0, "rename over roll.sh");
    roll_config(script, extra_arg_after, processes_after);
    th_signal(r, SIGHUP);
    wait_log(r, "configuration reloaded");

    char *after[10];
    for (int i = 0; i < 10; i++)
        after[i] = enqueue(db, "roll", "{}");
    /* they run on the new processes while the old ones still finish their jobs */
    for (int i = 0; i < 10; i++)
        th_expect_until(db->conn, 15000, "a job enqueued after the reload completed",
                        "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint",
                        after[i], NULL);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id IN ($1::bigint,"
                                " $2::bigint) AND state = 'running'",
                                old1, old2, NULL),
                 2, "the old jobs still run: the new ones did not wait for the roll");
    pid_t v2[MAX_PIDS];
    int nv2 = 0;
    for (int i = 0; i < 10; i++) {
        pid_t p = wait_effect("done", after[i], version, sizeof version);
        th_assert(strcmp(version, "v2") == 0, "job %s after the reload ran %s, not v2", after[i],
                  version);
        th_assert(p != v1[0] && p != v1[1], "job %s after the reload ran on an old process",
                  after[i]);
        nv2 = add_pids(v2, nv2, &p, 1);
    }
    th_assert(nv2 <= processes_after, "%d new processes for processes: %d", nv2,
              processes_after);

    /* the old jobs run to the end on the old processes; then those exit */
    th_expect_until(db->conn, 15000, "the old jobs completed",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE id IN ($1::bigint, $2::bigint)"
                    "  AND state = 'completed'",
                    old1, old2, NULL);
    th_assert(wait_effect("done", old1, version, sizeof version) == v1[0] &&
                  strcmp(version, "v1") == 0,
              "the first old job finished on its v1 process");
    th_assert(wait_effect("done", old2, version, sizeof version) == v1[1] &&
                  strcmp(version, "v1") == 0,
              "the second old job finished on its v1 process");
    expect_gone(v1, 2, 5000, "the old processes after their last job");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state <> 'completed'"
                                " OR attempt <> 1 OR errors <> '[]' OR last_error IS NOT NULL",
                                NULL),
                 0, "jobs interrupted, retried or with an error");

    const char *later = enqueue(db, "roll", "{}");
    th_expect_until(db->conn, 15000, "a later job completed",
                    "SELECT state = 'completed' FROM runner.jobs WHERE id = $1::bigint", later,
                    NULL);
    wait_effect("done", later, version, sizeof version);
    th_assert(strcmp(version, "v2") == 0, "a later job ran %s, not v2", version);

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    pid_t pids[MAX_PIDS];
    int n = th_read_pids(th_pids_file(), pids, MAX_PIDS);
    th_assert(n >= 2 + nv2 && n <= 2 + processes_after,
              "worker processes started: %d (2 old, then at most %d new)", n, processes_after);
    expect_gone(pids, n, 3000, "worker processes after the runner's exit");
}

Test(workers_e2e, sighup_rolls_on_processes_change, .init = th_setup, .fini = th_teardown,
     .timeout = 120)
{
    rolling("", 3);
}

Test(workers_e2e, sighup_rolls_on_argv_change, .init = th_setup, .fini = th_teardown,
     .timeout = 120)
{
    rolling(", \"--hotfix\"", 2);
}

/* ---- d: SIGTERM and SIGKILL of the runner ---- */

static const char *signal_config(const char *grace)
{
    return th_write_config("worker:\n"
                           "  concurrency: 4\n"
                           "  poll_interval: 100ms\n"
                           "  lease: 30s\n"
                           "shutdown: {grace: %s, kill_after: 1s}\n"
                           "log: {level: debug}\n"
                           "kinds:\n"
                           "  shk:\n"
                           "    worker: [\"/bin/sh\", \"%s\"]\n"
                           "    processes: 2\n"
                           "  pyk:\n"
                           "    worker: [\"%s\", \"%s/examples/workers/worker.py\"]\n"
                           "    processes: 1\n",
                           grace, th_write_file("w.sh", TEST_WORKER("v1")), python(),
                           source_root());
}

Test(workers_e2e, sigterm_releases_or_finishes_worker_jobs, .init = th_setup,
     .fini = th_teardown, .timeout = 90)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = th_runner_start(db->url, signal_config("2s"), job_env());
    const char *sh_long = enqueue(db, "shk", "{\"sleep\":30}");
    const char *sh_short = enqueue(db, "shk", "{\"sleep\":1}");
    const char *py_long = enqueue(db, "pyk", "{\"sleep_ms\": 30000}");
    wait_effect("start", sh_long, NULL, 0);
    wait_effect("start", sh_short, NULL, 0);
    th_expect_until(db->conn, 15000, "the three jobs running",
                    "SELECT count(*) = 3 FROM runner.jobs WHERE state = 'running'", NULL);
    pid_t pids[MAX_PIDS];
    int n = th_read_pids(th_pids_file(), pids, MAX_PIDS);
    int npy = worker_children(r->pid, "worker.py", pids + n, MAX_PIDS - n);
    th_assert_eq(npy, 1, "worker.py processes");
    remember_pids(pids + n, npy);
    n += npy;

    int64_t elapsed;
    th_signal(r, SIGTERM);
    th_assert(th_wait_exit(r, 20000, &elapsed), "the runner did not exit within 20 s of SIGTERM");
    th_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
              "the runner exited with status %d", r->status);
    expect_gone(pids, n, 3000, "worker processes after the runner's exit");

    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint"
                                " AND state = 'completed' AND attempt = 1 AND errors = '[]'",
                                sh_short, NULL),
                 1, "the short job completed within the grace period");
    th_assert(effect("done", sh_short, NULL, 0) != 0, "the short job's worker finished it");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id IN ($1::bigint,"
                                " $2::bigint) AND state = 'available' AND attempt = 0"
                                " AND lease_owner IS NULL"
                                " AND errors -> -1 ->> 'outcome' = 'released'",
                                sh_long, py_long, NULL),
                 2, "the long jobs released: available, attempt not charged");
    th_assert(effect("done", sh_long, NULL, 0) == 0, "the long sh job did not run to its end");
}

Test(workers_e2e, sigkill_of_the_runner_takes_the_workers, .init = th_setup,
     .fini = th_teardown, .timeout = 90)
{
    th_db *db = th_fresh_db(true);
    th_proc *r = th_runner_start(db->url, signal_config("10s"), job_env());
    const char *sh_long = enqueue(db, "shk", "{\"sleep\":30}");
    enqueue(db, "shk", "{}");
    enqueue(db, "pyk", "{\"sleep_ms\": 30000}");
    wait_effect("start", sh_long, NULL, 0);
    th_expect_until(db->conn, 15000, "both long jobs running",
                    "SELECT count(*) = 2 FROM runner.jobs WHERE state = 'running'", NULL);
    pid_t pids[MAX_PIDS];
    int n = th_read_pids(th_pids_file(), pids, MAX_PIDS);
    th_assert(n >= 1, "sh worker processes started");
    int npy = worker_children(r->pid, "worker.py", pids + n, MAX_PIDS - n);
    th_assert_eq(npy, 1, "worker.py processes");
    remember_pids(pids + n, npy);
    n += npy;

    th_signal(r, SIGKILL);
    th_assert(th_wait_exit(r, 5000, NULL), "the runner did not die of SIGKILL");
    /* busy (sh with its sleep child, Python) and idle processes alike */
    expect_gone(pids, n, 5000, "worker processes after SIGKILL of the runner");
}
