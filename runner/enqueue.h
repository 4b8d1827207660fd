/* enqueue.h - adding jobs through runner.enqueue() on any connection. */
#ifndef RUNNER_ENQUEUE_H
#define RUNNER_ENQUEUE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

typedef struct enqueue_opts {
    const char *kind;
    const char *args;         /* JSON text; NULL: {} */
    const char *queue;        /* NULL: default */
    const char *priority;     /* decimal text; NULL: 0 */
    const char *run_at;       /* timestamptz text; NULL: now (or run_in) */
    int64_t run_in_ms;        /* > 0: now() + this */
    const char *max_attempts; /* decimal text; NULL: the kind's setting */
    const char *unique_key;
} enqueue_opts;

/* enqueue_job calls runner.enqueue() with parameters only (no SQL is built from the
 * values) inside whatever transaction conn is in. Blocking. */
int enqueue_job(PGconn *conn, const enqueue_opts *o, int64_t *id, char *err, size_t errlen);

#endif
