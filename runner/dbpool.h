/* dbpool.h - the lazily opened connections that sql and transactional C handlers use. */
#ifndef RUNNER_DBPOOL_H
#define RUNNER_DBPOOL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dbpool dbpool;

/* dbpool_create opens nothing yet; at most max connections are kept idle. Connections
 * are opened with application_name, each within connect_timeout_ms. */
dbpool *dbpool_create(const char *url, int max, const char *application_name,
                      int64_t connect_timeout_ms);
void dbpool_destroy(dbpool *p);

/* dbpool_get returns an idle healthy connection or opens one (non-blocking mode). */
PGconn *dbpool_get(dbpool *p, char *err, size_t errlen);
/* dbpool_put returns conn; one that is broken or not idle outside a transaction is
 * closed instead of being reused. */
void dbpool_put(dbpool *p, PGconn *conn);

#endif
