/* test_workerproc.c - worker process pools: the protocol, failures, cancel, roll, config. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"
#include "config.h"
#include "job.h"
#include "sentinel.h"
#include "util.h"
#include "workerproc.h"

static char tmpdir[256];
static char log_path[300];
static char test_worker[1024];
static char example_sh[1024];
static char example_py[1024];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/test_workerproc.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(log_path, sizeof log_path, "%s/log", tmpdir);
    /* Paths reach the workers through the environment, never through job data. */
    setenv("WORKER_LOG", log_path, 1);
    const char *data = getenv("RUNNER_TEST_DATA");
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    snprintf(test_worker, sizeof test_worker, "%s/workerproc_test.sh",
             data && *data ? data : "tests/data");
    snprintf(example_sh, sizeof example_sh, "%s/examples/workers/worker.sh",
             root && *root ? root : ".");
    snprintf(example_py, sizeof example_py, "%s/examples/workers/worker.py",
             root && *root ? root : ".");
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(workerproc, .init = setup, .fini = teardown, .timeout = 30);

static workerproc_pool *make_pool(const char *script, int processes, int64_t kill_after_ms)
{
    char err[ERR_LEN] = "";
    char *argv[] = {"sh", (char *)script, NULL};
    workerproc_pool *p =
        workerproc_create("resize", argv, processes, kill_after_ms, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    return p;
}

static job make_job(int64_t id, const char *args)
{
    return (job){.id = id,
                 .queue = "default",
                 .kind = "resize",
                 .args = (char *)args,
                 .attempt = 2,
                 .max_attempts = 5};
}

/* run_one runs one job without a cancel token. */
static job_result run_one(workerproc_pool *p, int64_t id, const char *args, int64_t timeout_ms)
{
    job j = make_job(id, args);
    job_result res;
    cr_assert_eq(workerproc_run(p, &j, timeout_ms, NULL, &res), 0, "run failed: %s",
                 res.error ? res.error : "");
    return res;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return xstrdup("");
    strbuf sb;
    sb_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_append(&sb, buf, n);
    fclose(f);
    return sb.data ? sb.data : xstrdup("");
}

/* pid_of returns the pid the test worker logged for job id, 0 if none. */
static pid_t pid_of(int64_t id)
{
    char *log = slurp(log_path), *line = log;
    pid_t pid = 0;
    while (line && *line) {
        long long jid;
        int version, p;
        if (sscanf(line, "%lld %d %d", &jid, &version, &p) == 3 && jid == id)
            pid = p;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(log);
    return pid;
}

static int version_of(int64_t id)
{
    char *log = slurp(log_path), *line = log;
    int v = 0;
    while (line && *line) {
        long long jid;
        int version, p;
        if (sscanf(line, "%lld %d %d", &jid, &version, &p) == 3 && jid == id)
            v = version;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(log);
    return v;
}

/* wait_for waits up to 10 s for the log to contain text. */
static bool wait_for(const char *text)
{
    for (int i = 0; i < 1000; i++) {
        char *log = slurp(log_path);
        bool found = strstr(log, text) != NULL;
        free(log);
        if (found)
            return true;
        usleep(10000);
    }
    return false;
}

/* gone_within polls up to 10 s for pid to be reaped (no zombie left behind). */
static bool gone_within(pid_t pid)
{
    for (int i = 0; i < 1000; i++) {
        if (kill(pid, 0) < 0 && errno == ESRCH)
            return true;
        usleep(10000);
    }
    return false;
}

static void expect_no_children(void)
{
    errno = 0;
    cr_expect_eq(waitpid(-1, NULL, WNOHANG), -1, "a child is left over");
    cr_expect_eq(errno, ECHILD);
}

/* ---- a job on another thread, for cancels and concurrency ---- */

struct bg {
    pthread_t thread;
    workerproc_pool *pool;
    job j;
    int64_t timeout_ms;
    cancel_token cancel;
    job_result res;
    int rc;
    int64_t took_ms;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;
    int64_t start = now_ms();
    b->rc = workerproc_run(b->pool, &b->j, b->timeout_ms, &b->cancel, &b->res);
    b->took_ms = now_ms() - start;
    return NULL;
}

static void bg_start(struct bg *b, workerproc_pool *p, int64_t id, const char *args,
                     int64_t timeout_ms)
{
    memset(b, 0, sizeof *b);
    b->pool = p;
    b->j = make_job(id, args);
    b->timeout_ms = timeout_ms;
    cr_assert_eq(cancel_init(&b->cancel), 0);
    cr_assert_eq(pthread_create(&b->thread, NULL, bg_main, b), 0);
}

static void bg_join(struct bg *b)
{
    pthread_join(b->thread, NULL);
    cancel_destroy(&b->cancel);
}

/* ---- answers ---- */

Test(workerproc, ok_and_the_job_line)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    job_result res = run_one(p, 1, "{\"do\": \"echo\", \"x\": [1, 2]}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_null(res.error);
    res = run_one(p, 2, "{\"do\":\"echo\"}", 90000);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    char *log = slurp(log_path);
    cr_expect(strstr(log, "line {\"id\":1,\"kind\":\"resize\",\"queue\":\"default\",\"attempt\":2,"
                          "\"deadline_ms\":null,\"args\":{\"do\":\"echo\",\"x\":[1,2]}}\n") != NULL,
              "log:\n%s", log);
    cr_expect(strstr(log, "\"deadline_ms\":90000,") != NULL, "log:\n%s", log);
    free(log);
    cr_expect_eq(pid_of(1), pid_of(2), "one process works both jobs");
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, error_retry_in_and_discard)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    job_result res = run_one(p, 1, "{\"do\":\"error\"}", 0);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "it failed");
    cr_expect_eq(res.delay_ms, -1);
    job_result_free(&res);

    res = run_one(p, 2, "{\"do\":\"retry\"}", 0);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "try later");
    cr_expect_eq(res.delay_ms, 1234);
    job_result_free(&res);

    res = run_one(p, 3, "{\"do\":\"discard\"}", 0);
    cr_expect_eq(res.outcome, JOB_DISCARD);
    cr_expect_str_eq(res.error, "hopeless");
    job_result_free(&res);

    cr_expect_eq(pid_of(1), pid_of(3), "failed attempts do not replace the process");
    workerproc_destroy(p, 2000);
}

/* ---- cancel ---- */

static void cancel_answered(enum cancel_reason why, job_outcome want, const char *error)
{
    workerproc_pool *p = make_pool(test_worker, 1, 20000);
    struct bg b;
    bg_start(&b, p, 7, "{\"do\":\"answer_cancel\"}", 0);
    cr_assert(wait_for("7 1 "), "the job never started");
    cancel_request(&b.cancel, why);
    bg_join(&b);
    cr_expect_eq(b.res.outcome, want);
    cr_expect_str_eq(b.res.error, error);
    cr_expect_lt(b.took_ms, 10000, "the answer to the cancel was not taken");
    job_result_free(&b.res);
    /* The process answered: it stays and takes the next job. */
    job_result res = run_one(p, 8, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_eq(pid_of(7), pid_of(8));
    workerproc_destroy(p, 2000);
}

Test(workerproc, cancel_by_admin_answered)
{
    cancel_answered(CANCEL_JOB, JOB_CANCELLED, "cancelled by admin: stopped");
}

Test(workerproc, cancel_by_shutdown_answered)
{
    cancel_answered(CANCEL_SHUTDOWN, JOB_INTERRUPTED, "shutdown: stopped");
}

Test(workerproc, cancel_by_lease_loss_answered)
{
    cancel_answered(CANCEL_LEASE_LOST, JOB_ABANDONED, "lease lost: stopped");
}

Test(workerproc, timeout_sends_cancel)
{
    workerproc_pool *p = make_pool(test_worker, 1, 20000);
    job_result res = run_one(p, 5, "{\"do\":\"answer_cancel\"}", 300);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "timed out after 300ms: stopped");
    job_result_free(&res);
    workerproc_destroy(p, 2000);
}

Test(workerproc, cancel_ignored_gets_sigterm)
{
    workerproc_pool *p = make_pool(test_worker, 1, 600);
    struct bg b;
    bg_start(&b, p, 3, "{\"do\":\"hang\"}", 0);
    cr_assert(wait_for("3 1 "));
    int64_t start = now_ms();
    cancel_request(&b.cancel, CANCEL_SHUTDOWN);
    bg_join(&b);
    int64_t took = now_ms() - start;
    cr_expect_eq(b.res.outcome, JOB_INTERRUPTED);
    cr_expect_str_eq(b.res.error, "shutdown");
    cr_expect_geq(took, 300, "SIGTERM came before kill_after/2 (%lld ms)", (long long)took);
    cr_expect_lt(took, 600 + WORKERPROC_REAP_GRACE_MS);
    job_result_free(&b.res);
    cr_expect(gone_within(pid_of(3)), "the hung process was not reaped");
    job_result res = run_one(p, 4, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_neq(pid_of(3), pid_of(4), "the hung process was not replaced");
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, cancel_and_sigterm_ignored_gets_sigkill)
{
    workerproc_pool *p = make_pool(test_worker, 1, 800);
    job_result res = run_one(p, 3, "{\"do\":\"hang_hard\"}", 200);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "timed out after 200ms");
    job_result_free(&res);
    cr_expect(gone_within(pid_of(3)));
    res = run_one(p, 4, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_neq(pid_of(3), pid_of(4));
    workerproc_destroy(p, 2000);
    expect_no_children();
}

static int64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* The supervisor sleeps until its next deadline: a second of waiting for SIGTERM and
 * SIGKILL, and the destroy's wait, cost (next to) no CPU. A busy loop would spend most of
 * them; the bound is far from both. */
Test(workerproc, waiting_is_sleeping)
{
    workerproc_pool *p = make_pool(test_worker, 1, 1000);
    int64_t cpu = cpu_ms();
    job_result res = run_one(p, 3, "{\"do\":\"hang_hard\"}", 1);
    cr_expect_eq(res.outcome, JOB_RETRY);
    job_result_free(&res);
    res = run_one(p, 4, "{\"do\":\"exit_after\"}", 0);
    workerproc_destroy(p, 1000);
    int64_t used = cpu_ms() - cpu;
    cr_expect_lt(used, 300, "the supervisor spun: %lld ms of CPU", (long long)used);
}

Test(workerproc, cancelled_before_start)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    cancel_request(&c, CANCEL_JOB);
    job j = make_job(1, "{}");
    job_result res;
    cr_expect_eq(workerproc_run(p, &j, 0, &c, &res), 0);
    cr_expect_eq(res.outcome, JOB_CANCELLED);
    cr_expect_str_eq(res.error, "not started: cancelled by admin");
    job_result_free(&res);
    cr_expect_eq(workerproc_running(p), 0, "a process started for nothing");
    cancel_destroy(&c);
    workerproc_destroy(p, 2000);
}

/* ---- processes that misbehave are replaced ---- */

static void replaced(const char *what, const char *error_part)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    char args[64];
    snprintf(args, sizeof args, "{\"do\":\"%s\"}", what);
    job_result res = run_one(p, 7, args, 0);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect(res.error && strstr(res.error, error_part), "error \"%s\" lacks \"%s\"",
              res.error ? res.error : "(null)", error_part);
    job_result_free(&res);
    pid_t old = pid_of(7);
    cr_expect(gone_within(old), "process %d still there", (int)old);
    res = run_one(p, 8, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_neq(pid_of(8), old, "not replaced");
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, crash_mid_job)
{
    replaced("crash", "exited with status 3: boom on job 7");
}

Test(workerproc, garbage_line)
{
    replaced("garbage", "wrote a line that is not JSON");
}

Test(workerproc, not_an_object)
{
    replaced("not_object", "not an answer with an integer \"id\"");
}

Test(workerproc, answer_for_another_id)
{
    replaced("wrong_id", "answered for job 8 while running job 7");
}

Test(workerproc, over_long_line)
{
    replaced("long", "wrote a line longer than 1048576 bytes");
}

Test(workerproc, answer_without_a_job_replaces_the_process)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    job_result res = run_one(p, 1, "{\"do\":\"two_answers\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED, "the first answer counts");
    cr_expect(gone_within(pid_of(1)), "a process that answered twice was kept");
    res = run_one(p, 2, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_neq(pid_of(1), pid_of(2));
    workerproc_destroy(p, 2000);
}

Test(workerproc, idle_process_that_exits_is_reaped_and_replaced)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    job_result res = run_one(p, 1, "{\"do\":\"exit_after\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect(gone_within(pid_of(1)), "an idle process that exited is a zombie");
    cr_expect_eq(workerproc_running(p), 0);
    res = run_one(p, 2, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    workerproc_destroy(p, 2000);
    expect_no_children();
}

static char *big_args(const char *what, size_t pad)
{
    strbuf sb;
    sb_init(&sb);
    sb_printf(&sb, "{\"do\":\"%s\",\"pad\":\"", what);
    for (size_t i = 0; i < pad; i++)
        sb_puts(&sb, "x");
    sb_puts(&sb, "\"}");
    return sb.data;
}

Test(workerproc, job_line_larger_than_a_pipe)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    char *args = big_args("ok", 300000);
    job_result res = run_one(p, 1, args, 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    free(args);
    workerproc_destroy(p, 2000);
}

Test(workerproc, process_that_does_not_read_its_stdin_costs_epipe_not_sigpipe)
{
    /* SIGPIPE is at its default here: a write to the dead process's pipe that raised it
     * would kill the test. */
    char err[ERR_LEN];
    char *argv[] = {"sh", "-c", "sleep 0.2; echo gone >&2; exit 5", NULL};
    workerproc_pool *p = workerproc_create("resize", argv, 1, 1000, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    char *args = big_args("ok", 300000);
    job_result res = run_one(p, 1, args, 0);
    free(args);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect(res.error && strstr(res.error, "exited with status 5: gone"), "error: %s",
              res.error ? res.error : "(null)");
    job_result_free(&res);
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, without_pidfd)
{
    workerproc_test_no_pidfd = true;
    replaced("crash", "exited with status 3: boom on job 7");
    workerproc_test_no_pidfd = false;
}

Test(workerproc, command_that_cannot_run)
{
    char err[ERR_LEN];
    char *argv[] = {"/nonexistent/worker", NULL};
    workerproc_pool *p = workerproc_create("resize", argv, 2, 1000, err, sizeof err);
    cr_assert_not_null(p);
    job j = make_job(1, "{}");
    job_result res;
    cr_expect_eq(workerproc_run(p, &j, 0, NULL, &res), -1);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "could not start a worker process: could not execute "
                                "\"/nonexistent/worker\": No such file or directory");
    job_result_free(&res);
    cr_expect_eq(workerproc_free(p), 2);
    workerproc_destroy(p, 1000);
    expect_no_children();
}

Test(workerproc, stderr_is_logged_with_the_job_id)
{
    char path[400];
    snprintf(path, sizeof path, "%s/stderr", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(f), 2);
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    job_result res = run_one(p, 31, "{\"do\":\"stderr\"}", 0);
    workerproc_destroy(p, 2000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    char *text = slurp(path);
    cr_expect(strstr(text, "job_id=31") && strstr(text, "note from job 31"), "logged:\n%s", text);
    free(text);
}

/* ---- EOF, destroy, roll, concurrency ---- */

Test(workerproc, destroy_sends_eof_and_the_process_exits)
{
    workerproc_pool *p = make_pool(test_worker, 2, 2000);
    job_result res = run_one(p, 1, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    char want[64];
    snprintf(want, sizeof want, "exit %d\n", (int)pid_of(1));
    workerproc_destroy(p, 5000);
    char *log = slurp(log_path);
    cr_expect(strstr(log, want) != NULL, "the process did not leave on EOF:\n%s", log);
    free(log);
    expect_no_children();
}

Test(workerproc, destroy_kills_what_ignores_eof)
{
    char script[400];
    snprintf(script, sizeof script, "%s/deaf.sh", tmpdir);
    FILE *f = fopen(script, "w");
    cr_assert_not_null(f);
    /* answers its job, then never reads stdin again */
    fputs("IFS= read -r line; id=${line#'{\"id\":'}; id=${id%%,*}\n"
          "printf '{\"id\":%s,\"ok\":true}\\n' \"$id\"; trap '' TERM; exec sleep 60\n",
          f);
    fclose(f);
    workerproc_pool *p = make_pool(script, 1, 200);
    job_result res = run_one(p, 1, "{}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    int64_t start = now_ms();
    workerproc_destroy(p, 300);
    cr_expect_lt(now_ms() - start, 300 + WORKERPROC_REAP_GRACE_MS);
    expect_no_children();
}

static void write_version(const char *path, int version)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "VERSION=%d\n. '%s'\n", version, test_worker);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0); /* the way a deploy replaces a file */
}

Test(workerproc, roll_finishes_old_jobs_and_starts_new_versions)
{
    char script[400];
    snprintf(script, sizeof script, "%s/w.sh", tmpdir);
    write_version(script, 1);
    workerproc_pool *p = make_pool(script, 1, 5000);
    struct bg b;
    bg_start(&b, p, 1, "{\"do\":\"answer_cancel\"}", 0); /* runs until cancelled */
    cr_assert(wait_for("1 1 "));
    cr_expect_eq(workerproc_free(p), 0);

    write_version(script, 2);
    char *argv[] = {"sh", script, NULL};
    workerproc_roll(p, argv, 1);
    cr_expect_eq(workerproc_free(p), 1, "the old version's job still takes the new place");
    /* The next job does not wait for the old one: it runs on version 2 meanwhile. */
    job_result res = run_one(p, 2, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_eq(version_of(2), 2);
    cr_expect_eq(workerproc_running(p), 2);

    /* The old job was not interrupted by the roll; it ends when we say so. */
    cr_expect_eq(b.res.error, NULL);
    cancel_request(&b.cancel, CANCEL_JOB);
    bg_join(&b);
    cr_expect_eq(b.res.outcome, JOB_CANCELLED);
    cr_expect_str_eq(b.res.error, "cancelled by admin: stopped");
    job_result_free(&b.res);
    cr_expect_eq(version_of(1), 1);

    /* Then the old process gets EOF and leaves by itself. */
    char want[64];
    snprintf(want, sizeof want, "exit %d\n", (int)pid_of(1));
    cr_expect(wait_for(want), "the old process did not exit after its job");
    cr_expect(gone_within(pid_of(1)));
    res = run_one(p, 3, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(version_of(3), 2);
    cr_expect_eq(pid_of(3), pid_of(2));
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, roll_replaces_idle_processes_at_once)
{
    char script[400];
    snprintf(script, sizeof script, "%s/w.sh", tmpdir);
    write_version(script, 1);
    workerproc_pool *p = make_pool(script, 2, 5000);
    job_result res = run_one(p, 1, "{\"do\":\"ok\"}", 0);
    write_version(script, 2);
    char *argv[] = {"sh", script, NULL};
    workerproc_roll(p, argv, 3);
    char want[64];
    snprintf(want, sizeof want, "exit %d\n", (int)pid_of(1));
    cr_expect(wait_for(want), "the idle old process did not get EOF");
    cr_expect_eq(workerproc_free(p), 3);
    res = run_one(p, 2, "{\"do\":\"ok\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_eq(version_of(2), 2);
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, processes_run_jobs_at_the_same_time)
{
    enum { N = 3 };
    workerproc_pool *p = make_pool(test_worker, N, 2000);
    cr_expect_eq(workerproc_free(p), N);
    struct bg b[N];
    for (int i = 0; i < N; i++)
        bg_start(&b[i], p, 10 + i, "{\"do\":\"answer_cancel\"}", 0);
    cr_assert(wait_for("10 1 ") && wait_for("11 1 ") && wait_for("12 1 "),
              "the jobs did not all start together");
    cr_expect_eq(workerproc_free(p), 0);
    cr_expect_eq(workerproc_running(p), N);
    for (int i = 0; i < N; i++)
        cancel_request(&b[i].cancel, CANCEL_SHUTDOWN);
    for (int i = 0; i < N; i++) {
        bg_join(&b[i]);
        cr_expect_eq(b[i].res.outcome, JOB_INTERRUPTED);
        job_result_free(&b[i].res);
    }
    cr_expect_neq(pid_of(10), pid_of(11));
    cr_expect_neq(pid_of(11), pid_of(12));
    cr_expect_neq(pid_of(10), pid_of(12));
    cr_expect_eq(workerproc_free(p), N);
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, more_jobs_than_processes_wait_their_turn)
{
    workerproc_pool *p = make_pool(test_worker, 1, 2000);
    struct bg first, second, third;
    bg_start(&first, p, 1, "{\"do\":\"answer_cancel\"}", 0);
    cr_assert(wait_for("1 1 "));
    bg_start(&second, p, 2, "{\"do\":\"ok\"}", 0);
    bg_start(&third, p, 3, "{\"do\":\"ok\"}", 0);
    usleep(100000);
    cancel_request(&third.cancel, CANCEL_JOB); /* still waiting: never starts */
    bg_join(&third);
    cr_expect_eq(third.res.outcome, JOB_CANCELLED);
    cr_expect_str_eq(third.res.error, "not started: cancelled by admin");
    job_result_free(&third.res);
    cancel_request(&first.cancel, CANCEL_JOB);
    bg_join(&first);
    bg_join(&second);
    cr_expect_eq(second.res.outcome, JOB_COMPLETED);
    cr_expect_eq(pid_of(1), pid_of(2));
    cr_expect_eq(pid_of(3), 0);
    job_result_free(&first.res);
    workerproc_destroy(p, 2000);
}

/* dead says whether pid is gone or a zombie (an orphan's zombie waits for whoever
 * reaps orphans here, which may be nobody in a container). */
static bool dead(pid_t pid)
{
    char path[64], buf[512];
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *end = strrchr(buf, ')');
    return end && end[1] == ' ' && end[2] == 'Z';
}

static long logged_child(void)
{
    char *log = slurp(log_path);
    const char *at = strstr(log, "child ");
    long pid = at ? strtol(at + 6, NULL, 10) : 0;
    free(log);
    return pid;
}

Test(workerproc, processes_die_with_the_runner)
{
    pid_t runner = fork();
    cr_assert_geq(runner, 0);
    if (runner == 0) {
        /* A runner in miniature: the sentinel first (before any thread), then a pool
         * whose process hangs in a job with a child of its own. */
        char err[ERR_LEN];
        if (sentinel_start(err, sizeof err) < 0)
            _exit(2);
        char *argv[] = {"sh", test_worker, NULL};
        workerproc_pool *p = workerproc_create("resize", argv, 1, 1000, err, sizeof err);
        if (!p)
            _exit(3);
        job j = make_job(5, "{\"do\":\"hang_with_child\"}");
        job_result res;
        workerproc_run(p, &j, 0, NULL, &res);
        _exit(4);
    }
    cr_assert(wait_for("child "), "the job never started");
    pid_t worker = pid_of(5), grandchild = (pid_t)logged_child();
    cr_assert_gt(worker, 0);
    cr_assert_gt(grandchild, 0);
    kill(runner, SIGKILL);
    cr_assert_eq(waitpid(runner, NULL, 0), runner);
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        gone = dead(worker) && dead(grandchild);
        if (!gone)
            usleep(10000);
    }
    cr_expect(dead(worker), "the worker process outlived the runner");
    cr_expect(dead(grandchild), "the worker's child outlived the runner");
    if (!gone) {
        kill(-worker, SIGKILL); /* leave nothing behind even when the test fails */
        kill(grandchild, SIGKILL);
    }
}

/* ---- the example workers ---- */

Test(workerproc, example_sh_worker)
{
    workerproc_pool *p = make_pool(example_sh, 2, 2000);
    job_result res = run_one(p, 1, "{\"name\": \"world\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    res = run_one(p, 2, "{\"fail\": true}", 0);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "handle failed with status 3");
    job_result_free(&res);
    res = run_one(p, 3, "[\"not\", \"an object\"]", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    workerproc_destroy(p, 2000);
    expect_no_children();
}

Test(workerproc, example_py_worker)
{
    char err[ERR_LEN];
    char *argv[] = {"python3", example_py, NULL};
    workerproc_pool *p = workerproc_create("resize", argv, 1, 20000, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    job_result res = run_one(p, 1, "{\"name\": \"world\"}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    res = run_one(p, 2, "{\"fail\": \"disk full\"}", 0);
    cr_expect_eq(res.outcome, JOB_RETRY);
    cr_expect_str_eq(res.error, "RuntimeError: disk full");
    job_result_free(&res);

    /* It watches for {"cancel": id} while the job runs, and answers it. */
    struct bg b;
    bg_start(&b, p, 3, "{\"sleep_ms\": 60000}", 0);
    usleep(200000);
    cancel_request(&b.cancel, CANCEL_JOB);
    bg_join(&b);
    cr_expect_eq(b.res.outcome, JOB_CANCELLED);
    cr_expect_str_eq(b.res.error, "cancelled by admin: RuntimeError: cancelled");
    cr_expect_lt(b.took_ms, 10000, "it was killed instead of answering");
    job_result_free(&b.res);
    res = run_one(p, 4, "{}", 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    cr_expect_eq(workerproc_running(p), 1, "the process that answered was replaced");
    workerproc_destroy(p, 5000);
    expect_no_children();
}

/* ---- configuration ---- */

static int load(config *c, const char *yaml, char *err)
{
    config_init(c);
    return config_load_string(c, yaml, strlen(yaml), "runner.yaml", err, ERR_LEN);
}

static void expect_config_error(const char *yaml, const char *want)
{
    config c;
    char err[ERR_LEN] = "";
    cr_expect_eq(load(&c, yaml, err), -1, "expected an error for:\n%s", yaml);
    cr_expect_str_eq(err, want);
    config_free(&c);
}

Test(workerproc, config_keys)
{
    config c;
    char err[ERR_LEN] = "";
    cr_assert_eq(load(&c,
                      "kinds:\n"
                      "  thumb:\n"
                      "    worker: [\"python3\", \"/srv/thumb.py\"]\n"
                      "    processes: 4\n"
                      "  one:\n"
                      "    worker: [\"sh\", \"w.sh\"]\n"
                      "  plain:\n"
                      "    command: [\"true\"]\n",
                      err),
                 0, "%s", err);
    const kind_config *k = config_kind(&c, "thumb");
    cr_assert_not_null(k);
    cr_expect_str_eq(k->worker[0], "python3");
    cr_expect_str_eq(k->worker[1], "/srv/thumb.py");
    cr_expect_null(k->worker[2]);
    cr_expect_eq(k->processes, 4);
    cr_expect_eq(config_kind(&c, "one")->processes, 1, "processes defaults to 1");
    cr_expect_null(config_kind(&c, "plain")->worker);
    cr_expect_eq(config_kind(&c, "plain")->processes, 0);
    config_free(&c);
}

Test(workerproc, config_errors)
{
    expect_config_error("kinds:\n  a:\n    command: [\"true\"]\n    worker: [\"sh\"]\n",
                        "could not parse \"kinds.a.worker\" at runner.yaml:4:13: a kind has "
                        "either \"worker\" or \"command\", not both");
    expect_config_error("kinds:\n  a:\n    worker: [\"sh\"]\n    sql: \"SELECT 1\"\n",
                        "could not parse \"kinds.a.worker\" at runner.yaml:3:13: a kind has "
                        "either \"worker\" or \"sql\", not both");
    expect_config_error("kinds:\n  a:\n    command: [\"true\"]\n    processes: 2\n",
                        "could not parse \"kinds.a.processes\" at runner.yaml:4:16: "
                        "\"processes\" applies only to a kind with \"worker\"");
    expect_config_error("kinds:\n  a:\n    worker: [\"sh\"]\n    processes: 0\n",
                        "could not parse \"kinds.a.processes\" at runner.yaml:4:16: 0 is out "
                        "of range (1..1000)");
    expect_config_error("kinds:\n  a:\n    worker: [\"sh\"]\n    processes: 1001\n",
                        "could not parse \"kinds.a.processes\" at runner.yaml:4:16: 1001 is "
                        "out of range (1..1000)");
    expect_config_error("kinds:\n  a:\n    worker: []\n",
                        "could not parse \"kinds.a.worker\" at runner.yaml:3:13: must not be "
                        "empty");
    expect_config_error("kinds:\n  a:\n    worker: \"sh w.sh\"\n",
                        "could not parse \"kinds.a.worker\" at runner.yaml:3:13: expected a "
                        "list, got a string");
}

static void load_ok(config *c, const char *yaml)
{
    char err[ERR_LEN] = "";
    cr_assert_eq(load(c, yaml, err), 0, "%s", err);
}

Test(workerproc, kinds_of_a_configuration_and_their_reload)
{
    char yaml[4096];
    config c1, c2, c3;
    snprintf(yaml, sizeof yaml,
             "shutdown: {kill_after: 2s}\n"
             "kinds:\n"
             "  a: {worker: [\"sh\", \"%s\"], processes: 2}\n"
             "  b: {worker: [\"sh\", \"%s\"]}\n"
             "  c: {command: [\"true\"]}\n",
             test_worker, test_worker);
    load_ok(&c1, yaml);
    char err[ERR_LEN] = "";
    workerproc_kinds *k = workerproc_kinds_create(&c1, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    cr_expect_eq(workerproc_kinds_free(k, "a"), 2);
    cr_expect_eq(workerproc_kinds_free(k, "b"), 1);
    cr_expect_eq(workerproc_kinds_free(k, "c"), -1, "not a worker kind");
    cr_expect_null(workerproc_kinds_pool(k, "c"));

    job j = make_job(1, "{\"do\":\"ok\"}");
    j.kind = "a";
    job_result res;
    cr_expect_eq(workerproc_kinds_run(k, &j, 0, NULL, &res), 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    j.kind = "c";
    cr_expect_eq(workerproc_kinds_run(k, &j, 0, NULL, &res), -1);
    cr_expect_str_eq(res.error, "kind \"c\" has no worker processes in this instance");
    job_result_free(&res);

    /* Reload: a's processes change (rolled), b is removed (drained), d is new. */
    pid_t old_a = pid_of(1);
    snprintf(yaml, sizeof yaml,
             "kinds:\n"
             "  a: {worker: [\"sh\", \"%s\"], processes: 3}\n"
             "  d: {worker: [\"sh\", \"%s\"]}\n",
             test_worker, test_worker);
    load_ok(&c2, yaml);
    workerproc_pool *a = workerproc_kinds_pool(k, "a");
    cr_expect_eq(workerproc_kinds_reload(k, &c2, err, sizeof err), 0, "%s", err);
    cr_expect_eq(workerproc_kinds_pool(k, "a"), a, "a rolled pool is the same pool");
    cr_expect_eq(workerproc_kinds_free(k, "a"), 3);
    cr_expect_eq(workerproc_kinds_free(k, "b"), 0, "a removed kind offers nothing");
    cr_expect_eq(workerproc_kinds_free(k, "d"), 1);
    char want[64];
    snprintf(want, sizeof want, "exit %d\n", (int)old_a);
    cr_expect(wait_for(want), "the rolled process of a did not leave");

    /* A job of b claimed before the reload still runs, on a process that then leaves. */
    j = make_job(2, "{\"do\":\"ok\"}");
    j.kind = "b";
    cr_expect_eq(workerproc_kinds_run(k, &j, 0, NULL, &res), 0);
    cr_expect_eq(res.outcome, JOB_COMPLETED);
    snprintf(want, sizeof want, "exit %d\n", (int)pid_of(2));
    cr_expect(wait_for(want), "the drained kind's process did not leave");

    /* The same configuration again changes nothing: no roll. */
    j = make_job(3, "{\"do\":\"ok\"}");
    j.kind = "a";
    cr_expect_eq(workerproc_kinds_run(k, &j, 0, NULL, &res), 0);
    load_ok(&c3, yaml);
    cr_expect_eq(workerproc_kinds_reload(k, &c3, err, sizeof err), 0);
    j = make_job(4, "{\"do\":\"ok\"}");
    j.kind = "a";
    cr_expect_eq(workerproc_kinds_run(k, &j, 0, NULL, &res), 0);
    cr_expect_eq(pid_of(3), pid_of(4), "an unchanged kind was rolled");

    workerproc_kinds_destroy(k, 2000);
    config_free(&c1);
    config_free(&c2);
    config_free(&c3);
    expect_no_children();
}
