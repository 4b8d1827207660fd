/* db.c - PostgreSQL connections with deadlines, statement helpers and error text. */
#include "db.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util.h"

static int wait_socket(PGconn *conn, bool for_write, int64_t deadline, char *err, size_t errlen)
{
    struct pollfd pfd = {.fd = PQsocket(conn), .events = for_write ? POLLOUT : POLLIN};
    if (pfd.fd < 0)
        return errf(err, errlen, "connection has no socket");
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return errf(err, errlen, "timed out waiting for the server");
        int rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return errf(err, errlen, "poll: %s", strerror(errno));
    }
}

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

PGconn *db_connect(const char *url, const char *application_name, int64_t timeout_ms, char *err,
                   size_t errlen)
{
    const char *keys[4];
    const char *vals[4];
    int k = 0;
    if (url && *url) {
        keys[k] = "dbname";
        vals[k++] = url;
    }
    keys[k] = "application_name";
    vals[k++] = application_name;
    keys[k] = NULL;
    vals[k] = NULL;

    int64_t deadline = now_ms() + timeout_ms;
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    if (!conn) {
        errf(err, errlen, "could not connect: out of memory");
        return NULL;
    }
    if (PQstatus(conn) == CONNECTION_BAD)
        goto fail;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            goto fail;
        if (wait_socket(conn, st == PGRES_POLLING_WRITING, deadline, err, errlen) < 0) {
            PQfinish(conn);
            return NULL;
        }
        st = PQconnectPoll(conn);
    }
    if (PQsetnonblocking(conn, 1) != 0)
        goto fail;
    PQsetNoticeProcessor(conn, on_notice, NULL);
    return conn;
fail:
    errf(err, errlen, "could not connect: %s", PQerrorMessage(conn));
    strip_newline(err);
    PQfinish(conn);
    return NULL;
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

/* cancel_running asks the server to stop the statement in flight (best effort). */
static void cancel_running(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (c) {
        char buf[256];
        PQcancel(c, buf, sizeof buf);
        PQfreeCancel(c);
    }
}

/* exec_full sends one statement and collects its result; see db_exec. */
static PGresult *exec_full(PGconn *conn, const char *sql, int nparams, const Oid *types,
                           const char *const *params, int64_t timeout_ms, int cancel_fd,
                           bool *cancelled, db_notify_fn notify_fn, void *notify_arg, bool *broken,
                           char *err, size_t errlen)
{
    int64_t deadline = now_ms() + timeout_ms;
    PGresult *out = NULL;
    bool failed = false;
    *broken = false;

    if (PQstatus(conn) != CONNECTION_OK) {
        *broken = true;
        errf(err, errlen, "connection lost");
        return NULL;
    }
    if (!PQsendQueryParams(conn, sql, nparams, types, params, NULL, NULL, 0)) {
        *broken = true;
        errf(err, errlen, "could not send statement: %s", PQerrorMessage(conn));
        strip_newline(err);
        return NULL;
    }
    for (;;) {
        int fl = PQflush(conn);
        if (fl < 0)
            goto lost;
        if (fl == 0 && !PQisBusy(conn)) {
            PGresult *res = PQgetResult(conn);
            if (!res)
                break;
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                if (!out && !failed)
                    out = res;
                else
                    PQclear(res);
            } else {
                if (!failed)
                    db_result_error(res, err, errlen);
                failed = true;
                PQclear(out);
                out = NULL;
                PQclear(res);
            }
            continue;
        }
        struct pollfd pfd[2] = {{.fd = PQsocket(conn), .events = fl == 1 ? POLLOUT : POLLIN},
                                {.fd = *cancelled ? -1 : cancel_fd, .events = POLLIN}};
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            /* A statement that outlives its deadline is cancelled; the connection is
             * then in an unknown state and gets closed by the caller. */
            cancel_running(conn);
            PQclear(out);
            *broken = true;
            return errf(err, errlen, "statement timed out after %lld ms", (long long)timeout_ms),
                   NULL;
        }
        int rc = poll(pfd, 2, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno != EINTR)
            goto lost;
        if (rc <= 0)
            continue;
        if (pfd[1].revents & POLLIN) {
            *cancelled = true;
            cancel_running(conn);
        }
        if (pfd[0].revents && db_consume(conn, notify_fn, notify_arg, err, errlen) < 0) {
            PQclear(out);
            *broken = true;
            return NULL;
        }
    }
    drain_notifies(conn, notify_fn, notify_arg);
    if (PQstatus(conn) != CONNECTION_OK)
        *broken = true;
    if (failed)
        return NULL;
    if (!out)
        errf(err, errlen, "statement returned no result");
    return out;
lost:
    PQclear(out);
    *broken = true;
    errf(err, errlen, "connection lost: %s", PQerrorMessage(conn));
    strip_newline(err);
    return NULL;
}

PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg, bool *broken,
                  char *err, size_t errlen)
{
    bool cancelled = false;
    return exec_full(conn, sql, nparams, NULL, params, timeout_ms, -1, &cancelled, notify_fn,
                     notify_arg, broken, err, errlen);
}

PGresult *db_exec_cancellable(PGconn *conn, const char *sql, int nparams, const Oid *types,
                              const char *const *params, int64_t timeout_ms, int cancel_fd,
                              bool *cancelled, bool *broken, char *err, size_t errlen)
{
    *cancelled = false;
    return exec_full(conn, sql, nparams, types, params, timeout_ms, cancel_fd, cancelled, NULL,
                     NULL, broken, err, errlen);
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

char *db_int64_array(const int64_t *v, size_t n)
{
    strbuf sb;
    sb_init(&sb);
    sb_puts(&sb, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_append(&sb, ",", 1);
        put_int(&sb, v[i]);
    }
    sb_puts(&sb, "}");
    return sb.data;
}

char *db_int_array(const int *v, size_t n)
{
    strbuf sb;
    sb_init(&sb);
    sb_puts(&sb, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_append(&sb, ",", 1);
        put_int(&sb, v[i]);
    }
    sb_puts(&sb, "}");
    return sb.data;
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
