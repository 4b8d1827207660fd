/* db.c - PostgreSQL connections with deadlines, statement helpers and error text. */
#include "db.h"

#include <errno.h>
#include <libpq-events.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"
#include "log.h"
#include "util.h"

/* strip_newline folds libpq's multi-line messages (newlines, tabs) into one line. */
static void strip_newline(char *s)
{
    char *w = s;
    bool space = false;
    for (const char *r = s; *r; r++) {
        if (*r == '\n' || *r == '\t' || *r == ' ') {
            space = w != s;
            continue;
        }
        if (space)
            *w++ = ' ';
        space = false;
        *w++ = *r;
    }
    *w = '\0';
}

/* on_notice sends server notices (RAISE NOTICE in a job's statement, the FATAL of a
 * terminated backend) to the log instead of libpq's default of printing to stderr;
 * connection loss itself is logged once by whoever notices it. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char line[ERR_LEN];
    snprintf(line, sizeof line, "%s", message);
    strip_newline(line);
    log_event(LOG_DEBUG, "server notice", "notice", line, NULL);
}

/* ---- per-connection statement cache ----
 * Statements sent with .prepared are parsed and planned once per connection: the first
 * use sends a named Parse ahead of the execution in the same round trip, later uses only
 * Bind/Execute. The names live in libpq's instance data of the connection (an event
 * procedure frees them with it), so a connection closed and reopened starts empty. */
#define STMT_CACHE_MAX 32

typedef struct stmt_cache {
    size_t n;
    char *sql[STMT_CACHE_MAX];
} stmt_cache;

static void cache_clear(stmt_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->sql[i]);
    c->n = 0;
}

static int cache_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    if (id == PGEVT_CONNDESTROY || id == PGEVT_CONNRESET) {
        PGconn *conn = id == PGEVT_CONNDESTROY ? ((PGEventConnDestroy *)info)->conn
                                               : ((PGEventConnReset *)info)->conn;
        stmt_cache *c = PQinstanceData(conn, cache_event);
        if (c)
            cache_clear(c);
        if (c && id == PGEVT_CONNDESTROY) {
            free(c);
            PQsetInstanceData(conn, cache_event, NULL);
        }
    }
    return 1;
}

static void cache_attach(PGconn *conn)
{
    if (PQregisterEventProc(conn, cache_event, "runner statement cache", NULL))
        PQsetInstanceData(conn, cache_event, xcalloc(1, sizeof(stmt_cache)));
}

/* cache_find returns the slot of sql in c, or -1 */
static int cache_find(const stmt_cache *c, const char *sql)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->sql[i], sql) == 0)
            return (int)i;
    return -1;
}

static void cache_name(int slot, char *name, size_t len)
{
    snprintf(name, len, "__runner_stmt_%d", slot);
}

/* Connection settings the URL (or libpq's PG* environment, env) may override. A
 * read-write server only: a standby or a server with default_transaction_read_only is
 * refused at connect and libpq tries the next host of a multi-host URL. Keepalives and
 * tcp_user_timeout notice a peer that vanished from the network (a powered-off host, a
 * black-holed route) within about half a minute even while the connection is idle. */
static const struct {
    const char *key, *env, *val;
} conn_defaults[] = {
    {"target_session_attrs", "PGTARGETSESSIONATTRS", "read-write"},
    {"keepalives", NULL, "1"},
    {"keepalives_idle", NULL, "10"},
    {"keepalives_interval", NULL, "5"},
    {"keepalives_count", NULL, "3"},
    {"tcp_user_timeout", NULL, "15000"},
};
#define CONN_DEFAULTS (sizeof conn_defaults / sizeof conn_defaults[0])

PGconn *db_connect(const char *url, const char *application_name, int64_t timeout_ms, char *err,
                   size_t errlen)
{
    const char *keys[CONN_DEFAULTS + 4];
    const char *vals[CONN_DEFAULTS + 4];
    size_t k = 0;
    /* libpq keeps the last value of a repeated key: the defaults go before the URL so
     * that its own settings win, and are left out where a PG* variable sets them */
    for (size_t i = 0; i < CONN_DEFAULTS; i++) {
        if (conn_defaults[i].env && getenv(conn_defaults[i].env))
            continue;
        keys[k] = conn_defaults[i].key;
        vals[k++] = conn_defaults[i].val;
    }
    /* libpq applies connect_timeout to each host (and address) it tries, so one host
     * that does not answer does not use up the time the next ones need */
    char timeout_s[24];
    snprintf(timeout_s, sizeof timeout_s, "%lld",
             (long long)(timeout_ms < 2000 ? 2 : (timeout_ms + 999) / 1000));
    if (!getenv("PGCONNECT_TIMEOUT")) {
        keys[k] = "connect_timeout";
        vals[k++] = timeout_s;
    }
    if (url && *url) {
        keys[k] = "dbname";
        vals[k++] = url;
    }
    keys[k] = "application_name";
    vals[k++] = application_name;
    keys[k] = NULL;
    vals[k] = NULL;

    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn) {
        errf(err, errlen, "could not connect: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK || PQsetnonblocking(conn, 1) != 0) {
        errf(err, errlen, "could not connect: %s", PQerrorMessage(conn));
        strip_newline(err);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    cache_attach(conn);
    return conn;
}

/* ---- connecting on a thread of its own ---- */
struct db_connecting {
    pthread_mutex_t lock;
    int fd; /* eventfd, written once the attempt ended */
    bool done, abandoned;
    char *url, *application_name;
    int64_t timeout_ms;
    PGconn *conn;
    char err[ERR_LEN];
};

static void connecting_free(db_connecting *c)
{
    if (c->conn)
        PQfinish(c->conn);
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c->url);
    free(c->application_name);
    free(c);
}

/* Attempts whose thread has not ended yet: db_connect_settle waits for them. */
static atomic_int connecting_threads;

static void *connecting_main(void *arg)
{
    db_connecting *c = arg;
    char err[ERR_LEN] = "";
    PGconn *conn = db_connect(c->url, c->application_name, c->timeout_ms, err, sizeof err);
    pthread_mutex_lock(&c->lock);
    c->conn = conn;
    snprintf(c->err, sizeof c->err, "%s", err);
    c->done = true;
    bool abandoned = c->abandoned;
    if (!abandoned) {
        /* under the lock: once done is seen, db_connect_end may free c at once, so this
         * thread must not touch c after it unlocks */
        uint64_t one = 1;
        ssize_t n = write(c->fd, &one, sizeof one);
        (void)n;
    }
    pthread_mutex_unlock(&c->lock);
    if (abandoned)
        connecting_free(c);
    atomic_fetch_sub(&connecting_threads, 1);
    return NULL;
}

db_connecting *db_connect_begin(const char *url, const char *application_name, int64_t timeout_ms)
{
    db_connecting *c = xcalloc(1, sizeof *c);
    c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->fd < 0) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->url = url ? xstrdup(url) : NULL;
    c->application_name = xstrdup(application_name);
    c->timeout_ms = timeout_ms;

    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        sigfillset(&all); /* signals belong to the main thread */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        atomic_fetch_add(&connecting_threads, 1);
        rc = pthread_create(&t, &attr, connecting_main, c);
        if (rc != 0)
            atomic_fetch_sub(&connecting_threads, 1);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        connecting_free(c);
        return NULL;
    }
    return c;
}

void db_connect_settle(int64_t timeout_ms)
{
    for (int64_t waited = 0; atomic_load(&connecting_threads) > 0 && waited < timeout_ms;
         waited += 5) {
        struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int db_connecting_fd(const db_connecting *c)
{
    return c->fd;
}

bool db_connecting_done(db_connecting *c)
{
    pthread_mutex_lock(&c->lock);
    bool done = c->done;
    pthread_mutex_unlock(&c->lock);
    return done;
}

PGconn *db_connect_end(db_connecting *c, char *err, size_t errlen)
{
    pthread_mutex_lock(&c->lock);
    if (!c->done) { /* misuse: the thread still owns c, so leave it to the thread */
        c->abandoned = true;
        pthread_mutex_unlock(&c->lock);
        errf(err, errlen, "could not connect: attempt still running");
        return NULL;
    }
    PGconn *conn = c->conn;
    c->conn = NULL;
    if (!conn)
        errf(err, errlen, "%s", c->err);
    pthread_mutex_unlock(&c->lock);
    connecting_free(c);
    return conn;
}

void db_connect_abandon(db_connecting *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    bool done = c->done;
    c->abandoned = true;
    pthread_mutex_unlock(&c->lock);
    if (done)
        connecting_free(c);
}

/* drain_notifies hands queued notifications to fn; without fn they stay queued in libpq
 * for the next caller that has one. */
static void drain_notifies(PGconn *conn, db_notify_fn fn, void *arg)
{
    if (!fn)
        return;
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL) {
        fn(arg, n);
        PQfreemem(n);
    }
}

void db_notifies(PGconn *conn, db_notify_fn notify_fn, void *notify_arg)
{
    drain_notifies(conn, notify_fn, notify_arg);
}

int db_consume(PGconn *conn, db_notify_fn notify_fn, void *notify_arg, char *err, size_t errlen)
{
    if (!PQconsumeInput(conn)) {
        errf(err, errlen, "connection lost: %s", PQerrorMessage(conn));
        strip_newline(err);
        return -1;
    }
    drain_notifies(conn, notify_fn, notify_arg);
    return 0;
}

void db_result_error(const PGresult *res, char *err, size_t errlen)
{
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    if (!msg) {
        errf(err, errlen, "%s", PQresultErrorMessage(res));
        strip_newline(err);
        return;
    }
    if (detail)
        errf(err, errlen, "%s (SQLSTATE %s): %s", msg, state ? state : "?????", detail);
    else
        errf(err, errlen, "%s (SQLSTATE %s)", msg, state ? state : "?????");
}

/* cancel_running asks the server to stop the statement in flight (best effort, off this
 * thread: see cancel_send). */
static void cancel_running(PGconn *conn)
{
    cancel_send(PQgetCancel(conn));
}

/* A message group of a pipeline: a statement's execution, or the Parse that names it
 * first (slot >= 0: the cache slot it fills once the server accepted it). stmt is only
 * used while sending; sql must live until the results are in. */
typedef struct send {
    const db_stmt *stmt;
    const char *sql;
    int slot;
    bool parse;
} send;

/* db_call: statements sent, their results being collected. */
struct db_call {
    PGconn *conn;
    send sends[2 * DB_PIPELINE_MAX];
    int nsends;
    int idx; /* the message group whose results are being read */
    bool pipeline;
    bool done, failed, broken, wants_write;
    PGresult *out;
    char sqlstate[6];
    char err[ERR_LEN];
};

/* plan_sends lists what to send for stmts: cached statements not yet named on this
 * connection get a Parse ahead of them. Returns the number of groups (<= 2 * n). */
static int plan_sends(PGconn *conn, const db_stmt *stmts, int n, send *out)
{
    stmt_cache *c = PQinstanceData(conn, cache_event);
    size_t reserved = c ? c->n : 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int slot = -1;
        if (c && stmts[i].prepared) {
            slot = cache_find(c, stmts[i].sql);
            for (int j = 0; slot < 0 && j < k; j++)
                if (out[j].parse && strcmp(out[j].sql, stmts[i].sql) == 0)
                    slot = out[j].slot;
            if (slot < 0 && reserved < STMT_CACHE_MAX) {
                slot = (int)reserved++;
                out[k++] =
                    (send){.stmt = &stmts[i], .sql = stmts[i].sql, .slot = slot, .parse = true};
            }
        }
        out[k++] = (send){.stmt = &stmts[i], .sql = stmts[i].sql, .slot = slot};
    }
    return k;
}

static int send_one(PGconn *conn, const send *g)
{
    const db_stmt *st = g->stmt;
    if (g->slot < 0)
        return PQsendQueryParams(conn, st->sql, st->nparams, st->types, st->params, NULL, NULL, 0);
    char name[32];
    cache_name(g->slot, name, sizeof name);
    if (g->parse)
        return PQsendPrepare(conn, name, st->sql, st->nparams, st->types);
    return PQsendQueryPrepared(conn, name, st->nparams, st->params, NULL, NULL, 0);
}

/* parsed records a Parse the server accepted in the cache. */
static void parsed(PGconn *conn, const send *g)
{
    stmt_cache *c = PQinstanceData(conn, cache_event);
    if (c && g->parse && (size_t)g->slot == c->n)
        c->sql[c->n++] = xstrdup(g->sql);
}

static void call_lost(db_call *c, const char *what)
{
    PQclear(c->out);
    c->out = NULL;
    c->failed = c->broken = c->done = true;
    errf(c->err, sizeof c->err, "%s: %s", what, PQerrorMessage(c->conn));
    strip_newline(c->err);
}

/* call_start sends the statements (more than one message group: in pipeline mode, with
 * one Sync). A failure to send ends the call at once. */
static void call_start(db_call *c, PGconn *conn, const db_stmt *stmts, int n)
{
    memset(c, 0, sizeof *c);
    c->conn = conn;
    if (PQstatus(conn) != CONNECTION_OK) {
        c->failed = c->broken = c->done = true;
        errf(c->err, sizeof c->err, "connection lost");
        return;
    }
    if (n < 1 || n > DB_PIPELINE_MAX) {
        c->failed = c->done = true;
        errf(c->err, sizeof c->err, "a pipeline takes 1 to %d statements", DB_PIPELINE_MAX);
        return;
    }
    c->nsends = plan_sends(conn, stmts, n, c->sends);
    c->pipeline = c->nsends > 1;
    if (c->pipeline && !PQenterPipelineMode(conn))
        return call_lost(c, "could not send statement");
    for (int i = 0; i < c->nsends; i++)
        if (!send_one(conn, &c->sends[i]))
            return call_lost(c, "could not send statement");
    if (c->pipeline && !PQpipelineSync(conn))
        return call_lost(c, "could not send statement");
}

/* call_result takes one result of the group being read. */
static void call_result(db_call *c, PGresult *res)
{
    const send *g = &c->sends[c->idx < c->nsends ? c->idx : c->nsends - 1];
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_ABORTED) {
        PQclear(res); /* skipped after an earlier statement failed */
    } else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        /* an empty statement (only a comment) succeeds on the server too */
        parsed(c->conn, g);
        if (!c->out && !c->failed && c->idx == c->nsends - 1)
            c->out = res;
        else
            PQclear(res);
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        /* the cache no longer matches the server: a name it lost (someone ran
         * DEALLOCATE), a name someone else took (42P05), or a cached plan whose result
         * type changed (DDL, 0A000). The caller closes the connection and a new one
         * starts with an empty cache. */
        if (g->slot >= 0 && state &&
            (strcmp(state, "26000") == 0 || strcmp(state, "42P05") == 0 ||
             strcmp(state, "0A000") == 0))
            c->broken = true;
        /* a server that turned read-only (default_transaction_read_only, a demoted
         * primary) fails every write the same way: the connection is no use, and a new
         * one (target_session_attrs) finds a read-write host or fails to connect */
        bool read_only = state && strcmp(state, DB_SQLSTATE_READ_ONLY) == 0;
        if (read_only)
            c->broken = true;
        /* an error of libpq's own (no SQLSTATE: "server closed the connection
         * unexpectedly") is the connection's, even while PQstatus still says OK */
        if (!state)
            c->broken = true;
        if (!c->failed) {
            db_result_error(res, c->err, sizeof c->err);
            if (read_only) {
                char why[ERR_LEN];
                snprintf(why, sizeof why, "%s", c->err);
                errf(c->err, sizeof c->err, "server is read-only: %s", why);
            }
            if (state)
                snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state);
        }
        c->failed = true;
        PQclear(c->out);
        c->out = NULL;
        PQclear(res);
    }
}

/* call_step handles everything that has arrived, without blocking; the caller reads the
 * socket (PQconsumeInput) when poll() says so. */
static void call_step(db_call *c)
{
    while (!c->done) {
        int fl = PQflush(c->conn);
        if (fl < 0)
            return call_lost(c, "connection lost");
        c->wants_write = fl == 1;
        if (fl == 1 || PQisBusy(c->conn))
            return;
        PGresult *res = PQgetResult(c->conn);
        bool end = false;
        if (!res) {
            /* the end of one group's results; in a pipeline the Sync ends all */
            end = !c->pipeline;
            c->idx++;
        } else if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            end = true;
        } else {
            call_result(c, res);
        }
        if (!end)
            continue;
        c->done = true;
        if (c->pipeline && !PQexitPipelineMode(c->conn))
            c->broken = true; /* results left over: the connection's state is unknown */
        if (PQstatus(c->conn) != CONNECTION_OK)
            c->broken = true;
        if (!c->failed && !c->out) {
            c->failed = true;
            errf(c->err, sizeof c->err, "statement returned no result");
        }
    }
}

/* call_end hands over the call's outcome. */
static PGresult *call_end(db_call *c, bool *broken, char *sqlstate, char *err, size_t errlen)
{
    *broken = c->broken;
    if (sqlstate)
        snprintf(sqlstate, 6, "%s", c->sqlstate);
    if (c->failed) {
        errf(err, errlen, "%s", c->err);
        return NULL;
    }
    return c->out;
}

/* call_wait drives a call to its end, waiting on its socket, with a deadline and a
 * cancel fd (-1: none). Returns false when the deadline passed: the statement was then
 * cancelled and the connection is in an unknown state. */
static bool call_wait(db_call *c, int64_t timeout_ms, int cancel_fd, bool *cancelled,
                      db_notify_fn notify_fn, void *notify_arg)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (call_step(c); !c->done; call_step(c)) {
        struct pollfd pfd[2] = {
            {.fd = PQsocket(c->conn), .events = c->wants_write ? POLLOUT : POLLIN},
            {.fd = *cancelled ? -1 : cancel_fd, .events = POLLIN}};
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            cancel_running(c->conn);
            PQclear(c->out);
            c->out = NULL;
            c->failed = c->broken = c->done = true;
            errf(c->err, sizeof c->err, "statement timed out after %lld ms", (long long)timeout_ms);
            return false;
        }
        int rc = poll(pfd, 2, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno != EINTR) {
            call_lost(c, "connection lost");
            break;
        }
        if (rc <= 0)
            continue;
        if (pfd[1].revents & POLLIN) {
            *cancelled = true;
            cancel_running(c->conn);
        }
        if (pfd[0].revents && !PQconsumeInput(c->conn)) {
            call_lost(c, "connection lost");
            break;
        }
        drain_notifies(c->conn, notify_fn, notify_arg);
    }
    drain_notifies(c->conn, notify_fn, notify_arg);
    return true;
}

/* exec_full runs statements to their end. See db_exec, db_exec_pipeline. */
static PGresult *exec_full(PGconn *conn, const db_stmt *stmts, int n, int64_t timeout_ms,
                           int cancel_fd, bool *cancelled, db_notify_fn notify_fn, void *notify_arg,
                           bool *broken, char *sqlstate, char *err, size_t errlen)
{
    db_call call;
    call_start(&call, conn, stmts, n);
    call_wait(&call, timeout_ms, cancel_fd, cancelled, notify_fn, notify_arg);
    return call_end(&call, broken, sqlstate, err, errlen);
}

db_call *db_call_start(PGconn *conn, const db_stmt *stmts, int n)
{
    db_call *c = xcalloc(1, sizeof *c);
    call_start(c, conn, stmts, n);
    call_step(c);
    return c;
}

void db_call_poll(db_call *c)
{
    if (!c->done && !PQconsumeInput(c->conn))
        call_lost(c, "connection lost");
    call_step(c);
}

bool db_call_done(const db_call *c)
{
    return c->done;
}

bool db_call_wants_write(const db_call *c)
{
    return c->wants_write;
}

PGresult *db_call_end(db_call *c, bool *broken, char *err, size_t errlen)
{
    PGresult *res = call_end(c, broken, NULL, err, errlen);
    free(c);
    return res;
}

PGresult *db_call_wait(db_call *c, int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg,
                       bool *broken, char *err, size_t errlen)
{
    bool cancelled = false;
    call_wait(c, timeout_ms, -1, &cancelled, notify_fn, notify_arg);
    return db_call_end(c, broken, err, errlen);
}

void db_call_abort(db_call *c)
{
    if (!c->done)
        cancel_running(c->conn);
    PQclear(c->out);
    free(c);
}

PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg, bool *broken,
                  char *err, size_t errlen)
{
    bool cancelled = false;
    const db_stmt stmt = {.sql = sql, .nparams = nparams, .params = params};
    return exec_full(conn, &stmt, 1, timeout_ms, -1, &cancelled, notify_fn, notify_arg, broken,
                     NULL, err, errlen);
}

PGresult *db_exec_prepared(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg,
                           bool *broken, char *err, size_t errlen)
{
    bool cancelled = false;
    const db_stmt stmt = {.sql = sql, .nparams = nparams, .params = params, .prepared = true};
    return exec_full(conn, &stmt, 1, timeout_ms, -1, &cancelled, notify_fn, notify_arg, broken,
                     NULL, err, errlen);
}

PGresult *db_exec_pipeline(PGconn *conn, const db_stmt *stmts, int n, int64_t timeout_ms,
                           int cancel_fd, bool *cancelled, bool *broken, char sqlstate[6],
                           char *err, size_t errlen)
{
    *cancelled = false;
    return exec_full(conn, stmts, n, timeout_ms, cancel_fd, cancelled, NULL, NULL, broken, sqlstate,
                     err, errlen);
}

int db_exec_simple(PGconn *conn, const char *sql, int64_t timeout_ms, char *err, size_t errlen)
{
    bool broken;
    PGresult *res = db_exec(conn, sql, 0, NULL, timeout_ms, NULL, NULL, &broken, err, errlen);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

void db_describe(const PGconn *conn, char *out, size_t outlen)
{
    const char *host = PQhost(conn);
    snprintf(out, outlen, "%s:%s/%s", host && *host ? host : "localhost", PQport(conn), PQdb(conn));
}

/* put_int appends v in decimal (the arrays of a batch are built per job: no printf). */
static void put_int(strbuf *sb, int64_t v)
{
    char digits[24];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        digits[sizeof digits - ++n] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        digits[sizeof digits - ++n] = '-';
    sb_append(sb, digits + sizeof digits - n, n);
}

/* int_array formats n integers of elem bytes each (int or int64_t) as an array
 * literal. */
static char *int_array(const void *v, size_t n, size_t elem)
{
    strbuf sb;
    sb_init(&sb);
    sb_puts(&sb, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_append(&sb, ",", 1);
        put_int(&sb, elem == sizeof(int64_t) ? ((const int64_t *)v)[i] : ((const int *)v)[i]);
    }
    sb_puts(&sb, "}");
    return sb.data;
}

char *db_int64_array(const int64_t *v, size_t n)
{
    return int_array(v, n, sizeof *v);
}

char *db_int_array(const int *v, size_t n)
{
    return int_array(v, n, sizeof *v);
}

char *db_text_array(const char *const *v, size_t n)
{
    strbuf sb;
    sb_init(&sb);
    sb_puts(&sb, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_puts(&sb, ",");
        if (!v[i]) {
            sb_puts(&sb, "NULL");
            continue;
        }
        sb_puts(&sb, "\"");
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                sb_append(&sb, "\\", 1);
            sb_append(&sb, p, 1);
        }
        sb_puts(&sb, "\"");
    }
    sb_puts(&sb, "}");
    return sb.data;
}
