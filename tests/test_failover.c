/* test_failover.c - the runner survives its database's own failures: a primary stopped
 * with -m immediate mid-load and its streaming standby promoted behind a multi-host URL
 * (asynchronous and synchronous replication), and a server that turns read-only.
 *
 * Then a server frozen with SIGSTOP for longer than the lease, and a network path that
 * black-holes its traffic (tests/faultproxy.c, loopback TCP), and the TCP keepalive and
 * user-timeout defaults on such a connection.
 *
 * The tests with a standby build their own primary and standby (tests/pgpair.sh: unix
 * sockets in a temporary directory, no TCP) and remove them in .fini, whatever happened. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "faultproxy.h"
#include "harness.h"

enum { N = 300 };

static PGconn *connect_or_fail(const char *url)
{
    PGconn *conn = PQconnectdb(url);
    th_assert(PQstatus(conn) == CONNECTION_OK, "could not connect to %s: %s", url,
              PQerrorMessage(conn));
    return conn;
}

static const char *config(void)
{
    /* poll_interval far above the test's waits: after the failover only a LISTEN made
     * again and the poll right after reconnecting can start jobs in time */
    return th_write_config("worker:\n"
                           "  concurrency: 4\n"
                           "  poll_interval: 60s\n"
                           "  lease: 6s\n"
                           "  heartbeat: 1s\n"
                           "shutdown:\n"
                           "  grace: 5s\n"
                           "  kill_after: 1s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "  effect:\n"
                           "    sql: \"INSERT INTO public.effects (job_id) SELECT $2 FROM "
                           "pg_sleep(0.1 + 0 * length($1::text))\"\n");
}

static void migrate(const char *url)
{
    th_output o = th_run(30000, NULL, "--database-url", url, "migrate", NULL);
    th_assert(o.exit_code == 0, "runner migrate: exit %d: %s", o.exit_code, o.err);
}

/* enqueue_batch enqueues n effect jobs in one statement; returns false when the server
 * did not acknowledge it (the commit's fate is then unknown). */
static bool enqueue_batch(PGconn *conn, int n)
{
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    const char *p[] = {count};
    PGresult *res = PQexecParams(
        conn, "SELECT count(runner.enqueue('effect', '{}'::jsonb)) FROM generate_series(1, $1::int)", 1,
        NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok && PQstatus(conn) != CONNECTION_OK)
        PQreset(conn);
    return ok;
}

static int64_t count_where(PGconn *conn, const char *sql)
{
    return th_query_int64(conn, sql, NULL);
}

/* failover: two instances on the multi-host URL work a stream of sql jobs; the primary is
 * stopped with -m immediate mid-load and the standby promoted. Every acknowledged job
 * completes (all of them with synchronous replication), no effect happens twice, and the
 * first claim on the new primary comes soon after the promotion. */
static void failover(bool sync)
{
    th_pair_start(sync);
    const char *url = th_pair_url('p', 's');
    migrate(url);
    PGconn *conn = connect_or_fail(url);
    th_exec(conn, "CREATE TABLE public.effects (job_id bigint NOT NULL, at timestamptz DEFAULT now())",
            NULL);
    /* wait for the schema on the standby: the test measures the runner, not the replay */
    PGconn *standby = connect_or_fail(th_pair_node_url('s'));
    th_expect_until(standby, 10000, "schema replayed on the standby",
                    "SELECT to_regclass('public.effects') IS NOT NULL", NULL);
    PQfinish(standby);

    th_proc *a = th_runner_start(url, config(), NULL);
    th_proc *b = th_runner_start(url, config(), NULL);
    th_expect_until(conn, 15000, "both instances registered",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running'", NULL);

    int acked = 0, unacked = 0;
    for (int i = 0; i < 10; i++) {
        th_assert(enqueue_batch(conn, 10), "enqueue failed before the failover: %s",
                  PQerrorMessage(conn));
        acked += 10;
    }
    th_expect_until(conn, 30000, "the first 30 jobs completed",
                    "SELECT count(*) >= 30 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert(count_where(conn, "SELECT count(*) FROM runner.jobs WHERE state <> 'completed'") > 0,
              "all jobs were done before the failover: the test proves nothing");

    th_pair_ctl('p', "stop -m immediate -w");
    th_pair_ctl('s', "promote -w");
    PQfinish(conn);
    conn = connect_or_fail(url);
    th_assert_eq(th_query_int64(conn, "SELECT pg_is_in_recovery()::int", NULL), 0,
                 "the test's connection is on the new primary");
    char *promoted = th_query_text(conn, "SELECT now()::text", NULL);

    /* more jobs after the failover: these need the LISTEN on the new primary */
    while (acked + unacked < N) {
        if (enqueue_batch(conn, 10))
            acked += 10;
        else
            unacked += 10;
        th_sleep_ms(20);
    }
    th_expect_until(conn, 30000, "a job claimed on the new primary",
                    "SELECT count(*) > 0 FROM runner.jobs WHERE started_at > $1::timestamptz",
                    promoted, NULL);
    int64_t first_claim_ms = th_query_int64(
        conn,
        "SELECT (extract(epoch FROM min(started_at) - $1::timestamptz) * 1000)::bigint"
        " FROM runner.jobs WHERE started_at > $1::timestamptz",
        promoted, NULL);
    th_expect_until(conn, 30000, "every job that is in the table completed",
                    "SELECT count(*) = 0 FROM runner.jobs WHERE state <> 'completed'", NULL);

    int64_t jobs = count_where(conn, "SELECT count(*) FROM runner.jobs");
    int64_t effects = count_where(conn, "SELECT count(*) FROM public.effects");
    int64_t distinct = count_where(conn, "SELECT count(DISTINCT job_id) FROM public.effects");
    int64_t reclaimed =
        count_where(conn, "SELECT count(*) FROM runner.jobs WHERE attempt > 1");
    fprintf(stderr,
            "failover (%s): promotion to first claim on the new primary %lld ms; %d jobs "
            "acknowledged, %lld in the table (lost %lld), %lld effects of %lld jobs "
            "(duplicates %lld), %lld jobs claimed more than once\n",
            sync ? "synchronous" : "asynchronous", (long long)first_claim_ms, acked,
            (long long)jobs, (long long)(acked - jobs < 0 ? 0 : acked - jobs), (long long)effects,
            (long long)distinct, (long long)(effects - distinct), (long long)reclaimed);
    th_assert_eq(effects, distinct, "sql effects that happened twice: effects vs distinct jobs");
    th_assert_eq(distinct, jobs, "completed jobs without their effect");
    if (sync)
        th_assert(jobs >= acked, "synchronous replication lost %lld acknowledged jobs",
                  (long long)(acked - jobs));
    th_assert(th_alive(a) && th_alive(b), "an instance exited during the failover");

    char *log = th_read_file(a->log_path);
    th_assert(strstr(log, "database connection restored") != NULL,
              "instance a does not log its reconnection:\n%s", log);
    th_signal(a, SIGTERM);
    th_signal(b, SIGTERM);
    th_expect_exit0(a, 15000, "instance a after SIGTERM");
    th_expect_exit0(b, 15000, "instance b after SIGTERM");
    PQfinish(conn);
}

Test(failover, promote_async, .init = th_setup, .fini = th_teardown, .timeout = 180)
{
    failover(false);
}

Test(failover, promote_sync, .init = th_setup, .fini = th_teardown, .timeout = 180)
{
    failover(true);
}

/* count_complaints counts the log lines at warn or error level. */
static int count_complaints(const char *path)
{
    char *log = th_read_file(path);
    int n = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, "level=warn") || strstr(line, "level=error"))
            n++;
    return n;
}

/* A server that turns read-only (default_transaction_read_only, what a demoted primary
 * looks like) while the runner works: the runner treats it as a lost connection, so it
 * complains once instead of on every claim, renewal and rescue, and skips a standby
 * listed first in its URL. When the server is writable again the jobs run. */
Test(failover, read_only_flip, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_pair_start(false);
    const char *url = th_pair_url('s', 'p'); /* the standby first: it must be skipped */
    migrate(url);
    PGconn *conn = connect_or_fail(th_pair_node_url('p'));
    th_exec(conn, "CREATE TABLE public.effects (job_id bigint NOT NULL, at timestamptz DEFAULT now())",
            NULL);
    th_proc *r = th_runner_start(url, config(), NULL);
    th_expect_until(conn, 15000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(conn, 20, "effect", "{}", NULL);
    th_expect_until(conn, 15000, "the first jobs completed",
                    "SELECT count(*) = 20 FROM runner.jobs WHERE state = 'completed'", NULL);
    int before = count_complaints(r->log_path);

    th_exec(conn, "ALTER SYSTEM SET default_transaction_read_only = on", NULL);
    th_exec(conn, "SELECT pg_reload_conf()", NULL);
    PQfinish(conn);
    conn = connect_or_fail(th_pair_node_url('p'));
    th_exec(conn, "SET default_transaction_read_only = off", NULL);
    th_enqueue_many(conn, 20, "effect", "{}", NULL);
    /* heartbeat 1 s: five seconds are some 15 renewals, rescues and claims */
    th_sleep_ms(5000);
    int during = count_complaints(r->log_path) - before;
    th_assert_eq(count_where(conn, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'"), 20,
                 "jobs completed on the read-only server");
    th_assert(during <= 2,
              "%d warnings and errors in 5 s on a read-only server (expected one):\n%s", during,
              th_read_file(r->log_path));
    th_assert(th_alive(r), "the runner exited on a read-only server");

    th_exec(conn, "ALTER SYSTEM RESET default_transaction_read_only", NULL);
    th_exec(conn, "SELECT pg_reload_conf()", NULL);
    th_expect_until(conn, 20000, "jobs completed once the server is writable again",
                    "SELECT count(*) = 40 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(count_where(conn, "SELECT count(*) FROM runner.jobs WHERE attempt > 1"), 0,
                 "jobs that needed a second attempt");
    char *log = th_read_file(r->log_path);
    th_assert(strstr(log, "read-only") != NULL, "the log does not say the server is read-only:\n%s",
              log);
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    PQfinish(conn);
}

/* ---- a frozen server, a black-holed network ----
 * The jobs are exec commands that hold a lock (a directory named after the job) while they
 * run and note a second holder in DOUBLES: two instances never run a job at the same
 * time. A job stopped by its runner (SIGTERM) gives the lock up at once. */
#define LOCKED_JOB                                                                               \
    "    command: [\"/bin/sh\", \"-c\", 'mkdir \"$LOCKS/$RUNNER_JOB_ID\" 2>/dev/null || echo "   \
    "\"$RUNNER_JOB_ID\" >> \"$DOUBLES\"; trap \"rmdir $LOCKS/$RUNNER_JOB_ID; exit 1\" TERM; "     \
    "sleep 1.5 & wait $!; echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"; rmdir "                        \
    "\"$LOCKS/$RUNNER_JOB_ID\"']\n"

#define LEASE_MS 12000

static const char *locked_config(void)
{
    /* lease 12 s, renewals every 1 s: the guard stops jobs 2 s before a lease could run
     * out. The loop's statements time out after 3 s; a connect attempt (main and outcome
     * connection, one after the other) holds the loop for up to 3 s each. */
    return th_write_config("worker:\n"
                           "  concurrency: 4\n"
                           "  poll_interval: 500ms\n"
                           "  lease: 12s\n"
                           "  heartbeat: 1s\n"
                           "shutdown:\n"
                           "  grace: 5s\n"
                           "  kill_after: 1s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "  locked:\n" LOCKED_JOB);
}

static const char *const *locked_env(const char *effects)
{
    static const char *env[5];
    env[0] = th_fmt("LOCKS=%s", th_path("locks"));
    env[1] = th_fmt("DOUBLES=%s", th_path("doubles"));
    env[2] = th_fmt("EFFECTS=%s", th_path(effects));
    env[3] = th_fmt("PIDS=%s", th_pids_file());
    env[4] = NULL;
    return env;
}

/* distinct_lines counts the distinct lines of the files (NULL-terminated list). */
static int distinct_lines(const char *first, ...)
{
    static char seen[1 << 16];
    memset(seen, 0, sizeof seen);
    int n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *f = first; f; f = va_arg(ap, const char *)) {
        char *text = th_read_file(f);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            long id = strtol(line, NULL, 10);
            if (id > 0 && id < (long)sizeof seen && !seen[id]) {
                seen[id] = 1;
                n++;
            }
        }
    }
    va_end(ap);
    return n;
}

static bool frozen;

static void frozen_fini(void)
{
    if (frozen)
        th_signal_postgres(th_pair_datadir('p'), SIGCONT);
    frozen = false;
    th_teardown();
}

/* All processes of the server SIGSTOPped for longer than the lease: the connections stay open
 * and nothing answers. The runner's loop keeps turning, so its lease guard stops the jobs
 * before their leases could run out; once the server is back every job runs to the end,
 * and none ever runs twice at the same time. */
Test(failover, frozen_server, .init = th_setup, .fini = frozen_fini, .timeout = 120)
{
    th_pair_start(false);
    const char *url = th_pair_node_url('p');
    migrate(url);
    PGconn *conn = connect_or_fail(url);
    mkdir(th_path("locks"), 0755);
    th_proc *r = th_runner_start(url, locked_config(), locked_env("effects"));
    th_expect_until(conn, 15000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(conn, 12, "locked", "{}", NULL);
    th_expect_until(conn, 10000, "four jobs running",
                    "SELECT count(*) = 4 FROM runner.jobs WHERE state = 'running'", NULL);
    PQfinish(conn);

    th_signal_postgres(th_pair_datadir('p'), SIGSTOP);
    frozen = true;
    int64_t t0 = th_now_ms();
    /* db_connect_begin: a connection attempt to the frozen server leaves its caller free
     * and ends (failed) after its connect timeout */
    db_connecting *probe = db_connect_begin(url, "runner probe", 3000);
    th_assert(probe != NULL, "db_connect_begin failed");
    th_assert(!db_connecting_done(probe), "db_connect_begin waited for the frozen server");
    bool probe_done = false;
    int64_t guard_ms = -1;
    /* the guard fires 10 s after the last renewal; wait for it while the server is frozen */
    bool guarded = false;
    while ((!guarded || !probe_done) && th_now_ms() - t0 < LEASE_MS + 2000) {
        th_sleep_ms(200);
        char *log = th_read_file(r->log_path);
        if (!guarded && strstr(log, "stopping job before its lease expires") != NULL) {
            guarded = true;
            guard_ms = th_now_ms() - t0;
        }
        probe_done = probe_done || db_connecting_done(probe);
    }
    char probe_err[512];
    th_assert(probe_done, "a connection attempt to the frozen server did not time out");
    th_assert(db_connect_end(probe, probe_err, sizeof probe_err) == NULL,
              "connected to a frozen server");
    th_assert(guarded, "the lease guard did not stop the jobs while the server was frozen");
    th_assert(guard_ms < LEASE_MS, "the lease guard stopped the jobs %lld ms after the freeze, "
              "later than the lease (%d ms) could run out", (long long)guard_ms, LEASE_MS);
    th_sleep_ms(LEASE_MS + 2000 - (th_now_ms() - t0)); /* longer than the lease */
    th_assert(th_alive(r), "the runner exited while the server was frozen");
    th_signal_postgres(th_pair_datadir('p'), SIGCONT);
    frozen = false;

    conn = connect_or_fail(url);
    th_expect_until(conn, 60000, "every job completed",
                    "SELECT count(*) = 12 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(distinct_lines(th_path("effects"), NULL), 12, "jobs with an effect");
    th_assert_eq(th_count_lines(th_path("doubles")), 0, "jobs run twice at the same time");
    fprintf(stderr, "frozen server: lease guard stopped the jobs %lld ms after the freeze "
                    "(lease 12 s), %d effects of 12 jobs\n",
            (long long)guard_ms, th_count_lines(th_path("effects")));
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    PQfinish(conn);
}

static faultproxy *proxy;

static void proxy_fini(void)
{
    th_teardown();
    faultproxy_stop(proxy);
    proxy = NULL;
}

/* start_proxy starts the fault proxy in front of the test server and returns a URL of
 * db through it (loopback TCP). */
static const char *start_proxy(const th_db *db)
{
    const char *host = getenv("RUNNER_TEST_PGHOST"), *port = getenv("RUNNER_TEST_PGPORT");
    th_assert(host && port, "RUNNER_TEST_PGHOST/PGPORT not set: run under tests/with-postgres.sh");
    proxy = faultproxy_start(th_fmt("%s/.s.PGSQL.%s", host, port));
    th_assert(proxy != NULL, "could not start the fault proxy");
    return th_fmt("postgresql://postgres@127.0.0.1:%d/%s", faultproxy_port(proxy), db->name);
}

/* Instance a reaches the server through a proxy that then black-holes the path; instance
 * b reaches it directly. a's guard stops its jobs before their leases run out, b rescues
 * and runs them, never while a still does; when the path heals a reconnects, drops the
 * outcomes it can no longer write (fenced) and every job completes. */
Test(failover, blackholed_network, .init = th_setup, .fini = proxy_fini, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    const char *via_proxy = start_proxy(db);
    mkdir(th_path("locks"), 0755);
    th_proc *a = th_runner_start(via_proxy, locked_config(), locked_env("effects_a"));
    th_expect_until(db->conn, 15000, "instance a registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(db->conn, 4, "locked", "{}", NULL);
    th_expect_until(db->conn, 10000, "a runs four jobs",
                    "SELECT count(*) = 4 FROM runner.jobs WHERE state = 'running'", NULL);
    th_proc *b = th_runner_start(db->url, locked_config(), locked_env("effects_b"));
    th_expect_until(db->conn, 15000, "instance b registered",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running'", NULL);
    th_enqueue_many(db->conn, 16, "locked", "{}", NULL);
    th_sleep_ms(300);

    faultproxy_blackhole(proxy, true);
    int64_t t0 = th_now_ms();
    th_expect_until(db->conn, 30000, "b rescued a's jobs and ran everything",
                    "SELECT count(*) = 20 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert(th_alive(a), "instance a exited while its network was black-holed");
    char *log = th_read_file(a->log_path);
    th_assert(strstr(log, "stopping job before its lease expires") != NULL,
              "a's lease guard did not stop its jobs:\n%s", log);
    int64_t all_done_ms = th_now_ms() - t0;
    faultproxy_blackhole(proxy, false);
    th_expect_until(db->conn, 30000, "a is back",
                    "SELECT count(*) = 2 FROM runner.instances WHERE state = 'running' AND "
                    "heartbeat_at > now() - interval '2 seconds'",
                    NULL);
    th_enqueue_many(db->conn, 8, "locked", "{}", NULL);
    th_expect_until(db->conn, 30000, "the last jobs completed",
                    "SELECT count(*) = 28 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(distinct_lines(th_path("effects_a"), th_path("effects_b"), NULL), 28,
                 "jobs with an effect");
    th_assert_eq(th_count_lines(th_path("doubles")), 0, "jobs run by two instances at once");
    fprintf(stderr, "black-holed network: all jobs done by the peer %lld ms after the cut "
                    "(lease 12 s)\n", (long long)all_done_ms);
    th_signal(a, SIGTERM);
    th_signal(b, SIGTERM);
    th_expect_exit0(a, 20000, "instance a after SIGTERM");
    th_expect_exit0(b, 20000, "instance b after SIGTERM");
}

/* tcp_option reads one IPPROTO_TCP (or SOL_SOCKET) option of the connection's socket. */
static int tcp_option(PGconn *conn, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    th_assert(getsockopt(PQsocket(conn), level, name, &v, &len) == 0, "getsockopt: %s",
              strerror(errno));
    return v;
}

/* The runner's TCP connections carry keepalives and a user timeout by default (a peer
 * that vanished is noticed within about half a minute, idle or not), read back from the
 * kernel on a real loopback socket; a URL that sets them wins. */
Test(failover, tcp_keepalive_defaults, .init = th_setup, .fini = proxy_fini, .timeout = 30)
{
    th_db *db = th_fresh_db(false);
    const char *tcp = start_proxy(db);
    char err[512];
    PGconn *conn = db_connect(tcp, "runner test", 5000, err, sizeof err);
    th_assert(conn != NULL, "db_connect: %s", err);
    th_assert_eq(tcp_option(conn, SOL_SOCKET, SO_KEEPALIVE), 1, "SO_KEEPALIVE");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_KEEPIDLE), 10, "TCP_KEEPIDLE (s)");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_KEEPINTVL), 5, "TCP_KEEPINTVL (s)");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_KEEPCNT), 3, "TCP_KEEPCNT");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_USER_TIMEOUT), 15000, "TCP_USER_TIMEOUT (ms)");
    PQfinish(conn);

    conn = db_connect(th_fmt("%s?keepalives_idle=42&tcp_user_timeout=7000", tcp), "runner test",
                      5000, err, sizeof err);
    th_assert(conn != NULL, "db_connect: %s", err);
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_KEEPIDLE), 42, "TCP_KEEPIDLE set by the URL");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_USER_TIMEOUT), 7000,
                 "TCP_USER_TIMEOUT set by the URL");
    th_assert_eq(tcp_option(conn, IPPROTO_TCP, TCP_KEEPCNT), 3, "TCP_KEEPCNT still the default");
    PQfinish(conn);
}
