/* bench.c - the measuring half of scripts/bench.sh: starts runner processes, feeds them
 * jobs, and reads what happened from the database clock.
 *
 *   bench throughput URL KIND JOBS TIMEOUT_S -- RUNNER_ARGV...
 *   bench latency URL COUNT RATE WARMUP STAMP_FILE -- RUNNER_ARGV...
 *   bench deploy term|kill URL RATE FEED_S KIND LOG_DIR -- RUNNER_A_ARGV... -- RUNNER_B_ARGV...
 *   bench hotfix reload|restart URL RATE PRE_S POST_S KIND EFFECTS SCRIPT NEW_SCRIPT CONFIG
 *         NEW_CONFIG LOG_DIR -- RUNNER_ARGV...
 *
 * Each prints "key=value" lines that start with "RESULT " (bench.sh parses them) and
 * exits 0, or prints why it failed and exits 1. The runners it starts are its children:
 * their output goes to log files, they receive SIGKILL if this program dies
 * (PR_SET_PDEATHSIG), and this program kills and reaps them before it exits. Every wait
 * is bounded in count and time, and the database is reached over whatever socket URL
 * names (bench.sh passes unix sockets only).
 *
 * The timestamps compared are all the database server's now() (transaction start) unless
 * a figure says otherwise: jobs/s runs from min(started_at), set by the claim, to
 * max(finished_at), set by the completion; latency is started_at - created_at, split at
 * the enqueuing transaction's commit timestamp when track_commit_timestamp is on. Process
 * timings (SIGTERM -> exit) are CLOCK_MONOTONIC of this program; the instant of a
 * SIGKILL and the handler's start (noop_runner's BENCH_STAMPS) are compared with database
 * timestamps through CLOCK_REALTIME, which is the clock a server on the same host reads
 * for now(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "runner.h"

#define MAX_CHILDREN 4
#define REGISTER_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 30000
#define POLL_MS 50

/* ---- small helpers ---- */

static pid_t children[MAX_CHILDREN];
static int nchildren;

static void kill_children(void)
{
    for (int i = 0; i < nchildren; i++) {
        if (children[i] <= 0)
            continue;
        kill(children[i], SIGKILL);
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
            ;
        children[i] = 0;
    }
}

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    kill_children();
    exit(1);
}

static void on_signal(int sig)
{
    /* die of the signal itself, so that the calling shell sees an interrupt and stops;
     * the children die with us through PR_SET_PDEATHSIG */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us)
{
    if (us <= 0)
        return;
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* sleep_until_mono sleeps until the CLOCK_MONOTONIC instant at_us. */
static void sleep_until_mono(int64_t at_us)
{
    struct timespec ts = {.tv_sec = at_us / 1000000, .tv_nsec = (at_us % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static long parse_long(const char *s, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        die("%s must be an integer in [%ld, %ld], got \"%s\"", what, min, max, s);
    return v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* percentile of sorted v (nearest rank), in the same unit. */
static int64_t percentile(const int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* ---- database ---- */

static PGconn *db_open(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        die("could not connect to %s: %s", url, PQerrorMessage(c));
    return c;
}

/* q runs a statement and returns its result, dying on any error. */
static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        die("statement failed: %s\n  %s", PQresultErrorMessage(r), sql);
    return r;
}

/* q_int64 runs a statement that returns one value (NULL reads as 0). */
static int64_t q_int64(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = q(c, sql, n, params);
    int64_t v = 0;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* waiting counts the jobs not finished yet (available or running), through the partial
 * indexes on those states, so that polling stays cheap next to the work measured. */
static int64_t waiting(PGconn *c)
{
    return q_int64(c,
                   "SELECT (SELECT count(*) FROM runner.jobs WHERE state = 'available')"
                   "     + (SELECT count(*) FROM runner.jobs WHERE state = 'running')",
                   0, NULL);
}

/* wait_all_done polls until no job is waiting; false on timeout. */
static bool wait_all_done(PGconn *c, int64_t timeout_ms)
{
    int64_t deadline = mono_us() + timeout_ms * 1000;
    for (int i = 0; i < 1000000 && mono_us() < deadline; i++) {
        if (waiting(c) == 0)
            return true;
        sleep_us(POLL_MS * 1000);
    }
    return waiting(c) == 0;
}

/* ---- child processes ---- */

/* spawn starts argv with stdout and stderr appended to log; it is SIGKILLed if we die. */
static pid_t spawn(char *const argv[], const char *log)
{
    if (nchildren == MAX_CHILDREN)
        die("too many children");
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        die("%s: %s", log, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(argv[0], argv);
        fprintf(stderr, "bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    children[nchildren++] = pid;
    return pid;
}

static void forget_child(pid_t pid)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* wait_exit waits up to timeout_ms for pid to exit; returns the microseconds waited and
 * the wait status, or -1 on timeout. A pidfd makes the exit instant exact; without one
 * (old kernels) the child is polled every millisecond. */
static int64_t wait_exit(pid_t pid, int64_t timeout_ms, int *status)
{
    int64_t start = mono_us();
    int64_t deadline = start + timeout_ms * 1000;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (int i = 0; i < 10000000; i++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            int64_t took = mono_us() - start;
            if (pfd >= 0)
                close(pfd);
            forget_child(pid);
            return took;
        }
        if (r < 0 && errno != EINTR)
            die("waitpid %d: %s", (int)pid, strerror(errno));
        int64_t left = deadline - mono_us();
        if (left <= 0)
            break;
        if (pfd >= 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            poll(&p, 1, (int)(left / 1000 + 1));
        } else {
            sleep_us(left < 1000 ? left : 1000);
        }
    }
    if (pfd >= 0)
        close(pfd);
    return -1;
}

/* stop sends SIGTERM (and a second one after second_ms when >= 0) and waits for the
 * exit; a child that does not stop in time is killed and reported. */
static void stop(pid_t pid, int64_t second_ms, const char *name)
{
    int status;
    kill(pid, SIGTERM);
    if (second_ms >= 0) {
        if (wait_exit(pid, second_ms, &status) >= 0)
            return;
        kill(pid, SIGTERM);
    }
    if (wait_exit(pid, STOP_TIMEOUT_MS, &status) < 0) {
        kill(pid, SIGKILL);
        wait_exit(pid, STOP_TIMEOUT_MS, &status);
        die("%s (pid %d) did not stop within %d ms of SIGTERM", name, (int)pid, STOP_TIMEOUT_MS);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "bench: warning: %s exited with status %d\n", name, status);
}

/* wait_registered waits until the runner with that pid has a running instance row and
 * returns the instance id (malloc'd). */
static char *wait_registered(PGconn *c, pid_t pid)
{
    char spid[16];
    snprintf(spid, sizeof spid, "%d", (int)pid);
    const char *params[] = {spid};
    int64_t deadline = mono_us() + REGISTER_TIMEOUT_MS * 1000LL;
    for (int i = 0; i < 100000 && mono_us() < deadline; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            forget_child(pid);
            die("runner (pid %d) exited with status %d before registering", (int)pid, status);
        }
        PGresult *r = q(c,
                        "SELECT id FROM runner.instances WHERE pid = $1::int"
                        " AND state = 'running' ORDER BY started_at DESC LIMIT 1",
                        1, params);
        if (PQntuples(r) == 1) {
            char *id = strdup(PQgetvalue(r, 0, 0));
            PQclear(r);
            return id;
        }
        PQclear(r);
        sleep_us(20000);
    }
    die("runner (pid %d) did not register within %d ms", (int)pid, REGISTER_TIMEOUT_MS);
}

/* cpu_ticks is the process's utime + stime (all its threads, no children) in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which is in parentheses and may hold spaces */
    char *p = strrchr(buf, ')');
    if (!p)
        die("%s: unexpected format", path);
    unsigned long long utime = 0, stime = 0;
    /* state(3) ... utime(14) stime(15): skip fields 3 to 13 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        die("%s: could not read utime/stime", path);
    return (long long)(utime + stime);
}

/* status_kib reads a "Key: N kB" line of /proc/PID/status. */
static long long status_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    long long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            v = strtoll(line + klen + 1, NULL, 10);
    fclose(f);
    return v;
}

/* ---- throughput ---- */

static int cmd_throughput(int argc, char **argv)
{
    if (argc < 7 || strcmp(argv[5], "--") != 0)
        die("usage: bench throughput URL KIND JOBS TIMEOUT_S -- RUNNER_ARGV...");
    const char *url = argv[1], *kind = argv[2];
    long jobs = parse_long(argv[3], "JOBS", 1, 10000000);
    long timeout_s = parse_long(argv[4], "TIMEOUT_S", 1, 3600);
    const char *log = getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "/dev/null";

    PGconn *c = db_open(url);
    pid_t pid = spawn(argv + 6, log);
    free(wait_registered(c, pid));
    sleep_us(200000); /* let start-up work (schedules, first rescue) settle */
    long long cpu0 = cpu_ticks(pid);

    char njobs[24];
    snprintf(njobs, sizeof njobs, "%ld", jobs);
    const char *ins[] = {kind, njobs};
    /* all jobs in one statement and one commit: queued up front, one NOTIFY */
    PQclear(
        q(c, "INSERT INTO runner.jobs (kind) SELECT $1 FROM generate_series(1, $2::int)", 2, ins));
    bool done = wait_all_done(c, timeout_s * 1000);
    long long cpu1 = cpu_ticks(pid);
    long long hwm = status_kib(pid, "VmHWM");
    long long rss_anon = status_kib(pid, "RssAnon");
    long long rss_file = status_kib(pid, "RssFile");
    long long threads = status_kib(pid, "Threads");
    stop(pid, -1, "runner");
    if (!done)
        die("%ld %s jobs not finished within %ld s", jobs, kind, timeout_s);

    PGresult *r = q(c,
                    "SELECT count(*) FILTER (WHERE state = 'completed'),"
                    "       count(*) FILTER (WHERE attempt > 1),"
                    "       extract(epoch FROM max(finished_at) - min(started_at))"
                    "  FROM runner.jobs",
                    0, NULL);
    long long completed = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    long long retried = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    double seconds = strtod(PQgetvalue(r, 0, 2), NULL);
    PQclear(r);
    PQfinish(c);
    if (completed != jobs)
        die("only %lld of %ld %s jobs completed", completed, jobs, kind);
    if (seconds <= 0)
        die("no time elapsed between the first start and the last finish");
    double cpu_s = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK);
    printf("RESULT kind=%s jobs=%ld completed=%lld retried=%lld seconds=%.6f jobs_per_s=%.0f "
           "cpu_s=%.3f cpu_ms_per_1000=%.1f hwm_kib=%lld rss_anon_kib=%lld rss_file_kib=%lld "
           "threads=%lld\n",
           kind, jobs, completed, retried, seconds, (double)jobs / seconds, cpu_s,
           cpu_s * 1000.0 * 1000.0 / (double)jobs, hwm, rss_anon, rss_file, threads);
    return 0;
}

/* ---- latency ---- */

typedef struct id_us {
    int64_t id;
    int64_t us;
} id_us;

static int cmp_id(const void *a, const void *b)
{
    int64_t x = ((const id_us *)a)->id, y = ((const id_us *)b)->id;
    return (x > y) - (x < y);
}

static void print_dist(const char *name, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    printf("RESULT dist=%s n=%zu p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f min_ms=%.3f\n",
           name, n, (double)percentile(v, n, 0.50) / 1000.0,
           (double)percentile(v, n, 0.95) / 1000.0, (double)percentile(v, n, 0.99) / 1000.0,
           n ? (double)v[n - 1] / 1000.0 : 0.0, n ? (double)v[0] / 1000.0 : 0.0);
}

/* commit_ts_on tells whether the server records commit timestamps. */
static bool commit_ts_on(PGconn *c)
{
    PGresult *r = q(c, "SELECT current_setting('track_commit_timestamp') = 'on'", 0, NULL);
    bool on = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return on;
}

/* int_array is the array literal "{v0,v1,...}" (malloc'd). */
static char *int_array(const int64_t *v, size_t n)
{
    size_t cap = 2 + n * 21, len = 0;
    char *out = malloc(cap);
    if (!out)
        die("out of memory");
    out[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", i ? "," : "", (long long)v[i]);
    snprintf(out + len, cap - len, "}");
    return out;
}

static int cmd_latency(int argc, char **argv)
{
    if (argc < 8 || strcmp(argv[6], "--") != 0)
        die("usage: bench latency URL COUNT RATE WARMUP STAMP_FILE -- RUNNER_ARGV...");
    const char *url = argv[1];
    long count = parse_long(argv[2], "COUNT", 1, 100000);
    long rate = parse_long(argv[3], "RATE", 1, 10000);
    long warmup = parse_long(argv[4], "WARMUP", 0, 1000);
    const char *stamp_path = argv[5];
    const char *log = getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "/dev/null";
    long total = warmup + count;

    PGconn *c = db_open(url);
    bool commit_ts = commit_ts_on(c);
    if (setenv("BENCH_STAMPS", stamp_path, 1) < 0)
        die("setenv: %s", strerror(errno));
    pid_t pid = spawn(argv + 7, log);
    unsetenv("BENCH_STAMPS");
    free(wait_registered(c, pid));
    sleep_us(500000); /* idle: start-up statements are done */

    int64_t *ids = calloc((size_t)total, sizeof *ids);
    int64_t *xids = calloc((size_t)total, sizeof *xids);
    int64_t *rtt = calloc((size_t)total, sizeof *rtt);
    if (!ids || !xids || !rtt)
        die("out of memory");
    int64_t period = 1000000 / rate;
    int64_t t0 = mono_us() + 10000;
    for (long i = 0; i < total; i++) {
        sleep_until_mono(t0 + i * period);
        /* what runner_enqueue() runs, plus the transaction id for the commit time */
        int64_t a = mono_us();
        PGresult *r = q(c, "SELECT runner.enqueue('noop'), pg_current_xact_id()::text", 0, NULL);
        rtt[i] = mono_us() - a;
        ids[i] = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        xids[i] = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
    }
    bool done = wait_all_done(c, 10000);
    stop(pid, -1, "runner");
    if (!done)
        die("latency jobs not finished within 10 s of the last enqueue");

    /* handler start stamps, by job id */
    FILE *f = fopen(stamp_path, "r");
    if (!f)
        die("%s: %s", stamp_path, strerror(errno));
    id_us *st = calloc((size_t)total, sizeof *st);
    if (!st)
        die("out of memory");
    size_t nst = 0;
    long long sid, sus;
    while (nst < (size_t)total && fscanf(f, "%lld %lld", &sid, &sus) == 2)
        st[nst++] = (id_us){.id = sid, .us = sus};
    fclose(f);
    qsort(st, nst, sizeof *st, cmp_id);

    char *a_ids = int_array(ids + warmup, (size_t)count);
    char *a_xids = int_array(xids + warmup, (size_t)count);
    const char *params[] = {a_ids, a_xids, commit_ts ? "t" : "f"};
    PGresult *r = q(c,
                    "SELECT j.id, (extract(epoch FROM j.created_at) * 1000000)::bigint,"
                    "       (extract(epoch FROM j.started_at) * 1000000)::bigint,"
                    "       CASE WHEN $3::bool THEN (extract(epoch FROM"
                    "         pg_xact_commit_timestamp(x.xid::text::xid)) * 1000000)::bigint END"
                    "  FROM unnest($1::bigint[], $2::bigint[]) AS x(id, xid)"
                    "  JOIN runner.jobs j USING (id)"
                    " WHERE j.state = 'completed' ORDER BY j.id",
                    3, params);
    free(a_ids);
    free(a_xids);
    size_t nrows = (size_t)PQntuples(r);
    if (nrows != (size_t)count)
        die("%zu of %ld latency jobs completed", nrows, count);
    int64_t *claim = calloc(nrows, sizeof *claim);
    int64_t *handler = calloc(nrows, sizeof *handler);
    int64_t *enq = calloc(nrows, sizeof *enq);
    int64_t *to_commit = calloc(nrows, sizeof *to_commit);
    int64_t *commit_to_claim = calloc(nrows, sizeof *commit_to_claim);
    int64_t *claim_to_handler = calloc(nrows, sizeof *claim_to_handler);
    if (!claim || !handler || !enq || !to_commit || !commit_to_claim || !claim_to_handler)
        die("out of memory");
    size_t nhandler = 0, ncommit = 0;
    for (size_t i = 0; i < nrows; i++) {
        int64_t id = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        int64_t created = strtoll(PQgetvalue(r, (int)i, 1), NULL, 10);
        int64_t started = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
        claim[i] = started - created;
        id_us key = {.id = id};
        const id_us *hit = bsearch(&key, st, nst, sizeof *st, cmp_id);
        if (hit) {
            handler[nhandler] = hit->us - created;
            claim_to_handler[nhandler++] = hit->us - started;
        }
        if (!PQgetisnull(r, (int)i, 3)) {
            int64_t committed = strtoll(PQgetvalue(r, (int)i, 3), NULL, 10);
            to_commit[ncommit] = committed - created;
            commit_to_claim[ncommit++] = started - committed;
        }
    }
    PQclear(r);
    PQfinish(c);
    for (long i = warmup; i < total; i++)
        enq[i - warmup] = rtt[i];
    if (nhandler != nrows)
        die("handler stamps for %zu of %zu jobs", nhandler, nrows);
    print_dist("claim", claim, nrows);
    print_dist("handler", handler, nhandler);
    print_dist("enqueue_rtt", enq, (size_t)count);
    print_dist("claim_to_handler", claim_to_handler, nhandler);
    if (ncommit == nrows) {
        print_dist("created_to_commit", to_commit, ncommit);
        print_dist("commit_to_claim", commit_to_claim, ncommit);
    }
    free(ids);
    free(xids);
    free(rtt);
    free(st);
    free(claim);
    free(handler);
    free(enq);
    free(to_commit);
    free(commit_to_claim);
    free(claim_to_handler);
    return 0;
}

/* ---- deploy ---- */

/* feed enqueues n jobs of kind at rate per second, one statement each. */
static void feed(PGconn *c, const char *kind, long n, long rate)
{
    int64_t period = 1000000 / rate;
    int64_t t0 = mono_us();
    for (long i = 0; i < n; i++) {
        sleep_until_mono(t0 + i * period);
        char err[RUNNER_ERR_LEN];
        int64_t id;
        if (runner_enqueue(c, kind, NULL, NULL, &id, err, sizeof err) != RUNNER_OK)
            die("enqueue: %s", err);
    }
}

/* snapshot_running saves the jobs that instance a runs now into a temporary table
 * bench_snap (id, lease_expires_at) and returns how many there are. */
static long snapshot_running(PGconn *c, const char *a)
{
    const char *p[] = {a};
    PQclear(q(c, "DROP TABLE IF EXISTS bench_snap", 0, NULL));
    PQclear(q(c,
              "CREATE TEMP TABLE bench_snap AS SELECT id, lease_expires_at FROM runner.jobs"
              " WHERE state = 'running' AND lease_owner = $1::uuid",
              1, p));
    return (long)q_int64(c, "SELECT count(*) FROM bench_snap", 0, NULL);
}

static int cmd_deploy(int argc, char **argv)
{
    if (argc < 9 || strcmp(argv[7], "--") != 0)
        die("usage: bench deploy term|kill URL RATE FEED_S KIND LOG_DIR -- A_ARGV... -- "
            "B_ARGV...");
    bool term = strcmp(argv[1], "term") == 0;
    if (!term && strcmp(argv[1], "kill") != 0)
        die("deploy mode must be term or kill");
    const char *url = argv[2];
    long rate = parse_long(argv[3], "RATE", 1, 1000);
    long feed_s = parse_long(argv[4], "FEED_S", 1, 600);
    const char *kind = argv[5], *logdir = argv[6];
    char **a_argv = argv + 8, **b_argv = NULL;
    for (int i = 8; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            argv[i] = NULL;
            b_argv = argv + i + 1;
            break;
        }
    }
    if (!b_argv || !*b_argv || !*a_argv)
        die("deploy needs the argv of runner A and of runner B");

    char log_a[4096], log_b[4096];
    snprintf(log_a, sizeof log_a, "%s/runner-a.log", logdir);
    snprintf(log_b, sizeof log_b, "%s/runner-b.log", logdir);
    PGconn *c = db_open(url);
    pid_t a = spawn(a_argv, log_a);
    char *a_id = wait_registered(c, a);
    pid_t b = spawn(b_argv, log_b);
    free(wait_registered(c, b));

    /* the seed workload; the feeder stops at the signal so that the peer's free workers
     * measure the hand-over, not a backlog */
    feed(c, kind, rate * feed_s, rate);
    long running = snapshot_running(c, a_id);
    const char *pa[] = {a_id};

    if (term) {
        int64_t t_real = real_us();
        kill(a, SIGTERM);
        int status = 0;
        int64_t exit_us = wait_exit(a, STOP_TIMEOUT_MS, &status);
        if (exit_us < 0)
            die("runner A did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        /* wait (bounded) until the peer has started every job A released */
        static const char released_sql[] =
            "SELECT j.id, j.state, j.started_at, (e->>'at')::timestamptz AS released_at"
            "  FROM runner.jobs j, jsonb_array_elements(j.errors) e"
            " WHERE e->>'outcome' = 'released' AND e->>'instance' = $1";
        char pending_sql[512];
        snprintf(pending_sql, sizeof pending_sql,
                 "SELECT count(*) FROM (%s) r WHERE r.state = 'available'", released_sql);
        int64_t deadline = mono_us() + 5000000;
        while (mono_us() < deadline && q_int64(c, pending_sql, 1, pa) > 0)
            sleep_us(20000);
        char stats_sql[2048];
        snprintf(stats_sql, sizeof stats_sql,
                 "WITH r AS (%s),"
                 " d AS (SELECT extract(epoch FROM started_at - released_at) * 1000 AS ms"
                 "         FROM r WHERE started_at > released_at)"
                 " SELECT (SELECT count(*) FROM r),"
                 "  (SELECT count(*) FROM d),"
                 "  (SELECT max(ms) FROM d),"
                 "  (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms) FROM d),"
                 "  (SELECT count(*) FROM bench_snap s JOIN runner.jobs j USING (id)"
                 "    WHERE j.state = 'completed' AND NOT EXISTS (SELECT 1 FROM r"
                 "      WHERE r.id = s.id)),"
                 "  (SELECT extract(epoch FROM min(released_at)) * 1000000 FROM r)",
                 released_sql);
        PGresult *r = q(c, stats_sql, 1, pa);
        long long released = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        long long restarted = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        double restart_max = PQgetisnull(r, 0, 2) ? -1 : strtod(PQgetvalue(r, 0, 2), NULL);
        double restart_p50 = PQgetisnull(r, 0, 3) ? -1 : strtod(PQgetvalue(r, 0, 3), NULL);
        long long completed = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        double release_after =
            PQgetisnull(r, 0, 5) ? -1 : (strtod(PQgetvalue(r, 0, 5), NULL) - (double)t_real) / 1e6;
        PQclear(r);
        stop(b, 200, "runner B");
        PQfinish(c);
        printf("RESULT mode=term running_at_signal=%ld exit_s=%.3f exit_code=%d "
               "completed_in_grace=%lld released=%lld restarted=%lld restart_ms_max=%.1f "
               "restart_ms_p50=%.1f release_after_s=%.3f\n",
               running, (double)exit_us / 1e6, code, completed, released, restarted, restart_max,
               restart_p50, release_after);
        free(a_id);
        return 0;
    }

    char kill_at[32];
    int64_t t_kill = real_us();
    kill(a, SIGKILL);
    int status;
    wait_exit(a, STOP_TIMEOUT_MS, &status);
    snprintf(kill_at, sizeof kill_at, "%" PRId64, t_kill);
    /* bounded wait until none of A's jobs is still running under A */
    int64_t deadline = mono_us() + 30000000;
    while (mono_us() < deadline &&
           q_int64(c,
                   "SELECT count(*) FROM bench_snap s JOIN runner.jobs j USING (id)"
                   " WHERE j.state = 'running' AND j.lease_owner = $1::uuid",
                   1, pa) > 0)
        sleep_us(20000);
    /* then until the peer has started them again */
    deadline = mono_us() + 5000000;
    while (mono_us() < deadline &&
           q_int64(c,
                   "SELECT count(*) FROM bench_snap s JOIN runner.jobs j USING (id)"
                   " WHERE j.state = 'available'",
                   0, NULL) > 0)
        sleep_us(20000);
    const char *pk[] = {kill_at};
    PGresult *r =
        q(c,
          "WITH k AS (SELECT to_timestamp($1::bigint / 1e6) AS at),"
          " r AS (SELECT s.id, s.lease_expires_at, j.started_at, j.state,"
          "         (SELECT max((e->>'at')::timestamptz) FROM jsonb_array_elements(j.errors) e"
          "           WHERE e->>'outcome' = 'rescued') AS rescued_at"
          "         FROM bench_snap s JOIN runner.jobs j USING (id))"
          " SELECT count(*), count(rescued_at),"
          "   extract(epoch FROM max(rescued_at) - (SELECT at FROM k)),"
          "   extract(epoch FROM min(rescued_at) - (SELECT at FROM k)),"
          "   extract(epoch FROM max(started_at) FILTER (WHERE started_at > rescued_at)"
          "                      - (SELECT at FROM k)),"
          "   count(*) FILTER (WHERE started_at > rescued_at),"
          "   extract(epoch FROM max(rescued_at - lease_expires_at)),"
          "   extract(epoch FROM max(lease_expires_at) - (SELECT at FROM k))"
          "  FROM r",
          1, pk);
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    long long rescued = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    double rescue_max = strtod(PQgetvalue(r, 0, 2), NULL);
    double rescue_min = strtod(PQgetvalue(r, 0, 3), NULL);
    double restart_max = strtod(PQgetvalue(r, 0, 4), NULL);
    long long restarted = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    double detect_max = strtod(PQgetvalue(r, 0, 6), NULL);
    double expiry_max = strtod(PQgetvalue(r, 0, 7), NULL);
    PQclear(r);
    stop(b, 200, "runner B");
    PQfinish(c);
    printf("RESULT mode=kill running_at_signal=%lld rescued=%lld restarted=%lld "
           "rescue_s_max=%.3f rescue_s_min=%.3f restart_s_max=%.3f "
           "rescue_after_expiry_s_max=%.3f lease_left_s_max=%.3f\n",
           n, rescued, restarted, rescue_max, rescue_min, restart_max, detect_max, expiry_max);
    free(a_id);
    return 0;
}

/* ---- hotfix ---- */

/* The hotfix figure: one runner works a worker kind fed at RATE jobs/s for PRE_S + POST_S
 * seconds; after PRE_S the new worker script (NEW_SCRIPT) is renamed over SCRIPT and
 * NEW_CONFIG over CONFIG, then the runner gets SIGHUP (reload), or SIGTERM and, once it
 * has exited, a new runner with the same argv starts (restart). The feeder runs on its
 * own thread and connection, so it never pauses for the deploy. The workers append
 * "start ID VERSION" and "done ID VERSION" to EFFECTS (bench.sh's scripts). */

struct feeder {
    const char *url, *kind;
    long n, rate;
    long fed;
    int64_t t0_real_us; /* CLOCK_REALTIME at the first enqueue */
};

static void *feeder_main(void *arg)
{
    struct feeder *f = arg;
    PGconn *c = db_open(f->url);
    int64_t period = 1000000 / f->rate;
    int64_t t0 = mono_us();
    f->t0_real_us = real_us();
    for (long i = 0; i < f->n; i++) {
        sleep_until_mono(t0 + i * period);
        char err[RUNNER_ERR_LEN];
        int64_t id;
        if (runner_enqueue(c, f->kind, NULL, NULL, &id, err, sizeof err) != RUNNER_OK)
            die("enqueue: %s", err);
        __atomic_store_n(&f->fed, i + 1, __ATOMIC_RELEASE);
    }
    PQfinish(c);
    return NULL;
}

/* effects read back: per job id, how many starts and dones, and the last start's version. */
struct effects {
    long max_id;
    int *starts, *dones;
    char *last_ver; /* '1', '2' or 0 */
};

static void read_effects(const char *path, long max_id, struct effects *e)
{
    e->max_id = max_id;
    e->starts = calloc((size_t)max_id + 1, sizeof *e->starts);
    e->dones = calloc((size_t)max_id + 1, sizeof *e->dones);
    e->last_ver = calloc((size_t)max_id + 1, 1);
    if (!e->starts || !e->dones || !e->last_ver)
        die("out of memory");
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    char ev[16], ver[16];
    long id;
    while (fscanf(f, "%15s %ld %15s", ev, &id, ver) == 3) {
        if (id < 1 || id > max_id)
            die("%s: job id %ld out of range", path, id);
        if (strcmp(ev, "start") == 0) {
            e->starts[id]++;
            e->last_ver[id] = ver[strlen(ver) - 1];
        } else if (strcmp(ev, "done") == 0) {
            e->dones[id]++;
        }
    }
    fclose(f);
}

/* ids_where lists "{id,...}" of the ids whose last start ran version v ('1' or '2'), or of
 * every id with a done line (v = 'd'). */
static char *ids_where(const struct effects *e, char v)
{
    int64_t *ids = calloc((size_t)e->max_id + 1, sizeof *ids);
    if (!ids)
        die("out of memory");
    size_t n = 0;
    for (long id = 1; id <= e->max_id; id++)
        if ((v == 'd' && e->dones[id] > 0) || (v != 'd' && e->last_ver[id] == v))
            ids[n++] = id;
    char *out = int_array(ids, n);
    free(ids);
    return out;
}

static double field_or(PGresult *r, int col, double dflt)
{
    return PQgetisnull(r, 0, col) ? dflt : strtod(PQgetvalue(r, 0, col), NULL);
}

static int cmd_hotfix(int argc, char **argv)
{
    if (argc < 15 || strcmp(argv[13], "--") != 0)
        die("usage: bench hotfix reload|restart URL RATE PRE_S POST_S KIND EFFECTS SCRIPT "
            "NEW_SCRIPT CONFIG NEW_CONFIG LOG_DIR -- RUNNER_ARGV...");
    bool reload = strcmp(argv[1], "reload") == 0;
    if (!reload && strcmp(argv[1], "restart") != 0)
        die("hotfix mode must be reload or restart");
    const char *url = argv[2];
    long rate = parse_long(argv[3], "RATE", 1, 1000);
    long pre_s = parse_long(argv[4], "PRE_S", 5, 600);
    long post_s = parse_long(argv[5], "POST_S", 5, 600);
    const char *kind = argv[6], *effects = argv[7], *script = argv[8], *new_script = argv[9];
    const char *config = argv[10], *new_config = argv[11], *logdir = argv[12];
    char **runner_argv = argv + 14;

    char log_a[4096], log_b[4096];
    snprintf(log_a, sizeof log_a, "%s/runner-a.log", logdir);
    snprintf(log_b, sizeof log_b, "%s/runner-b.log", logdir);
    if (setenv("HOTFIX_EFFECTS", effects, 1) < 0)
        die("setenv: %s", strerror(errno));
    PGconn *c = db_open(url);
    pid_t a = spawn(runner_argv, log_a);
    free(wait_registered(c, a));

    struct feeder fd = {.url = url, .kind = kind, .n = rate * (pre_s + post_s), .rate = rate};
    pthread_t feeder;
    if (pthread_create(&feeder, NULL, feeder_main, &fd) != 0)
        die("pthread_create failed");
    sleep_us(pre_s * 1000000);

    /* the deploy: the new version on disk, then the signal */
    if (rename(new_script, script) < 0)
        die("rename %s: %s", new_script, strerror(errno));
    if (rename(new_config, config) < 0)
        die("rename %s: %s", new_config, strerror(errno));
    int64_t t_sig = real_us();
    double exit_s = -1;
    int exit_code = 0;
    pid_t b = 0;
    if (reload) {
        kill(a, SIGHUP);
    } else {
        kill(a, SIGTERM);
        int status = 0;
        int64_t us = wait_exit(a, STOP_TIMEOUT_MS, &status);
        if (us < 0)
            die("the runner did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
        exit_s = (double)us / 1e6;
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        b = spawn(runner_argv, log_b);
    }
    pthread_join(feeder, NULL);
    bool done = wait_all_done(c, 60000);
    if (reload)
        stop(a, -1, "runner");
    else
        stop(b, -1, "new runner");
    if (!done)
        die("hotfix jobs not finished within 60 s of the last enqueue");

    long max_id = (long)q_int64(c, "SELECT coalesce(max(id), 0) FROM runner.jobs", 0, NULL);
    struct effects e;
    read_effects(effects, max_id, &e);
    long twice = 0, restarted = 0;
    for (long id = 1; id <= max_id; id++) {
        twice += e.dones[id] > 1;
        restarted += e.starts[id] > 1;
    }
    char *v1 = ids_where(&e, '1'), *v2 = ids_where(&e, '2'), *dn = ids_where(&e, 'd');
    char sig[32], t0[32];
    snprintf(sig, sizeof sig, "%" PRId64, t_sig);
    snprintf(t0, sizeof t0, "%" PRId64, fd.t0_real_us);
    const char *params[] = {sig, t0, v1, v2, dn};
    /* steady state: jobs created from 4 s after the first enqueue (the processes have
     * started) until 1 s before the signal; across the deploy: created from 1 s before the signal to
     * 4 s after it (every job the deploy could delay) */
    PGresult *r =
        q(c,
          "WITH k AS (SELECT to_timestamp($1::bigint / 1e6) AS sig,"
          "                  to_timestamp($2::bigint / 1e6) AS t0),"
          " w AS (SELECT j.*, extract(epoch FROM j.started_at - j.created_at) * 1000 AS ms"
          "         FROM runner.jobs j)"
          " SELECT (SELECT count(*) FROM w),"
          "  (SELECT count(*) FROM w WHERE state <> 'completed' OR NOT (id = ANY($5::bigint[]))),"
          "  (SELECT count(*) FROM w WHERE attempt > 1),"
          "  (SELECT max(ms) FROM w, k WHERE created_at >= k.t0 + interval '4 s'"
          "     AND created_at < k.sig - interval '1 s'),"
          "  (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY ms) FROM w, k"
          "     WHERE created_at >= k.t0 + interval '4 s'"
          "       AND created_at < k.sig - interval '1 s'),"
          "  (SELECT max(ms) FROM w, k WHERE created_at >= k.sig - interval '1 s'"
          "     AND created_at < k.sig + interval '4 s'),"
          "  (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY ms) FROM w, k"
          "     WHERE created_at >= k.sig - interval '1 s' AND created_at < k.sig + interval '4 s'),"
          "  (SELECT extract(epoch FROM max(started_at) - k.sig) FROM w, k"
          "     WHERE id = ANY($3::bigint[]) GROUP BY k.sig),"
          "  (SELECT extract(epoch FROM min(started_at) - k.sig) FROM w, k"
          "     WHERE id = ANY($4::bigint[]) GROUP BY k.sig),"
          "  (SELECT extract(epoch FROM max(finished_at) - k.sig) FROM w, k"
          "     WHERE id = ANY($3::bigint[]) GROUP BY k.sig),"
          "  (SELECT count(*) FROM w, k WHERE id = ANY($3::bigint[]) AND started_at > k.sig),"
          "  (SELECT count(*) FROM w, k WHERE created_at < k.sig AND started_at > k.sig)",
          5, params);
    long long jobs = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    long long lost = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    long long retried = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    double steady_max = field_or(r, 3, -1), steady_p99 = field_or(r, 4, -1);
    double across_max = field_or(r, 5, -1), across_p99 = field_or(r, 6, -1);
    double v1_last_start = field_or(r, 7, -1e9), v2_first = field_or(r, 8, -1);
    double v1_gone = field_or(r, 9, -1);
    long long v1_after = strtoll(PQgetvalue(r, 0, 10), NULL, 10);
    PQclear(r);
    PQfinish(c);
    free(v1);
    free(v2);
    free(dn);
    if (jobs != fd.fed)
        die("%lld jobs in the table, %ld enqueued", jobs, fd.fed);
    /* every job runs the new version from the later of: the last start of an old-version
     * job, the first start of a new-version one */
    double sw = v1_last_start > v2_first ? v1_last_start : v2_first;
    if (sw < 0)
        sw = 0;
    printf("RESULT mode=%s jobs=%lld lost=%lld run_twice=%ld restarted=%ld retried=%lld "
           "steady_wait_ms_max=%.1f steady_wait_ms_p99=%.1f deploy_wait_ms_max=%.1f "
           "deploy_wait_ms_p99=%.1f new_version_s=%.3f first_new_s=%.3f old_gone_s=%.3f "
           "old_started_after=%lld exit_s=%.3f exit_code=%d\n",
           reload ? "reload" : "restart", jobs, lost, twice, restarted, retried, steady_max,
           steady_p99, across_max, across_p99, sw, v2_first, v1_gone, v1_after, exit_s,
           exit_code);
    free(e.starts);
    free(e.dones);
    free(e.last_ver);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        die("usage: bench throughput|latency|deploy|hotfix ...");
    int rc;
    if (strcmp(argv[1], "throughput") == 0)
        rc = cmd_throughput(argc - 1, argv + 1);
    else if (strcmp(argv[1], "latency") == 0)
        rc = cmd_latency(argc - 1, argv + 1);
    else if (strcmp(argv[1], "deploy") == 0)
        rc = cmd_deploy(argc - 1, argv + 1);
    else if (strcmp(argv[1], "hotfix") == 0)
        rc = cmd_hotfix(argc - 1, argv + 1);
    else
        die("unknown command \"%s\"", argv[1]);
    kill_children();
    return rc;
}
