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

/* One batch (PRUNE_BATCH) of completed, failed and cancelled jobs that finished more
 * than $1 ms ago, oldest first, through runner.prune(); rows other sessions hold locked
 * are skipped, so instances pruning at once share the work. The same call deletes a batch
 * of schedule ticks older than the retention and instance rows stopped or lost for more
 * than 7 days. prune_params fills its two parameters (into older and batch); prune_read
 * returns the number of jobs deleted, or -1 with err. */
#define PRUNE_SQL "SELECT runner.prune($1::bigint * interval '1 ms', $2::int)"
void prune_params(int64_t retention_ms, char older[24], char batch[16], const char *params[2]);
int prune_read(const PGresult *res, char *err, size_t errlen);

/* How often the rollup should run: queue_summary counts exactly, row by row, the jobs
 * completed since the rollup's last step, so this bounds what a dashboard's read costs. */
#define PRUNE_ROLLUP_INTERVAL_MS 5000

/* The rollup adds the jobs completed since its last step (up to ten seconds ago, at most
 * two minutes per call) to the per-queue, per-minute counts that runner.queue_summary
 * and runner.completed_per_minute read, through runner.rollup_completed(); one instance
 * at a time does it, the others return at once. runner.prune() does it too before
 * deleting, so that retention never deletes a job before it is counted. The second
 * column says it is still behind (an instance that starts after a pause has up to an hour
 * to catch up): run again soon. rollup_completed() moves `through` two minutes at most,
 * and runner.rollup_through() reads the statement's snapshot, `through` before this
 * step: 20 s behind is caught up (see sql/004). */
#define PRUNE_ROLLUP_SQL                                                                           \
    "SELECT runner.rollup_completed(), runner.rollup_through() < now() - interval '140 s'"
/* prune_rollup_read returns the number of (minute, queue) rows written and *more, or -1
 * with err. */
int prune_rollup_read(const PGresult *res, bool *more, char *err, size_t errlen);

#endif
