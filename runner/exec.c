/* exec.c - the exec handler: runs a job's command as a child process group. */

/*
 * DESIGN
 *
 * No shell. argv from runner.yaml is executed directly; the job's data reaches the child
 * only through stdin and the environment, never through a command line, so a job's args
 * cannot inject anything. A kind that wants a shell writes ["sh", "-c", ...] itself.
 *
 * Starting the child. spawn.c forks and execs it (see its DESIGN: nothing but
 * async-signal-safe calls after fork(), its own process group, the sentinel,
 * PR_SET_PDEATHSIG, fds >= 3 closed at exec) with stdin a pipe, stdout the runner's own,
 * stderr a pipe, and the runner's environment with the job's RUNNER_JOB_* variables in
 * place of inherited ones.
 *
 * Process groups. The child's own group means (a) a Ctrl+C delivered to the terminal's
 * foreground group reaches the runner only, and the runner decides when children stop
 * (see the shutdown protocol), and (b) cancel/timeout signal the whole group: SIGTERM
 * (plus SIGCONT, so a stopped job can act on it), SIGKILL after kill_after, and once more
 * SIGKILL after the child exited, for grandchildren, while the unreaped child still pins
 * the group id.
 *
 * Waiting. One poll() covers the child's pidfd (readable when it exits), the stderr pipe,
 * the stdin pipe (written non-blocking, so a child that never reads stdin, or a payload
 * larger than the pipe, cannot deadlock us), the exec report pipe and the cancel eventfd;
 * the timeout and the kill deadline are poll()'s timeout. Without pidfd_open (kernel <
 * 5.3, seccomp) it falls back to a 50 ms tick. Exit is detected with waitid(WNOWAIT) and
 * only then reaped with waitpid() on that pid, never waitpid(-1). Pipes held open by
 * grandchildren are drained once and abandoned after the child is reaped.
 *
 * Exec failure. spawn.c's exec report is read in the same poll(), so a child that has
 * not reached execve() yet is under the timeout and the cancel like any other; a report
 * that it failed ("could not execute ...") fails the attempt.
 *
 * Outcome. Exit 0 observed before we signalled anything is JOB_COMPLETED, even if a cancel
 * arrived meanwhile: the work is done. Once we sent SIGTERM the cause decides, whatever the
 * exit status (a job that exits 0 on SIGTERM has been interrupted, not finished). A child
 * that survives SIGKILL for REAP_GRACE_MS (stuck in the kernel) is left unreaped rather
 * than hanging the worker through a shutdown.
 *
 * Limits. RUNNER_JOB_ARGS is only set up to EXEC_ENV_ARGS_MAX bytes (execve() fails with
 * E2BIG past 128 KiB per string); stdin always has the whole args. The stderr tail is
 * made valid UTF-8 without NULs, because it is stored as PostgreSQL text.
 */
#include "exec.h"
#include "duration.h"
#include "sentinel.h"
#include "spawn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

bool exec_test_no_pidfd = false;

#define TICK_MS 50                  /* poll period without a pidfd */
#define REAP_GRACE_MS 5000          /* after SIGKILL, how long to wait for the exit */
#define IO_CHUNK (64 * 1024)        /* bytes per read()/write() */
#define DRAIN_MAX (4 * 1024 * 1024) /* stderr read after the child is gone, at most */

/* The last EXEC_STDERR_TAIL bytes of the child's stderr, as a ring. */
struct tail {
    char buf[EXEC_STDERR_TAIL];
    size_t pos;     /* next write position */
    uint64_t total; /* bytes seen */
};

static const char *const job_vars[] = {
    "RUNNER_JOB_ID", "RUNNER_JOB_KIND", "RUNNER_JOB_QUEUE", "RUNNER_JOB_ATTEMPT", "RUNNER_JOB_ARGS",
};

static bool is_job_var(const char *entry)
{
    for (size_t i = 0; i < ARRAY_LEN(job_vars); i++) {
        size_t len = strlen(job_vars[i]);
        if (strncmp(entry, job_vars[i], len) == 0 && entry[len] == '=')
            return true;
    }
    return false;
}

/* build_env copies the runner's environment minus RUNNER_JOB_*, then adds the job's
 * variables; own[] receives the strings allocated here. The environ strings are borrowed:
 * the runner does not setenv() once threads run, and glibc never frees them anyway. */
static char **build_env(const job *j, const char *args, char *own[ARRAY_LEN(job_vars)])
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **envp = xcalloc(n + ARRAY_LEN(job_vars) + 1, sizeof(char *));
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (!is_job_var(*e))
            envp[k++] = *e;

    own[0] = xasprintf("RUNNER_JOB_ID=%lld", (long long)j->id);
    own[1] = xasprintf("RUNNER_JOB_KIND=%s", j->kind ? j->kind : "");
    own[2] = xasprintf("RUNNER_JOB_QUEUE=%s", j->queue ? j->queue : "");
    own[3] = xasprintf("RUNNER_JOB_ATTEMPT=%d", j->attempt);
    /* The kernel caps one environment string at 128 KiB; stdin always has the full args. */
    own[4] = strlen(args) <= EXEC_ENV_ARGS_MAX ? xasprintf("RUNNER_JOB_ARGS=%s", args) : NULL;
    for (size_t i = 0; i < ARRAY_LEN(job_vars); i++)
        if (own[i])
            envp[k++] = own[i];
    envp[k] = NULL;
    return envp;
}

static void tail_add(struct tail *t, const char *s, size_t n)
{
    const size_t cap = sizeof(t->buf);

    t->total += n;
    if (n >= cap) {
        memcpy(t->buf, s + n - cap, cap);
        t->pos = 0;
        return;
    }
    size_t first = n < cap - t->pos ? n : cap - t->pos;
    memcpy(t->buf + t->pos, s, first);
    memcpy(t->buf, s + first, n - first);
    t->pos = (t->pos + n) % cap;
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* tail_text appends the stderr tail to out, trimmed and made safe to store as PostgreSQL
 * text: invalid UTF-8 and NUL bytes become '?'; "..." marks a cut. */
static void tail_text(const struct tail *t, strbuf *out)
{
    const size_t cap = sizeof(t->buf);
    unsigned char lin[EXEC_STDERR_TAIL];
    size_t n = t->total < cap ? (size_t)t->total : cap;
    bool cut = t->total > cap;

    if (cut) {
        memcpy(lin, t->buf + t->pos, cap - t->pos);
        memcpy(lin + cap - t->pos, t->buf, t->pos);
    } else {
        memcpy(lin, t->buf, n);
    }
    size_t b = 0, e = n;
    while (cut && b < n && b < 3 && (lin[b] & 0xC0) == 0x80)
        b++; /* the cut may have split a character */
    while (b < e && is_blank(lin[b]))
        b++;
    while (e > b && is_blank(lin[e - 1]))
        e--;
    if (b == e)
        return;
    sb_puts(out, cut ? ": ..." : ": ");
    sb_text(out, (const char *)lin + b, e - b, SIZE_MAX);
}

static const char *errstr(int err, char *buf, size_t len)
{
    return strerror_r(err, buf, len);
}

/* signal_group signals the child's process group, or the child alone if the group is
 * gone (it exited before setpgid() took effect). */
static void signal_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) < 0 && errno == ESRCH)
        kill(pid, sig);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* read_stderr moves what is readable on *fd into the tail, up to max bytes; closes *fd on
 * EOF or error. */
static void read_stderr(int *fd, struct tail *t, char *buf, size_t max)
{
    size_t got = 0;

    while (*fd >= 0 && got < max) {
        ssize_t n = read(*fd, buf, IO_CHUNK);
        if (n > 0) {
            tail_add(t, buf, (size_t)n);
            got += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            if (n == 0 || errno != EAGAIN)
                close_fd(fd);
            return;
        }
    }
}

/* write_stdin writes what the pipe takes of the args; closes *fd when done or the child
 * closed its end (EPIPE: it does not want its stdin, which is its right). */
static void write_stdin(int *fd, const char *data, size_t len, size_t *off, bool *epipe)
{
    while (*fd >= 0 && *off < len) {
        size_t chunk = len - *off < IO_CHUNK ? len - *off : IO_CHUNK;
        ssize_t n = write(*fd, data + *off, chunk);
        if (n > 0) {
            *off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            *epipe = *epipe || errno == EPIPE;
            close_fd(fd);
        }
    }
    if (*off >= len)
        close_fd(fd);
}

static int64_t min_wait(int64_t cur, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    return cur < 0 || ms < cur ? ms : cur;
}

static void free_env(char **envp, char *own[ARRAY_LEN(job_vars)])
{
    free(envp);
    for (size_t i = 0; i < ARRAY_LEN(job_vars); i++)
        free(own[i]);
}

/* The parent's view of one running child. */
struct child {
    spawn_child sp;   /* pidfd -1: poll with a tick instead; pipe ends -1 once closed */
    const char *args; /* what to feed to stdin */
    size_t args_len, args_off;
    bool epipe; /* the child closed stdin on us */
    bool exited, term_sent, kill_sent, timed_out;
    enum cancel_reason why; /* cancel that made us send SIGTERM */
    int status, wait_errno;
    struct tail tail;
    char iobuf[IO_CHUNK];
};

/* check_exit notes whether the child has exited, without reaping it: while it is a
 * zombie its pid cannot be reused, so it still safely names its process group. */
static bool check_exit(struct child *c)
{
    siginfo_t si;

    for (;;) {
        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)c->sp.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
            c->exited = si.si_pid == c->sp.pid;
            return c->exited;
        }
        if (errno != EINTR) {
            c->wait_errno = errno; /* ECHILD: SIGCHLD ignored, or someone else reaped it */
            return true;
        }
    }
}

/* supervise feeds stdin, collects stderr and enforces the timeout and the cancel token
 * until the child exits, then reaps it. */
static void supervise(struct child *c, int64_t start, int64_t timeout_ms, int64_t kill_after_ms,
                      cancel_token *cancel)
{
    int64_t kill_at = 0, give_up_at = 0;

    if (c->args_len == 0)
        close_fd(&c->sp.stdin_fd);
    while (!check_exit(c)) {
        int64_t now = now_ms();
        if (!c->term_sent) {
            c->why = cancel ? cancel_get(cancel) : CANCEL_NONE;
            c->timed_out = c->why == CANCEL_NONE && timeout_ms > 0 && now - start >= timeout_ms;
            if (c->why != CANCEL_NONE || c->timed_out) {
                signal_group(c->sp.pid, SIGTERM);
                signal_group(c->sp.pid, SIGCONT);
                c->term_sent = true;
                kill_at = now + (kill_after_ms > 0 ? kill_after_ms : 0);
            }
        }
        if (c->term_sent && !c->kill_sent && now >= kill_at) {
            signal_group(c->sp.pid, SIGKILL);
            c->kill_sent = true;
            give_up_at = now + REAP_GRACE_MS;
        }
        if (c->kill_sent && now >= give_up_at)
            return; /* stuck in the kernel (D state): don't hang the worker, leave it */

        struct pollfd pfd[5];
        nfds_t nfd = 0;
        int cancel_slot = -1;
        if (cancel && !c->term_sent) {
            cancel_slot = (int)nfd;
            pfd[nfd++] = (struct pollfd){.fd = cancel->fd, .events = POLLIN};
        }
        if (c->sp.pidfd >= 0)
            pfd[nfd++] = (struct pollfd){.fd = c->sp.pidfd, .events = POLLIN};
        if (c->sp.stderr_fd >= 0)
            pfd[nfd++] = (struct pollfd){.fd = c->sp.stderr_fd, .events = POLLIN};
        if (c->sp.report_fd >= 0)
            pfd[nfd++] = (struct pollfd){.fd = c->sp.report_fd, .events = POLLIN};
        if (c->sp.stdin_fd >= 0)
            pfd[nfd++] = (struct pollfd){.fd = c->sp.stdin_fd, .events = POLLOUT};

        int64_t wait = c->sp.pidfd >= 0 ? -1 : TICK_MS;
        if (!c->term_sent && timeout_ms > 0)
            wait = min_wait(wait, start + timeout_ms - now);
        if (c->term_sent && !c->kill_sent)
            wait = min_wait(wait, kill_at - now);
        if (c->kill_sent)
            wait = min_wait(wait, give_up_at - now);
        if (poll(pfd, nfd, (int)wait) < 0)
            continue; /* EINTR; anything else is rechecked on the next round */

        /* A wake-up with no reason is left over from cancel_reset(): consume it. */
        if (cancel_slot >= 0 && (pfd[cancel_slot].revents & POLLIN) &&
            cancel_get(cancel) == CANCEL_NONE) {
            uint64_t v;
            ssize_t n = read(cancel->fd, &v, sizeof(v));
            (void)n;
        }
        read_stderr(&c->sp.stderr_fd, &c->tail, c->iobuf, DRAIN_MAX);
        spawn_read_report(&c->sp);
        write_stdin(&c->sp.stdin_fd, c->args, c->args_len, &c->args_off, &c->epipe);
    }

    if (c->exited) {
        if (c->term_sent)
            signal_group(c->sp.pid, SIGKILL); /* whatever it left behind in its group */
        while (waitpid(c->sp.pid, &c->status, 0) < 0 && errno == EINTR)
            ;
        sentinel_forget(c->sp.pid);
    }
    /* Grandchildren may hold the pipes open forever: take what is there and stop. */
    close_fd(&c->sp.stdin_fd);
    read_stderr(&c->sp.stderr_fd, &c->tail, c->iobuf, DRAIN_MAX);
    spawn_read_report(&c->sp);
}

/* describe turns what happened to the child into the job's outcome; returns 0, or -1
 * when the command could not be executed. */
static int describe(const struct child *c, int64_t timeout_ms, job_result *res)
{
    strbuf msg;
    char ebuf[128];

    res->error = spawn_failure(&c->sp, "child process");
    if (res->error) {
        res->outcome = JOB_RETRY;
        return -1;
    }
    sb_init(&msg);
    if (c->why != CANCEL_NONE) {
        res->outcome = cancel_outcome(c->why);
        sb_puts(&msg, cancel_reason_str(c->why));
    } else if (c->timed_out) {
        char took[32];
        sb_puts(&msg, "timed out after ");
        sb_puts(&msg, duration_format(timeout_ms, took, sizeof took));
    } else if (c->wait_errno) {
        sb_printf(&msg, "could not wait for the child: %s",
                  errstr(c->wait_errno, ebuf, sizeof(ebuf)));
    } else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) {
        res->outcome = JOB_COMPLETED;
    } else if (WIFEXITED(c->status)) {
        sb_printf(&msg, "exit status %d", WEXITSTATUS(c->status));
    } else if (WIFSIGNALED(c->status)) {
        const char *desc = sigdescr_np(WTERMSIG(c->status));
        sb_printf(&msg, "killed by signal %d (%s)", WTERMSIG(c->status), desc ? desc : "unknown");
    } else {
        sb_printf(&msg, "unexpected wait status %d", c->status);
    }
    if (!c->exited && !c->wait_errno)
        sb_puts(&msg, " (still running after SIGKILL, abandoned)");
    if (msg.len > 0) {
        tail_text(&c->tail, &msg);
        res->error = xstrdup(msg.data);
    }
    sb_free(&msg);
    return 0;
}

int exec_run(char *const argv[], const job *j, int64_t timeout_ms, int64_t kill_after_ms,
             cancel_token *cancel, job_result *res)
{
    char *own[ARRAY_LEN(job_vars)] = {0};
    const char *args = j->args ? j->args : "null";

    res->outcome = JOB_RETRY;
    res->error = NULL;
    res->delay_ms = -1;
    if (!argv || !argv[0]) {
        res->error = xstrdup("empty command");
        return -1;
    }
    enum cancel_reason early = cancel ? cancel_get(cancel) : CANCEL_NONE;
    if (early != CANCEL_NONE) {
        res->outcome = cancel_outcome(early);
        res->error = xasprintf("not started: %s", cancel_reason_str(early));
        return 0;
    }

    char **envp = build_env(j, args, own);
    /* stdin takes the args, stderr gives the tail; stdout is the runner's own. */
    spawn_plan plan = {.argv = argv,
                       .envp = envp,
                       .fd = {[STDIN_FILENO] = SPAWN_PIPE, [STDERR_FILENO] = SPAWN_PIPE},
                       .want_pidfd = !exec_test_no_pidfd};
    struct child *c = xcalloc(1, sizeof(*c));
    c->args = args;
    c->args_len = strlen(args);

    /* Block everything across fork(); then keep SIGPIPE blocked while we feed stdin, so
     * a child that exits without reading costs an EPIPE, not the process. */
    sigset_t all, old, pending, loop_mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    sigpending(&pending);
    bool sigpipe_was_pending = sigismember(&pending, SIGPIPE) == 1;
    loop_mask = old;
    sigaddset(&loop_mask, SIGPIPE);

    int64_t start = now_ms();
    char err[ERR_LEN];
    int ret = spawn_start(&plan, &c->sp, err, sizeof err);
    pthread_sigmask(SIG_SETMASK, &loop_mask, NULL);
    if (ret < 0) {
        res->error = xstrdup(err);
    } else {
        supervise(c, start, timeout_ms, kill_after_ms, cancel);
        if (c->epipe && !sigpipe_was_pending) {
            /* Consume the SIGPIPE our write raised, before the caller's mask returns. */
            sigset_t pipe_set;
            sigemptyset(&pipe_set);
            sigaddset(&pipe_set, SIGPIPE);
            struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        ret = describe(c, timeout_ms, res);
        /* A lost lease trumps a failure: a peer may own the job now, write nothing. */
        if (cancel && res->outcome != JOB_COMPLETED && cancel_get(cancel) == CANCEL_LEASE_LOST)
            res->outcome = JOB_ABANDONED;
        close_fd(&c->sp.pidfd);
        close_fd(&c->sp.stderr_fd);
        spawn_release(&c->sp);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(c);
    free_env(envp, own);
    return ret;
}
