/* migrate.c - applies the embedded migrations in order under an advisory lock.
 *
 * DESIGN: each file in sql/ records its own version in runner.migrations, so the same
 * files work with `psql -1 -f`. Concurrent `runner migrate` processes serialize on one
 * session advisory lock; whoever gets it second finds nothing left to do. Migrations are
 * immutable: a change to the schema is a new numbered file. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

/* Arbitrary, fixed: the advisory lock key that serializes migrations. */
#define MIGRATE_LOCK_KEY "7311020817"
#define MIGRATE_TIMEOUT_MS (10 * 60 * 1000)

int migrate_latest(void)
{
    return migrations_count > 0 ? migrations[migrations_count - 1].version : 0;
}

/* current_version reads the newest applied version; 0 when the schema is absent. */
static int current_version(PGconn *conn, int *version, bool *broken, char *err, size_t errlen)
{
    PGresult *res = db_exec(conn, "SELECT to_regclass('runner.migrations') IS NOT NULL", 0, NULL,
                            30000, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    *version = 0;
    if (!exists)
        return 0;
    res = db_exec(conn, "SELECT coalesce(max(version), 0) FROM runner.migrations", 0, NULL, 30000,
                  NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    *version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

/* exec_script runs a whole migration file (static SQL from the binary, no job data). */
static int exec_script(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    int rc = 0;
    if (!PQsendQuery(conn, sql))
        return errf(err, errlen, "could not send migration: %s", PQerrorMessage(conn));
    PQsetnonblocking(conn, 0);
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (rc == 0 && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            db_result_error(res, err, errlen);
            rc = -1;
        }
        PQclear(res);
    }
    PQsetnonblocking(conn, 1);
    return rc;
}

int migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen)
{
    *applied = 0;
    if (db_exec_simple(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", MIGRATE_TIMEOUT_MS,
                       err, errlen) < 0)
        return -1;
    int rc = -1;
    int version;
    bool broken;
    if (current_version(conn, &version, &broken, err, errlen) < 0)
        goto out;
    if (version > migrate_latest()) {
        errf(err, errlen,
             "database schema is at version %d, newer than this runner's %d: upgrade runner",
             version, migrate_latest());
        goto out;
    }
    for (int i = 0; i < migrations_count; i++) {
        const struct migration *m = &migrations[i];
        if (m->version <= version)
            continue;
        char step[ERR_LEN];
        if (db_exec_simple(conn, "BEGIN", 30000, err, errlen) < 0)
            goto out;
        if (exec_script(conn, m->sql, step, sizeof step) < 0) {
            errf(err, errlen, "migration \"%s\" failed: %s", m->name, step);
            db_exec_simple(conn, "ROLLBACK", 30000, step, sizeof step);
            goto out;
        }
        if (db_exec_simple(conn, "COMMIT", 30000, err, errlen) < 0)
            goto out;
        (*applied)++;
    }
    rc = 0;
out:;
    char unlock_err[ERR_LEN];
    db_exec_simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 30000, unlock_err,
                   sizeof unlock_err);
    return rc;
}

int migrate_check(PGconn *conn, bool *broken, char *err, size_t errlen)
{
    int version;
    *broken = false;
    if (current_version(conn, &version, broken, err, errlen) < 0)
        return -1;
    if (version == migrate_latest())
        return 0;
    if (version == 0)
        return errf(err, errlen, "the runner schema is not installed: run \"runner migrate\"");
    if (version < migrate_latest())
        return errf(err, errlen,
                    "database schema is at version %d, older than this runner's %d: "
                    "run \"runner migrate\"",
                    version, migrate_latest());
    return errf(err, errlen,
                "database schema is at version %d, newer than this runner's %d: upgrade runner",
                version, migrate_latest());
}
