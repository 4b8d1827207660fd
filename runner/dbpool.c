/* dbpool.c - a small pool of connections for handlers, opened on first use.
 *
 * DESIGN: connections are opened lazily (an instance that only runs exec jobs never opens
 * one), bounded by the worker count since each worker holds at most one, and reused only
 * when libpq says they are healthy and idle outside any transaction: a connection left
 * in a failed or unknown transaction state is closed, never handed to the next job, and
 * so is one whose server reported that it turned read-only. A server restart therefore
 * costs each worker one failed attempt at most, then it reconnects. */
#include "dbpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

struct dbpool {
    pthread_mutex_t lock;
    char *url;
    char *application_name;
    int64_t connect_timeout_ms;
    PGconn **idle;
    int nidle;
    int max;
};

dbpool *dbpool_create(const char *url, int max, const char *application_name,
                      int64_t connect_timeout_ms)
{
    dbpool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->url = url ? xstrdup(url) : NULL;
    p->application_name = xstrdup(application_name);
    p->connect_timeout_ms = connect_timeout_ms;
    p->max = max;
    p->idle = xcalloc((size_t)max, sizeof *p->idle);
    return p;
}

void dbpool_destroy(dbpool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i]);
    free(p->idle);
    free(p->url);
    free(p->application_name);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* read_only: the server said (ParameterStatus, PostgreSQL 14 and later report both) that
 * it is a standby now or defaults to read-only transactions: every job on it would fail,
 * so the connection is closed and a new one looks for a read-write host. */
static bool read_only(const PGconn *conn)
{
    const char *ro = PQparameterStatus(conn, "default_transaction_read_only");
    const char *standby = PQparameterStatus(conn, "in_hot_standby");
    return (ro && strcmp(ro, "on") == 0) || (standby && strcmp(standby, "on") == 0);
}

PGconn *dbpool_get(dbpool *p, char *err, size_t errlen)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        PGconn *conn = p->nidle > 0 ? p->idle[--p->nidle] : NULL;
        pthread_mutex_unlock(&p->lock);
        if (!conn)
            break;
        if (!read_only(conn))
            return conn;
        PQfinish(conn);
    }
    return db_connect(p->url, p->application_name, p->connect_timeout_ms, err, errlen);
}

void dbpool_put(dbpool *p, PGconn *conn)
{
    if (!conn)
        return;
    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE ||
        read_only(conn)) {
        PQfinish(conn);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->nidle < p->max) {
        p->idle[p->nidle++] = conn;
        conn = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (conn)
        PQfinish(conn);
}
