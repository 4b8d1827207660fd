/* test_upkeep.c - the upkeep connection (runner/upkeep.c) against a real server: a
 * statement is sent without waiting and its answer read once the socket says so; one that
 * outlives its deadline is cancelled on the server and the connection opened again; a
 * server that cannot be reached is tried again only after the backoff; and a chore that
 * waits for the connection never keeps an idle loop awake. */
#include <poll.h>
#include <string.h>

#include "harness.h"
#include "chores.h"
#include "upkeep.h"

/* until_ended polls the upkeep's descriptor and reads what arrives until the statement
 * or the attempt to connect in flight ended (at most 10 s): returns upkeep_poll's 1 or
 * -1, or 0 when a connection opened. */
static int until_ended(upkeep *u, PGresult **res, char *err, size_t errlen)
{
    int64_t end = th_now_ms() + 10000;
    while (upkeep_busy(u) && th_now_ms() < end) {
        short events;
        int fd = upkeep_fd(u, &events);
        struct pollfd p = {.fd = fd, .events = events};
        poll(&p, 1, 100);
        int rc = upkeep_poll(u, th_now_ms(), res, err, errlen);
        if (rc != 0)
            return rc;
    }
    th_assert(!upkeep_busy(u), "nothing ended within 10 s");
    return 0;
}

/* open_conn sends until the connection is open (the first send starts opening it). */
static void open_conn(upkeep *u)
{
    int64_t end = th_now_ms() + 10000;
    while (!u->conn && th_now_ms() < end) {
        th_assert(!upkeep_send(u, "SELECT 1", 0, NULL, th_now_ms()), "sent before it was open");
        PGresult *res = NULL;
        char err[256];
        if (!u->connecting)
            th_sleep_ms(20); /* within the backoff */
        else
            th_assert(until_ended(u, &res, err, sizeof err) == 0, "connect: %s", err);
    }
    th_assert(u->conn != NULL, "the upkeep connection did not open");
}

Test(upkeep, answer_read_when_it_arrives, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(false);
    upkeep u;
    upkeep_init(&u, db->url, 5000);
    PGresult *res = NULL;
    char err[256];
    th_assert(!upkeep_send(&u, "SELECT 1", 0, NULL, th_now_ms()), "sent before connecting");
    th_assert(u.connecting != NULL, "the first send did not start opening the connection");
    th_assert_eq(until_ended(&u, &res, err, sizeof err), 0, "the connection opened");
    const char *params[] = {"42"};
    th_assert(upkeep_send(&u, "SELECT $1::int FROM pg_sleep(0.3)", 1, params, th_now_ms()),
              "the send on an open connection");
    th_assert(upkeep_busy(&u), "busy while the statement runs");
    th_assert(!upkeep_send(&u, "SELECT 2", 0, NULL, th_now_ms()), "a second send while busy");
    th_assert_eq(upkeep_poll(&u, th_now_ms(), &res, err, sizeof err), 0,
                 "nothing ended right after the send (the statement sleeps 0.3 s)");
    int rc = until_ended(&u, &res, err, sizeof err);
    th_assert(rc == 1, "the statement's answer: %d, %s", rc, err);
    th_assert(strcmp(PQgetvalue(res, 0, 0), "42") == 0, "the answer is %s", PQgetvalue(res, 0, 0));
    PQclear(res);
    th_assert(!upkeep_busy(&u), "idle after the answer");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE application_name = 'runner upkeep'",
                                NULL),
                 1, "one backend named runner upkeep");
    upkeep_free(&u);
}

Test(upkeep, deadline_cancels_and_reopens, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    th_db *db = th_fresh_db(false);
    upkeep u;
    upkeep_init(&u, db->url, 300);
    open_conn(&u);
    PGresult *res = NULL;
    char err[256];
    th_assert(upkeep_send(&u, "SELECT pg_sleep(30)", 0, NULL, th_now_ms()), "send");
    th_assert_eq(until_ended(&u, &res, err, sizeof err), -1, "the statement timed out");
    th_assert(strstr(err, "no answer within 300 ms") != NULL, "error: %s", err);
    th_assert(u.conn == NULL, "the connection was closed");
    th_expect_until(db->conn, 5000, "the server's statement cancelled",
                    "SELECT count(*) = 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
                    "   AND state = 'active'",
                    NULL);
    open_conn(&u);
    th_assert(upkeep_send(&u, "SELECT 7", 0, NULL, th_now_ms()), "send on the new connection");
    int rc = until_ended(&u, &res, err, sizeof err);
    th_assert(rc == 1, "the answer on the new connection: %d, %s", rc, err);
    PQclear(res);
    upkeep_free(&u);
}

Test(upkeep, unreachable_server_backs_off, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    upkeep u;
    upkeep_init(&u, th_fmt("postgresql:///postgres?host=%s&port=1", th_tmpdir()), 1000);
    PGresult *res = NULL;
    char err[256];
    th_assert(!upkeep_send(&u, "SELECT 1", 0, NULL, th_now_ms()), "sent without a server");
    th_assert_eq(until_ended(&u, &res, err, sizeof err), -1, "the attempt failed");
    th_assert(err[0] != '\0', "no error text");
    int64_t now = th_now_ms();
    th_assert(upkeep_due(&u) > now, "the next attempt is not held back by a backoff");
    th_assert(!upkeep_send(&u, "SELECT 1", 0, NULL, now), "sent without a server");
    th_assert(!upkeep_busy(&u), "a send within the backoff started an attempt");
    upkeep_free(&u);
}

/* A chore waiting to be sent (its connection in backoff) makes no due time of its own
 * for a loop that does not run the chores (draining, or its main connection down): the
 * loop would otherwise wake at once, turn after turn, once the backoff has passed. */
Test(upkeep, waiting_chore_wakes_no_idle_loop, .init = th_setup, .fini = th_teardown,
     .timeout = 30)
{
    config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.retention_ms = 60000;
    chores ch;
    chores_init(&ch, &cfg, th_fmt("postgresql:///postgres?host=%s&port=1", th_tmpdir()), 1000,
                th_now_ms());
    ch.on_upkeep = UPKEEP_PRUNE; /* due, but the upkeep connection is not open */
    ch.upkeep.reconnect_at = th_now_ms() - 1000;
    th_assert(chores_upkeep_due(&ch) == INT64_MAX,
              "a chore not sent yet makes the loop due at %lld (now %lld)",
              (long long)chores_upkeep_due(&ch), (long long)th_now_ms());
    th_assert(chores_due(&ch, false) <= th_now_ms(),
              "a running instance must try to open the connection now");
    chores_free(&ch);
}
