/* test_migrate.c - `runner migrate` against a real PostgreSQL: idempotent, safe to run
 * from many processes at once, and required before `runner run`. */
#include <string.h>

#include "harness.h"
#include "migrate.h"

/* Everything migrate creates, by identity (oids), plus its bookkeeping rows: equal
 * fingerprints mean nothing was dropped, recreated or re-applied. */
static const char *const FINGERPRINT_SQL =
    "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM ("
    "  SELECT 'rel:' || c.oid || ':' || c.relname || ':' || c.relkind::text AS x"
    "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = 'runner'"
    "  UNION ALL"
    "  SELECT 'proc:' || p.oid || ':' || p.proname"
    "    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    "   WHERE n.nspname = 'runner'"
    "  UNION ALL"
    "  SELECT 'trigger:' || t.oid || ':' || t.tgname"
    "    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    "    JOIN pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = 'runner' AND NOT t.tgisinternal"
    "  UNION ALL"
    "  SELECT 'migration:' || version || ':' || name || ':' || applied_at FROM runner.migrations"
    ") s";

static void expect_migrated(th_db *db)
{
    th_assert_eq(th_query_int64(db->conn, "SELECT count(*) FROM runner.migrations", NULL),
                 migrations_count, "rows in runner.migrations");
    th_assert_eq(
        th_query_int64(db->conn, "SELECT count(DISTINCT version) FROM runner.migrations", NULL),
        migrations_count, "distinct versions in runner.migrations");
    th_assert_eq(th_query_int64(db->conn, "SELECT max(version) FROM runner.migrations", NULL),
                 migrate_latest(), "newest applied migration");
    int64_t id = th_query_int64(db->conn, "SELECT runner.enqueue('probe')", NULL);
    th_assert(id > 0, "runner.enqueue returned %lld", (long long)id);
}

Test(migrate, twice_is_noop, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(false);
    th_output o = th_run(30000, NULL, "--database-url", db->url, "migrate", NULL);
    th_assert(o.exit_code == 0, "first migrate: exit %d\nstderr:\n%s", o.exit_code, o.err);
    expect_migrated(db);

    char *before = th_query_text(db->conn, FINGERPRINT_SQL, NULL);
    int64_t id =
        th_query_int64(db->conn, "SELECT runner.enqueue('keep', '{\"keep\": true}')", NULL);

    o = th_run(30000, NULL, "--database-url", db->url, "migrate", NULL);
    th_assert(o.exit_code == 0, "second migrate: exit %d\nstderr:\n%s", o.exit_code, o.err);
    char *after = th_query_text(db->conn, FINGERPRINT_SQL, NULL);
    th_assert(strcmp(before, after) == 0,
              "the second migrate changed the schema or its bookkeeping (%s -> %s)", before, after);
    char *sid = th_fmt("%lld", (long long)id);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE id = $1::bigint "
                                "AND kind = 'keep' AND args = '{\"keep\": true}'",
                                sid, NULL),
                 1, "job enqueued between the two migrations still there");
    expect_migrated(db);
}

/* Five instances of a deploy starting at once all run migrate: all must succeed and the
 * schema must be applied exactly once. A few rounds, since a race need not show every
 * time. */
Test(migrate, concurrent_processes, .init = th_setup, .fini = th_teardown, .timeout = 120)
{
    for (int round = 0; round < 3; round++) {
        th_db *db = th_fresh_db(false);
        const char *argv[] = {th_runner_bin(), "--database-url", db->url, "migrate", NULL};
        th_proc *p[5];
        for (int i = 0; i < 5; i++)
            p[i] = th_spawn(argv, NULL);
        for (int i = 0; i < 5; i++) {
            th_assert(th_wait_exit(p[i], 60000, NULL), "round %d: migrate %d still running", round,
                      i);
            th_assert(WIFEXITED(p[i]->status) && WEXITSTATUS(p[i]->status) == 0,
                      "round %d: concurrent migrate %d failed (wait status 0x%x):\n%s", round, i,
                      p[i]->status, th_read_file(p[i]->log_path));
        }
        expect_migrated(db);
    }
}

Test(migrate, run_requires_migrate, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(false);
    const char *config = th_write_config("kinds:\n"
                                         "  noop:\n"
                                         "    command: [\"/bin/true\"]\n");
    th_output o = th_run(15000, NULL, "--config", config, "--database-url", db->url, "run", NULL);
    th_assert(o.exit_code != -1, "runner run on an unmigrated database kept running for 15 s");
    th_assert(o.exit_code != 0, "runner run on an unmigrated database exited 0\nstderr:\n%s",
              o.err);
    th_assert(strcasestr(o.err, "migrate") != NULL,
              "the error does not tell the user to run migrate:\n%s", o.err);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM pg_namespace WHERE nspname = 'runner'", NULL),
                 0, "runner run created the schema by itself");
}
