/* test_roles.c - least privilege: a login role that is only a member of runner_worker runs
 * a whole workload (runner run with exec and sql kinds, runner enqueue, runner status) but
 * cannot change the schema; a member of runner_enqueuer can only call runner.enqueue().
 * Then, on servers of their own: password authentication (URL, PGPASSFILE) and TLS with
 * sslmode=verify-full. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* A password in the URL: trust authentication ignores it, but it must never show up in a
 * log or an output. */
#define SECRET "s3cret-never-logged"

/* login_role creates a login role (roles are cluster-wide: it may exist from an earlier
 * run) that is a member of group only. */
static void login_role(th_db *db, const char *name, const char *group)
{
    th_exec(db->conn,
            th_fmt("DO $$ BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
                   "END $$",
                   name),
            NULL);
    th_exec(db->conn, th_fmt("GRANT %s TO %s", group, name), NULL);
}

static const char *role_url(th_db *db, const char *role)
{
    return th_fmt("%s%suser=%s&password=" SECRET, db->url, strchr(db->url, '?') ? "&" : "?",
                  role);
}

static PGconn *connect_as(th_db *db, const char *role)
{
    PGconn *conn = PQconnectdb(role_url(db, role));
    th_assert(PQstatus(conn) == CONNECTION_OK, "could not connect as %s: %s", role,
              PQerrorMessage(conn));
    return conn;
}

/* expect_denied runs sql and asserts that it fails for lack of privilege (42501). */
static void expect_denied(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    th_assert(state && strcmp(state, "42501") == 0, "%s: expected SQLSTATE 42501, got %s (%s)",
              sql, state ? state : "success", PQresultErrorMessage(res));
    PQclear(res);
}

static void expect_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    th_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
              PQresultErrorMessage(res));
    PQclear(res);
}

Test(roles, worker_runs_a_workload, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    login_role(db, "runner_test_worker", "runner_worker");
    th_exec(db->conn, "CREATE TABLE public.effects (job_id bigint NOT NULL)", NULL);
    th_exec(db->conn, "GRANT INSERT ON public.effects TO runner_worker", NULL);
    const char *url = role_url(db, "runner_test_worker");

    const char *cfg = th_write_config(
        "worker:\n"
        "  concurrency: 4\n"
        "  poll_interval: 200ms\n"
        "  lease: 10s\n"
        "  heartbeat: 1s\n"
        "retention: 1s\n"
        "shutdown:\n"
        "  grace: 5s\n"
        "  kill_after: 1s\n"
        "kinds:\n"
        "  shell:\n"
        "    command: [\"/bin/sh\", \"-c\", 'echo \"$RUNNER_JOB_ID\" >> \"$EFFECTS\"']\n"
        "  insert:\n"
        "    sql: \"INSERT INTO public.effects (job_id) SELECT $2 WHERE $1::jsonb IS NOT NULL\"\n"
        "schedules:\n"
        "  every_minute:\n"
        "    cron: \"* * * * *\"\n"
        "    kind: shell\n");
    const char *env[] = {th_fmt("EFFECTS=%s", th_path("effects")), NULL};
    th_proc *r = th_runner_start(url, cfg, env);
    th_expect_until(db->conn, 15000, "instance registered",
                    "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'", NULL);

    for (int i = 0; i < 5; i++) {
        th_output o = th_run(10000, NULL, "--database-url", url, "enqueue", "shell", "{}", NULL);
        th_assert(o.exit_code == 0, "runner enqueue as runner_worker: exit %d: %s", o.exit_code,
                  o.err);
        o = th_run(10000, NULL, "--database-url", url, "enqueue", "insert", "{\"n\": 1}", NULL);
        th_assert(o.exit_code == 0, "runner enqueue as runner_worker: exit %d: %s", o.exit_code,
                  o.err);
    }
    th_expect_until(db->conn, 30000, "all ten jobs completed",
                    "SELECT count(*) = 10 FROM runner.jobs WHERE state = 'completed' "
                    "AND kind IN ('shell', 'insert')",
                    NULL);
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM public.effects", NULL), 5,
                 "sql effects");
    th_assert_eq(th_count_lines(th_path("effects")), 5, "exec effects");

    th_output o = th_run(10000, NULL, "--database-url", url, "status", NULL);
    th_assert(o.exit_code == 0, "runner status as runner_worker: exit %d: %s", o.exit_code, o.err);
    th_assert(strstr(o.out, SECRET) == NULL && strstr(o.err, SECRET) == NULL,
              "runner status shows the password:\n%s%s", o.out, o.err);

    /* the schema is not the worker's to change */
    PGconn *w = connect_as(db, "runner_test_worker");
    expect_denied(w, "DROP TABLE runner.jobs");
    expect_denied(w, "TRUNCATE runner.jobs");
    expect_denied(w, "CREATE TABLE runner.mine (x int)");
    expect_denied(w, "CREATE FUNCTION runner.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    expect_denied(w, "ALTER TABLE runner.jobs ADD COLUMN x int");
    expect_denied(w, "CREATE TABLE public.mine (x int)");
    expect_denied(w, "DELETE FROM runner.migrations");
    PQfinish(w);

    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    char *log = th_read_file(r->log_path);
    th_assert(strstr(log, SECRET) == NULL, "the runner's log shows the password:\n%s", log);
    th_assert(strstr(log, "permission denied") == NULL,
              "runner_worker lacks a privilege:\n%s", log);
}

Test(roles, enqueuer_only_enqueues, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    login_role(db, "runner_test_enqueuer", "runner_enqueuer");
    PGconn *e = connect_as(db, "runner_test_enqueuer");
    expect_ok(e, "SELECT runner.enqueue('mail', '{\"to\": \"a@example.org\"}')");
    expect_ok(e, "SELECT runner.enqueue('mail', '{}', unique_key => 'k1')");
    expect_ok(e, "SELECT runner.enqueue('mail', '{}', unique_key => 'k1')");
    expect_ok(e, "BEGIN; SELECT runner.enqueue('mail'); ROLLBACK");
    expect_denied(e, "SELECT count(*) FROM runner.jobs");
    expect_denied(e, "UPDATE runner.jobs SET priority = 1");
    expect_denied(e, "INSERT INTO runner.jobs (kind) VALUES ('direct')");
    expect_denied(e, "SELECT runner.cancel_job(1)");
    expect_denied(e, "SELECT runner.prune('0s')");
    expect_denied(e, "SELECT * FROM runner.queue_summary");
    PQfinish(e);
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL), 2,
                 "jobs enqueued (one unique key twice, one rolled back)");
}

/* The roles are cluster-wide: migrating a second database, where they exist already,
 * works, and so does migrating two databases at once. */
Test(roles, migration_idempotent, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *a = th_fresh_db(false);
    th_db *b = th_fresh_db(false);
    const char *const argv_a[] = {th_runner_bin(), "--database-url", a->url, "migrate", NULL};
    const char *const argv_b[] = {th_runner_bin(), "--database-url", b->url, "migrate", NULL};
    th_proc *pa = th_spawn(argv_a, NULL);
    th_proc *pb = th_spawn(argv_b, NULL);
    th_expect_exit0(pa, 30000, "runner migrate of the first database");
    th_expect_exit0(pb, 30000, "runner migrate of the second database");
    th_db *c = th_fresh_db(true);
    th_assert_eq(th_query_int64(c->conn,
                                "SELECT count(*) FROM pg_roles WHERE rolname IN "
                                "('runner_worker', 'runner_enqueuer') AND NOT rolcanlogin",
                                NULL),
                 2, "NOLOGIN roles");
}

/* ---- password authentication, on a server of its own (tests/pgpair.sh) ---- */
#define PASSWORD "pw-S3cret-in-pgpass"

/* A login role in runner_worker that must authenticate with a password (scram-sha-256):
 * the runner finds it in the URL or in PGPASSFILE, fails with PostgreSQL's message when it
 * is wrong, and never prints it. */
Test(roles, password_auth, .init = th_setup, .fini = th_teardown, .timeout = 90)
{
    const char *pair_dir = th_pair_start(false);
    const char *owner_url = th_pair_node_url('p');
    th_output o = th_run(30000, NULL, "--database-url", owner_url, "migrate", NULL);
    th_assert(o.exit_code == 0, "runner migrate: exit %d: %s", o.exit_code, o.err);
    PGconn *conn = PQconnectdb(owner_url);
    th_assert(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    th_exec(conn, "CREATE ROLE runner_pw LOGIN PASSWORD '" PASSWORD "' IN ROLE runner_worker", NULL);
    const char *hba = th_fmt("%s/p/data/pg_hba.conf", pair_dir);
    char *rules = th_read_file(hba);
    FILE *f = fopen(hba, "w");
    th_assert(f != NULL, "could not write %s", hba);
    fprintf(f, "local all runner_pw scram-sha-256\n%s", rules);
    fclose(f);
    th_exec(conn, "SELECT pg_reload_conf()", NULL);

    const char *url = th_fmt("postgresql:///postgres?host=%s/p&port=5432&user=runner_pw", pair_dir);
    const char *good = th_write_file("pgpass", "*:*:*:runner_pw:" PASSWORD "\n");
    const char *bad = th_write_file("pgpass-wrong", "*:*:*:runner_pw:not-" PASSWORD "\n");
    chmod(good, 0600);
    chmod(bad, 0600);
    const char *env_good[] = {th_fmt("PGPASSFILE=%s", good), NULL};
    const char *env_bad[] = {th_fmt("PGPASSFILE=%s", bad), NULL};

    o = th_run(15000, env_good, "--database-url", url, "status", NULL);
    th_assert(o.exit_code == 0, "runner status with PGPASSFILE: exit %d: %s", o.exit_code, o.err);
    o = th_run(15000, env_bad, "--database-url", url, "status", NULL);
    th_assert(o.exit_code != 0, "runner status with a wrong password succeeded");
    th_assert(strstr(o.err, "password authentication failed") != NULL,
              "the error does not say why:\n%s", o.err);
    th_assert(strstr(o.err, PASSWORD) == NULL, "the error shows the password:\n%s", o.err);

    /* the password in the URL, the whole workload path: run, enqueue, a job done */
    const char *url_pw = th_fmt("postgresql://runner_pw:" PASSWORD "@/postgres?host=%s/p&port=5432",
                                pair_dir);
    const char *cfg = th_write_config("worker:\n  poll_interval: 200ms\nkinds:\n"
                                      "  noop:\n    command: [\"/bin/true\"]\n");
    th_proc *r = th_runner_start(url_pw, cfg, NULL);
    o = th_run(15000, NULL, "--database-url", url_pw, "enqueue", "noop", NULL);
    th_assert(o.exit_code == 0, "runner enqueue with a password in the URL: exit %d: %s",
              o.exit_code, o.err);
    th_expect_until(conn, 15000, "the job completed",
                    "SELECT count(*) = 1 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    char *log = th_read_file(r->log_path);
    th_assert(strstr(log, PASSWORD) == NULL, "the runner's log shows the password:\n%s", log);
    th_assert(strstr(log, "runner started") != NULL, "no start line in the log:\n%s", log);
    PQfinish(conn);
}

/* ---- TLS: sslmode=verify-full against a certificate of the test's own CA ---- */

/* free_port is a loopback TCP port nobody listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    th_assert(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    th_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                  getsockname(fd, (struct sockaddr *)&a, &len) == 0,
              "bind: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static void openssl(const char *args)
{
    const char *cmd = th_fmt("cd '%s' && openssl %s >openssl.log 2>&1", th_tmpdir(), args);
    int rc = system(cmd);
    th_assert(rc == 0, "%s: exit status %d\n%s", cmd, rc, th_read_file(th_path("openssl.log")));
}

/* own_by_server makes a file of the server's data directory its owner's (as root the
 * servers run as postgres) and private: PostgreSQL refuses a key others can read. */
static void own_by_server(const char *path)
{
    chmod(path, 0600);
    struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;
    if (pw != NULL)
        th_assert(chown(path, pw->pw_uid, pw->pw_gid) == 0, "chown %s: %s", path, strerror(errno));
}

/* A server that takes TCP connections with TLS only: the runner verifies its certificate
 * and host name (libpq's sslmode=verify-full with sslrootcert), refuses a certificate of
 * another CA and a host name the certificate does not name, and works a job with every
 * one of its connections encrypted. */
Test(roles, tls_verify_full, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_pair_start(false);
    const char *data = th_pair_datadir('p');
    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=runner-test-ca"
            " -keyout ca.key -out ca.crt");
    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=another-ca"
            " -keyout other.key -out other.crt");
    th_write_file("san.ext", "subjectAltName = DNS:localhost\n");
    openssl(th_fmt("req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout '%s/server.key'"
                   " -out server.csr",
                   data));
    openssl(th_fmt("x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
                   " -extfile san.ext -out '%s/server.crt'",
                   data));
    own_by_server(th_fmt("%s/server.key", data));
    own_by_server(th_fmt("%s/server.crt", data));

    int port = free_port();
    PGconn *conn = PQconnectdb(th_pair_node_url('p'));
    th_assert(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    th_exec(conn, "ALTER SYSTEM SET ssl = on", NULL);
    th_exec(conn, "ALTER SYSTEM SET ssl_cert_file = 'server.crt'", NULL);
    th_exec(conn, "ALTER SYSTEM SET ssl_key_file = 'server.key'", NULL);
    th_exec(conn, "ALTER SYSTEM SET listen_addresses = '127.0.0.1'", NULL);
    th_exec(conn, th_fmt("ALTER SYSTEM SET port = %d", port), NULL);
    PQfinish(conn);
    /* TCP without TLS is refused, so that a connection that works is an encrypted one */
    const char *hba = th_fmt("%s/pg_hba.conf", data);
    const char *rules = th_fmt("hostnossl all all 0.0.0.0/0 reject\n%s", th_read_file(hba));
    FILE *f = fopen(hba, "w");
    th_assert(f != NULL, "could not write %s", hba);
    fputs(rules, f);
    fclose(f);
    th_pair_ctl('p', "restart -m fast -w");

    const char *ca = th_path("ca.crt");
    const char *url = th_fmt("postgresql://postgres@localhost:%d/postgres"
                             "?sslmode=verify-full&sslrootcert=%s",
                             port, ca);
    th_output o = th_run(30000, NULL, "--database-url", url, "migrate", NULL);
    th_assert(o.exit_code == 0, "runner migrate over verified TLS: exit %d: %s", o.exit_code, o.err);
    o = th_run(15000, NULL, "--database-url",
               th_fmt("postgresql://postgres@localhost:%d/postgres?sslmode=disable", port),
               "status", NULL);
    th_assert(o.exit_code != 0, "runner status without TLS succeeded: the server takes plain TCP");
    o = th_run(15000, NULL, "--database-url",
               th_fmt("postgresql://postgres@localhost:%d/postgres?sslmode=verify-full"
                      "&sslrootcert=%s",
                      port, th_path("other.crt")),
               "status", NULL);
    th_assert(o.exit_code != 0 && strstr(o.err, "certificate verify failed") != NULL,
              "runner status trusting another CA: exit %d, no verify failure:\n%s", o.exit_code,
              o.err);
    o = th_run(15000, NULL, "--database-url",
               th_fmt("postgresql://postgres@127.0.0.1:%d/postgres?sslmode=verify-full"
                      "&sslrootcert=%s",
                      port, ca),
               "status", NULL);
    th_assert(o.exit_code != 0 && strstr(o.err, "does not match host name") != NULL,
              "runner status with a host name the certificate lacks: exit %d:\n%s", o.exit_code,
              o.err);

    const char *cfg = th_write_config("worker:\n  poll_interval: 200ms\nkinds:\n"
                                      "  noop:\n    command: [\"/bin/true\"]\n");
    th_proc *r = th_runner_start(url, cfg, NULL);
    o = th_run(15000, NULL, "--database-url", url, "enqueue", "noop", NULL);
    th_assert(o.exit_code == 0, "runner enqueue over TLS: exit %d: %s", o.exit_code, o.err);
    conn = PQconnectdb(url);
    th_assert(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    th_expect_until(conn, 15000, "the job completed",
                    "SELECT count(*) = 1 FROM runner.jobs WHERE state = 'completed'", NULL);
    th_assert_eq(th_query_int64(conn,
                                "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s"
                                " USING (pid) WHERE a.application_name LIKE 'runner%'"
                                "   AND s.ssl AND s.version LIKE 'TLS%'",
                                NULL) > 0,
                 1, "the runner's connections use TLS");
    th_signal(r, SIGTERM);
    th_expect_exit0(r, 15000, "runner after SIGTERM");
    PQfinish(conn);
}
