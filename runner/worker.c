/* worker.c - worker threads, the queue of submitted jobs and the list of finished ones.
 *
 * DESIGN: one mutex guards the whole pool; it is held only to move jobs between lists,
 * never while a handler runs. Jobs arrive from the control loop with pool_submit and
 * leave through pool_collect; a worker writes the control loop's eventfd when the
 * first job since the last collect finishes, so completions are recorded without polling
 * and without one wake-up (and context switch) per job. Each worker owns a cancel
 * token that the control loop or the shutdown path fires by job id or for all. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct worker {
    worker_pool *pool;
    pthread_t thread;
    cancel_token cancel;
    const job *current; /* guarded by pool->lock */
};

struct worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    int size;  /* threads started */
    int limit; /* jobs run at once at most (worker.concurrency; a reload may change it) */
    int running;
    int idle; /* workers waiting for a job */
    bool stopping;
    handler_fn fn;
    void *ctx;
    int wake_fd;

    job **queue; /* submitted, not started: FIFO ring */
    size_t qhead, qlen, qcap;

    finished_job *done;
    size_t ndone, capdone;

    struct worker **workers; /* size of them */
};

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t rc;
    do
        rc = write(fd, &one, sizeof one);
    while (rc < 0 && errno == EINTR);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    worker_pool *p = w->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while ((p->qlen == 0 || p->running >= p->limit) && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
        }
        if (p->qlen == 0 && p->stopping)
            break;
        job *j = p->queue[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
        p->running++;
        cancel_reset(&w->cancel);
        w->current = j;
        pthread_mutex_unlock(&p->lock);

        job_result res = {.outcome = JOB_RETRY, .error = NULL, .delay_ms = -1};
        int64_t start = now_us();
        p->fn(p->ctx, j, &w->cancel, &res);
        int64_t took = now_us() - start;

        pthread_mutex_lock(&p->lock);
        w->current = NULL;
        p->running--;
        if (p->ndone == p->capdone) {
            p->capdone = p->capdone ? p->capdone * 2 : 16;
            p->done = xrealloc(p->done, p->capdone * sizeof *p->done);
        }
        p->done[p->ndone++] = (finished_job){.job = j, .result = res, .duration_us = took};
        /* one wake-up per batch: the control loop collects everything that finished */
        if (p->ndone == 1)
            wake(p->wake_fd);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* start_worker adds one thread to the pool (lock held or not yet shared), with every
 * signal blocked: the main thread owns them (shutdown.c). */
static int start_worker(worker_pool *p, char *err, size_t errlen)
{
    struct worker *w = xcalloc(1, sizeof *w);
    w->pool = p;
    if (cancel_init(&w->cancel) < 0) {
        free(w);
        return errf(err, errlen, "could not create cancel token: %s", strerror(errno));
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        cancel_destroy(&w->cancel);
        free(w);
        return errf(err, errlen, "could not start worker thread: %s", strerror(rc));
    }
    p->workers = xrealloc(p->workers, (size_t)(p->size + 1) * sizeof *p->workers);
    p->workers[p->size++] = w;
    return 0;
}

worker_pool *pool_create(int size, handler_fn fn, void *ctx, int wake_fd, char *err, size_t errlen)
{
    worker_pool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    p->limit = size;
    p->fn = fn;
    p->ctx = ctx;
    p->wake_fd = wake_fd;
    p->qcap = (size_t)size + 1;
    p->queue = xcalloc(p->qcap, sizeof *p->queue);
    while (p->size < size) {
        if (start_worker(p, err, errlen) < 0) {
            pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

int pool_set_limit(worker_pool *p, int limit, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (p->size < limit && rc == 0)
        rc = start_worker(p, err, errlen);
    p->limit = p->size < limit ? p->size : limit;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void pool_destroy(worker_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->size; i++) {
        pthread_join(p->workers[i]->thread, NULL);
        cancel_destroy(&p->workers[i]->cancel);
        free(p->workers[i]);
    }
    for (size_t i = 0; i < p->qlen; i++)
        job_free(p->queue[(p->qhead + i) % p->qcap]);
    for (size_t i = 0; i < p->ndone; i++) {
        job_free(p->done[i].job);
        job_result_free(&p->done[i].result);
    }
    free(p->queue);
    free(p->done);
    free(p->workers);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int pool_backlog(worker_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->running + (int)p->qlen;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int pool_running(worker_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->running;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int pool_busy(worker_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->running + (int)p->qlen + (int)p->ndone;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int pool_running_in_queue(worker_pool *p, const char *queue)
{
    int n = 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->size; i++)
        n += p->workers[i]->current && strcmp(p->workers[i]->current->queue, queue) == 0;
    for (size_t i = 0; i < p->qlen; i++)
        n += strcmp(p->queue[(p->qhead + i) % p->qcap]->queue, queue) == 0;
    for (size_t i = 0; i < p->ndone; i++)
        n += strcmp(p->done[i].job->queue, queue) == 0;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pool_submit(worker_pool *p, job **jobs, size_t n)
{
    pthread_mutex_lock(&p->lock);
    if (p->qlen + n > p->qcap) {
        size_t cap = p->qcap;
        while (cap < p->qlen + n)
            cap *= 2;
        job **q = xcalloc(cap, sizeof *q);
        for (size_t i = 0; i < p->qlen; i++)
            q[i] = p->queue[(p->qhead + i) % p->qcap];
        free(p->queue);
        p->queue = q;
        p->qhead = 0;
        p->qcap = cap;
    }
    for (size_t i = 0; i < n; i++)
        p->queue[(p->qhead + p->qlen + i) % p->qcap] = jobs[i];
    p->qlen += n;
    /* busy workers take the next job themselves when they finish theirs */
    size_t wake_n = n < (size_t)p->idle ? n : (size_t)p->idle;
    for (size_t i = 0; i < wake_n; i++)
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

size_t pool_take_unstarted(worker_pool *p, job ***out)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->qlen;
    *out = xcalloc(n, sizeof **out);
    for (size_t i = 0; i < n; i++)
        (*out)[i] = p->queue[(p->qhead + i) % p->qcap];
    p->qhead = 0;
    p->qlen = 0;
    pthread_mutex_unlock(&p->lock);
    return n;
}

job *pool_take_unstarted_id(worker_pool *p, int64_t id)
{
    job *found = NULL;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->qlen && !found; i++) {
        size_t at = (p->qhead + i) % p->qcap;
        if (p->queue[at]->id != id)
            continue;
        found = p->queue[at];
        for (size_t k = i; k + 1 < p->qlen; k++)
            p->queue[(p->qhead + k) % p->qcap] = p->queue[(p->qhead + k + 1) % p->qcap];
        p->qlen--;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

size_t pool_collect(worker_pool *p, finished_job **out)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->ndone;
    *out = p->done;
    p->done = NULL;
    p->ndone = 0;
    p->capdone = 0;
    pthread_mutex_unlock(&p->lock);
    return n;
}

bool pool_cancel_job(worker_pool *p, int64_t id, enum cancel_reason reason)
{
    bool found = false;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->size; i++) {
        if (p->workers[i]->current && p->workers[i]->current->id == id) {
            cancel_request(&p->workers[i]->cancel, reason);
            found = true;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

void pool_cancel_all(worker_pool *p, enum cancel_reason reason)
{
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->size; i++)
        if (p->workers[i]->current)
            cancel_request(&p->workers[i]->cancel, reason);
    pthread_mutex_unlock(&p->lock);
}
