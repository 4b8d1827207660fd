/* outcome.c - what became of each job: handler results turned into outcomes, logged, and
 * written in fenced batches on a connection of their own.
 *
 * DESIGN: outcomes are written on a second connection, so that the statement recording
 * one batch runs on the server while the next claim runs on the main connection: with
 * short jobs these two statements are most of the loop's work, and on one connection one
 * server backend ran them one after the other. One batch is in flight at a time. The
 * loop's renewals and rescues wait for it, since their UPDATEs would take the same rows'
 * locks in another order; that delays them by milliseconds, at most by the statement
 * timeout. While the second connection cannot be opened (max_connections reached, say),
 * batches are written on the main connection and waited for. A batch that fails goes
 * back to the front of pending and is sent again; its fence (finish.c) keeps a repeat
 * from changing a row twice. */
#include "outcome.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "util.h"

/* CONNECT_TIMEOUT_MS is short, so a black-holed server cannot hold up the loop for long */
#define CONNECT_TIMEOUT_MS 3000

void outcome_writer_init(outcome_writer *w, const config *cfg, const char *url,
                         const char *instance_id, int64_t timeout_ms, held_set *held,
                         metrics *m)
{
    *w = (outcome_writer){.cfg = cfg,
                          .url = url,
                          .instance_id = instance_id,
                          .timeout_ms = timeout_ms,
                          .held = held,
                          .metrics = m};
}

/* retried: a failed attempt's job waits for its next one (due now: available; after a
 * backoff: scheduled). */
static bool retried(const char *state)
{
    return strcmp(state, "available") == 0 || strcmp(state, "scheduled") == 0;
}

/* count_written counts what the batch did to one job in the metrics. */
static void count_written(outcome_writer *w, const outcome *o)
{
    const char *st = o->item.new_state;
    if (st && strcmp(st, "completed") == 0)
        w->completed++;
    if (!w->metrics || !st)
        return;
    double took = (double)o->duration_ms / 1000.0;
    enum metrics_outcome m;
    switch (o->item.outcome) {
    case FINISH_COMPLETED:
        m = METRICS_COMPLETED;
        break;
    case FINISH_RETRY: /* the trigger of 002 turns a retry of a cancelled job into cancelled */
        m = retried(st)                    ? METRICS_FAILED
            : strcmp(st, "cancelled") == 0 ? METRICS_CANCELLED
                                           : METRICS_DISCARDED;
        break;
    case FINISH_DISCARD:
        m = METRICS_DISCARDED;
        break;
    case FINISH_CANCELLED:
        m = METRICS_CANCELLED;
        break;
    default: /* released, handed back */
        m = METRICS_RELEASED;
        took = -1;
        break;
    }
    metrics_job_outcome(w->metrics, metrics_series_for(w->metrics, o->queue, o->job_kind), m, took);
}

static void free_outcomes(outcome *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].error);
}

void outcome_add(outcome_writer *w, const job *j, finish_outcome o, char *error, int64_t delay_ms,
                 int64_t duration_ms)
{
    if (w->npending == w->cappending) {
        w->cappending = w->cappending ? w->cappending * 2 : 64;
        w->pending = xrealloc(w->pending, w->cappending * sizeof *w->pending);
    }
    w->pending[w->npending++] = (outcome){.item = {.id = j->id,
                                                  .attempt = j->attempt,
                                                  .outcome = o,
                                                  .error = error,
                                                  .delay_ms = delay_ms},
                                         .error = error,
                                         .job_kind = held_intern(w->held, j->kind),
                                         .queue = held_intern(w->held, j->queue),
                                         .duration_ms = duration_ms};
}

/* job_fields is a job's numbers as log field values */
typedef struct job_fields {
    char id[24], attempt[16], took[24];
} job_fields;

static void format_fields(job_fields *t, int64_t id, int attempt, int64_t took_ms)
{
    snprintf(t->id, sizeof t->id, "%lld", (long long)id);
    snprintf(t->attempt, sizeof t->attempt, "%d", attempt);
    snprintf(t->took, sizeof t->took, "%lld", (long long)took_ms);
}

void outcome_of_result(outcome_writer *w, finished_job *f, int64_t backoff_base_ms,
                       int64_t backoff_max_ms, const char *instance_id)
{
    job *j = f->job;
    job_result *r = &f->result;
    int64_t took_ms = f->duration_us / 1000;
    held_job *h = held_find(w->held, j->id, j->attempt);
    char *error = r->error;
    r->error = NULL;
    /* a queue with a limit of its own has room again: claim for it next turn */
    if (config_queue_limit(w->cfg, j->queue) > 0)
        w->limited_room = true;
    if (r->outcome == JOB_COMMITTED) {
        /* the fenced completion committed with the work: the lease was ours to the end,
         * even if a renewal raced with the commit and missed the row */
        if (log_enabled(LOG_INFO)) {
            job_fields t;
            format_fields(&t, j->id, j->attempt, took_ms);
            log_event(LOG_INFO, "job completed", "job_id", t.id, "kind", j->kind, "attempt",
                      t.attempt, "duration_ms", t.took, NULL);
        }
        free(error);
        held_drop(w->held, j->id, j->attempt);
        w->completed++;
        if (w->metrics)
            metrics_job_outcome(w->metrics, metrics_series_for(w->metrics, j->queue, j->kind),
                                METRICS_COMPLETED, (double)f->duration_us / 1e6);
        return;
    }
    if (!h || (h->lost && !h->abandoning)) {
        /* the lease was taken over: whatever the handler did, the job is a peer's */
        job_fields t;
        format_fields(&t, j->id, j->attempt, 0);
        log_event(LOG_WARN, "lease lost: another instance took the job over, outcome dropped",
                  "job_id", t.id, "kind", j->kind, "attempt", t.attempt, NULL);
        free(error);
        if (h)
            held_drop(w->held, j->id, j->attempt);
        return;
    }
    switch (r->outcome) {
    case JOB_COMPLETED:
        outcome_add(w, j, FINISH_COMPLETED, error, 0, took_ms);
        break;
    case JOB_COMMITTED: /* handled above */
        break;
    case JOB_RETRY: {
        int64_t delay = r->delay_ms;
        if (delay < 0)
            delay = backoff_delay_ms(j->attempt, backoff_base_ms, backoff_max_ms, backoff_random());
        outcome_add(w, j, FINISH_RETRY, error ? error : xstrdup("failed"), delay, took_ms);
        break;
    }
    case JOB_DISCARD:
        outcome_add(w, j, FINISH_DISCARD, error ? error : xstrdup("discarded"), 0, took_ms);
        break;
    case JOB_CANCELLED:
        free(error);
        outcome_add(w, j, FINISH_CANCELLED, xstrdup("cancelled by admin"), 0, took_ms);
        break;
    case JOB_INTERRUPTED:
    case JOB_ABANDONED:
        free(error);
        outcome_add(w, j, FINISH_RELEASED,
                    xasprintf(r->outcome == JOB_INTERRUPTED
                                  ? "interrupted by shutdown of instance %s"
                                  : "released by instance %s: lease renewals failed",
                              instance_id),
                    0, took_ms);
        break;
    }
}

/* log_written logs what the batch did to one job. */
static void log_written(const outcome *o)
{
    const char *st = o->item.new_state;
    bool done = st && strcmp(st, "completed") == 0 && o->item.outcome == FINISH_COMPLETED;
    if (done && !log_enabled(LOG_INFO))
        return; /* the common case: nothing to format */
    job_fields t;
    format_fields(&t, o->item.id, o->item.attempt, o->duration_ms);
    if (!st) {
        log_event(LOG_WARN, "job outcome not recorded: lease lost", "job_id", t.id, "kind",
                  o->job_kind, "attempt", t.attempt, NULL);
    } else if (o->item.outcome == FINISH_HANDED_BACK) {
        log_event(LOG_INFO, "job handed back", "job_id", t.id, "kind", o->job_kind, NULL);
    } else if (o->item.outcome == FINISH_RELEASED) {
        log_event(LOG_INFO, "job released", "job_id", t.id, "kind", o->job_kind, "attempt",
                  t.attempt, "duration_ms", t.took, "reason", o->error, NULL);
    } else if (strcmp(st, "completed") == 0) {
        log_event(LOG_INFO, "job completed", "job_id", t.id, "kind", o->job_kind, "attempt",
                  t.attempt, "duration_ms", t.took, NULL);
    } else if (retried(st)) {
        char delay[24];
        snprintf(delay, sizeof delay, "%lld", (long long)o->item.delay_ms);
        log_event(LOG_WARN, "job failed, will retry", "job_id", t.id, "kind", o->job_kind,
                  "attempt", t.attempt, "duration_ms", t.took, "retry_in_ms", delay, "error",
                  o->error, NULL);
    } else {
        bool cancelled = strcmp(st, "cancelled") == 0;
        log_event(cancelled ? LOG_INFO : LOG_ERROR, cancelled ? "job cancelled" : "job failed",
                  "job_id", t.id, "kind", o->job_kind, "attempt", t.attempt, "duration_ms",
                  t.took, "error", o->error, NULL);
    }
}

/* close_conn gives up the writer's connection: batches go to the main one until it can
 * be opened again (capped exponential backoff with jitter, logged once). */
static void close_conn(outcome_writer *w, const char *why)
{
    if (w->call) {
        db_call_abort(w->call);
        w->call = NULL;
    }
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    if (!w->down_logged) {
        log_event(LOG_WARN, "outcome connection unavailable, writing outcomes on the main one",
                  "error", why, NULL);
        w->down_logged = true;
    }
    w->reconnect_delay = backoff_next_delay(w->reconnect_delay);
    w->reconnect_at = now_ms() + backoff_jitter(w->reconnect_delay);
}

/* unsend puts the batch in flight back in front of pending. */
static void unsend(outcome_writer *w)
{
    if (w->npending + w->ninflight > w->cappending) {
        w->cappending = w->npending + w->ninflight;
        w->pending = xrealloc(w->pending, w->cappending * sizeof *w->pending);
    }
    memmove(w->pending + w->ninflight, w->pending, w->npending * sizeof *w->pending);
    memcpy(w->pending, w->inflight, w->ninflight * sizeof *w->pending);
    w->npending += w->ninflight;
    w->ninflight = 0;
    free(w->items);
    w->items = NULL;
}

/* take_batch turns pending into the batch; the batch's old array collects what comes
 * next. */
static void take_batch(outcome_writer *w)
{
    outcome *swap = w->inflight;
    size_t cap = w->capinflight;
    w->inflight = w->pending;
    w->capinflight = w->cappending;
    w->ninflight = w->npending;
    w->pending = swap;
    w->cappending = cap;
    w->npending = 0;
    w->items = xcalloc(w->ninflight, sizeof *w->items);
    for (size_t i = 0; i < w->ninflight; i++)
        w->items[i] = w->inflight[i].item;
}

/* batch_answered takes the batch statement's answer (res NULL: it failed with err).
 * Returns -1 when the main connection (on_writer false) broke. */
static int batch_answered(outcome_writer *w, PGresult *res, bool broken, const char *err,
                          bool on_writer)
{
    if (!res) {
        unsend(w);
        if (broken && on_writer) {
            close_conn(w, err);
        } else if (broken) {
            return -1;
        } else {
            log_event(LOG_ERROR, "could not record job outcomes", "error", err, NULL);
            w->retry_delay = backoff_next_delay(w->retry_delay);
            w->retry_at = now_ms() + w->retry_delay;
        }
        return 0;
    }
    finish_read(res, w->items, w->ninflight);
    for (size_t i = 0; i < w->ninflight; i++) {
        outcome *o = &w->inflight[i];
        /* a limited queue counts unwritten outcomes as running: now it has room */
        if (config_queue_limit(w->cfg, o->queue) > 0)
            w->limited_room = true;
        o->item.new_state = w->items[i].new_state;
        log_written(o);
        count_written(w, o);
        held_drop(w->held, o->item.id, o->item.attempt);
    }
    free_outcomes(w->inflight, w->ninflight);
    w->ninflight = 0;
    free(w->items);
    w->items = NULL;
    w->retry_delay = 0;
    if (on_writer) {
        if (w->down_logged)
            log_event(LOG_INFO, "outcome connection restored", NULL);
        w->down_logged = false;
        w->reconnect_delay = 0;
    }
    return 0;
}

static void end_call(outcome_writer *w)
{
    char err[ERR_LEN];
    bool broken;
    PGresult *res = db_call_end(w->call, &broken, err, sizeof err);
    w->call = NULL;
    batch_answered(w, res, broken, err, true);
}

int outcome_flush(outcome_writer *w, PGconn *main, int64_t now, int64_t last_until,
                  db_notify_fn notify_fn, void *notify_arg, char *err, size_t errlen)
{
    bool broken, last = last_until > 0;
    int64_t timeout = w->timeout_ms;
    if (last) /* the final writes get what is left of the shutdown's budget */
        timeout = last_until > now ? last_until - now : 0;
    if (last && w->call) {
        int64_t left = w->deadline > now ? w->deadline - now : 0;
        PGresult *res = db_call_wait(w->call, left < timeout ? left : timeout, NULL, NULL, &broken,
                                     err, errlen);
        w->call = NULL;
        batch_answered(w, res, broken, err, true);
    }
    if (w->npending == 0 || w->call || now < w->retry_at)
        return 0;
    if (!last && !w->conn && !w->connecting && now >= w->reconnect_at) {
        /* on a thread of its own: a server that does not answer must not hold the loop
         * for the connect timeout; meanwhile batches go over the main connection */
        w->connecting = db_connect_begin(w->url, "runner outcomes", CONNECT_TIMEOUT_MS);
        if (!w->connecting) { /* no thread to be had: connect here, within the timeout */
            w->conn = db_connect(w->url, "runner outcomes", CONNECT_TIMEOUT_MS, err, errlen);
            if (!w->conn)
                close_conn(w, err);
        }
    }
    take_batch(w);
    if (w->conn && !last) {
        w->call = finish_send(w->conn, w->instance_id, w->items, w->ninflight);
        w->deadline = now + w->timeout_ms;
        if (db_call_done(w->call))
            end_call(w);
        return 0;
    }
    db_call *call = finish_send(main, w->instance_id, w->items, w->ninflight);
    PGresult *res = db_call_wait(call, timeout, notify_fn, notify_arg, &broken, err, errlen);
    return batch_answered(w, res, broken, err, false);
}

void outcome_poll(outcome_writer *w, int64_t now)
{
    if (w->connecting && db_connecting_done(w->connecting)) {
        char err[ERR_LEN];
        w->conn = db_connect_end(w->connecting, err, sizeof err);
        w->connecting = NULL;
        if (!w->conn)
            close_conn(w, err);
    }
    if (!w->call)
        return;
    db_call_poll(w->call);
    if (db_call_done(w->call)) {
        end_call(w);
    } else if (now >= w->deadline) {
        unsend(w);
        close_conn(w, "recording job outcomes timed out");
    }
}

int64_t outcome_due(const outcome_writer *w)
{
    if (w->call)
        return w->deadline;
    if (w->npending > 0)
        return w->retry_at; /* 0: at once */
    return INT64_MAX;
}

int outcome_poll_fd(const outcome_writer *w, short *events)
{
    if (w->connecting) { /* readable once the attempt ended */
        *events = POLLIN;
        return db_connecting_fd(w->connecting);
    }
    if (!w->call)
        return -1;
    *events = db_call_wants_write(w->call) ? POLLOUT : POLLIN;
    return PQsocket(w->conn);
}

int outcome_unwritten_in_queue(const outcome_writer *w, const char *queue)
{
    int n = 0;
    for (size_t k = 0; k < w->npending; k++)
        n += strcmp(w->pending[k].queue, queue) == 0;
    for (size_t k = 0; k < w->ninflight; k++)
        n += strcmp(w->inflight[k].queue, queue) == 0;
    return n;
}

static bool is_release(const outcome *o)
{
    return o->item.outcome == FINISH_RELEASED || o->item.outcome == FINISH_HANDED_BACK;
}

bool outcome_release_unwritten(const outcome_writer *w)
{
    for (size_t i = 0; i < w->npending; i++)
        if (is_release(&w->pending[i]))
            return true;
    for (size_t i = 0; i < w->ninflight; i++)
        if (is_release(&w->inflight[i]))
            return true;
    return false;
}

bool outcome_unwritten_for(const outcome_writer *w, int64_t id)
{
    for (size_t i = 0; i < w->npending; i++)
        if (w->pending[i].item.id == id)
            return true;
    for (size_t i = 0; i < w->ninflight; i++)
        if (w->inflight[i].item.id == id)
            return true;
    return false;
}

bool outcome_forget(outcome_writer *w, int64_t id)
{
    for (size_t k = 0; k < w->npending; k++) {
        outcome *o = &w->pending[k];
        if (o->item.id != id)
            continue;
        char text[24];
        snprintf(text, sizeof text, "%lld", (long long)id);
        log_event(LOG_WARN, "lease lost before the outcome was recorded", "job_id", text, "kind",
                  o->job_kind, NULL);
        held_drop(w->held, id, o->item.attempt);
        free(o->error);
        *o = w->pending[--w->npending];
        return true;
    }
    return false;
}

void outcome_writer_free(outcome_writer *w)
{
    if (w->connecting) { /* its thread closes what it gets */
        db_connect_abandon(w->connecting);
        w->connecting = NULL;
    }
    if (w->call) { /* only after the cancel deadline: its leases run out instead */
        db_call_abort(w->call);
        w->call = NULL;
        unsend(w);
    }
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    free_outcomes(w->pending, w->npending);
    free_outcomes(w->inflight, w->ninflight);
    free(w->pending);
    free(w->inflight);
    free(w->items);
    memset(w, 0, sizeof *w);
}
