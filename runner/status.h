/* status.h - `runner status`: queues, instances and the oldest waiting job, as aligned
 * tables or as one JSON document. */
#ifndef RUNNER_STATUS_H
#define RUNNER_STATUS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>

/* status_print writes the queue summary, the live (and recently stopped) instances and
 * the oldest waiting job to out as tables. */
int status_print(PGconn *conn, FILE *out, char *err, size_t errlen);

/* status_print_json writes the same data to out as one JSON document (and a newline):
 * {"queues": [...], "instances": [...], "oldest_waiting_job": {...} | null,
 *  "generated_at": "..."}; durations in seconds, timestamps in ISO 8601. */
int status_print_json(PGconn *conn, FILE *out, char *err, size_t errlen);

#endif
