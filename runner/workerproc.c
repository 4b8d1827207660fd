/* workerproc.c - pools of long-lived worker processes that run jobs over NDJSON pipes. */

/*
 * DESIGN
 *
 * One supervisor thread per pool owns every process of the kind: it forks them, writes
 * their stdin, reads their stdout and stderr, watches their exit (pidfd), their jobs'
 * cancel tokens and every deadline, in one poll() whose timeout is the earliest deadline
 * it holds. workerproc_run() on a worker thread only queues a request and waits on the
 * request's eventfd for the supervisor to fill its result. So processes whose job is
 * done are still watched: an idle process that dies is reaped at once, an idle process's
 * stderr is still read (and never fills its pipe), and a roll can retire idle processes
 * without any worker thread. It also makes the supervisor the thread that forks, which
 * matters for PR_SET_PDEATHSIG: the kernel ties it to the forking *thread*, and worker
 * threads may come and go on a reload while the pool (and its thread) lives on.
 *
 * One mutex guards the pool; the supervisor holds it except while it sleeps in poll().
 * Submitting a job takes it for a list append, so the cost per job is two eventfd
 * signals and two pipe writes; a fork happens only when a process starts.
 *
 * Protocol (lines built and parsed in workerproto.c), one JSON object per line:
 *   runner -> process  {"id":42,"kind":"k","queue":"q","attempt":1,"deadline_ms":N|null,
 *                       "args":ARGS}   and   {"cancel":42}
 *   process -> runner  {"id":42,"ok":true} | {"id":42,"error":"text"[,"retry_in_ms":N]
 *                       [,"discard":true]}
 * deadline_ms is the kind's timeout, counted from the moment the line is written (null:
 * no timeout). A process answers each job exactly once and ignores a cancel for a job it
 * has already answered (the two lines may cross). EOF on stdin asks it to exit.
 *
 * Replacement. Anything else the process writes (not JSON, not an object, a wrong or
 * missing id, an answer with no job, a line over WORKERPROC_LINE_MAX) means it cannot be
 * trusted with the next job: its process group is SIGKILLed and the job's attempt fails
 * with what it did. So does an exit or a closed stdout/stdin mid-job. The job's result is
 * reported only once the process is gone (reaped, or abandoned after
 * WORKERPROC_REAP_GRACE_MS), so a retry never overlaps the process still doing the work.
 * A new process starts when the next job needs one.
 *
 * Cancel. The job's cancel fd (shutdown deadline, lease loss, admin) or its timeout makes
 * the supervisor send {"cancel": id}; SIGTERM (plus SIGCONT) to the group follows at
 * kill_after/2 and SIGKILL at kill_after, so a cancelled job ends within kill_after as
 * an exec job does and the shutdown budget holds. An "ok" answer wins over the cancel
 * (the work is done); any other answer or death takes the cancel's outcome.
 *
 * Bounded memory. A stdout line is buffered up to WORKERPROC_LINE_MAX and the process is
 * replaced past that; stderr is logged in lines of at most STDERR_LINE_MAX bytes; the
 * error text kept in the job is cut at WORKERPROTO_ERROR_MAX. What the runner writes is
 * its own data (the job's args) and is not bounded here.
 *
 * Reload. workerproc_kinds holds the pools of a configuration by kind name and never
 * frees one before it is destroyed itself, so a job dispatched under the old settings
 * still finds its pool: a changed kind is rolled (same pool, new processes), a removed
 * one drained (it still serves what was claimed, then its processes leave).
 *
 * Children are started by spawn.c: no shell, their own process group, the
 * sentinel, PR_SET_PDEATHSIG. The supervisor blocks every signal, so writing to a process
 * that closed its stdin costs EPIPE and never a SIGPIPE to the runner.
 */
#include "workerproc.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "sentinel.h"
#include "util.h"
#include "workerproto.h"
#include "spawn.h"

bool workerproc_test_no_pidfd = false;

#define TICK_MS 50              /* poll period when a process has no pidfd */
/* processes a roll starts per turn of the supervisor, between serving answers */
#define SPAWN_PER_TURN 4
#define READ_CHUNK (64 * 1024)  /* bytes per read() */
#define READS_PER_ROUND 16      /* reads of one fd per poll round, so none starves others */
#define STDERR_LINE_MAX 4096    /* a longer stderr line is logged in pieces */
#define LAST_ERR_MAX 512        /* the last stderr line, kept for exit messages */
#define PIPE_GRACE_MS 1000      /* stdout or stdin closed: time to exit before SIGKILL */
#define MIN_EXIT_WINDOW_MS 1000 /* after EOF, at least this long to exit */

/* A job handed to the pool; lives on the caller's stack in workerproc_run. */
struct request {
    const job *job;
    int64_t timeout_ms;
    cancel_token *cancel;
    job_result *res;
    char *line; /* the job's line, newline included */
    size_t line_len;
    int done_fd;            /* eventfd, written once res is filled */
    bool counted;           /* counted in pool->in_use */
    bool spawn_failed;      /* no process could be started for it */
    enum cancel_reason why; /* cancel acted on */
    bool timed_out;         /* timeout acted on */
    struct request *next;   /* queue of requests waiting for a process */
};

enum proc_state {
    PROC_IDLE,     /* alive, waiting for a job */
    PROC_BUSY,     /* running req */
    PROC_RETIRING, /* EOF sent (once out is flushed): waiting for the exit */
    PROC_DYING,    /* SIGKILLed or lost a pipe: waiting for the exit */
};

struct proc {
    pid_t pid;
    int pidfd; /* -1: checked every TICK_MS instead */
    int in_fd, out_fd, err_fd;
    unsigned gen; /* version: the pool's gen when it started */
    enum proc_state state;
    struct request *req;
    int64_t sent_at;
    bool cancel_sent, term_sent, kill_sent, retire, pipe_lost, gone;
    bool pipe_kill;                       /* SIGKILLed because it closed a pipe and did not exit */
    int64_t term_at, kill_at, give_up_at; /* 0: not scheduled */
    char *reason;                         /* why the job fails, NULL: the exit status */
    strbuf out;                           /* still to be written to stdin */
    size_t out_off;
    bool eof_pending; /* close stdin once out is written */
    strbuf line;      /* stdout since the last newline */
    char errbuf[STDERR_LINE_MAX];
    size_t err_len;
    char last_err[LAST_ERR_MAX];
};

/* Whose a pollfd is: a process's pipe or pidfd, or the cancel fd of a request. */
struct poll_tag {
    enum { TAG_WAKE, TAG_STDOUT, TAG_STDERR, TAG_PIDFD, TAG_STDIN, TAG_CANCEL } what;
    struct proc *pr;   /* NULL for a waiting request */
    struct request *r; /* TAG_CANCEL */
};

struct workerproc_pool {
    pthread_mutex_t lock;
    pthread_t thread;
    char *kind;
    int wake_fd; /* eventfd: requests, rolls, destroy */

    /* Under lock. */
    char **argv;
    uint64_t files;   /* files_of(argv) when its processes were started (a roll) */
    int processes;
    unsigned gen;
    int64_t kill_after_ms;
    int in_use;       /* requests counted against processes */
    int spawn_wanted; /* processes a roll asked to start at once */
    bool draining;    /* workerproc_drain: no capacity offered, processes leave when idle */
    bool stopping;
    int64_t stop_at;
    struct request *queue, *queue_tail; /* waiting for a process, FIFO */
    struct proc **procs;
    size_t nprocs;

    /* Supervisor only. */
    struct pollfd *pfd;
    struct poll_tag *tag;
    size_t pfd_cap;
    char iobuf[READ_CHUNK];
};

/* ---- small helpers ---- */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void signal_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) < 0 && errno == ESRCH)
        kill(pid, sig);
}

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* only fails if the counter would overflow: a wake-up is pending anyway */
}

static int64_t earliest(int64_t cur, int64_t at)
{
    return at > 0 && (cur == 0 || at < cur) ? at : cur;
}

static char **argv_copy(char *const argv[])
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **copy = xcalloc(n + 1, sizeof *copy);
    for (size_t i = 0; i < n; i++)
        copy[i] = xstrdup(argv[i]);
    return copy;
}

/* files_of fingerprints the files argv names (the program and the scripts it is given):
 * device, inode, size and modification time of each element that is an existing file.
 * A new version written over one, or moved in place of one, changes it. */
static uint64_t files_of(char *const argv[])
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; argv && argv[i]; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        uint64_t v[] = {(uint64_t)i,          (uint64_t)st.st_dev,        (uint64_t)st.st_ino,
                        (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        for (size_t k = 0; k < ARRAY_LEN(v); k++)
            h = (h ^ v[k]) * 1099511628211u; /* FNV-1a over the numbers */
    }
    return h;
}

static void argv_free(char **argv)
{
    for (char **a = argv; a && *a; a++)
        free(*a);
    free(argv);
}

/* ---- starting a process ---- */

/* spawn starts a process of the pool's current argv; returns it, or NULL with the
 * reason in err. Called by the supervisor (every signal blocked) with the lock held. */
static struct proc *spawn(workerproc_pool *pool, char *err, size_t errlen)
{
    spawn_plan plan = {.argv = pool->argv,
                       .fd = {SPAWN_PIPE, SPAWN_PIPE, SPAWN_PIPE},
                       .want_pidfd = !workerproc_test_no_pidfd};
    spawn_child c;
    if (!pool->argv || !pool->argv[0] || !pool->argv[0][0]) {
        errf(err, errlen, "empty worker command");
        return NULL;
    }
    if (spawn_start(&plan, &c, err, errlen) < 0 ||
        spawn_wait_exec(&c, "worker process", err, errlen) < 0)
        return NULL;
    struct proc *pr = xcalloc(1, sizeof *pr);
    pr->pid = c.pid;
    pr->pidfd = c.pidfd;
    pr->in_fd = c.stdin_fd;
    pr->out_fd = c.stdout_fd;
    pr->err_fd = c.stderr_fd;
    pr->gen = pool->gen;
    pr->state = PROC_IDLE;
    sb_init(&pr->out);
    sb_init(&pr->line);
    if (log_enabled(LOG_DEBUG)) {
        char pidstr[16];
        snprintf(pidstr, sizeof pidstr, "%d", (int)c.pid);
        log_event(LOG_DEBUG, "worker process started", "kind", pool->kind, "pid", pidstr, NULL);
    }
    return pr;
}

/* ---- concluding jobs ---- */

/* conclude fills r's result and hands it back to its caller; r must not be touched
 * afterwards (it lives on the caller's stack). error is taken over. */
static void conclude(workerproc_pool *pool, struct request *r, job_outcome outcome, char *error,
                     int64_t delay_ms)
{
    /* A lost lease trumps a failure: a peer may own the job now, write nothing. */
    if (outcome != JOB_COMPLETED && r->cancel && cancel_get(r->cancel) == CANCEL_LEASE_LOST)
        outcome = JOB_ABANDONED;
    r->res->outcome = outcome;
    r->res->error = error;
    r->res->delay_ms = delay_ms;
    if (r->counted)
        pool->in_use--;
    r->counted = false;
    int fd = r->done_fd;
    wake(fd); /* last touch of r */
}

/* conclude_failure ends r as a failure described by text (may be NULL): the cancel or
 * timeout that was acted on decides the outcome and leads the message. */
static void conclude_failure(workerproc_pool *pool, struct request *r, const char *text,
                             bool discard, int64_t delay_ms)
{
    strbuf msg;
    char dbuf[32];
    job_outcome outcome = discard ? JOB_DISCARD : JOB_RETRY;

    sb_init(&msg);
    if (r->why != CANCEL_NONE) {
        outcome = cancel_outcome(r->why);
        sb_puts(&msg, cancel_reason_str(r->why));
        delay_ms = -1;
    } else if (r->timed_out) {
        outcome = JOB_RETRY;
        sb_printf(&msg, "timed out after %s", duration_format(r->timeout_ms, dbuf, sizeof dbuf));
        delay_ms = -1;
    }
    if (text && *text)
        sb_printf(&msg, "%s%s", msg.len ? ": " : "", text);
    conclude(pool, r, outcome, xstrdup(msg.len ? msg.data : "worker process failed"), delay_ms);
    sb_free(&msg);
}

/* ---- what processes do ---- */

static void pid_str(const struct proc *pr, char *buf, size_t len)
{
    snprintf(buf, len, "%d", (int)pr->pid);
}

/* replace gives up on pr: its group is SIGKILLed now, and once it is gone its job fails
 * with reason (the first reason given stays). */
static void replace(workerproc_pool *pool, struct proc *pr, int64_t now, const char *reason)
{
    char pidstr[16], idstr[24];

    if (!pr->reason)
        pr->reason = xstrdup(reason);
    pid_str(pr, pidstr, sizeof pidstr);
    snprintf(idstr, sizeof idstr, "%lld", pr->req ? (long long)pr->req->job->id : 0LL);
    log_event(LOG_WARN, "worker process replaced", "kind", pool->kind, "pid", pidstr, "job_id",
              pr->req ? idstr : "", "reason", reason, NULL);
    if (!pr->kill_sent) {
        signal_group(pr->pid, SIGKILL);
        pr->kill_sent = true;
        pr->give_up_at = now + WORKERPROC_REAP_GRACE_MS;
    }
    pr->state = PROC_DYING;
    close_fd(&pr->in_fd);
    close_fd(&pr->out_fd); /* nothing it writes counts any more */
}

/* lose_pipe handles a process that closed its stdout or stdin: it cannot work a job any
 * more; it gets PIPE_GRACE_MS to exit by itself (its exit status says more than we can)
 * and is SIGKILLed after that. */
static void lose_pipe(struct proc *pr, int64_t now)
{
    if (pr->pipe_lost)
        return;
    pr->pipe_lost = true;
    if (pr->state != PROC_RETIRING)
        pr->state = PROC_DYING; /* a retiring process closes its pipes as it exits */
    close_fd(&pr->in_fd);
    if (!pr->kill_sent)
        pr->kill_at =
            pr->kill_at && pr->kill_at < now + PIPE_GRACE_MS ? pr->kill_at : now + PIPE_GRACE_MS;
}

/* send_line queues text (with its newline) for pr's stdin. */
static void send_line(struct proc *pr, const char *text, size_t len)
{
    if (pr->in_fd < 0)
        return;
    if (pr->out_off == pr->out.len) {
        sb_reset(&pr->out);
        pr->out_off = 0;
    }
    sb_append(&pr->out, text, len);
}

/* flush_stdin writes what the pipe takes; closes stdin once EOF is due. */
static void flush_stdin(struct proc *pr, int64_t now)
{
    while (pr->in_fd >= 0 && pr->out_off < pr->out.len) {
        size_t left = pr->out.len - pr->out_off;
        ssize_t n =
            write(pr->in_fd, pr->out.data + pr->out_off, left < READ_CHUNK ? left : READ_CHUNK);
        if (n > 0) {
            pr->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            /* EPIPE: the process closed its stdin. SIGPIPE is blocked in this thread;
             * take the pending one so it does not linger. */
            if (errno == EPIPE) {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGPIPE);
                struct timespec zero = {0, 0};
                while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                    ;
            }
            lose_pipe(pr, now);
            return;
        }
    }
    if (pr->eof_pending && pr->in_fd >= 0)
        close_fd(&pr->in_fd);
}

/* retire sends pr EOF and gives it the exit window: SIGTERM halfway, SIGKILL at the end,
 * both no later than the pool's stop deadline. */
static void retire(workerproc_pool *pool, struct proc *pr, int64_t now)
{
    int64_t window =
        pool->kill_after_ms > MIN_EXIT_WINDOW_MS ? pool->kill_after_ms : MIN_EXIT_WINDOW_MS;
    pr->state = PROC_RETIRING;
    pr->eof_pending = true;
    pr->term_at = now + window / 2;
    pr->kill_at = now + window;
    if (pool->stopping && pool->stop_at < pr->kill_at)
        pr->kill_at = pool->stop_at;
    flush_stdin(pr, now);
}

/* start_job sends r to pr. */
static void start_job(workerproc_pool *pool, struct proc *pr, struct request *r, int64_t now)
{
    (void)pool;
    pr->state = PROC_BUSY;
    pr->req = r;
    pr->sent_at = now_ms(); /* after a spawn, the loop's clock is late */
    pr->cancel_sent = false;
    send_line(pr, r->line, r->line_len);
    flush_stdin(pr, now);
}

/* send_cancel asks pr to stop its job; SIGTERM follows at kill_after/2, SIGKILL at
 * kill_after. */
static void send_cancel(workerproc_pool *pool, struct proc *pr, int64_t now)
{
    size_t len;
    char *line = workerproto_cancel_line(pr->req->job->id, &len);
    send_line(pr, line, len);
    free(line);
    pr->cancel_sent = true;
    /* The loop's clock may predate the cancel it just saw: the budget starts now. */
    now = now_ms();
    pr->term_at = now + pool->kill_after_ms / 2;
    pr->kill_at = now + pool->kill_after_ms;
    flush_stdin(pr, now);
}

/* answer_done returns pr to service after it answered its job. */
static void answer_done(workerproc_pool *pool, struct proc *pr, int64_t now)
{
    pr->req = NULL;
    pr->cancel_sent = false;
    if (pr->state == PROC_DYING)
        return; /* it lost a pipe or was killed: on its way out whatever it said */
    if (pr->term_sent || pr->retire || pr->gen != pool->gen || pool->draining || pool->stopping) {
        retire(pool, pr, now); /* a process we sent SIGTERM is not trusted again */
        return;
    }
    pr->term_at = pr->kill_at = 0;
    pr->state = PROC_IDLE;
}

/* on_line handles one line pr wrote on stdout. */
static void on_line(workerproc_pool *pool, struct proc *pr, const char *line, size_t len,
                    int64_t now)
{
    char err[ERR_LEN];
    workerproto_answer a;
    struct request *r = pr->req;

    if (workerproto_parse(line, len, &a, err, sizeof err) < 0) {
        replace(pool, pr, now, err);
        return;
    }
    if (!r || a.id != r->job->id) {
        if (r)
            snprintf(err, sizeof err, "worker process answered for job %lld while running job %lld",
                     (long long)a.id, (long long)r->job->id);
        else
            snprintf(err, sizeof err, "worker process answered for job %lld while it had no job",
                     (long long)a.id);
        free(a.error);
        replace(pool, pr, now, err);
        return;
    }
    pr->req = NULL;
    if (a.ok)
        conclude(pool, r, JOB_COMPLETED, NULL, -1);
    else
        conclude_failure(pool, r, a.error, a.discard, a.retry_in_ms);
    free(a.error);
    answer_done(pool, pr, now);
}

/* read_stdout splits what pr wrote into lines. */
static void read_stdout(workerproc_pool *pool, struct proc *pr, int64_t now)
{
    char lenbuf[64];
    for (int round = 0; round < READS_PER_ROUND && pr->out_fd >= 0; round++) {
        ssize_t n = read(pr->out_fd, pool->iobuf, sizeof pool->iobuf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close_fd(&pr->out_fd);
            lose_pipe(pr, now);
            return;
        }
        const char *at = pool->iobuf, *end = pool->iobuf + n;
        while (at < end && pr->out_fd >= 0) {
            const char *nl = memchr(at, '\n', (size_t)(end - at));
            size_t take = (size_t)((nl ? nl : end) - at);
            if (pr->line.len + take > WORKERPROC_LINE_MAX) {
                snprintf(lenbuf, sizeof lenbuf, "worker process wrote a line longer than %d bytes",
                         WORKERPROC_LINE_MAX);
                replace(pool, pr, now, lenbuf);
                return;
            }
            if (!nl) {
                sb_append(&pr->line, at, take);
                break;
            }
            if (pr->line.len == 0) {
                on_line(pool, pr, at, take, now);
            } else {
                sb_append(&pr->line, at, take);
                on_line(pool, pr, pr->line.data, pr->line.len, now);
                sb_reset(&pr->line);
            }
            at = nl + 1;
        }
    }
}

/* log_stderr logs one stderr line of pr, with its job if it has one. */
static void log_stderr(workerproc_pool *pool, struct proc *pr, const char *s, size_t n)
{
    char pidstr[16], idstr[24];
    strbuf text;

    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    sb_init(&text);
    sb_text(&text, s, n, STDERR_LINE_MAX);
    if (text.len > 0) {
        size_t keep = text.len < LAST_ERR_MAX - 1 ? text.len : LAST_ERR_MAX - 1;
        while (keep > 0 && keep < text.len && ((unsigned char)text.data[keep] & 0xC0) == 0x80)
            keep--;
        memcpy(pr->last_err, text.data, keep);
        pr->last_err[keep] = '\0';
    }
    pid_str(pr, pidstr, sizeof pidstr);
    if (pr->req) {
        snprintf(idstr, sizeof idstr, "%lld", (long long)pr->req->job->id);
        log_event(LOG_INFO, "worker process stderr", "kind", pool->kind, "pid", pidstr, "job_id",
                  idstr, "line", text.data ? text.data : "", NULL);
    } else {
        log_event(LOG_INFO, "worker process stderr", "kind", pool->kind, "pid", pidstr, "line",
                  text.data ? text.data : "", NULL);
    }
    sb_free(&text);
}

/* read_stderr logs what pr wrote on stderr, line by line. */
static void read_stderr(workerproc_pool *pool, struct proc *pr)
{
    for (int round = 0; round < READS_PER_ROUND && pr->err_fd >= 0; round++) {
        ssize_t n = read(pr->err_fd, pool->iobuf, sizeof pool->iobuf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (pr->err_len > 0)
                log_stderr(pool, pr, pr->errbuf, pr->err_len);
            pr->err_len = 0;
            close_fd(&pr->err_fd);
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            pr->errbuf[pr->err_len++] = pool->iobuf[i];
            if (pool->iobuf[i] == '\n' || pr->err_len == sizeof pr->errbuf) {
                log_stderr(pool, pr, pr->errbuf, pr->err_len);
                pr->err_len = 0;
            }
        }
    }
}

/* exit_text describes how pr ended, for its job's error. */
static void exit_text(const struct proc *pr, int status, bool waited, strbuf *msg)
{
    if (pr->reason) {
        sb_puts(msg, pr->reason);
        return;
    }
    if (!waited)
        sb_printf(msg, "worker process %d did not exit after SIGKILL (abandoned)", (int)pr->pid);
    else if (pr->cancel_sent && (pr->term_sent || pr->kill_sent))
        return; /* it did not answer the cancel and we stopped it: the cancel says it all */
    else if (pr->pipe_kill)
        sb_printf(msg, "worker process %d closed its stdin or stdout", (int)pr->pid);
    else if (WIFEXITED(status))
        sb_printf(msg, "worker process %d exited with status %d", (int)pr->pid,
                  WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) {
        const char *desc = sigdescr_np(WTERMSIG(status));
        sb_printf(msg, "worker process %d was killed by signal %d (%s)", (int)pr->pid,
                  WTERMSIG(status), desc ? desc : "unknown");
    } else {
        sb_printf(msg, "worker process %d ended with wait status %d", (int)pr->pid, status);
    }
    if (pr->last_err[0])
        sb_printf(msg, ": %s", pr->last_err);
}

/* has_exited notes whether pr has exited, without reaping it (while a zombie its pid
 * still names its process group). */
static bool has_exited(const struct proc *pr)
{
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pr->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
            return si.si_pid == pr->pid;
        if (errno != EINTR)
            return true; /* ECHILD: SIGCHLD ignored or reaped elsewhere; nothing to wait for */
    }
}

/* finish_proc takes what pr still wrote, reaps it (unless waited is false: it survived
 * SIGKILL), fails its job if it had one and drops it from the pool. */
static void finish_proc(workerproc_pool *pool, struct proc *pr, bool waited, int64_t now)
{
    int status = 0;

    /* An answer written just before the exit still counts. */
    read_stderr(pool, pr);
    if (pr->state != PROC_DYING || !pr->reason)
        read_stdout(pool, pr, now);
    read_stderr(pool, pr);
    if (waited) {
        signal_group(pr->pid, SIGKILL); /* whatever it left behind in its group */
        while (waitpid(pr->pid, &status, 0) < 0 && errno == EINTR)
            ;
        sentinel_forget(pr->pid);
    }
    if (pr->req) {
        strbuf msg;
        sb_init(&msg);
        exit_text(pr, status, waited, &msg);
        struct request *r = pr->req;
        pr->req = NULL;
        conclude_failure(pool, r, msg.data, false, -1);
        sb_free(&msg);
    } else if (pr->state != PROC_RETIRING || !waited || status != 0) {
        char pidstr[16];
        strbuf msg;
        sb_init(&msg);
        exit_text(pr, status, waited, &msg);
        pid_str(pr, pidstr, sizeof pidstr);
        log_event(pr->state == PROC_RETIRING ? LOG_INFO : LOG_WARN, "worker process ended", "kind",
                  pool->kind, "pid", pidstr, "reason", msg.data, NULL);
        sb_free(&msg);
    }
    close_fd(&pr->pidfd);
    close_fd(&pr->in_fd);
    close_fd(&pr->out_fd);
    close_fd(&pr->err_fd);
    sb_free(&pr->out);
    sb_free(&pr->line);
    free(pr->reason);
    pr->reason = NULL;
    pr->gone = true;
}

/* ---- the supervisor ---- */

static int alive_current(const workerproc_pool *pool)
{
    int n = 0;
    for (size_t i = 0; i < pool->nprocs; i++) {
        const struct proc *pr = pool->procs[i];
        n += pr->gen == pool->gen && !pr->retire && pr->state != PROC_RETIRING &&
             pr->state != PROC_DYING;
    }
    return n;
}

static struct proc *idle_current(const workerproc_pool *pool)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct proc *pr = pool->procs[i];
        if (pr->state == PROC_IDLE && pr->gen == pool->gen && !pr->retire)
            return pr;
    }
    return NULL;
}

static void add_proc(workerproc_pool *pool, struct proc *pr)
{
    pool->procs = xrealloc(pool->procs, (pool->nprocs + 1) * sizeof *pool->procs);
    pool->procs[pool->nprocs++] = pr;
}

/* assign hands waiting requests to processes, starting processes up to the limit. */
static void assign(workerproc_pool *pool, int64_t now)
{
    char err[ERR_LEN];

    while (pool->queue) {
        struct request *r = pool->queue;
        struct proc *pr = idle_current(pool);
        if (!pr && alive_current(pool) < pool->processes) {
            pr = spawn(pool, err, sizeof err);
            if (!pr) {
                pool->queue = r->next;
                log_event(LOG_ERROR, "could not start worker process", "kind", pool->kind, "error",
                          err, NULL);
                r->spawn_failed = true;
                conclude(pool, r, JOB_RETRY, xasprintf("could not start a worker process: %s", err),
                         -1);
                continue;
            }
            add_proc(pool, pr);
        }
        if (!pr)
            return;
        pool->queue = r->next;
        start_job(pool, pr, r, now);
    }
    pool->queue_tail = NULL;
    /* a roll's new processes start a few per turn: the answers of the old ones (and the
     * jobs waiting for them) are served in between, not after all of them */
    int started = 0;
    while (pool->spawn_wanted > 0 && !pool->stopping && alive_current(pool) < pool->processes &&
           started++ < SPAWN_PER_TURN) {
        pool->spawn_wanted--;
        struct proc *pr = spawn(pool, err, sizeof err);
        if (!pr) {
            log_event(LOG_ERROR, "could not start worker process", "kind", pool->kind, "error", err,
                      NULL);
            pool->spawn_wanted = 0;
            break;
        }
        add_proc(pool, pr);
    }
    if (pool->stopping || alive_current(pool) >= pool->processes)
        pool->spawn_wanted = 0;
}

/* drop_cancelled ends waiting requests whose token fired: they never started. */
static void drop_cancelled(workerproc_pool *pool)
{
    struct request **link = &pool->queue, *tail = NULL;
    while (*link) {
        struct request *r = *link;
        enum cancel_reason why = r->cancel ? cancel_get(r->cancel) : CANCEL_NONE;
        if (why == CANCEL_NONE && !pool->stopping) {
            tail = r;
            link = &r->next;
            continue;
        }
        *link = r->next;
        conclude(pool, r, why == CANCEL_NONE ? JOB_INTERRUPTED : cancel_outcome(why),
                 xasprintf("not started: %s",
                           why == CANCEL_NONE ? "worker pool stopped" : cancel_reason_str(why)),
                 -1);
    }
    pool->queue_tail = tail;
}

/* tend acts on pr's cancel, timeout and signal deadlines; returns its next deadline. */
static int64_t tend(workerproc_pool *pool, struct proc *pr, int64_t now)
{
    struct request *r = pr->req;

    if (r && pr->state == PROC_BUSY && !pr->cancel_sent) {
        r->why = r->cancel ? cancel_get(r->cancel) : CANCEL_NONE;
        r->timed_out =
            r->why == CANCEL_NONE && r->timeout_ms > 0 && now - pr->sent_at >= r->timeout_ms;
        if (r->why != CANCEL_NONE || r->timed_out)
            send_cancel(pool, pr, now);
    }
    if (pr->state == PROC_IDLE &&
        (pr->retire || pr->gen != pool->gen || pool->draining || pool->stopping))
        retire(pool, pr, now);
    if (pool->stopping && (pr->kill_at == 0 || pr->kill_at > pool->stop_at) && !pr->kill_sent)
        pr->kill_at = pool->stop_at;
    if (pr->term_at && !pr->term_sent && !pr->kill_sent && now >= pr->term_at) {
        signal_group(pr->pid, SIGTERM);
        signal_group(pr->pid, SIGCONT); /* a stopped process must be able to act on it */
        pr->term_sent = true;
    }
    if (pr->kill_at && !pr->kill_sent && now >= pr->kill_at) {
        pr->pipe_kill = pr->pipe_lost && !pr->cancel_sent && pr->state != PROC_RETIRING;
        signal_group(pr->pid, SIGKILL);
        pr->kill_sent = true;
        pr->give_up_at = now + WORKERPROC_REAP_GRACE_MS;
        pr->state = PROC_DYING;
    }
    if (pr->kill_sent && now >= pr->give_up_at) {
        finish_proc(pool, pr, false, now); /* stuck in the kernel: do not hang the pool */
        return 0;
    }
    flush_stdin(pr, now);

    int64_t next = 0;
    if (r && pr->req == r && !pr->cancel_sent && r->timeout_ms > 0)
        next = earliest(next, pr->sent_at + r->timeout_ms);
    if (!pr->term_sent && !pr->kill_sent)
        next = earliest(next, pr->term_at);
    if (!pr->kill_sent)
        next = earliest(next, pr->kill_at);
    else
        next = earliest(next, pr->give_up_at);
    return next;
}

/* reserve makes room for n more pollfds. */
static void reserve(workerproc_pool *pool, size_t n)
{
    if (n <= pool->pfd_cap)
        return;
    pool->pfd_cap = n * 2;
    pool->pfd = xrealloc(pool->pfd, pool->pfd_cap * sizeof *pool->pfd);
    pool->tag = xrealloc(pool->tag, pool->pfd_cap * sizeof *pool->tag);
}

static void compact(workerproc_pool *pool)
{
    size_t k = 0;
    for (size_t i = 0; i < pool->nprocs; i++) {
        if (pool->procs[i]->gone)
            free(pool->procs[i]);
        else
            pool->procs[k++] = pool->procs[i];
    }
    pool->nprocs = k;
}

/* still_waiting says whether the request a cancel tag names is still ours: one that was
 * concluded may be gone with its caller's token. */
static bool still_waiting(const workerproc_pool *pool, const struct poll_tag *t)
{
    if (t->pr)
        return t->pr->req == t->r;
    for (const struct request *r = pool->queue; r; r = r->next)
        if (r == t->r)
            return true;
    return false;
}

/* consume_spurious reads a cancel fd that is readable with no reason set, a wake-up left
 * over from cancel_reset(): else poll() would return at once forever. A reason set in
 * between is seen by the next tend(), which checks cancel_get() itself. */
static void consume_spurious(cancel_token *c)
{
    uint64_t v;
    if (cancel_get(c) == CANCEL_NONE) {
        ssize_t got = read(c->fd, &v, sizeof v);
        (void)got;
    }
}

static void *supervise(void *arg)
{
    workerproc_pool *pool = arg;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        int64_t now = now_ms();
        drop_cancelled(pool);
        assign(pool, now);
        /* Past the stop deadline every process has its SIGKILL: wait for the exits. */
        int64_t next = pool->stopping && pool->stop_at > now ? pool->stop_at : 0;
        bool tick = false;
        for (size_t i = 0; i < pool->nprocs; i++)
            next = earliest(next, tend(pool, pool->procs[i], now));
        compact(pool);
        if (pool->stopping && pool->nprocs == 0 && !pool->queue)
            break;

        /* One pollfd per thing that can move us; tag says whose it is. */
        size_t n = 0;
        size_t nreq = 0;
        for (struct request *r = pool->queue; r; r = r->next)
            nreq++;
        reserve(pool, 1 + 5 * pool->nprocs + nreq);
        pool->pfd[n] = (struct pollfd){.fd = pool->wake_fd, .events = POLLIN};
        pool->tag[n++] = (struct poll_tag){.what = TAG_WAKE};
        for (size_t i = 0; i < pool->nprocs; i++) {
            struct proc *pr = pool->procs[i];
            /* Only a running job's cancel matters; a dying process's job ends with it. */
            bool watch_cancel =
                pr->state == PROC_BUSY && pr->req && pr->req->cancel && !pr->cancel_sent;
            const struct {
                int fd;
                short events;
                int what;
            } want[] = {
                /* stderr before stdout: what the process wrote there before its answer
                 * is logged with the job the answer ends */
                {pr->err_fd, POLLIN, TAG_STDERR},
                {pr->out_fd, POLLIN, TAG_STDOUT},
                {pr->pidfd, POLLIN, TAG_PIDFD},
                {pr->out_off < pr->out.len ? pr->in_fd : -1, POLLOUT, TAG_STDIN},
                {watch_cancel ? pr->req->cancel->fd : -1, POLLIN, TAG_CANCEL},
            };
            for (size_t f = 0; f < ARRAY_LEN(want); f++)
                if (want[f].fd >= 0) {
                    pool->pfd[n] = (struct pollfd){.fd = want[f].fd, .events = want[f].events};
                    pool->tag[n++] =
                        (struct poll_tag){.what = want[f].what, .pr = pr, .r = pr->req};
                }
            tick = tick || pr->pidfd < 0;
        }
        for (struct request *r = pool->queue; r; r = r->next)
            if (r->cancel) {
                pool->pfd[n] = (struct pollfd){.fd = r->cancel->fd, .events = POLLIN};
                pool->tag[n++] = (struct poll_tag){.what = TAG_CANCEL, .r = r};
            }

        int wait = -1;
        if (next > 0)
            wait = next - now < 0 ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
        if (tick && (wait < 0 || wait > TICK_MS))
            wait = TICK_MS;
        if (pool->spawn_wanted > 0)
            wait = 0; /* more of a roll's processes to start after this turn's answers */
        pthread_mutex_unlock(&pool->lock);
        int rc = poll(pool->pfd, n, wait);
        pthread_mutex_lock(&pool->lock);
        if (rc < 0)
            continue; /* EINTR (all signals are blocked, but be safe) */

        now = now_ms();
        if (pool->pfd[0].revents & POLLIN) {
            uint64_t v;
            ssize_t got = read(pool->wake_fd, &v, sizeof v);
            (void)got;
        }
        /* Processes are only freed in compact(), so the tags still name live ones. */
        for (size_t k = 1; k < n; k++) {
            struct poll_tag *t = &pool->tag[k];
            struct proc *pr = t->pr;
            if (!pool->pfd[k].revents || (pr && pr->gone))
                continue;
            switch (t->what) {
            case TAG_STDOUT:
                read_stdout(pool, pr, now);
                break;
            case TAG_STDERR:
                read_stderr(pool, pr);
                break;
            case TAG_PIDFD:
                if (has_exited(pr))
                    finish_proc(pool, pr, true, now);
                break;
            case TAG_STDIN:
                flush_stdin(pr, now);
                break;
            case TAG_CANCEL:
                if (still_waiting(pool, t))
                    consume_spurious(t->r->cancel);
                break;
            case TAG_WAKE:
                break;
            }
        }
        for (size_t i = 0; i < pool->nprocs; i++) {
            struct proc *pr = pool->procs[i];
            if (!pr->gone && pr->pidfd < 0 && has_exited(pr))
                finish_proc(pool, pr, true, now);
        }
        compact(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* ---- the public face ---- */

workerproc_pool *workerproc_create(const char *kind, char *const argv[], int processes,
                                   int64_t kill_after_ms, char *err, size_t errlen)
{
    if (!argv || !argv[0] || !argv[0][0]) {
        errf(err, errlen, "kind \"%s\" has an empty worker command", kind);
        return NULL;
    }
    workerproc_pool *pool = xcalloc(1, sizeof *pool);
    pthread_mutex_init(&pool->lock, NULL);
    pool->kind = xstrdup(kind);
    pool->argv = argv_copy(argv);
    pool->files = files_of(argv);
    pool->processes = processes > 0 ? processes : 1;
    pool->kill_after_ms = kill_after_ms > 0 ? kill_after_ms : 0;
    pool->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->wake_fd < 0) {
        errf(err, errlen, "could not create eventfd: %s", strerror(errno));
        goto fail;
    }
    /* The supervisor blocks every signal: it writes to pipes whose readers may be gone,
     * and signals are the main thread's business. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&pool->thread, NULL, supervise, pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errf(err, errlen, "could not start the worker process supervisor of kind \"%s\": %s", kind,
             strerror(rc));
        goto fail;
    }
    return pool;

fail:
    if (pool->wake_fd >= 0)
        close(pool->wake_fd);
    argv_free(pool->argv);
    free(pool->kind);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
    return NULL;
}

int workerproc_run(workerproc_pool *p, const job *j, int64_t timeout_ms, cancel_token *cancel,
                   job_result *res)
{
    char err[ERR_LEN];
    struct request r = {.job = j, .timeout_ms = timeout_ms, .cancel = cancel, .res = res};

    res->outcome = JOB_RETRY;
    res->error = NULL;
    res->delay_ms = -1;
    enum cancel_reason early = cancel ? cancel_get(cancel) : CANCEL_NONE;
    if (early != CANCEL_NONE) {
        res->outcome = cancel_outcome(early);
        res->error = xasprintf("not started: %s", cancel_reason_str(early));
        return 0;
    }
    r.line = workerproto_job_line(j, timeout_ms, &r.line_len, err, sizeof err);
    if (!r.line) {
        res->error = xstrdup(err);
        return 0;
    }
    r.done_fd = eventfd(0, EFD_CLOEXEC);
    if (r.done_fd < 0) {
        res->error = xasprintf("could not create eventfd: %s", strerror(errno));
        free(r.line);
        return -1;
    }

    /* r lives on this stack while the supervisor has it: we do not return before the
     * supervisor concluded it, and it forgets r when it does. */
    pthread_mutex_lock(&p->lock);
    r.counted = true;
    p->in_use++;
    if (p->queue_tail)
        p->queue_tail->next = &r; // cppcheck-suppress autoVariables
    else
        p->queue = &r;  // cppcheck-suppress autoVariables
    p->queue_tail = &r; // cppcheck-suppress autoVariables
    pthread_mutex_unlock(&p->lock);
    wake(p->wake_fd);

    /* The supervisor bounds this wait: the job's timeout (or cancel) plus kill_after plus
     * WORKERPROC_REAP_GRACE_MS; a job without a timeout runs until it answers. */
    uint64_t v;
    while (read(r.done_fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    close(r.done_fd);
    free(r.line);
    return r.spawn_failed ? -1 : 0;
}

int workerproc_free(workerproc_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->draining ? 0 : p->processes - p->in_use;
    pthread_mutex_unlock(&p->lock);
    return n > 0 ? n : 0;
}

void workerproc_roll(workerproc_pool *p, char *const argv[], int processes)
{
    char **copy = argv && argv[0] && argv[0][0] ? argv_copy(argv) : NULL;

    pthread_mutex_lock(&p->lock);
    int alive = 0;
    for (size_t i = 0; i < p->nprocs; i++) {
        struct proc *pr = p->procs[i];
        if (pr->gone || pr->state == PROC_DYING || pr->state == PROC_RETIRING)
            continue;
        alive++;
        pr->retire = true;
        /* Its job finishes on the old version but no longer takes a place of the new. */
        if (pr->req && pr->req->counted) {
            pr->req->counted = false;
            p->in_use--;
        }
    }
    if (copy) {
        argv_free(p->argv);
        p->argv = copy;
    }
    p->files = files_of(p->argv);
    p->processes = processes > 0 ? processes : 1;
    p->gen++;
    p->spawn_wanted = alive < p->processes ? alive : p->processes;
    p->draining = false;
    pthread_mutex_unlock(&p->lock);
    wake(p->wake_fd);
}

void workerproc_drain(workerproc_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->draining = true;
    p->spawn_wanted = 0;
    pthread_mutex_unlock(&p->lock);
    wake(p->wake_fd);
}

void workerproc_set_kill_after(workerproc_pool *p, int64_t kill_after_ms)
{
    pthread_mutex_lock(&p->lock);
    p->kill_after_ms = kill_after_ms > 0 ? kill_after_ms : 0;
    pthread_mutex_unlock(&p->lock);
}

int workerproc_running(workerproc_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = 0;
    for (size_t i = 0; i < p->nprocs; i++)
        n += !p->procs[i]->gone;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void workerproc_destroy(workerproc_pool *p, int64_t wait_ms)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->stop_at = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    pthread_mutex_unlock(&p->lock);
    wake(p->wake_fd);
    pthread_join(p->thread, NULL);

    close(p->wake_fd);
    argv_free(p->argv);
    free(p->procs);
    free(p->pfd);
    free(p->tag);
    free(p->kind);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- the pools of a configuration ---- */

struct workerproc_kinds {
    pthread_mutex_t lock; /* guards the array; each pool has its own lock */
    workerproc_pool **pools;
    size_t npools;
};

static bool same_argv(char *const a[], char *const b[])
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return !a[i] && !b[i];
}

static workerproc_pool *kinds_find(const workerproc_kinds *k, const char *kind)
{
    for (size_t i = 0; i < k->npools; i++)
        if (!strcmp(k->pools[i]->kind, kind))
            return k->pools[i];
    return NULL;
}

workerproc_kinds *workerproc_kinds_create(const config *cfg, char *err, size_t errlen)
{
    workerproc_kinds *k = xcalloc(1, sizeof *k);
    pthread_mutex_init(&k->lock, NULL);
    if (workerproc_kinds_reload(k, cfg, err, errlen) < 0) {
        workerproc_kinds_destroy(k, 0);
        return NULL;
    }
    return k;
}

int workerproc_kinds_reload(workerproc_kinds *k, const config *cfg, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&k->lock);
    for (size_t i = 0; i < cfg->nkinds; i++) {
        const kind_config *kc = &cfg->kinds[i];
        if (!kc->worker)
            continue;
        workerproc_pool *p = kinds_find(k, kc->name);
        if (!p) {
            char why[ERR_LEN];
            p = workerproc_create(kc->name, kc->worker, kc->processes, cfg->kill_after_ms, why,
                                  sizeof why);
            if (!p) {
                if (rc == 0)
                    errf(err, errlen, "%s", why); /* the first failure is the one reported */
                rc = -1;
                continue;
            }
            k->pools = xrealloc(k->pools, (k->npools + 1) * sizeof *k->pools);
            k->pools[k->npools++] = p;
            continue;
        }
        workerproc_set_kill_after(p, cfg->kill_after_ms);
        pthread_mutex_lock(&p->lock);
        /* a new version of the script or binary on disk rolls the kind too: that is how
         * a hotfix reaches worker processes */
        bool changed = p->draining || p->processes != kc->processes ||
                       !same_argv(p->argv, kc->worker) || p->files != files_of(kc->worker);
        pthread_mutex_unlock(&p->lock);
        if (changed)
            workerproc_roll(p, kc->worker, kc->processes);
    }
    /* Kinds that are gone, or no longer worker kinds, keep their pool until destroy: jobs
     * already claimed still run, then the processes leave. */
    for (size_t i = 0; i < k->npools; i++) {
        const kind_config *kc = config_kind(cfg, k->pools[i]->kind);
        if (!kc || !kc->worker)
            workerproc_drain(k->pools[i]);
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

workerproc_pool *workerproc_kinds_pool(workerproc_kinds *k, const char *kind)
{
    pthread_mutex_lock(&k->lock);
    workerproc_pool *p = kinds_find(k, kind);
    pthread_mutex_unlock(&k->lock);
    return p;
}

int workerproc_kinds_free(workerproc_kinds *k, const char *kind)
{
    workerproc_pool *p = workerproc_kinds_pool(k, kind);
    return p ? workerproc_free(p) : -1;
}

int workerproc_kinds_run(workerproc_kinds *k, const job *j, int64_t timeout_ms,
                         cancel_token *cancel, job_result *res)
{
    workerproc_pool *p = workerproc_kinds_pool(k, j->kind);
    if (!p) {
        res->outcome = JOB_RETRY;
        res->error = xasprintf("kind \"%s\" has no worker processes in this instance", j->kind);
        res->delay_ms = -1;
        return -1;
    }
    return workerproc_run(p, j, timeout_ms, cancel, res);
}

void workerproc_kinds_destroy(workerproc_kinds *k, int64_t wait_ms)
{
    if (!k)
        return;
    /* EOF to every pool first, so that they all wait out wait_ms at the same time. */
    int64_t until = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    for (size_t i = 0; i < k->npools; i++)
        workerproc_drain(k->pools[i]);
    for (size_t i = 0; i < k->npools; i++) {
        int64_t left = until - now_ms();
        workerproc_destroy(k->pools[i], left > 0 ? left : 0);
    }
    free(k->pools);
    pthread_mutex_destroy(&k->lock);
    free(k);
}
