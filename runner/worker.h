/* worker.h - the worker threads: each runs one job at a time through its handler. */
#ifndef RUNNER_WORKER_H
#define RUNNER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cancel.h"
#include "job.h"

/* A handler runs job j to the end and fills out. It watches cancel (an eventfd that
 * becomes readable) and returns soon after it fires. */
typedef void (*handler_fn)(void *ctx, const job *j, cancel_token *cancel, job_result *out);

typedef struct finished_job {
    job *job;
    job_result result;
    int64_t duration_us;
} finished_job;

typedef struct worker_pool worker_pool;

/* pool_create starts size threads with every signal blocked. wake_fd (an eventfd) is
 * written whenever a job finishes. */
worker_pool *pool_create(int size, handler_fn fn, void *ctx, int wake_fd, char *err, size_t errlen);
/* pool_set_limit changes how many jobs run at once (a reload of worker.concurrency):
 * more threads start when the pool has fewer; with fewer, the extra threads idle. */
int pool_set_limit(worker_pool *p, int limit, char *err, size_t errlen);
/* pool_destroy asks idle threads to exit and joins them; call once no job is running. */
void pool_destroy(worker_pool *p);

/* Jobs submitted and not finished (running or waiting for a worker). */
int pool_backlog(worker_pool *p);
/* Jobs a worker is running now. */
int pool_running(worker_pool *p);
/* Submitted, running, or finished-but-not-collected jobs. */
int pool_busy(worker_pool *p);
/* Jobs of queue submitted, running, or finished but not yet collected. */
int pool_running_in_queue(worker_pool *p, const char *queue);

/* pool_submit hands n jobs (ownership included) to the workers, in order, waking no
 * more workers than there are jobs. */
void pool_submit(worker_pool *p, job **jobs, size_t n);
/* pool_take_unstarted removes submitted jobs no worker has started; returns their count
 * and a malloc'd array the caller owns (with the jobs). */
size_t pool_take_unstarted(worker_pool *p, job ***out);
/* pool_take_unstarted_id removes submitted job id if no worker has started it yet and
 * returns it (the caller owns it), else NULL. */
job *pool_take_unstarted_id(worker_pool *p, int64_t id);
/* pool_collect moves finished jobs out; the caller owns the array and its contents. */
size_t pool_collect(worker_pool *p, finished_job **out);

/* pool_cancel_job cancels job id if a worker is running it; false if none is. */
bool pool_cancel_job(worker_pool *p, int64_t id, enum cancel_reason reason);
void pool_cancel_all(worker_pool *p, enum cancel_reason reason);

#endif
