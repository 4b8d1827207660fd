/* outcome.h - what became of each job: handler results turned into outcomes, logged, and
 * written in fenced batches on a connection of their own. */
#ifndef RUNNER_OUTCOME_H
#define RUNNER_OUTCOME_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "finish.h"
#include "held.h"
#include "metrics.h"
#include "worker.h"

/* An outcome waiting to be written: the fenced write (item) and what the log says. */
typedef struct outcome {
    finish_item item;
    char *error;          /* owned; item.error points at it */
    const char *job_kind; /* interned in the held set */
    const char *queue;    /* interned in the held set */
    int64_t duration_ms;
} outcome;

/* The writer: outcomes collect in `pending` while one batch is in flight on the
 * writer's own connection. */
typedef struct outcome_writer {
    const config *cfg;
    const char *url;
    const char *instance_id; /* the fence's lease owner */
    int64_t timeout_ms;      /* deadline of a batch's statement */
    held_set *held;
    metrics *metrics;

    outcome *pending;
    size_t npending, cappending;

    PGconn *conn;      /* the writer's connection, NULL while it cannot be opened */
    db_connecting *connecting; /* an attempt to open conn, in flight (off the loop) */
    db_call *call;     /* the batch's statement, NULL when none is in flight */
    outcome *inflight; /* the batch */
    size_t ninflight, capinflight;
    finish_item *items;
    int64_t deadline;
    int64_t reconnect_at, reconnect_delay;
    int64_t retry_at, retry_delay; /* after a batch failed on a working connection */
    bool down_logged;
    bool limited_room; /* an outcome of a queue with a limit of its own was written */
    uint64_t completed; /* jobs completed, as written (or committed by their handler) */
} outcome_writer;

void outcome_writer_init(outcome_writer *w, const config *cfg, const char *url,
                         const char *instance_id, int64_t timeout_ms, held_set *held,
                         metrics *m);
/* outcome_writer_free closes the connection (an unfinished batch is abandoned: its
 * leases run out) and frees every outcome. */
void outcome_writer_free(outcome_writer *w);

/* outcome_add queues the outcome of job j (error: malloc'd, taken over, may be NULL). */
void outcome_add(outcome_writer *w, const job *j, finish_outcome o, char *error, int64_t delay_ms,
                 int64_t duration_ms);

/* outcome_of_result turns what a handler returned into an outcome to write, or into
 * nothing (its transaction wrote the completion; the lease was lost) with a log line.
 * backoff_* are the job kind's settings, used when the handler did not set a delay;
 * instance_id names this instance in the history note of a released job. Takes the
 * result's error. */
void outcome_of_result(outcome_writer *w, finished_job *f, int64_t backoff_base_ms,
                       int64_t backoff_max_ms, const char *instance_id);

/* outcome_flush sends the outcomes collected so far as one batch unless one is in
 * flight. last_until > 0 (cancelling: the process ends right after) makes these the last
 * writes: they wait for the batch in flight, then write on the main connection and wait
 * for the answer, all until last_until at most. Returns -1 with err when the main
 * connection broke (close it); other failures are logged and retried. */
int outcome_flush(outcome_writer *w, PGconn *main, int64_t now, int64_t last_until,
                  db_notify_fn notify_fn, void *notify_arg, char *err, size_t errlen);
/* outcome_poll reads the batch statement's answer as it arrives, and takes the writer's
 * new connection once the attempt to open it has ended. */
void outcome_poll(outcome_writer *w, int64_t now);
/* outcome_due is when outcome_flush or outcome_poll next has something to do on its own
 * (a deadline or a retry); INT64_MAX when only new outcomes or the socket can wake it. */
int64_t outcome_due(const outcome_writer *w);
/* outcome_poll_fd is the socket to watch while a batch is in flight, or the attempt to
 * open the writer's connection while one is (-1 if neither). */
int outcome_poll_fd(const outcome_writer *w, short *events);

static inline bool outcome_in_flight(const outcome_writer *w)
{
    return w->call != NULL;
}
static inline size_t outcome_unwritten(const outcome_writer *w)
{
    return w->npending + w->ninflight;
}
/* outcome_unwritten_in_queue counts unwritten outcomes of queue (the table still shows
 * those jobs running, so a queue's limit counts them). */
int outcome_unwritten_in_queue(const outcome_writer *w, const char *queue);
/* outcome_release_unwritten: a release or hand-back is not written yet. */
bool outcome_release_unwritten(const outcome_writer *w);
/* outcome_unwritten_for: job id has an outcome not written yet. */
bool outcome_unwritten_for(const outcome_writer *w, int64_t id);
/* outcome_forget drops job id's pending outcome (its lease was lost: the fence would not
 * pass) and logs it; false when it had none. */
bool outcome_forget(outcome_writer *w, int64_t id);

#endif
