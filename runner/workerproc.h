/* workerproc.h - pools of long-lived worker processes that run jobs over NDJSON pipes. */
#ifndef RUNNER_WORKERPROC_H
#define RUNNER_WORKERPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cancel.h"
#include "config.h"
#include "job.h"

/* A line a worker process writes (its answer) may be at most this long, newline
 * excluded; a longer one counts as garbage: the process is replaced. */
#define WORKERPROC_LINE_MAX (1024 * 1024)

/* After SIGKILL, how long to wait for a process to exit before abandoning it. */
#define WORKERPROC_REAP_GRACE_MS 5000

typedef struct workerproc_pool workerproc_pool;

/* workerproc_create makes the pool of kind (the name is copied): at most processes
 * processes running argv (copied; no shell), started lazily when jobs need them, all
 * owned by one supervisor thread the pool starts. kill_after_ms is the cancel budget
 * (see workerproc_run) and the time a process has to exit after EOF on its stdin.
 * Returns NULL with err filled when the thread cannot be started. */
workerproc_pool *workerproc_create(const char *kind, char *const argv[], int processes,
                                   int64_t kill_after_ms, char *err, size_t errlen);

/* workerproc_run runs job j on an idle process of the pool (starting one if fewer than
 * processes run) and blocks until the job has ended; it may be called from many threads
 * at once. A job finds every process busy only if the caller took more jobs than
 * workerproc_free() said: it then waits for one in FIFO order (cancellable).
 * - {"ok": true} -> JOB_COMPLETED (also when the answer comes after a cancel);
 *   {"error"} -> JOB_RETRY (res->delay_ms from "retry_in_ms", else -1);
 *   {"error", "discard": true} -> JOB_DISCARD;
 * - timeout_ms > 0 elapsed since the job was sent, or cancel fired: {"cancel": id} is
 *   sent; a process that has not answered after kill_after/2 gets SIGTERM (group), after
 *   kill_after SIGKILL, and is replaced. A timeout is JOB_RETRY "timed out after ...";
 *   a cancel is JOB_INTERRUPTED (shutdown), JOB_ABANDONED (lease lost) or JOB_CANCELLED
 *   (admin), unless the process answered ok. A lost lease turns any failure into
 *   JOB_ABANDONED.
 * - a process that exits, writes a line that is not a JSON answer, answers for another
 *   id or writes a line over WORKERPROC_LINE_MAX is replaced; the attempt fails
 *   (JOB_RETRY) with that reason.
 * Returns 0, or -1 when no process could be started (res is JOB_RETRY with the reason). */
int workerproc_run(workerproc_pool *p, const job *j, int64_t timeout_ms, cancel_token *cancel,
                   job_result *res);

/* workerproc_free returns how many more jobs the pool can start at once: processes
 * minus the jobs it is running or waiting to run. The claim takes at most this many
 * jobs of the kind. Processes of an older version that still finish a job after a roll
 * do not count. Thread-safe. */
int workerproc_free(workerproc_pool *p);

/* workerproc_roll replaces the processes by processes of argv (copied) as it is on disk
 * now: as many new ones start at once as were running (at most processes); each old
 * process gets EOF on stdin after its current job and is reaped when it exits, SIGTERM
 * and SIGKILL if it does not within kill_after. Running jobs are not interrupted and
 * new jobs do not wait for old processes. Returns at once. */
void workerproc_roll(workerproc_pool *p, char *const argv[], int processes);

/* workerproc_drain makes the pool offer no capacity (workerproc_free() is 0): idle
 * processes get EOF now, busy ones after their job. A job run meanwhile (claimed before)
 * still gets a process, which leaves after it. workerproc_roll() undoes it. */
void workerproc_drain(workerproc_pool *p);

/* workerproc_set_kill_after changes the cancel and exit budget for what happens next
 * (a reload of shutdown.kill_after). */
void workerproc_set_kill_after(workerproc_pool *p, int64_t kill_after_ms);

/* workerproc_running counts the pool's live processes, old versions included (tests,
 * status). */
int workerproc_running(workerproc_pool *p);

/* workerproc_destroy sends EOF to every process, waits up to wait_ms for them to exit,
 * then SIGKILLs the process groups still there, reaps them (at most
 * WORKERPROC_REAP_GRACE_MS more), stops the supervisor and frees the pool. No
 * workerproc_run may be in progress or start. NULL is a no-op. */
void workerproc_destroy(workerproc_pool *p, int64_t wait_ms);

/* The pools of every worker kind of a configuration, by kind name. Pools live until
 * workerproc_kinds_destroy, so a pointer from workerproc_kinds_pool stays valid. */
typedef struct workerproc_kinds workerproc_kinds;

/* workerproc_kinds_create makes a pool (no process yet) for each kind with "worker". */
workerproc_kinds *workerproc_kinds_create(const config *cfg, char *err, size_t errlen);
/* workerproc_kinds_reload applies a new configuration (a SIGHUP): a kind whose worker
 * argv or processes changed, or a file its argv names changed on disk (a new version of
 * the script or binary), is rolled, a new one gets a pool, a removed one (or one no
 * longer a worker kind) is drained; shutdown.kill_after is updated everywhere. Returns
 * -1 with err filled when a new pool could not be made (the others are applied). */
int workerproc_kinds_reload(workerproc_kinds *k, const config *cfg, char *err, size_t errlen);
/* workerproc_kinds_pool returns the pool of kind, NULL when it has none. */
workerproc_pool *workerproc_kinds_pool(workerproc_kinds *k, const char *kind);
/* workerproc_kinds_free is workerproc_free of kind's pool, -1 when kind has none. */
int workerproc_kinds_free(workerproc_kinds *k, const char *kind);
/* workerproc_kinds_run is workerproc_run on the pool of j->kind (JOB_RETRY and -1 when
 * there is none). */
int workerproc_kinds_run(workerproc_kinds *k, const job *j, int64_t timeout_ms,
                         cancel_token *cancel, job_result *res);
/* workerproc_kinds_destroy drains every pool, then destroys them all within wait_ms
 * (plus the reaping grace). No run may be in progress. NULL is a no-op. */
void workerproc_kinds_destroy(workerproc_kinds *k, int64_t wait_ms);

/* Tests set this to exercise the fallback used where pidfd_open() is unavailable (kernel
 * < 5.3, seccomp, valgrind): exits are then noticed within TICK_MS. */
extern bool workerproc_test_no_pidfd;

#endif
