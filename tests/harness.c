/* harness.c - helpers for the database test suites (see harness.h). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_PARAMS 16
#define TH_MAX_TRACKED 64
/* How long a query keeps retrying while the server restarts. */
#define TH_RECONNECT_MS 30000
/* Most of a runner log that th_dump_logs prints. */
#define TH_LOG_TAIL (64 * 1024)

/* Everything below belongs to the one test running in this process (criterion runs each
 * test in its own process). */
static char *tmpdir;
static int file_counter;
static int db_counter;
static PGconn *admin;
static th_db *dbs[TH_MAX_TRACKED];
static int ndbs;
static th_proc *procs[TH_MAX_TRACKED];
static int nprocs;
static void *kept[1024];
static int nkept;

/* keep records memory that teardown frees. */
static void *keep(void *p)
{
    if (p != NULL && nkept < (int)(sizeof(kept) / sizeof(kept[0])))
        kept[nkept++] = p;
    return p;
}

static char *th_strdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

static char *th_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

static char *th_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *th_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = th_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *th_require_db(void)
{
    const char *url = getenv("RUNNER_TEST_DATABASE_URL");
    if (url == NULL || url[0] == '\0')
        cr_assert_fail("RUNNER_TEST_DATABASE_URL is not set: run the tests with ./dev.sh test "
                       "(or tests/with-postgres.sh)");
    return url;
}

const char *th_runner_bin(void)
{
    const char *bin = getenv("RUNNER_BIN");
    if (bin == NULL || bin[0] == '\0')
        cr_assert_fail("RUNNER_BIN is not set: run the tests through meson test");
    if (access(bin, X_OK) != 0)
        cr_assert_fail("RUNNER_BIN \"%s\" is not executable: %s", bin, strerror(errno));
    return bin;
}

void th_setup(void)
{
    /* The checks run in the test body (th_fresh_db, th_runner_start) so that a missing
     * database shows as a failed test with its reason, not as a crashed setup. */
    tmpdir = NULL;
    nprocs = ndbs = nkept = 0;
}

const char *th_tmpdir(void)
{
    if (tmpdir == NULL) {
        const char *base = getenv("TMPDIR");
        char *tmpl = th_asprintf("%s/runner-test.XXXXXX", base && base[0] ? base : "/tmp");
        if (mkdtemp(tmpl) == NULL)
            cr_assert_fail("could not create a temporary directory: %s", strerror(errno));
        tmpdir = tmpl;
    }
    return tmpdir;
}

const char *th_path(const char *name)
{
    return keep(th_asprintf("%s/%s", th_tmpdir(), name));
}

const char *th_write_file(const char *name, const char *text)
{
    const char *path = th_path(name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        cr_assert_fail("could not write \"%s\": %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    return path;
}

const char *th_write_config(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = th_vasprintf(fmt, ap);
    va_end(ap);
    char name[64];
    snprintf(name, sizeof(name), "runner-%d.yaml", ++file_counter);
    const char *path = th_write_file(name, text);
    free(text);
    return path;
}

char *th_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return keep(th_strdup(""));
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
    }
    buf[len] = '\0';
    fclose(f);
    return keep(buf);
}

/* ---- databases ---- */

/* url_append appends a percent-encoded value. */
static void url_append(char **url, const char *s, bool encode)
{
    size_t len = strlen(*url);
    char *out = realloc(*url, len + strlen(s) * 3 + 1);
    if (out == NULL)
        abort();
    char *p = out + len;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!encode || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~/", c) != NULL) {
            *p++ = (char)c;
        } else {
            sprintf(p, "%%%02X", c);
            p += 3;
        }
    }
    *p = '\0';
    *url = out;
}

/* url_with_dbname turns the base URL (URI or key=value) into a URI for dbname that keeps
 * every other connection parameter given. */
static char *url_with_dbname(const char *base, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &errmsg);
    if (opts == NULL) {
        cr_assert_fail("cannot parse RUNNER_TEST_DATABASE_URL: %s", errmsg ? errmsg : "?");
    }
    char *url = th_strdup("postgresql:///");
    url_append(&url, dbname, true);
    char sep = '?';
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0' || strcmp(o->keyword, "dbname") == 0)
            continue;
        char kv[2] = {sep, '\0'};
        url_append(&url, kv, false);
        url_append(&url, o->keyword, false);
        url_append(&url, "=", false);
        url_append(&url, o->val, true);
        sep = '&';
    }
    PQconninfoFree(opts);
    return url;
}

static void notice_ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *th_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        char *msg = th_strdup(PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("could not connect to the test database: %s", msg);
    }
    PQsetNoticeProcessor(c, notice_ignore, NULL);
    return c;
}

th_db *th_fresh_db(bool migrate)
{
    const char *base = th_require_db();
    if (admin == NULL) {
        admin = th_connect(base);
    }
    th_assert(ndbs < TH_MAX_TRACKED, "too many databases in one test");
    th_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        abort();
    snprintf(db->name, sizeof(db->name), "runner_test_%d_%d", (int)getpid(), ++db_counter);
    char *ident = PQescapeIdentifier(admin, db->name, strlen(db->name));
    char *sql = th_asprintf("CREATE DATABASE %s", ident);
    PQfreemem(ident);
    PGresult *r = PQexec(admin, sql);
    free(sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char *msg = th_strdup(PQresultErrorMessage(r));
        PQclear(r);
        cr_assert_fail("CREATE DATABASE %s failed: %s", db->name, msg);
    }
    PQclear(r);
    dbs[ndbs++] = db;
    db->url = url_with_dbname(base, db->name);

    if (migrate) {
        th_output o = th_run(60000, NULL, "--database-url", db->url, "migrate", NULL);
        th_assert(o.exit_code == 0, "runner migrate failed (exit %d)\nstdout:\n%s\nstderr:\n%s",
                  o.exit_code, o.out, o.err);
    }
    db->conn = th_connect(db->url);
    return db;
}

/* ---- child processes ---- */

enum spawn_flags {
    SPAWN_OWN_GROUP = 1, /* leader of its own process group */
    SPAWN_PDEATHSIG = 2, /* SIGKILLed when the test process dies */
};

static pid_t spawn(const char *const argv[], const char *const env[], const char *out_path,
                   const char *err_path, int flags)
{
    const char *dir = th_tmpdir();
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        cr_assert_fail("fork failed: %s", strerror(errno));
    if (pid == 0) {
        if (flags & SPAWN_OWN_GROUP)
            setpgid(0, 0);
        if (flags & SPAWN_PDEATHSIG) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < NSIG; s++) {
            if (s != SIGKILL && s != SIGSTOP)
                signal(s, SIG_DFL);
        }
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int err = strcmp(out_path, err_path) == 0
                      ? dup(out)
                      : open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        /* No test file descriptors (criterion's pipes, libpq sockets) leak into the child. */
        if (close_range(3, ~0U, 0) != 0) {
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        }
        if (chdir(dir) != 0)
            _exit(126);
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (flags & SPAWN_OWN_GROUP)
        setpgid(pid, pid); /* also in the parent: no race with an early kill(-pid) */
    return pid;
}

static th_proc *track(pid_t pid, const char *log_path)
{
    th_assert(nprocs < TH_MAX_TRACKED, "too many child processes in one test");
    th_proc *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->pid = pid;
    p->log_path = log_path;
    procs[nprocs++] = p;
    return p;
}

th_proc *th_runner_start(const char *url, const char *config, const char *const env[])
{
    char name[64];
    snprintf(name, sizeof(name), "runner-%d.log", ++file_counter);
    const char *log = th_path(name);
    const char *argv[] = {th_runner_bin(), "--config", config, "--database-url", url, "run", NULL};
    pid_t pid = spawn(argv, env, log, log, SPAWN_OWN_GROUP | SPAWN_PDEATHSIG);
    return track(pid, log);
}

th_proc *th_spawn(const char *const argv[], const char *const env[])
{
    char out[64], err[64];
    int n = ++file_counter;
    snprintf(out, sizeof(out), "cmd-%d.out", n);
    snprintf(err, sizeof(err), "cmd-%d.err", n);
    const char *err_path = th_path(err);
    pid_t pid = spawn(argv, env, th_path(out), err_path, SPAWN_OWN_GROUP | SPAWN_PDEATHSIG);
    /* The log shown on failure is stderr: where the runner writes its own lines. */
    return track(pid, err_path);
}

bool th_wait_exit(th_proc *p, int64_t timeout_ms, int64_t *elapsed_ms)
{
    int64_t start = th_now_ms();
    for (;;) {
        if (!p->exited) {
            int st;
            pid_t r = waitpid(p->pid, &st, WNOHANG);
            if (r == p->pid) {
                p->exited = true;
                p->status = st;
            } else if (r < 0 && errno != EINTR) {
                cr_assert_fail("waitpid(%d): %s", (int)p->pid, strerror(errno));
            }
        }
        if (elapsed_ms != NULL)
            *elapsed_ms = th_now_ms() - start;
        if (p->exited)
            return true;
        if (th_now_ms() - start >= timeout_ms)
            return false;
        th_sleep_ms(10);
    }
}

bool th_alive(th_proc *p)
{
    return !th_wait_exit(p, 0, NULL);
}

static char *describe_status(int st)
{
    if (WIFEXITED(st))
        return keep(th_asprintf("exit status %d", WEXITSTATUS(st)));
    if (WIFSIGNALED(st))
        return keep(th_asprintf("killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st))));
    return keep(th_asprintf("wait status 0x%x", st));
}

void th_expect_exit0(th_proc *p, int64_t timeout_ms, const char *what)
{
    th_assert(th_wait_exit(p, timeout_ms, NULL), "%s: runner (pid %d) still running after %lld ms",
              what, (int)p->pid, (long long)timeout_ms);
    th_assert(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0,
              "%s: runner (pid %d) ended with %s, expected exit status 0", what, (int)p->pid,
              describe_status(p->status));
}

void th_signal(th_proc *p, int sig)
{
    th_assert(!p->exited, "cannot send signal %d: runner (pid %d) already exited (%s)", sig,
              (int)p->pid, describe_status(p->status));
    th_assert(kill(p->pid, sig) == 0, "kill(%d, %d): %s", (int)p->pid, sig, strerror(errno));
}

void th_signal_group(th_proc *p, int sig)
{
    th_assert(!p->exited, "cannot send signal %d: runner (pid %d) already exited (%s)", sig,
              (int)p->pid, describe_status(p->status));
    th_assert(kill(-p->pid, sig) == 0, "kill(-%d, %d): %s", (int)p->pid, sig, strerror(errno));
}

th_output th_run(int64_t timeout_ms, const char *const env[], ...)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = th_runner_bin();
    va_list ap;
    va_start(ap, env);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;

    char outname[64], errname[64];
    int k = ++file_counter;
    snprintf(outname, sizeof(outname), "cmd-%d.out", k);
    snprintf(errname, sizeof(errname), "cmd-%d.err", k);
    const char *out_path = th_path(outname), *err_path = th_path(errname);
    int64_t start = th_now_ms();
    pid_t pid = spawn(argv, env, out_path, err_path, SPAWN_OWN_GROUP | SPAWN_PDEATHSIG);
    th_proc *p = track(pid, err_path);

    th_output o = {0};
    if (th_wait_exit(p, timeout_ms, NULL)) {
        o.status = p->status;
        o.exit_code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
    } else {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        th_wait_exit(p, 5000, NULL);
        o.status = p->status;
        o.exit_code = -1;
    }
    o.elapsed_ms = th_now_ms() - start;
    o.out = th_read_file(out_path);
    o.err = th_read_file(err_path);
    return o;
}

/* ---- queries ---- */

static int collect_params(va_list ap, const char **params)
{
    int n = 0;
    const char *p;
    /* A NULL ends the list, so SQL NULL cannot be passed: use the query's own NULLs. */
    while ((p = va_arg(ap, const char *)) != NULL) {
        if (n == TH_MAX_PARAMS)
            cr_assert_fail("more than %d query parameters", TH_MAX_PARAMS);
        params[n++] = p;
    }
    return n;
}

/* lost: the statement failed because the connection did. libpq may report a server
 * gone at once (stopped with -m immediate) in the result and still call the connection
 * OK: a result without a SQLSTATE, or of class 08 or 57P (shutdown), counts too. */
static bool lost(PGconn *conn, const PGresult *r)
{
    if (PQstatus(conn) != CONNECTION_OK || r == NULL)
        return true;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0;
}

/* query runs sql; while the connection is broken (server restarting, backend terminated)
 * it resets it and retries for up to TH_RECONNECT_MS. With tolerate, errors return NULL
 * instead of failing the test. */
static PGresult *query(PGconn *conn, const char *sql, int n, const char **params, bool tolerate)
{
    int64_t deadline = th_now_ms() + TH_RECONNECT_MS;
    for (;;) {
        PGresult *r = NULL;
        if (PQstatus(conn) == CONNECTION_OK)
            r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return r;
        if (lost(conn, r) && !tolerate && th_now_ms() < deadline) {
            PQclear(r);
            th_sleep_ms(100);
            PQreset(conn);
            continue;
        }
        if (PQstatus(conn) != CONNECTION_OK)
            PQreset(conn);
        if (tolerate) {
            PQclear(r);
            return NULL;
        }
        char *msg = keep(th_strdup(r ? PQresultErrorMessage(r) : PQerrorMessage(conn)));
        PQclear(r);
        th_fail("query failed: %s\n%s", sql, msg);
    }
}

static PGresult *query_one(PGconn *conn, const char *sql, int n, const char **params)
{
    PGresult *r = query(conn, sql, n, params, false);
    if (PQntuples(r) != 1 || PQnfields(r) < 1) {
        int rows = PQntuples(r);
        PQclear(r);
        th_fail("query returned %d rows, expected 1: %s", rows, sql);
    }
    return r;
}

int64_t th_query_int64(PGconn *conn, const char *sql, ...)
{
    const char *params[TH_MAX_PARAMS];
    va_list ap;
    va_start(ap, sql);
    int n = collect_params(ap, params);
    va_end(ap);
    PGresult *r = query_one(conn, sql, n, params);
    int64_t v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

char *th_query_text(PGconn *conn, const char *sql, ...)
{
    const char *params[TH_MAX_PARAMS];
    va_list ap;
    va_start(ap, sql);
    int n = collect_params(ap, params);
    va_end(ap);
    PGresult *r = query_one(conn, sql, n, params);
    char *v = PQgetisnull(r, 0, 0) ? NULL : keep(th_strdup(PQgetvalue(r, 0, 0)));
    PQclear(r);
    return v;
}

void th_exec(PGconn *conn, const char *sql, ...)
{
    const char *params[TH_MAX_PARAMS];
    va_list ap;
    va_start(ap, sql);
    int n = collect_params(ap, params);
    va_end(ap);
    PQclear(query(conn, sql, n, params, false));
}

bool th_wait_until(PGconn *conn, int64_t timeout_ms, const char *sql, ...)
{
    const char *params[TH_MAX_PARAMS];
    va_list ap;
    va_start(ap, sql);
    int n = collect_params(ap, params);
    va_end(ap);
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        PGresult *r = query(conn, sql, n, params, true);
        bool ok = r != NULL && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) &&
                  strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (ok)
            return true;
        if (th_now_ms() >= deadline)
            return false;
        th_sleep_ms(50);
    }
}

void th_enqueue_many(PGconn *conn, int n, const char *kind, const char *args_json,
                     const char *queue)
{
    char count[32];
    snprintf(count, sizeof(count), "%d", n);
    int64_t got =
        th_query_int64(conn,
                       "SELECT count(runner.enqueue($1, $2::jsonb, $3)) "
                       "FROM generate_series(1, $4::int)",
                       kind, args_json ? args_json : "{}", queue ? queue : "default", count, NULL);
    th_assert_eq(got, n, "jobs enqueued");
}

/* ---- files of pids and lines ---- */

int th_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '\n')
            n++;
    }
    fclose(f);
    return n;
}

bool th_wait_lines(const char *path, int n, int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_count_lines(path) < n) {
        if (th_now_ms() >= deadline)
            return false;
        th_sleep_ms(20);
    }
    return true;
}

int th_read_pids(const char *path, pid_t *pids, int max)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    long v;
    while (n < max && fscanf(f, "%ld", &v) == 1)
        pids[n++] = (pid_t)v;
    fclose(f);
    return n;
}

bool th_pid_gone(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    /* Orphans are reaped by whatever is pid 1; in a container that may never happen. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

const char *th_pids_file(void)
{
    return th_path(TH_PIDS_FILE);
}

bool th_group_gone(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return kill(-pgid, 0) != 0 && errno == ESRCH;
    bool gone = true;
    struct dirent *e;
    while (gone && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* pid (comm) state ppid pgrp ... ; comm may contain anything but ends at the last ')' */
        const char *rp = strrchr(buf, ')');
        char state;
        long ppid, pgrp;
        if (rp != NULL && sscanf(rp + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 &&
            pgrp == (long)pgid && state != 'Z' && state != 'X')
            gone = false;
    }
    closedir(d);
    return gone;
}

char *th_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = th_vasprintf(fmt, ap);
    va_end(ap);
    return keep(s);
}

/* ---- the server ---- */

static char pair_dir[64];

static void pair_script(const char *args)
{
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    th_assert(root != NULL, "RUNNER_SOURCE_ROOT is not set (run the tests through meson)");
    char *cmd = th_fmt("'%s/tests/pgpair.sh' %s", root, args);
    int rc = system(cmd);
    th_assert(rc == 0, "%s: exit status %d", cmd, rc);
}

const char *th_pair_start(bool sync)
{
    th_assert(pair_dir[0] == '\0', "th_pair_start: the test has a pair already");
    snprintf(pair_dir, sizeof pair_dir, "/tmp/rp.XXXXXX");
    th_assert(mkdtemp(pair_dir) != NULL, "mkdtemp failed: %s", strerror(errno));
    /* with this process's pid, a watchdog destroys the pair should the test be killed */
    pair_script(th_fmt("start %s %s %d", pair_dir, sync ? "sync" : "async", (int)getpid()));
    return pair_dir;
}

void th_pair_ctl(char node, const char *args)
{
    th_assert(pair_dir[0] != '\0', "th_pair_ctl: no pair (th_pair_start)");
    pair_script(th_fmt("ctl %s %c %s", pair_dir, node, args));
}

const char *th_pair_node_url(char node)
{
    return th_fmt("postgresql:///postgres?host=%s/%c&port=5432&user=postgres", pair_dir, node);
}

const char *th_pair_url(char first, char second)
{
    return th_fmt("postgresql:///postgres?host=%s/%c,%s/%c&port=5432,5432&user=postgres"
                  "&target_session_attrs=read-write",
                  pair_dir, first, pair_dir, second);
}

const char *th_pair_datadir(char node)
{
    return th_fmt("%s/%c/data", pair_dir, node);
}

void th_signal_postgres(const char *pgdata, int sig)
{
    char *pidfile = th_read_file(th_fmt("%s/postmaster.pid", pgdata));
    pid_t pm = (pid_t)strtol(pidfile, NULL, 10);
    th_assert(pm > 1, "no postmaster.pid in %s", pgdata);
    if (sig == SIGSTOP)
        kill(pm, sig);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (pid <= 1)
            continue;
        char *stat = th_read_file(th_fmt("/proc/%d/stat", (int)pid));
        const char *paren = strrchr(stat, ')');
        char state;
        int ppid = 0;
        if (paren != NULL && sscanf(paren + 1, " %c %d", &state, &ppid) == 2 && ppid == pm)
            kill(pid, sig);
    }
    if (d != NULL)
        closedir(d);
    if (sig != SIGSTOP)
        kill(pm, sig);
}

static void pair_destroy(void)
{
    if (pair_dir[0] == '\0')
        return;
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    int rc = system(th_fmt("'%s/tests/pgpair.sh' destroy %s", root ? root : ".", pair_dir));
    if (rc != 0)
        fprintf(stderr, "harness: pgpair.sh destroy %s: exit status %d\n", pair_dir, rc);
    pair_dir[0] = '\0';
}

void th_pg_ctl(const char *arg, ...)
{
    const char *pgctl = getenv("RUNNER_TEST_PGCTL");
    const char *pgdata = getenv("RUNNER_TEST_PGDATA");
    const char *pglog = getenv("RUNNER_TEST_PGLOG");
    const char *runas = getenv("RUNNER_TEST_PGRUNAS");
    th_assert(pgctl && *pgctl && pgdata && *pgdata && pglog && *pglog,
              "this test controls the PostgreSQL server itself: run it with tests/with-postgres.sh "
              "(./dev.sh test), not against an external RUNNER_TEST_DATABASE_URL");
    const char *argv[32];
    int n = 0;
    if (runas != NULL && runas[0] != '\0') {
        const char *runuser = "/usr/sbin/runuser";
        if (access(runuser, X_OK) != 0)
            runuser = access("/sbin/runuser", X_OK) == 0 ? "/sbin/runuser" : "/usr/bin/runuser";
        argv[n++] = runuser;
        argv[n++] = "-u";
        argv[n++] = runas;
        argv[n++] = "--";
    }
    argv[n++] = pgctl;
    argv[n++] = "-D";
    argv[n++] = pgdata;
    argv[n++] = "-l";
    argv[n++] = pglog;
    argv[n++] = "-w";
    argv[n++] = "-t";
    argv[n++] = "60";
    argv[n++] = arg;
    va_list ap;
    va_start(ap, arg);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;

    char name[64];
    snprintf(name, sizeof(name), "pg_ctl-%d.out", ++file_counter);
    const char *out = th_path(name);
    /* Not in the test's process group and no PDEATHSIG: the server outlives the test. */
    pid_t pid = spawn(argv, NULL, out, out, 0);
    th_proc p = {.pid = pid};
    if (!th_wait_exit(&p, 90000, NULL)) {
        kill(pid, SIGKILL);
        th_wait_exit(&p, 5000, NULL);
        th_fail("pg_ctl %s did not finish in 90 s:\n%s", arg, th_read_file(out));
    }
    th_assert(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0, "pg_ctl %s failed (%s):\n%s", arg,
              describe_status(p.status), th_read_file(out));
}

/* ---- failure output and teardown ---- */

void th_dump_logs(void)
{
    for (int i = 0; i < nprocs; i++) {
        th_proc *p = procs[i];
        if (p->log_path == NULL)
            continue;
        FILE *f = fopen(p->log_path, "r");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        if (size <= 0) {
            fclose(f);
            continue;
        }
        long from = size > TH_LOG_TAIL ? size - TH_LOG_TAIL : 0;
        fseek(f, from, SEEK_SET);
        fprintf(stderr, "----- %s (pid %d)%s -----\n", p->log_path, (int)p->pid,
                from > 0 ? ", last 64 KiB" : "");
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, stderr);
        fclose(f);
        fprintf(stderr, "----- end of %s -----\n", p->log_path);
    }
    fflush(stderr);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void th_teardown(void)
{
    /* Children first: a runner still holding connections would block DROP DATABASE. */
    for (int i = 0; i < nprocs; i++) {
        th_proc *p = procs[i];
        if (!p->exited) {
            kill(-p->pid, SIGKILL);
            kill(p->pid, SIGKILL);
            if (!th_wait_exit(p, 10000, NULL))
                fprintf(stderr, "harness: pid %d did not die after SIGKILL\n", (int)p->pid);
        }
        free(p);
    }
    nprocs = 0;
    pair_destroy();
    /* Whatever a test recorded in *.pids files (the runner's job children) must be gone
     * too, also when the runner failed to take them down. */
    if (tmpdir != NULL) {
        char *pattern = th_asprintf("%s/%s", tmpdir, TH_PIDS_FILE);
        pid_t pids[4096];
        int n = th_read_pids(pattern, pids, 4096);
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 1)
                continue;
            /* The runner starts each job in its own process group led by the job's pid. */
            if (!th_group_gone(pids[i]))
                kill(-pids[i], SIGKILL);
            if (!th_pid_gone(pids[i]))
                kill(pids[i], SIGKILL);
        }
        free(pattern);
    }
    for (int i = 0; i < ndbs; i++) {
        th_db *db = dbs[i];
        if (db->conn != NULL)
            PQfinish(db->conn);
        if (admin != NULL && PQstatus(admin) != CONNECTION_OK)
            PQreset(admin);
        if (admin != NULL) {
            char *ident = PQescapeIdentifier(admin, db->name, strlen(db->name));
            char *sql = th_asprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
            PQfreemem(ident);
            PGresult *r = PQexec(admin, sql);
            if (PQresultStatus(r) != PGRES_COMMAND_OK && PQstatus(admin) != CONNECTION_OK) {
                /* the server restarted during the test: reconnect once */
                PQclear(r);
                PQreset(admin);
                r = PQexec(admin, sql);
            }
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                fprintf(stderr, "harness: %s: %s", sql, PQresultErrorMessage(r));
            PQclear(r);
            free(sql);
        }
        free(db->url);
        free(db);
    }
    ndbs = 0;
    if (admin != NULL) {
        PQfinish(admin);
        admin = NULL;
    }
    if (tmpdir != NULL) {
        if (getenv("RUNNER_TEST_KEEP") == NULL)
            nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        else
            fprintf(stderr, "harness: kept %s\n", tmpdir);
        free(tmpdir);
        tmpdir = NULL;
    }
    for (int i = 0; i < nkept; i++)
        free(kept[i]);
    nkept = 0;
}

const char *const *th_job_env(void)
{
    static const char *env[4];
    env[0] = th_fmt("EFFECTS=%s", th_path("effects"));
    env[1] = th_fmt("PIDS=%s", th_pids_file());
    env[2] = th_fmt("OKFILE=%s", th_path("ok"));
    env[3] = NULL;
    return env;
}

int64_t th_count(PGconn *conn, const char *sql)
{
    return th_query_int64(conn, sql, NULL);
}
