/* test_exec.c - the exec handler: outcomes, stdin/env, timeouts, cancel, process groups. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"
#include "exec.h"
#include "job.h"
#include "util.h"

static char tmpdir[256];
static char out_path[300];
static char pid_path[300];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/test_exec.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(out_path, sizeof(out_path), "%s/out", tmpdir);
    snprintf(pid_path, sizeof(pid_path), "%s/pid", tmpdir);
    /* Paths reach the children through the test's own environment, never job data. */
    setenv("OUT", out_path, 1);
    setenv("PIDFILE", pid_path, 1);
    exec_test_no_pidfd = false;
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(exec, .init = setup, .fini = teardown, .timeout = 20);

static job test_job(const char *args)
{
    job j = {.id = 42,
             .queue = "default",
             .kind = "resize",
             .args = (char *)args,
             .attempt = 2,
             .max_attempts = 5,
             .priority = 0};
    return j;
}

static int run(char *const argv[], const char *args, int64_t timeout_ms, int64_t kill_after_ms,
               cancel_token *c, job_result *res)
{
    job j = test_job(args);
    return exec_run(argv, &j, timeout_ms, kill_after_ms, c, res);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    strbuf sb;
    sb_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        sb_append(&sb, buf, n);
    fclose(f);
    return sb.data ? sb.data : xstrdup("");
}

static const char *data_file(const char *name)
{
    static char path[512];
    const char *dir = getenv("RUNNER_TEST_DATA");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", name);
    return path;
}

/* wait_pidfile waits up to 5 s for the child to publish its pid. */
static pid_t wait_pidfile(void)
{
    for (int i = 0; i < 500; i++) {
        char *s = slurp(pid_path);
        pid_t pid = s ? (pid_t)atoi(s) : 0;
        free(s);
        if (pid > 0)
            return pid;
        usleep(10000);
    }
    cr_assert_fail("child never wrote %s", pid_path);
    return -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* gone reports whether pid no longer runs (reaped, or a zombie). */
static bool gone(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
        return true;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *s = slurp(path);
    if (!s)
        return true;
    char *p = strrchr(s, ')');
    bool zombie = p && (p[2] == 'Z' || p[2] == 'X');
    free(s);
    return zombie;
}

static bool wait_gone(pid_t pid, int ms)
{
    for (int waited = 0; waited <= ms; waited += 10) {
        if (gone(pid))
            return true;
        sleep_ms(10);
    }
    return false;
}

/* A job run on another thread, so the test can act on the child while it runs. */
struct bg {
    pthread_t thread;
    char *const *argv;
    const char *args;
    int64_t timeout_ms, kill_after_ms;
    cancel_token cancel;
    job_result res;
    int ret;
    int64_t ended_at;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;
    b->ret = run(b->argv, b->args, b->timeout_ms, b->kill_after_ms, &b->cancel, &b->res);
    b->ended_at = now_ms();
    return NULL;
}

static void bg_start(struct bg *b, char *const argv[], int64_t timeout_ms, int64_t kill_after_ms)
{
    memset(b, 0, sizeof(*b));
    b->argv = argv;
    b->args = "{}";
    b->timeout_ms = timeout_ms;
    b->kill_after_ms = kill_after_ms;
    cr_assert_eq(cancel_init(&b->cancel), 0);
    cr_assert_eq(pthread_create(&b->thread, NULL, bg_main, b), 0);
}

static void bg_join(struct bg *b)
{
    pthread_join(b->thread, NULL);
    cancel_destroy(&b->cancel);
}

static void bg_free(struct bg *b)
{
    job_result_free(&b->res);
}

/* ---- outcomes ---- */

Test(exec, exit_zero_completes)
{
    char *argv[] = {"true", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED);
    cr_assert_null(res.error);
    job_result_free(&res);
}

Test(exec, exit_status_with_stderr_tail)
{
    char *argv[] = {"sh", "-c", "echo 'disk full' >&2; exit 3", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_eq(res.delay_ms, -1);
    cr_assert_str_eq(res.error, "exit status 3: disk full");
    job_result_free(&res);
}

Test(exec, exit_status_without_stderr)
{
    char *argv[] = {"sh", "-c", "exit 7", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_str_eq(res.error, "exit status 7");
    job_result_free(&res);
}

Test(exec, killed_by_signal)
{
    char *argv[] = {"sh", "-c", "echo dying >&2; kill -9 $$", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_str_eq(res.error, "killed by signal 9 (Killed): dying");
    job_result_free(&res);
}

Test(exec, big_stderr_keeps_only_the_tail)
{
    char *argv[] = {"sh", "-c",
                    "echo THE-START >&2; head -c 1048576 /dev/zero | tr '\\0' x >&2; "
                    "echo >&2; echo THE-END >&2; exit 1",
                    NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert(strncmp(res.error, "exit status 1: ...", 18) == 0, "%s", res.error);
    cr_assert_not_null(strstr(res.error, "xxxx\nTHE-END"));
    cr_assert_null(strstr(res.error, "THE-START"));
    cr_assert_leq(strlen(res.error), EXEC_STDERR_TAIL + 32);
    job_result_free(&res);
}

Test(exec, one_big_stderr_write_keeps_its_end)
{
    /* 3000 bytes in one write(): the ring must keep the last EXEC_STDERR_TAIL of them. */
    char *text = xmalloc(3001);
    memset(text, 'A', 900);
    memset(text + 900, 'B', 2097);
    memcpy(text + 2997, "END", 4);
    FILE *f = fopen(out_path, "w");
    fputs(text, f);
    fclose(f);
    char *argv[] = {"sh", "-c", "exec cat \"$OUT\" >&2", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED);
    job_result_free(&res);

    char *fails[] = {"sh", "-c", "cat \"$OUT\" >&2; exit 1", NULL};
    cr_assert_eq(run(fails, "{}", 0, 1000, NULL, &res), 0);
    strbuf want;
    sb_init(&want);
    sb_printf(&want, "exit status 1: ...%s", text + 3000 - EXEC_STDERR_TAIL);
    cr_assert_str_eq(res.error, want.data);
    sb_free(&want);
    free(text);
    job_result_free(&res);
}

Test(exec, many_small_stderr_writes_wrap_the_ring)
{
    /* Pauses make the reads small, so writes land across the ring's end. */
    char *argv[] = {"sh", "-c",
                    "i=0; while [ $i -lt 400 ]; do echo \"line $i\" >&2; i=$((i+1)); "
                    "[ $((i % 20)) -eq 0 ] && sleep 0.01; done; exit 1",
                    NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    strbuf all, want;
    sb_init(&all);
    sb_init(&want);
    for (int i = 0; i < 400; i++)
        sb_printf(&all, "line %d\n", i);
    /* The last EXEC_STDERR_TAIL bytes, trimmed. */
    const char *t = all.data + all.len - EXEC_STDERR_TAIL;
    int n = EXEC_STDERR_TAIL;
    for (; *t == ' ' || *t == '\n'; t++)
        n--;
    while (t[n - 1] == '\n')
        n--;
    sb_printf(&want, "exit status 1: ...%.*s", n, t);
    cr_assert_str_eq(res.error, want.data);
    sb_free(&all);
    sb_free(&want);
    job_result_free(&res);
}

Test(exec, cut_tail_does_not_start_mid_character)
{
    strbuf text, want;
    sb_init(&text);
    sb_init(&want);
    for (int i = 0; i < 1500; i++)
        sb_puts(&text, "\xc3\xa9");
    sb_puts(&text, "!");
    FILE *f = fopen(out_path, "w");
    fputs(text.data, f);
    fclose(f);
    char *argv[] = {"sh", "-c", "cat \"$OUT\" >&2; exit 1", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    sb_puts(&want, "exit status 1: ...");
    for (int i = 0; i < (EXEC_STDERR_TAIL - 2) / 2; i++)
        sb_puts(&want, "\xc3\xa9");
    sb_puts(&want, "!");
    cr_assert_str_eq(res.error, want.data);
    sb_free(&text);
    sb_free(&want);
    job_result_free(&res);
}

Test(exec, stderr_tail_is_valid_text)
{
    /* Invalid UTF-8 and NUL would make PostgreSQL reject the error text. */
    char *argv[] = {"sh", "-c", "printf 'caf\\303\\251 \\377\\000x\\n' >&2; exit 1", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_str_eq(res.error, "exit status 1: caf\xc3\xa9 ??x");
    job_result_free(&res);
}

/* ---- stdin, environment, stdout, fds ---- */

Test(exec, args_arrive_on_stdin)
{
    char *argv[] = {"sh", "-c", "cat > \"$OUT\"", NULL};
    const char *args = "{\"image\": \"a b'c\\\"; rm -rf /\", \"n\": 1}";
    job_result res;
    cr_assert_eq(run(argv, args, 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED);
    char *got = slurp(out_path);
    cr_assert_str_eq(got, args);
    free(got);
    job_result_free(&res);
}

Test(exec, null_args_are_json_null)
{
    char *argv[] = {"sh", "-c", "cat > \"$OUT\"", NULL};
    job_result res;
    cr_assert_eq(run(argv, NULL, 0, 1000, NULL, &res), 0);
    char *got = slurp(out_path);
    cr_assert_str_eq(got, "null");
    free(got);
    job_result_free(&res);
}

static const char *env_value(const char *env, const char *name, int *count)
{
    static char value[256];
    size_t len = strlen(name);
    *count = 0;
    value[0] = '\0';
    for (const char *line = env; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > len && strncmp(line, name, len) == 0 && line[len] == '=') {
            (*count)++;
            snprintf(value, sizeof(value), "%.*s", (int)(n - len - 1), line + len + 1);
        }
        line += n + (end ? 1 : 0);
    }
    return value;
}

Test(exec, job_env_vars_replace_inherited_ones)
{
    setenv("RUNNER_JOB_ID", "bogus", 1);
    setenv("RUNNER_JOB_ARGS", "bogus", 1);
    setenv("EXEC_TEST_INHERITED", "yes", 1);
    char *argv[] = {"sh", "-c", "env > \"$OUT\"", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{\"a\": 1}", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED);
    char *env = slurp(out_path);
    struct {
        const char *name, *want;
    } cases[] = {
        {"RUNNER_JOB_ID", "42"},           {"RUNNER_JOB_KIND", "resize"},
        {"RUNNER_JOB_QUEUE", "default"},   {"RUNNER_JOB_ATTEMPT", "2"},
        {"RUNNER_JOB_ARGS", "{\"a\": 1}"}, {"EXEC_TEST_INHERITED", "yes"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int count;
        const char *v = env_value(env, cases[i].name, &count);
        cr_assert_eq(count, 1, "%s appears %d times", cases[i].name, count);
        cr_assert_str_eq(v, cases[i].want, "%s", cases[i].name);
    }
    free(env);
    job_result_free(&res);
}

static char *big_args(size_t n)
{
    char *s = xmalloc(n + 1);
    memset(s, 'a', n);
    memcpy(s, "{\"x\":\"", 6);
    memcpy(s + n - 2, "\"}", 2);
    s[n] = '\0';
    return s;
}

Test(exec, large_args_to_a_child_that_never_reads_stdin)
{
    char *args = big_args(1 << 20);
    char *exits_at_once[] = {"true", NULL};
    char *sleeps[] = {"sleep", "0.3", NULL};
    /* Fills its stderr pipe while we fill its stdin: both sides must keep moving. */
    char *floods_stderr[] = {"sh", "-c", "head -c 1048576 /dev/zero >&2", NULL};
    char *const *cmds[] = {exits_at_once, sleeps, floods_stderr};
    for (size_t i = 0; i < ARRAY_LEN(cmds); i++) {
        job_result res;
        int64_t t0 = now_ms();
        cr_assert_eq(run(cmds[i], args, 5000, 1000, NULL, &res), 0);
        cr_assert_eq(res.outcome, JOB_COMPLETED, "%s", res.error ? res.error : "");
        cr_assert_lt(now_ms() - t0, 3000);
        job_result_free(&res);
    }
    /* A child that never reads and never exits is still timed out on schedule. */
    char *hangs[] = {"sleep", "30", NULL};
    job_result res;
    int64_t t0 = now_ms();
    cr_assert_eq(run(hangs, args, 300, 1000, NULL, &res), 0);
    cr_assert_str_eq(res.error, "timed out after 300ms");
    cr_assert_lt(now_ms() - t0, 2000);
    job_result_free(&res);
    /* The EPIPE's SIGPIPE must not be left pending (it would kill us once unblocked). */
    sigset_t pending;
    sigpending(&pending);
    cr_assert_eq(sigismember(&pending, SIGPIPE), 0);
    free(args);
}

Test(exec, large_args_read_fully_and_kept_out_of_env)
{
    setenv("RUNNER_JOB_ARGS", "stale", 1);
    char *args = big_args(1 << 20);
    char *argv[] = {"sh", "-c", "wc -c > \"$OUT\"; echo \"${RUNNER_JOB_ARGS-unset}\" >> \"$OUT\"",
                    NULL};
    job_result res;
    cr_assert_eq(run(argv, args, 10000, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED, "%s", res.error ? res.error : "");
    char *got = slurp(out_path);
    cr_assert_eq(atol(got), 1 << 20);
    cr_assert_not_null(strstr(got, "\nunset\n"), "%s", got);
    free(got);
    free(args);
    job_result_free(&res);
}

Test(exec, stdout_passes_through)
{
    fflush(stdout);
    int saved = dup(1);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    dup2(fd, 1);
    close(fd);
    char *argv[] = {"echo", "hello from the child", NULL};
    job_result res;
    int ret = run(argv, "{}", 0, 1000, NULL, &res);
    dup2(saved, 1);
    close(saved);
    cr_assert_eq(ret, 0);
    char *got = slurp(out_path);
    cr_assert_str_eq(got, "hello from the child\n");
    free(got);
    job_result_free(&res);
}

Test(exec, fds_are_not_inherited)
{
    int fd = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
    cr_assert_geq(fd, 0);
    cr_assert_eq(dup2(fd, 100), 100);
    char *argv[] = {"sh", "-c", "exec ls /proc/self/fd > \"$OUT\"", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    char *got = slurp(out_path);
    cr_assert_null(strstr(got, "100"), "fd 100 leaked: %s", got);
    cr_assert_not_null(strstr(got, "0\n1\n2\n"), "%s", got);
    free(got);
    close(fd);
    close(100);
    job_result_free(&res);
}

Test(exec, signal_mask_and_dispositions_reset_in_child)
{
    sigset_t block, before, after;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &before);
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    char *argv[] = {"sh", "-c", "exec grep -E '^Sig(Blk|Ign)' /proc/self/status > \"$OUT\"", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    char *got = slurp(out_path);
    cr_assert_str_eq(got, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    free(got);
    /* ... while the caller's own mask is back as it was. */
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    for (int sig = 1; sig < NSIG; sig++)
        cr_assert_eq(sigismember(&before, sig), sigismember(&after, sig), "signal %d", sig);
    job_result_free(&res);
}

/* ---- command not found ---- */

Test(exec, command_not_found_in_path)
{
    char *argv[] = {"runner-test-no-such-command", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), -1);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_str_eq(
        res.error, "could not execute \"runner-test-no-such-command\": No such file or directory");
    job_result_free(&res);
}

Test(exec, absolute_path_not_found)
{
    char *argv[] = {"/nonexistent/dir/cmd", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), -1);
    cr_assert_str_eq(res.error,
                     "could not execute \"/nonexistent/dir/cmd\": No such file or directory");
    job_result_free(&res);
}

Test(exec, not_executable)
{
    char path[400], want[512], newpath[512];
    snprintf(path, sizeof(path), "%s/notexec", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("#!/bin/sh\nexit 0\n", f);
    fclose(f);
    chmod(path, 0644);
    snprintf(want, sizeof(want), "could not execute \"%s\": Permission denied", path);

    char *direct[] = {path, NULL};
    job_result res;
    cr_assert_eq(run(direct, "{}", 0, 1000, NULL, &res), -1);
    cr_assert_str_eq(res.error, want);
    job_result_free(&res);

    /* Through PATH: EACCES is remembered while the search goes on, as in execvp(). */
    snprintf(newpath, sizeof(newpath), "%s:/usr/bin:/bin", tmpdir);
    setenv("PATH", newpath, 1);
    char *searched[] = {"notexec", NULL};
    cr_assert_eq(run(searched, "{}", 0, 1000, NULL, &res), -1);
    cr_assert_str_eq(res.error, want);
    job_result_free(&res);
}

Test(exec, empty_command)
{
    char *argv[] = {NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), -1);
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_str_eq(res.error, "empty command");
    job_result_free(&res);
}

/* ---- timeout, cancel, kill ---- */

Test(exec, timeout_terminates_quickly)
{
    char *argv[] = {"sleep", "30", NULL};
    job_result res;
    int64_t t0 = now_ms();
    cr_assert_eq(run(argv, "{}", 300, 10000, NULL, &res), 0);
    int64_t took = now_ms() - t0;
    cr_assert_eq(res.outcome, JOB_RETRY);
    cr_assert_str_eq(res.error, "timed out after 300ms");
    cr_assert(took >= 290 && took < 2000, "took %lld ms", (long long)took);
    job_result_free(&res);
}

Test(exec, timeout_message_in_seconds_with_tail)
{
    char *argv[] = {"sh", "-c", "echo working >&2; exec sleep 30", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 1000, 1000, NULL, &res), 0);
    cr_assert_str_eq(res.error, "timed out after 1s: working");
    job_result_free(&res);
}

Test(exec, ignored_sigterm_gets_sigkill_after_kill_after)
{
    setenv("EXEC_IGNORE_TERM", "1", 1);
    char *argv[] = {"sh", (char *)data_file("exec_pidfile.sh"), NULL};
    struct bg b;
    bg_start(&b, argv, 0, 700);
    pid_t pid = wait_pidfile();
    int64_t t0 = now_ms();
    cancel_request(&b.cancel, CANCEL_JOB);
    bg_join(&b);
    int64_t took = b.ended_at - t0;
    cr_assert_eq(b.res.outcome, JOB_CANCELLED);
    cr_assert_str_eq(b.res.error, "cancelled by admin");
    cr_assert(took >= 650 && took < 1700, "took %lld ms", (long long)took);
    cr_assert(gone(pid));
    bg_free(&b);
}

static void cancel_case(enum cancel_reason reason, job_outcome want, const char *msg)
{
    char *argv[] = {"sh", (char *)data_file("exec_pidfile.sh"), NULL};
    struct bg b;
    bg_start(&b, argv, 0, 5000);
    wait_pidfile();
    int64_t t0 = now_ms();
    cancel_request(&b.cancel, reason);
    bg_join(&b);
    cr_assert_eq(b.ret, 0);
    cr_assert_eq(b.res.outcome, want);
    cr_assert_str_eq(b.res.error, msg);
    cr_assert_lt(b.ended_at - t0, 1500);
    bg_free(&b);
}

Test(exec, cancel_shutdown_interrupts)
{
    cancel_case(CANCEL_SHUTDOWN, JOB_INTERRUPTED, "shutdown");
}

Test(exec, cancel_lease_lost_abandons)
{
    cancel_case(CANCEL_LEASE_LOST, JOB_ABANDONED, "lease lost");
}

Test(exec, cancel_job_cancels)
{
    cancel_case(CANCEL_JOB, JOB_CANCELLED, "cancelled by admin");
}

Test(exec, cancelled_before_start_runs_nothing)
{
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    cancel_request(&c, CANCEL_SHUTDOWN);
    char *argv[] = {"sh", "-c", "echo ran > \"$OUT\"", NULL};
    job_result res;
    cr_assert_eq(run(argv, "{}", 0, 1000, &c, &res), 0);
    cr_assert_eq(res.outcome, JOB_INTERRUPTED);
    cr_assert_str_eq(res.error, "not started: shutdown");
    cr_assert_eq(access(out_path, F_OK), -1);
    job_result_free(&res);
    cancel_destroy(&c);
}

Test(exec, exit_zero_after_sigterm_is_still_interrupted)
{
    char *argv[] = {"sh", "-c",
                    "trap 'exit 0' TERM; echo $$ > \"$PIDFILE.tmp\"; mv \"$PIDFILE.tmp\" "
                    "\"$PIDFILE\"; while :; do sleep 0.05; done",
                    NULL};
    struct bg b;
    bg_start(&b, argv, 0, 5000);
    wait_pidfile();
    cancel_request(&b.cancel, CANCEL_SHUTDOWN);
    bg_join(&b);
    cr_assert_eq(b.res.outcome, JOB_INTERRUPTED);
    bg_free(&b);
}

Test(exec, spurious_wakeup_is_ignored)
{
    /* A reset racing with a request can leave the eventfd readable without a reason. */
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    uint64_t one = 1;
    cr_assert_eq(write(c.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
    char *argv[] = {"sh", "-c", "sleep 0.3; exit 4", NULL};
    job_result res;
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    cr_assert_eq(run(argv, "{}", 0, 1000, &c, &res), 0);
    getrusage(RUSAGE_SELF, &after);
    cr_assert_str_eq(res.error, "exit status 4");
    /* The stale wake-up is consumed, not spun on. */
    int64_t cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000000 +
                     (after.ru_utime.tv_usec - before.ru_utime.tv_usec) +
                     (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000000 +
                     (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    cr_assert_lt(cpu_us, 100000, "used %lld us of CPU", (long long)cpu_us);
    job_result_free(&res);
    cancel_destroy(&c);
}

/* ---- process groups and grandchildren ---- */

Test(exec, child_runs_in_its_own_process_group)
{
    /* Our own group, so the SIGINT below cannot reach the test runner. */
    setpgid(0, 0);
    signal(SIGINT, SIG_IGN);
    char *argv[] = {"sh", (char *)data_file("exec_pidfile.sh"), NULL};
    struct bg b;
    bg_start(&b, argv, 0, 1000);
    pid_t pid = wait_pidfile();
    cr_assert_eq(getpgid(pid), pid);
    cr_assert_neq(getpgid(pid), getpgid(0));
    /* A Ctrl+C to the terminal's group (ours) does not reach the child. */
    kill(0, SIGINT);
    sleep_ms(200);
    cr_assert_not(gone(pid));
    cancel_request(&b.cancel, CANCEL_SHUTDOWN);
    bg_join(&b);
    cr_assert_eq(b.res.outcome, JOB_INTERRUPTED);
    bg_free(&b);
}

Test(exec, grandchild_holding_stderr_does_not_block)
{
    char *argv[] = {"sh", "-c", "sleep 30 & echo $! > \"$PIDFILE\"; echo bye >&2; exit 5", NULL};
    job_result res;
    int64_t t0 = now_ms();
    cr_assert_eq(run(argv, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_lt(now_ms() - t0, 2000);
    cr_assert_str_eq(res.error, "exit status 5: bye");
    pid_t grandchild = wait_pidfile();
    kill(grandchild, SIGKILL);
    job_result_free(&res);
}

Test(exec, cancel_kills_grandchildren)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* orphans come to us, so we can see them die */
    char *argv[] = {"sh", (char *)data_file("exec_grandchild.sh"), NULL};
    struct bg b;
    bg_start(&b, argv, 0, 10000);
    pid_t grandchild = wait_pidfile();
    int64_t t0 = now_ms();
    cancel_request(&b.cancel, CANCEL_SHUTDOWN);
    bg_join(&b);
    /* The shell dies of SIGTERM at once; the TERM-immune grandchild gets the group SIGKILL
     * right after, not at kill_after. */
    cr_assert_lt(b.ended_at - t0, 2000);
    cr_assert(wait_gone(grandchild, 2000), "grandchild %d survived", (int)grandchild);
    cr_assert_eq(b.res.outcome, JOB_INTERRUPTED);
    bg_free(&b);
}

Test(exec, child_dies_with_the_runner)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t runner = fork();
    cr_assert_geq(runner, 0);
    if (runner == 0) {
        char *argv[] = {"sh", (char *)data_file("exec_pidfile.sh"), NULL};
        job_result res;
        run(argv, "{}", 0, 1000, NULL, &res);
        _exit(0);
    }
    pid_t child = wait_pidfile();
    cr_assert_not(gone(child));
    kill(runner, SIGKILL);
    waitpid(runner, NULL, 0);
    cr_assert(wait_gone(child, 2000), "child %d outlived its runner", (int)child);
}

/* ---- without pidfd_open ---- */

Test(exec, fallback_without_pidfd)
{
    exec_test_no_pidfd = true;
    char *fails[] = {"sh", "-c", "echo nope >&2; exit 3", NULL};
    job_result res;
    cr_assert_eq(run(fails, "{}", 0, 1000, NULL, &res), 0);
    cr_assert_str_eq(res.error, "exit status 3: nope");
    job_result_free(&res);

    char *sleeps[] = {"sleep", "30", NULL};
    int64_t t0 = now_ms();
    cr_assert_eq(run(sleeps, "{}", 200, 1000, NULL, &res), 0);
    cr_assert_str_eq(res.error, "timed out after 200ms");
    cr_assert_lt(now_ms() - t0, 2000);
    job_result_free(&res);

    char *cat[] = {"sh", "-c", "cat > \"$OUT\"", NULL};
    cr_assert_eq(run(cat, "[1,2,3]", 0, 1000, NULL, &res), 0);
    cr_assert_eq(res.outcome, JOB_COMPLETED);
    char *got = slurp(out_path);
    cr_assert_str_eq(got, "[1,2,3]");
    free(got);
    job_result_free(&res);
}

Test(exec, fallback_without_pidfd_cancel)
{
    exec_test_no_pidfd = true;
    cancel_case(CANCEL_JOB, JOB_CANCELLED, "cancelled by admin");
}

/* ---- the cancel token ---- */

Test(cancel, first_reason_wins)
{
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    cr_assert_eq(cancel_get(&c), CANCEL_NONE);
    cancel_request(&c, CANCEL_LEASE_LOST);
    cancel_request(&c, CANCEL_SHUTDOWN);
    cr_assert_eq(cancel_get(&c), CANCEL_LEASE_LOST);
    uint64_t v = 0;
    cr_assert_eq(read(c.fd, &v, sizeof(v)), (ssize_t)sizeof(v));
    cr_assert_eq(v, 1);
    cancel_destroy(&c);
}

Test(cancel, reset_rearms)
{
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    cancel_request(&c, CANCEL_JOB);
    cancel_reset(&c);
    cr_assert_eq(cancel_get(&c), CANCEL_NONE);
    uint64_t v;
    cr_assert_eq(read(c.fd, &v, sizeof(v)), -1);
    cr_assert_eq(errno, EAGAIN);
    cancel_request(&c, CANCEL_SHUTDOWN);
    cr_assert_eq(cancel_get(&c), CANCEL_SHUTDOWN);
    cancel_destroy(&c);
}

Test(cancel, reason_names)
{
    cr_assert_str_eq(cancel_reason_str(CANCEL_SHUTDOWN), "shutdown");
    cr_assert_str_eq(cancel_reason_str(CANCEL_LEASE_LOST), "lease lost");
    cr_assert_str_eq(cancel_reason_str(CANCEL_JOB), "cancelled by admin");
}

static cancel_token *sig_token;

static void on_usr1(int sig)
{
    (void)sig;
    cancel_request(sig_token, CANCEL_SHUTDOWN);
}

Test(cancel, request_from_a_signal_handler)
{
    cancel_token c;
    cr_assert_eq(cancel_init(&c), 0);
    sig_token = &c;
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    cr_assert_eq(cancel_get(&c), CANCEL_SHUTDOWN);
    cancel_destroy(&c);
}
