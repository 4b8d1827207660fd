/* status.h - `runner status`: queues and instances as aligned tables. */
#ifndef RUNNER_STATUS_H
#define RUNNER_STATUS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>

/* status_print writes the queue summary and the live instances to out. */
int status_print(PGconn *conn, FILE *out, char *err, size_t errlen);

#endif
