/* test_status.c - `runner status` and `runner status --json` against a known data set: the
 * JSON is parsed (by PostgreSQL's jsonb parser, which rejects anything but exactly one
 * document) and its values checked, and the tables show the same rows. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *const LIVE = "00000000-0000-0000-0000-0000000000a1";
static const char *const GONE = "00000000-0000-0000-0000-0000000000a2";

static void add_instance(th_db *db, const char *id, const char *state, const char *beat_ago)
{
    th_exec(db->conn,
            "INSERT INTO runner.instances (id, host, pid, version, state, heartbeat_at,"
            "  concurrency, queues, lease)"
            " VALUES ($1::uuid, 'test-host', 42, 'test', $2,"
            "  now() - $3::interval, 4, '{default,mail}', interval '30 s')",
            id, state, beat_ago, NULL);
}

/* add_job inserts a job of kind k in queue with run_at = now() + run_in; running jobs are
 * leased by LIVE, finished ones finished a minute ago. Returns its id. */
static int64_t add_job(th_db *db, const char *queue, const char *state, const char *run_in)
{
    return th_query_int64(
        db->conn,
        "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, run_at,"
        "  lease_owner, lease_expires_at, started_at, finished_at)"
        " VALUES ($1, 'k', $2, CASE WHEN $2 = 'available' THEN 0 ELSE 1 END, 3,"
        "  now() + $3::interval,"
        "  CASE WHEN $2 = 'running' THEN $4::uuid END,"
        "  CASE WHEN $2 = 'running' THEN now() + interval '30 s' END,"
        "  CASE WHEN $2 <> 'available' THEN now() - interval '2 min' END,"
        "  CASE WHEN $2 IN ('completed', 'failed') THEN now() - interval '1 min' END)"
        " RETURNING id",
        queue, state, run_in, LIVE, NULL);
}

/* status_json runs `runner status --json` and returns its stdout, asserting exit 0 and
 * that PostgreSQL parses it as exactly one JSON object. */
static char *status_json(th_db *db)
{
    th_output o = th_run(30000, NULL, "--database-url", db->url, "status", "--json", NULL);
    th_assert(o.exit_code == 0, "status --json: exit %d\n%s", o.exit_code, o.err);
    th_assert(o.err[0] == '\0', "status --json wrote to stderr: %s", o.err);
    size_t n = strlen(o.out);
    th_assert(n > 0 && o.out[n - 1] == '\n' && strchr(o.out, '\n') == o.out + n - 1,
              "status --json is not one line:\n%s", o.out);
    PGresult *r = PQexecParams(db->conn, "SELECT jsonb_typeof($1::jsonb)", 1, NULL,
                               (const char *const[]){o.out}, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "object") == 0;
    char *why = th_fmt("%s", PQresultErrorMessage(r));
    PQclear(r);
    th_assert(ok, "status --json is not one JSON object (%s):\n%s", why, o.out);
    return o.out;
}

/* json_text evaluates a jsonb path expression (text result) over the document. */
static char *json_text(th_db *db, const char *doc, const char *expr)
{
    return th_query_text(db->conn, th_fmt("SELECT (%s)::text FROM (SELECT $1::jsonb AS d) s", expr),
                         doc, NULL);
}

#define expect_json(db, doc, expr, want)                                                           \
    do {                                                                                           \
        char *got_ = json_text((db), (doc), (expr));                                               \
        th_assert(got_ != NULL && strcmp(got_, (want)) == 0, "%s: expected %s, got %s\n%s",        \
                  (expr), (want), got_ ? got_ : "NULL", (doc));                                    \
    } while (0)

Test(status, json_has_the_tables_data, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    add_instance(db, LIVE, "running", "1 s");
    add_instance(db, GONE, "stopped", "2 hours");
    int64_t oldest = add_job(db, "default", "available", "-10 min");
    add_job(db, "default", "available", "-1 min");
    add_job(db, "default", "available", "1 hour"); /* scheduled */
    add_job(db, "default", "running", "-5 min");
    add_job(db, "default", "failed", "-5 min");
    add_job(db, "default", "completed", "-5 min");
    add_job(db, "mail", "available", "-30 s");
    th_exec(db->conn, "SELECT runner.pause_queue('mail')", NULL);

    char *doc = status_json(db);
    expect_json(db, doc, "jsonb_array_length(d->'queues')", "2");
    const char *def = "jsonb_path_query_first(d, '$.queues[*] ? (@.queue == \"default\")')";
    expect_json(db, doc, th_fmt("%s->'available'", def), "2");
    expect_json(db, doc, th_fmt("%s->'scheduled'", def), "1");
    expect_json(db, doc, th_fmt("%s->'running'", def), "1");
    expect_json(db, doc, th_fmt("%s->'failed'", def), "1");
    expect_json(db, doc, th_fmt("%s->'completed_last_hour'", def), "1");
    expect_json(db, doc, th_fmt("%s->'paused'", def), "false");
    expect_json(db, doc,
                th_fmt("(%s->>'oldest_waiting_seconds')::numeric BETWEEN 600 AND 700", def),
                "true");
    const char *mail = "jsonb_path_query_first(d, '$.queues[*] ? (@.queue == \"mail\")')";
    expect_json(db, doc, th_fmt("%s->'paused'", mail), "true");
    expect_json(db, doc, th_fmt("%s->'available'", mail), "1");

    /* the live instance, not the one stopped two hours ago */
    expect_json(db, doc, "jsonb_array_length(d->'instances')", "1");
    expect_json(db, doc, "d->'instances'->0->>'id'", LIVE);
    expect_json(db, doc, "d->'instances'->0->'alive'", "true");
    expect_json(db, doc, "d->'instances'->0->'running_jobs'", "1");
    expect_json(db, doc, "d->'instances'->0->'concurrency'", "4");
    expect_json(db, doc, "d->'instances'->0->'queues'", "[\"default\", \"mail\"]");
    expect_json(db, doc, "d->'instances'->0->>'state'", "running");
    expect_json(db, doc, "(d->'instances'->0->>'heartbeat_age_seconds')::numeric < 60", "true");
    expect_json(db, doc, "(d->'instances'->0->>'started_at')::timestamptz <= now()", "true");

    expect_json(db, doc, "d->'oldest_waiting_job'->'id'", th_fmt("%lld", (long long)oldest));
    expect_json(db, doc, "d->'oldest_waiting_job'->>'queue'", "default");
    expect_json(db, doc, "d->'oldest_waiting_job'->>'kind'", "k");
    expect_json(db, doc,
                "(d->'oldest_waiting_job'->>'waiting_seconds')::numeric BETWEEN 600 AND 700",
                "true");
    expect_json(db, doc, "(d->>'generated_at')::timestamptz <= now()", "true");

    /* the tables show the same: both queues, the live instance only, the oldest job */
    th_output t = th_run(30000, NULL, "--database-url", db->url, "status", NULL);
    th_assert(t.exit_code == 0, "status: exit %d\n%s", t.exit_code, t.err);
    const char *tables[] = {"queues\n", "\ninstances\n", "\noldest waiting job\n"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        th_assert(strstr(t.out, tables[i]) != NULL, "status lacks the table %s:\n%s", tables[i],
                  t.out);
    const char *oldest_table = strstr(t.out, "\noldest waiting job\n");
    th_assert(strstr(oldest_table, th_fmt("\n%lld ", (long long)oldest)) != NULL,
              "the oldest waiting job table lacks job %lld:\n%s", (long long)oldest, t.out);
    th_assert(strstr(t.out, LIVE) != NULL && strstr(t.out, GONE) == NULL,
              "the instances table differs from the JSON:\n%s", t.out);
    th_assert(strstr(t.out, "\nmail ") != NULL && strstr(t.out, "paused") != NULL,
              "the queues table lacks the paused mail queue:\n%s", t.out);
}

Test(status, json_of_an_empty_database, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    char *doc = status_json(db);
    expect_json(db, doc, "d->'queues'", "[]");
    expect_json(db, doc, "d->'instances'", "[]");
    expect_json(db, doc, "d->'oldest_waiting_job'", "null");

    /* a job that is not due yet is not waiting */
    add_job(db, "default", "available", "1 hour");
    doc = status_json(db);
    expect_json(db, doc, "d->'oldest_waiting_job'", "null");
    expect_json(db, doc, "d->'queues'->0->'oldest_waiting_seconds'", "null");
    expect_json(db, doc, "d->'queues'->0->'scheduled'", "1");
}

Test(status, unmigrated_database_is_an_error, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(false);
    th_output o = th_run(30000, NULL, "--database-url", db->url, "status", "--json", NULL);
    th_assert(o.exit_code == 1, "status --json on an empty database: exit %d", o.exit_code);
    th_assert(o.out[0] == '\0', "status --json printed a document anyway:\n%s", o.out);
    th_assert(strncmp(o.err, "runner: ", 8) == 0, "no error message:\n%s", o.err);
}
