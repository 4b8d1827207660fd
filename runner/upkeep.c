/* upkeep.c - the upkeep connection: the chores' statements that write much and that the
 * loop never waits for, one at a time, on a connection of their own.
 *
 * DESIGN: retention deletes up to a thousand rows per statement, every 100 ms while it is
 * behind; on the main connection every such statement held the next claim back. Here the
 * loop sends it and goes on; poll() wakes it when the answer arrives. A statement that
 * outlives its deadline is cancelled and its connection closed; one opened again later
 * (capped backoff) serves the next. */
#include "upkeep.h"

#include <poll.h>
#include <stdio.h>

#include "backoff.h"
#include "util.h"

#define UPKEEP_CONNECT_TIMEOUT_MS 3000

void upkeep_init(upkeep *u, const char *url, int64_t timeout_ms)
{
    *u = (upkeep){.url = url, .timeout_ms = timeout_ms};
}

/* drop closes the connection (a statement in flight is cancelled) and sets when it may
 * be opened again. */
static void drop(upkeep *u, int64_t now)
{
    if (u->call) {
        db_call_abort(u->call);
        u->call = NULL;
    }
    if (u->conn) {
        PQfinish(u->conn);
        u->conn = NULL;
    }
    u->reconnect_delay = backoff_next_delay(u->reconnect_delay);
    u->reconnect_at = now + backoff_jitter(u->reconnect_delay);
}

void upkeep_free(upkeep *u)
{
    if (u->connecting) { /* its thread closes what it gets */
        db_connect_abandon(u->connecting);
        u->connecting = NULL;
    }
    drop(u, 0);
}

bool upkeep_send(upkeep *u, const char *sql, int nparams, const char *const *params, int64_t now)
{
    if (upkeep_busy(u))
        return false;
    if (!u->conn) {
        if (now < u->reconnect_at)
            return false;
        u->connecting = db_connect_begin(u->url, "runner upkeep", UPKEEP_CONNECT_TIMEOUT_MS);
        if (!u->connecting) /* no thread to be had: try again after the backoff */
            drop(u, now);
        return false;
    }
    const db_stmt stmt = {.sql = sql, .nparams = nparams, .params = params};
    u->call = db_call_start(u->conn, &stmt, 1);
    u->deadline = now + u->timeout_ms;
    return true;
}

int upkeep_poll(upkeep *u, int64_t now, PGresult **res, char *err, size_t errlen)
{
    if (u->connecting && db_connecting_done(u->connecting)) {
        u->conn = db_connect_end(u->connecting, err, errlen);
        u->connecting = NULL;
        if (!u->conn) {
            drop(u, now);
            return -1;
        }
        u->reconnect_delay = 0;
        return 0;
    }
    if (!u->call)
        return 0;
    db_call_poll(u->call);
    if (!db_call_done(u->call)) {
        if (now < u->deadline)
            return 0;
        snprintf(err, errlen, "no answer within %lld ms", (long long)u->timeout_ms);
        drop(u, now);
        return -1;
    }
    bool broken;
    *res = db_call_end(u->call, &broken, err, errlen);
    u->call = NULL;
    if (*res)
        return 1;
    if (broken)
        drop(u, now);
    return -1;
}

int upkeep_fd(const upkeep *u, short *events)
{
    *events = POLLIN;
    if (u->connecting)
        return db_connecting_fd(u->connecting);
    if (!u->call)
        return -1;
    if (db_call_wants_write(u->call))
        *events = POLLOUT;
    return PQsocket(u->conn);
}

int64_t upkeep_due(const upkeep *u)
{
    if (u->call)
        return u->deadline;
    if (u->connecting)
        return INT64_MAX;
    return u->conn ? INT64_MAX : u->reconnect_at;
}
