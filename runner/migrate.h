/* migrate.h - the schema migrations embedded in the binary, and the schema check. */
#ifndef RUNNER_MIGRATE_H
#define RUNNER_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct migration {
    int version;
    const char *name;
    const char *sql;
};

/* Generated from sql/ at build time (migrations_data.c), in version order. */
extern const struct migration migrations[];
extern const int migrations_count;

/* migrate_apply applies every pending migration, each in its own transaction, under an
 * advisory lock so that many instances may run it at once. *applied counts the new ones. */
int migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen);

/* migrate_check fails with a clear message unless the schema is exactly the version this
 * binary was built for. */
int migrate_check(PGconn *conn, bool *broken, char *err, size_t errlen);

/* migrate_latest is the newest version embedded in this binary. */
int migrate_latest(void);

#endif
