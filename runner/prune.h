/* prune.h - retention: deletes finished jobs, old schedule ticks and old instance rows,
 * and rolls completions up per queue and minute. */
#ifndef RUNNER_PRUNE_H
#define RUNNER_PRUNE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Jobs deleted per call at most; a call that deleted this many means more are due. */
#define PRUNE_BATCH 1000

/* The statement gets at most this long. */
#define PRUNE_TIMEOUT_MS 5000

/* prune_run deletes one batch (PRUNE_BATCH) of completed, failed and cancelled jobs that
 * finished more than retention_ms ago, oldest first, through runner.prune(); rows other
 * sessions hold locked are skipped, so instances pruning at once share the work. The same
 * call deletes a batch of schedule ticks older than the retention and instance rows
 * stopped or lost for more than 7 days. Returns the number of jobs deleted, or -1 with err
 * (*broken: reconnect). */
int prune_run(PGconn *conn, int64_t retention_ms, bool *broken, char *err, size_t errlen);

/* How often prune_rollup should run: queue_summary counts exactly, row by row, the jobs
 * completed since the rollup's last step, so this bounds what a dashboard's read costs. */
#define PRUNE_ROLLUP_INTERVAL_MS 5000

/* prune_rollup adds the jobs completed since its last step (up to ten seconds ago, at
 * most two minutes per call) to the per-queue, per-minute counts that
 * runner.queue_summary and runner.completed_per_minute read, through
 * runner.rollup_completed(); one instance at a time does it, the others return at once.
 * prune_run does it too before deleting, so that retention never deletes a job before it
 * is counted. *more says the rollup is still behind (an instance that starts after a
 * pause has up to an hour to catch up): call again soon. Returns the number of (minute,
 * queue) rows written, or -1 with err (*broken: reconnect). */
int prune_rollup(PGconn *conn, bool *more, bool *broken, char *err, size_t errlen);

#endif
