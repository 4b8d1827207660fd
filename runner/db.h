/* db.h - PostgreSQL connections: connect with a deadline, run parameterized statements
 * without ever blocking past a deadline, and describe errors without secrets. */
#ifndef RUNNER_DB_H
#define RUNNER_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SQLSTATE 25006 read_only_sql_transaction: a write on a standby or on a server with
 * default_transaction_read_only. Statements failing with it report *broken. */
#define DB_SQLSTATE_READ_ONLY "25006"

/* Called for every NOTIFY that arrives while a statement runs or the loop waits. */
typedef void (*db_notify_fn)(void *arg, const PGnotify *n);

/* db_connect opens a connection to url (NULL or "": libpq's PG* environment), with
 * application_name set, and returns it in non-blocking mode. Unless the URL or a PG*
 * variable says otherwise it asks for a read-write server (target_session_attrs), TCP
 * keepalives and tcp_user_timeout, and gives each host of the URL timeout_ms (rounded up
 * to whole seconds, at least 2: connect_timeout) before libpq tries the next one. */
PGconn *db_connect(const char *url, const char *application_name, int64_t timeout_ms, char *err,
                   size_t errlen);

/* A connection being opened on a thread of its own (db_connect there), so that a loop
 * that must keep turning (the lease guard, shutdown) is never held by a server that
 * accepts the TCP connection and then does not answer, for up to timeout_ms per host.
 *   db_connect_begin   starts the attempt (NULL: no thread could be started; call
 *                      db_connect instead)
 *   db_connecting_fd   readable once the attempt ended: poll() it with the loop's fds
 *   db_connecting_done the attempt ended (no need to poll)
 *   db_connect_end     after done: the connection (non-blocking, as db_connect's) or
 *                      NULL with err; frees the attempt
 *   db_connect_abandon gives an attempt up at any time (shutdown): its thread closes
 *                      whatever it gets and frees it. */
typedef struct db_connecting db_connecting;
db_connecting *db_connect_begin(const char *url, const char *application_name, int64_t timeout_ms);
int db_connecting_fd(const db_connecting *c);
bool db_connecting_done(db_connecting *c);
PGconn *db_connect_end(db_connecting *c, char *err, size_t errlen);
void db_connect_abandon(db_connecting *c);
/* db_connect_settle waits (at most timeout_ms) until no attempt's thread runs any more,
 * abandoned ones included: a process that exits while one is inside libpq (a SCRAM
 * exchange, TLS) can crash in the library's exit-time clean-up. */
void db_connect_settle(int64_t timeout_ms);

/* db_exec sends one parameterized statement (all params text, NULL = SQL NULL) and waits
 * for its result for at most timeout_ms, with poll() on the socket. Returns the result
 * when its status is PGRES_TUPLES_OK or PGRES_COMMAND_OK; otherwise NULL with err set.
 * *broken is set when the connection can no longer be used (reset it). Notifications
 * arriving meanwhile go to notify_fn (may be NULL). */
PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg, bool *broken,
                  char *err, size_t errlen);

/* One statement of a pipeline: text parameters (NULL element = SQL NULL), explicit
 * types (NULL: inferred). prepared: parse and plan it once per connection (a named
 * statement, cached with the connection) instead of on every execution. */
typedef struct db_stmt {
    const char *sql;
    int nparams;
    const Oid *types;
    const char *const *params;
    bool prepared;
} db_stmt;

#define DB_PIPELINE_MAX 8

/* db_exec_prepared is db_exec for the statements a connection runs again and again: it
 * is parsed and planned once per connection (see db_stmt.prepared). */
PGresult *db_exec_prepared(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg,
                           bool *broken, char *err, size_t errlen);

/* db_exec_pipeline sends n (<= DB_PIPELINE_MAX) statements in one round trip (n > 1: libpq pipeline
 * mode with a single Sync, so the server runs them in one implicit transaction that commits at the
 * Sync, or rolls back as a whole when one of them fails) and returns the last one's
 * result, or NULL with err and sqlstate ("" when there is none, e.g. connection lost) of
 * the first failure. When cancel_fd (-1: none) becomes readable the statement in flight
 * is cancelled on the server (PQcancel); *cancelled tells. */
PGresult *db_exec_pipeline(PGconn *conn, const db_stmt *stmts, int n, int64_t timeout_ms,
                           int cancel_fd, bool *cancelled, bool *broken, char sqlstate[6],
                           char *err, size_t errlen);

/* A call in flight: statements sent on a connection, their results not all read yet, for
 * a loop that waits on several sockets. The statements' sql must live until the call
 * ends (their parameters need not).
 *   db_call_start  sends (a prepared statement's first use parses it in the same trip)
 *   db_call_poll   reads what arrived: call it when poll() reports the connection's
 *                  socket readable (writable while db_call_wants_write)
 *   db_call_done   every result is in (or the call failed)
 *   db_call_end    frees the call and returns the last statement's result, or NULL
 *                  with err; *broken when the connection must be closed
 *   db_call_wait   waits for the rest (at most timeout_ms, then cancels: *broken), then
 *                  ends the call as db_call_end does
 *   db_call_abort  frees an unfinished call after a PQcancel; close the connection. */
typedef struct db_call db_call;
db_call *db_call_start(PGconn *conn, const db_stmt *stmts, int n);
void db_call_poll(db_call *c);
bool db_call_done(const db_call *c);
bool db_call_wants_write(const db_call *c);
PGresult *db_call_end(db_call *c, bool *broken, char *err, size_t errlen);
PGresult *db_call_wait(db_call *c, int64_t timeout_ms, db_notify_fn notify_fn, void *notify_arg,
                       bool *broken, char *err, size_t errlen);
void db_call_abort(db_call *c);

/* db_exec_simple runs a parameterless statement with db_exec and clears the result. */
int db_exec_simple(PGconn *conn, const char *sql, int64_t timeout_ms, char *err, size_t errlen);

/* db_consume reads what the server sent (after poll() said the socket is readable) and
 * hands notifications to notify_fn. Returns -1 when the connection is gone. */
int db_consume(PGconn *conn, db_notify_fn notify_fn, void *notify_arg, char *err, size_t errlen);

/* db_notifies hands notifications libpq already read (during statements sent without
 * a callback) to notify_fn. */
void db_notifies(PGconn *conn, db_notify_fn notify_fn, void *notify_arg);

/* db_result_error writes "message (SQLSTATE xxxxx): detail" for a failed result. */
void db_result_error(const PGresult *res, char *err, size_t errlen);

/* db_describe names the server of a connection for logs: "host:port/dbname", no secrets. */
void db_describe(const PGconn *conn, char *out, size_t outlen);

/* db_int64_array and db_int_array format n values as a PostgreSQL array literal
 * "{1,2,3}" (malloc'd). */
char *db_int64_array(const int64_t *v, size_t n);
char *db_int_array(const int *v, size_t n);
/* db_text_array quotes and escapes each string (NULL -> NULL element). */
char *db_text_array(const char *const *v, size_t n);

#endif
