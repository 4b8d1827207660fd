/* qstats.h - per-queue job counts from the database for /metrics, read rarely and cached. */
#ifndef RUNNER_QSTATS_H
#define RUNNER_QSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* At most one query per QSTATS_INTERVAL_MS per instance, whatever the scrape rate. */
#define QSTATS_INTERVAL_MS 5000
/* Connect and statement timeout of that query. */
#define QSTATS_TIMEOUT_MS 2000

typedef struct qstats qstats;

/* qstats_create prepares statistics for the queues given (copied; at most
 * METRICS_MAX_QUEUES of them) read through url (NULL: libpq's PG* environment). The
 * connection opens at the first render, on the caller's thread. interval_ms 0:
 * QSTATS_INTERVAL_MS. */
qstats *qstats_create(const char *url, const char *const *queues, size_t nqueues,
                      int64_t interval_ms);
void qstats_destroy(qstats *q);

/* qstats_render appends runner_queue_jobs{queue,state} and
 * runner_queue_oldest_waiting_seconds{queue}, refreshed first when the cache is older than
 * the interval and no other thread is refreshing it. Nothing is appended while the
 * database cannot be read (stale numbers would look current). */
void qstats_render(qstats *q, strbuf *out, int64_t now);

/* qstats_statement is the one query ($1 text[] of queues, $2 interval of the finished
 * states' window), for EXPLAIN in the tests. */
const char *qstats_statement(void);

#endif
