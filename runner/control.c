/* control.c - the control loop: claims jobs, renews leases, records outcomes, rescues.
 *
 * DESIGN: one thread, one non-blocking connection, one poll() over the connection's
 * socket (LISTEN notifications) and an eventfd that the workers and the shutdown path
 * write. Every statement runs with a deadline, so a stalled server never blocks the loop
 * for longer than that.
 *
 * The loop keeps in memory every job it holds a lease on ("held"): claimed, running, or
 * finished with its outcome not yet written. It renews exactly those leases, so a job the
 * process no longer tracks is never renewed. Outcomes collect while a statement is in
 * flight and are written together in one fenced statement (finish.c).
 *
 * Database failures never lose a job: outcomes stay queued and are retried after a
 * reconnect (capped exponential backoff with jitter, logged once per state change). When
 * renewals have failed for so long that a lease might run out, the jobs are cancelled
 * here first, before a peer can rescue them, and released once the server is back.
 *
 * Claims take as many jobs as there are free workers. For very short jobs that is not
 * enough to keep the workers busy while the next claim is in flight, so the loop also
 * prefetches: from the measured job duration and claim round trip it claims enough
 * extra jobs to cover two round trips (at most MAX_PREFETCH). Jobs of a second or more
 * are never prefetched, so an instance never hoards work that an idle peer could run.
 *
 * Shutdown (driven by shutdown.c through control_drain / control_cancel):
 *   draining:   no more claims, UNLISTEN, unstarted jobs handed back, running jobs go on
 *               and their outcomes are written as usual; leases keep being renewed;
 *   cancelling: every running job is cancelled; when all have returned (or the
 *               kill_after deadline passed) all outcomes, the releases included, are
 *               written in one statement, the instance is marked stopped, the loop ends. */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backoff.h"
#include "claim.h"
#include "db.h"
#include "finish.h"
#include "idmap.h"
#include "lease.h"
#include "log.h"
#include "migrate.h"
#include "prune.h"
#include "schedule.h"
#include "util.h"

#define STATEMENT_TIMEOUT_MS 30000
/* short, so a black-holed server cannot hold up the lease guard for long */
#define CONNECT_TIMEOUT_MS 3000
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 10000
#define CANCEL_SLACK_MS 500
#define UNHANDLED_CHECK_MS (60 * 1000)
#define MAX_PREFETCH 1000
#define PRUNE_INTERVAL_MS (60 * 1000)

enum phase { PHASE_RUNNING, PHASE_DRAINING, PHASE_CANCELLING };
enum request { REQ_NONE, REQ_DRAIN, REQ_CANCEL };

typedef struct held {
    int64_t id;
    int attempt;
    const char *kind;   /* interned */
    int64_t renewed_ms; /* when the last renewal (or the claim) that covered it was sent */
    bool lost;          /* the lease is no longer ours: never renew, never write */
    bool abandoning;    /* cancelled because renewals failed: release when possible */
} held;

typedef struct pending {
    finish_item item;
    char *error;
    const char *kind;  /* interned */
    const char *queue; /* interned */
    int64_t duration_ms;
} pending;

struct control {
    const config *cfg;
    const char *url;
    worker_pool *pool;
    int wake_fd;
    int done_fd;
    const control_kind *kinds;
    size_t nkinds;
    const char **kind_names;
    int *kind_max;

    pthread_t thread;
    bool started;
    _Atomic int request;
    int rc;
    char err[ERR_LEN];

    enum phase phase;
    PGconn *conn;
    bool listening;
    bool down_logged;
    int64_t reconnect_at;
    int64_t reconnect_delay;

    instance_info inst;
    bool registered;

    held *held;
    size_t nheld, capheld;
    idmap held_at; /* id -> index in held of its newest attempt */
    size_t nsame;  /* held entries with the id of a newer one */
    pending *pending;
    size_t npending, cappending;

    /* the outcome writer: a connection of its own, one batch in flight at a time */
    PGconn *wconn;
    db_call *wcall;    /* the batch's statement, NULL when none is in flight */
    pending *inflight; /* the batch */
    size_t ninflight, capinflight;
    finish_item *witems;
    int64_t wdeadline;
    int64_t wreconnect_at, wreconnect_delay;
    int64_t wretry_at, wretry_delay; /* after a batch failed without a broken connection */
    bool wdown_logged;

    bool listening_jobs; /* LISTEN runner_jobs (while running); runner_control always */
    bool schedules_synced;
    int64_t next_schedule;
    int64_t next_prune;
    bool notified;
    bool more_waiting;
    int64_t next_claim;
    int64_t next_renew;
    int64_t next_rescue;
    int64_t cancel_deadline;
    int64_t next_unhandled_check;
    double avg_job_us;   /* moving average of handler run times */
    double avg_claim_us; /* moving average of claim round trips */
    char **names;        /* interned kind and queue names (see intern) */
    size_t nnames;
    char **warned_kinds; /* kinds already reported as unhandled */
    size_t nwarned;
};

/* ---- bookkeeping of held jobs and pending outcomes ---- */

/* intern returns the loop's own copy of a kind or queue name: a held job and its
 * outcome point at it instead of copying it (the names are few; the jobs many). */
static const char *intern(control *c, const char *name)
{
    for (size_t i = 0; i < c->nnames; i++)
        if (strcmp(c->names[i], name) == 0)
            return c->names[i];
    c->names = xrealloc(c->names, (c->nnames + 1) * sizeof *c->names);
    c->names[c->nnames] = xstrdup(name);
    return c->names[c->nnames++];
}

/* find_held finds the held job id at attempt (< 0: its newest attempt). The map points
 * at the newest; an older attempt is still held only while its handler, whose lease was
 * lost, has not returned yet, so that rare case is a scan. */
static held *find_held(control *c, int64_t id, int attempt)
{
    size_t i;
    if (!idmap_get(&c->held_at, id, &i))
        return NULL;
    if (attempt < 0 || c->held[i].attempt == attempt)
        return &c->held[i];
    for (i = 0; i < c->nheld && c->nsame > 0; i++)
        if (c->held[i].id == id && c->held[i].attempt == attempt)
            return &c->held[i];
    return NULL;
}

static void add_held(control *c, const job *j, int64_t sent_ms)
{
    if (c->nheld == c->capheld) {
        c->capheld = c->capheld ? c->capheld * 2 : 64;
        c->held = xrealloc(c->held, c->capheld * sizeof *c->held);
    }
    size_t older;
    if (idmap_get(&c->held_at, j->id, &older))
        c->nsame++;
    idmap_put(&c->held_at, j->id, c->nheld);
    c->held[c->nheld++] = (held){
        .id = j->id, .attempt = j->attempt, .kind = intern(c, j->kind), .renewed_ms = sent_ms};
}

static void drop_held(control *c, int64_t id, int attempt)
{
    held *h = find_held(c, id, attempt);
    if (!h)
        return;
    size_t i = (size_t)(h - c->held), mapped = SIZE_MAX, moved;
    idmap_get(&c->held_at, id, &mapped);
    c->held[i] = c->held[--c->nheld];
    /* the last entry moved into slot i: its map entry follows it */
    if (i < c->nheld && idmap_get(&c->held_at, c->held[i].id, &moved) && moved == c->nheld)
        idmap_put(&c->held_at, c->held[i].id, i);
    if (mapped != i) {
        c->nsame--; /* an older attempt went */
        return;
    }
    idmap_del(&c->held_at, id);
    if (c->nsame == 0)
        return;
    /* an older attempt is still held: the newest of those becomes the mapped one */
    size_t newest = SIZE_MAX;
    for (size_t k = 0; k < c->nheld; k++)
        if (c->held[k].id == id &&
            (newest == SIZE_MAX || c->held[k].attempt > c->held[newest].attempt))
            newest = k;
    if (newest != SIZE_MAX) {
        idmap_put(&c->held_at, id, newest);
        c->nsame--;
    }
}

static void add_pending(control *c, const job *j, finish_kind kind, char *error, int64_t delay_ms,
                        int64_t duration_ms)
{
    if (c->npending == c->cappending) {
        c->cappending = c->cappending ? c->cappending * 2 : 64;
        c->pending = xrealloc(c->pending, c->cappending * sizeof *c->pending);
    }
    pending *p = &c->pending[c->npending++];
    *p = (pending){.item = {.id = j->id,
                            .attempt = j->attempt,
                            .kind = kind,
                            .error = error,
                            .delay_ms = delay_ms},
                   .error = error,
                   .kind = intern(c, j->kind),
                   .queue = intern(c, j->queue),
                   .duration_ms = duration_ms};
}

static void free_pending(pending *p)
{
    free(p->error);
}

static const control_kind *kind_settings(control *c, const char *name)
{
    for (size_t i = 0; i < c->nkinds; i++)
        if (strcmp(c->kinds[i].name, name) == 0)
            return &c->kinds[i];
    return NULL;
}

/* ---- connection ---- */

static void request_cancel(control *c, int64_t id);

/* on_notify: runner_jobs carries a queue with new jobs (a hint to claim now);
 * runner_control carries "cancel:<id>" from runner.cancel_job(). */
static void on_notify(void *arg, const PGnotify *n)
{
    control *c = arg;
    if (strcmp(n->relname, "runner_control") == 0) {
        if (strncmp(n->extra, "cancel:", 7) == 0)
            request_cancel(c, strtoll(n->extra + 7, NULL, 10));
        return;
    }
    for (size_t i = 0; i < c->cfg->nqueues; i++)
        if (strcmp(n->extra, c->cfg->queues[i]) == 0)
            c->notified = true;
}

/* next_delay doubles a reconnect or retry delay, from RECONNECT_MIN_MS to _MAX_MS */
static int64_t next_delay(int64_t delay)
{
    delay = delay ? delay * 2 : RECONNECT_MIN_MS;
    return delay > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay;
}

static void disconnect(control *c, const char *why)
{
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->listening = false;
    c->listening_jobs = false;
    if (!c->down_logged) {
        log_event(LOG_WARN, "database connection lost", "error", why, NULL);
        c->down_logged = true;
    }
    c->reconnect_delay = next_delay(c->reconnect_delay);
    c->reconnect_at =
        now_ms() + backoff_delay_ms(1, c->reconnect_delay, c->reconnect_delay, backoff_random());
}

/* check reports a failed statement: a broken connection is dropped (and logged once),
 * any other error is logged as is. */
static void check(control *c, bool broken, const char *what, const char *err)
{
    if (broken) {
        disconnect(c, err);
        return;
    }
    log_event(LOG_ERROR, what, "error", err, NULL);
}

static int listen_stmt(control *c, const char *sql)
{
    char err[ERR_LEN];
    bool broken;
    PGresult *res =
        db_exec(c->conn, sql, 0, NULL, c->inst.timeout_ms, on_notify, c, &broken, err, sizeof err);
    if (!res) {
        check(c, broken, "could not change LISTEN", err);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* set_listen_jobs follows runner_jobs (new jobs) while the instance claims. */
static void set_listen_jobs(control *c, bool on)
{
    if (listen_stmt(c, on ? "LISTEN runner_jobs" : "UNLISTEN runner_jobs") == 0)
        c->listening_jobs = on;
}

/* connect_db (re)opens the connection, checks the schema and (re)registers the
 * instance. A schema mismatch is fatal: no amount of retrying fixes it. */
static int connect_db(control *c)
{
    char err[ERR_LEN];
    bool broken = false;
    c->conn = db_connect(c->url, "runner", CONNECT_TIMEOUT_MS, err, sizeof err);
    if (!c->conn) {
        c->conn = NULL;
        if (!c->down_logged) {
            log_event(LOG_WARN, "database unavailable, retrying", "error", err, NULL);
            c->down_logged = true;
        }
        disconnect(c, err);
        return 0;
    }
    /* checked at start only: a peer of a newer release may migrate while this instance
     * runs, and this one must then finish its jobs rather than quit mid-deploy */
    if (!c->registered && migrate_check(c->conn, &broken, err, sizeof err) < 0) {
        if (broken) { /* the connection failed, not the check: retry like any outage */
            disconnect(c, err);
            return 0;
        }
        snprintf(c->err, sizeof c->err, "%s", err);
        return -1;
    }
    c->inst.state = c->phase == PHASE_RUNNING ? "running" : "draining";
    if (lease_register(c->conn, &c->inst, &broken, err, sizeof err) < 0) {
        check(c, broken, "could not register instance", err);
        if (!broken)
            disconnect(c, err);
        return 0;
    }
    if (!c->registered) {
        char where[256];
        db_describe(c->conn, where, sizeof where);
        char conc[16];
        snprintf(conc, sizeof conc, "%d", c->cfg->concurrency);
        log_event(LOG_INFO, "runner started", "instance", c->inst.id, "database", where,
                  "concurrency", conc, NULL);
        c->registered = true;
        c->next_unhandled_check = now_ms() + 5000;
    } else if (c->down_logged) {
        log_event(LOG_INFO, "database connection restored", "instance", c->inst.id, NULL);
    }
    c->down_logged = false;
    c->reconnect_delay = 0;
    if (listen_stmt(c, "LISTEN runner_control") == 0)
        c->listening = true;
    if (c->conn && c->phase == PHASE_RUNNING)
        set_listen_jobs(c, true);
    if (c->conn && !c->schedules_synced && c->cfg->nschedules > 0 && c->phase == PHASE_RUNNING) {
        /* once per process: a reconnecting old release must not take schedules back */
        if (schedule_sync(c->conn, c->cfg, c->inst.id, &broken, err, sizeof err) < 0)
            check(c, broken, "could not sync schedules", err);
        else
            c->schedules_synced = true;
    }
    c->notified = true; /* whatever arrived while we were away */
    c->next_renew = 0;  /* renew at once: leases may be close to running out */
    return 0;
}

/* ---- the steps of one loop turn ---- */

/* limited: the queue has a concurrency limit of its own (worker.queues) */
static bool limited(const control *c, const char *queue)
{
    for (size_t q = 0; q < c->cfg->nqueue_configs; q++)
        if (c->cfg->queue_configs[q].concurrency > 0 &&
            strcmp(c->cfg->queue_configs[q].name, queue) == 0)
            return true;
    return false;
}

/* job_text is a job's numbers as log field values */
typedef struct job_text {
    char id[24], attempt[16], took[24];
} job_text;

static void describe(job_text *t, int64_t id, int attempt, int64_t took_ms)
{
    snprintf(t->id, sizeof t->id, "%lld", (long long)id);
    snprintf(t->attempt, sizeof t->attempt, "%d", attempt);
    snprintf(t->took, sizeof t->took, "%lld", (long long)took_ms);
}

static void collect_results(control *c)
{
    finished_job *done;
    size_t n = pool_collect(c->pool, &done);
    for (size_t i = 0; i < n; i++) {
        job *j = done[i].job;
        double us = (double)done[i].duration_us;
        c->avg_job_us = c->avg_job_us > 0 ? c->avg_job_us * 0.9 + us * 0.1 : us;
        job_result *r = &done[i].result;
        held *h = find_held(c, j->id, j->attempt);
        char *error = r->error;
        r->error = NULL;
        /* a queue with a limit of its own has room again: claim for it next turn */
        if (limited(c, j->queue))
            c->more_waiting = true;
        if (r->outcome == JOB_COMMITTED) {
            /* the fenced completion committed with the work: the lease was ours to the
             * end, even if a renewal raced with the commit and missed the row */
            if (log_enabled(LOG_INFO)) {
                job_text t;
                describe(&t, j->id, j->attempt, done[i].duration_us / 1000);
                log_event(LOG_INFO, "job completed", "job_id", t.id, "kind", j->kind, "attempt",
                          t.attempt, "duration_ms", t.took, NULL);
            }
            free(error);
            drop_held(c, j->id, j->attempt);
        } else if (!h || (h->lost && !h->abandoning)) {
            /* the lease was taken over: whatever the handler did, the job is a peer's */
            job_text t;
            describe(&t, j->id, j->attempt, 0);
            log_event(LOG_WARN, "lease lost: another instance took the job over, outcome dropped",
                      "job_id", t.id, "kind", j->kind, "attempt", t.attempt, NULL);
            free(error);
            if (h)
                drop_held(c, j->id, j->attempt);
        } else {
            switch (r->outcome) {
            case JOB_COMPLETED:
                add_pending(c, j, FINISH_COMPLETED, error, 0, done[i].duration_us / 1000);
                break;
            case JOB_COMMITTED:
                break;
            case JOB_RETRY: {
                int64_t delay = r->delay_ms;
                if (delay < 0) {
                    const control_kind *k = kind_settings(c, j->kind);
                    delay = backoff_delay_ms(j->attempt, k ? k->backoff_base_ms : 1000,
                                             k ? k->backoff_max_ms : 3600000, backoff_random());
                }
                add_pending(c, j, FINISH_RETRY, error ? error : xstrdup("failed"), delay,
                            done[i].duration_us / 1000);
                break;
            }
            case JOB_DISCARD:
                add_pending(c, j, FINISH_DISCARD, error ? error : xstrdup("discarded"), 0,
                            done[i].duration_us / 1000);
                break;
            case JOB_CANCELLED:
                free(error);
                add_pending(c, j, FINISH_CANCELLED, xstrdup("cancelled by admin"), 0,
                            done[i].duration_us / 1000);
                break;
            case JOB_INTERRUPTED:
            case JOB_ABANDONED:
                free(error);
                add_pending(c, j, FINISH_RELEASED,
                            xasprintf(r->outcome == JOB_INTERRUPTED
                                          ? "interrupted by shutdown of instance %s"
                                          : "released by instance %s: lease renewals failed",
                                      c->inst.id),
                            0, done[i].duration_us / 1000);
                break;
            }
        }
        job_free(j);
    }
    free(done);
}

static void log_outcome(const pending *p)
{
    const char *st = p->item.new_state;
    bool done = st && strcmp(st, "completed") == 0 && p->item.kind == FINISH_COMPLETED;
    if (done && !log_enabled(LOG_INFO))
        return; /* the common case: nothing to format */
    job_text t;
    describe(&t, p->item.id, p->item.attempt, p->duration_ms);
    if (!st) {
        log_event(LOG_WARN, "job outcome not recorded: lease lost", "job_id", t.id, "kind", p->kind,
                  "attempt", t.attempt, NULL);
    } else if (p->item.kind == FINISH_HANDED_BACK) {
        log_event(LOG_INFO, "job handed back", "job_id", t.id, "kind", p->kind, NULL);
    } else if (p->item.kind == FINISH_RELEASED) {
        log_event(LOG_INFO, "job released", "job_id", t.id, "kind", p->kind, "attempt", t.attempt,
                  "duration_ms", t.took, "reason", p->error, NULL);
    } else if (strcmp(st, "completed") == 0) {
        log_event(LOG_INFO, "job completed", "job_id", t.id, "kind", p->kind, "attempt", t.attempt,
                  "duration_ms", t.took, NULL);
    } else if (strcmp(st, "available") == 0) {
        char delay[24];
        snprintf(delay, sizeof delay, "%lld", (long long)p->item.delay_ms);
        log_event(LOG_WARN, "job failed, will retry", "job_id", t.id, "kind", p->kind, "attempt",
                  t.attempt, "duration_ms", t.took, "retry_in_ms", delay, "error", p->error, NULL);
    } else {
        log_event(st[0] == 'c' ? LOG_INFO : LOG_ERROR,
                  st[0] == 'c' ? "job cancelled" : "job failed", "job_id", t.id, "kind", p->kind,
                  "attempt", t.attempt, "duration_ms", t.took, "error", p->error, NULL);
    }
}

/* ---- the outcome writer ----
 * Outcomes are written on a second connection, so that the statement recording one batch
 * runs on the server while the next claim runs on the main connection: with short jobs
 * these two statements are most of the loop's work, and on one connection one server
 * backend ran them one after the other. One batch is in flight at a time. Renewals and
 * rescues wait for it, since their UPDATEs would take the same rows' locks in another
 * order; that delays them by milliseconds, at most by the statement timeout. While the
 * second connection cannot be opened (max_connections reached, say), batches are
 * written on the main connection and waited for, as before. A batch that fails goes
 * back to the front of pending and is sent again; its fence keeps a repeat from changing
 * a row twice. */

static void writer_close(control *c, const char *why)
{
    if (c->wcall) {
        db_call_abort(c->wcall);
        c->wcall = NULL;
    }
    if (c->wconn) {
        PQfinish(c->wconn);
        c->wconn = NULL;
    }
    if (!c->wdown_logged) {
        log_event(LOG_WARN, "outcome connection unavailable, writing outcomes on the main one",
                  "error", why, NULL);
        c->wdown_logged = true;
    }
    c->wreconnect_delay = next_delay(c->wreconnect_delay);
    c->wreconnect_at =
        now_ms() + backoff_delay_ms(1, c->wreconnect_delay, c->wreconnect_delay, backoff_random());
}

/* unsend puts the batch in flight back in front of pending. */
static void unsend(control *c)
{
    if (c->npending + c->ninflight > c->cappending) {
        c->cappending = c->npending + c->ninflight;
        c->pending = xrealloc(c->pending, c->cappending * sizeof *c->pending);
    }
    memmove(c->pending + c->ninflight, c->pending, c->npending * sizeof *c->pending);
    memcpy(c->pending, c->inflight, c->ninflight * sizeof *c->pending);
    c->npending += c->ninflight;
    c->ninflight = 0;
    free(c->witems);
    c->witems = NULL;
}

/* take_batch turns pending into the batch; the batch's old array collects what comes
 * next. */
static void take_batch(control *c)
{
    pending *swap = c->inflight;
    size_t cap = c->capinflight;
    c->inflight = c->pending;
    c->capinflight = c->cappending;
    c->ninflight = c->npending;
    c->pending = swap;
    c->cappending = cap;
    c->npending = 0;
    c->witems = xcalloc(c->ninflight, sizeof *c->witems);
    for (size_t i = 0; i < c->ninflight; i++)
        c->witems[i] = c->inflight[i].item;
}

/* record takes the batch statement's answer (res NULL: it failed with err). */
static void record(control *c, PGresult *res, bool broken, const char *err, bool on_writer)
{
    if (!res) {
        unsend(c);
        if (broken && on_writer) {
            writer_close(c, err);
        } else if (broken) {
            disconnect(c, err);
        } else {
            log_event(LOG_ERROR, "could not record job outcomes", "error", err, NULL);
            c->wretry_delay = next_delay(c->wretry_delay);
            c->wretry_at = now_ms() + c->wretry_delay;
        }
        return;
    }
    finish_read(res, c->witems, c->ninflight);
    for (size_t i = 0; i < c->ninflight; i++) {
        /* a limited queue counts unwritten outcomes as running: now it has room */
        if (limited(c, c->inflight[i].queue))
            c->more_waiting = true;
        c->inflight[i].item.new_state = c->witems[i].new_state;
        log_outcome(&c->inflight[i]);
        drop_held(c, c->inflight[i].item.id, c->inflight[i].item.attempt);
        free_pending(&c->inflight[i]);
    }
    c->ninflight = 0;
    free(c->witems);
    c->witems = NULL;
    c->wretry_delay = 0;
    if (on_writer) {
        if (c->wdown_logged)
            log_event(LOG_INFO, "outcome connection restored", NULL);
        c->wdown_logged = false;
        c->wreconnect_delay = 0;
    }
}

static void written(control *c)
{
    char err[ERR_LEN];
    bool broken;
    PGresult *res = db_call_end(c->wcall, &broken, err, sizeof err);
    c->wcall = NULL;
    record(c, res, broken, err, true);
}

/* flush sends the outcomes collected so far as one batch, unless one is in flight. */
static void flush(control *c, int64_t now)
{
    /* while cancelling, the process ends right after: the last batches (the releases)
     * are waited for here, and nothing more is sent to the outcome connection */
    bool last = c->phase == PHASE_CANCELLING;
    if (last && c->wcall) {
        char err[ERR_LEN];
        bool broken;
        PGresult *res = db_call_wait(c->wcall, c->wdeadline > now ? c->wdeadline - now : 0, NULL,
                                     NULL, &broken, err, sizeof err);
        c->wcall = NULL;
        record(c, res, broken, err, true);
    }
    if (c->npending == 0 || c->wcall || now < c->wretry_at)
        return;
    if (!last && !c->wconn && now >= c->wreconnect_at) {
        char err[ERR_LEN];
        c->wconn = db_connect(c->url, "runner outcomes", CONNECT_TIMEOUT_MS, err, sizeof err);
        if (!c->wconn)
            writer_close(c, err);
    }
    take_batch(c);
    if (c->wconn && !last) {
        c->wcall = finish_send(c->wconn, c->inst.id, c->witems, c->ninflight);
        c->wdeadline = now + c->inst.timeout_ms;
        if (db_call_done(c->wcall))
            written(c);
        return;
    }
    char err[ERR_LEN];
    bool broken;
    db_call *call = finish_send(c->conn, c->inst.id, c->witems, c->ninflight);
    PGresult *res = db_call_wait(call, c->inst.timeout_ms, on_notify, c, &broken, err, sizeof err);
    record(c, res, broken, err, false);
}

/* writer_poll reads the batch statement's answer as it arrives. */
static void writer_poll(control *c, int64_t now)
{
    if (!c->wcall)
        return;
    db_call_poll(c->wcall);
    if (db_call_done(c->wcall)) {
        written(c);
    } else if (now >= c->wdeadline) {
        unsend(c);
        writer_close(c, "recording job outcomes timed out");
    }
}

static void renew(control *c, int64_t now)
{
    size_t n = 0;
    int64_t *ids = xcalloc(c->nheld, sizeof *ids);
    int *attempts = xcalloc(c->nheld, sizeof *attempts);
    bool *ok = xcalloc(c->nheld, sizeof *ok);
    bool *cancel = xcalloc(c->nheld, sizeof *cancel);
    for (size_t i = 0; i < c->nheld; i++) {
        if (c->held[i].lost)
            continue;
        ids[n] = c->held[i].id;
        attempts[n++] = c->held[i].attempt;
    }
    char err[ERR_LEN];
    bool broken, missing = false;
    c->next_renew = now + c->cfg->heartbeat_ms;
    if (lease_renew(c->conn, &c->inst, ids, attempts, n, ok, cancel, &missing, &broken, err,
                    sizeof err) < 0) {
        check(c, broken, "could not renew leases", err);
        c->next_renew = now + 1000 < c->next_renew ? now + 1000 : c->next_renew;
    } else {
        for (size_t i = 0; i < n; i++) {
            held *h = find_held(c, ids[i], attempts[i]);
            if (ok[i]) {
                h->renewed_ms = now;
                if (cancel[i])
                    request_cancel(c, h->id);
                continue;
            }
            /* reported when the handler returns: a transactional job may just have
             * committed (then it was ours after all) */
            h->lost = true;
            h->abandoning = false;
            pool_cancel_job(c->pool, h->id, CANCEL_LEASE_LOST);
            /* an outcome still waiting to be written would not pass the fence */
            for (size_t k = 0; k < c->npending; k++) {
                if (c->pending[k].item.id == h->id) {
                    char id[24];
                    snprintf(id, sizeof id, "%lld", (long long)h->id);
                    log_event(LOG_WARN, "lease lost before the outcome was recorded", "job_id", id,
                              "kind", h->kind, NULL);
                    free_pending(&c->pending[k]);
                    c->pending[k] = c->pending[--c->npending];
                    drop_held(c, ids[i], attempts[i]);
                    break;
                }
            }
        }
        if (missing) {
            log_event(LOG_WARN, "instance row missing, registering again", "instance", c->inst.id,
                      NULL);
            if (lease_register(c->conn, &c->inst, &broken, err, sizeof err) < 0)
                check(c, broken, "could not register instance", err);
        }
    }
    free(ids);
    free(attempts);
    free(ok);
    free(cancel);
}

/* lease_margin is how long before a lease could run out that its job gets stopped:
 * enough for a renewal interval and for the child to be killed. */
static int64_t lease_margin(const control *c)
{
    int64_t margin = c->cfg->heartbeat_ms;
    if (margin < c->cfg->kill_after_ms + 1000)
        margin = c->cfg->kill_after_ms + 1000;
    if (margin > c->cfg->lease_ms / 2)
        margin = c->cfg->lease_ms / 2;
    return margin;
}

/* guard_leases cancels running jobs whose lease could expire before the next renewal
 * succeeds, so no peer ever runs a job while this process still does. */
static void guard_leases(control *c, int64_t now)
{
    int64_t margin = lease_margin(c);
    for (size_t i = 0; i < c->nheld; i++) {
        held *h = &c->held[i];
        if (h->lost || now < h->renewed_ms + c->cfg->lease_ms - margin)
            continue;
        h->lost = true;
        h->abandoning = true;
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)h->id);
        log_event(LOG_ERROR, "lease renewals failing: stopping job before its lease expires",
                  "job_id", id, "kind", h->kind, NULL);
        pool_cancel_job(c->pool, h->id, CANCEL_LEASE_LOST);
    }
}

static void rescue(control *c, int64_t now)
{
    char err[ERR_LEN];
    bool broken;
    /* jittered so that many instances do not all scan at the same moment */
    c->next_rescue = now + c->cfg->heartbeat_ms / 2 +
                     (int64_t)(backoff_random() * (double)c->cfg->heartbeat_ms / 2);
    int n = lease_rescue(c->conn, &c->inst, &broken, err, sizeof err);
    if (n < 0) {
        check(c, broken, "could not rescue expired leases", err);
        return;
    }
    if (n > 0) {
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        log_event(LOG_WARN, "rescued jobs with expired leases", "count", count, NULL);
        c->notified = true;
    }
}

/* prefetch is how many jobs beyond the free workers to claim: enough to keep every
 * worker busy through two claim round trips (the one in flight and one of slack, since
 * both averages jitter; covering just one left workers idle half the time with 3 ms sql
 * jobs), for jobs shorter than that. */
static int prefetch(const control *c)
{
    if (c->avg_job_us <= 0 || c->avg_claim_us <= 0 || c->avg_job_us >= 1e6)
        return 0; /* jobs of a second or more: never */
    double per_worker = 2 * c->avg_claim_us / c->avg_job_us;
    if (per_worker < 1)
        return 0;
    double n = per_worker * c->cfg->concurrency;
    return n > MAX_PREFETCH ? MAX_PREFETCH : (int)n;
}

/* claim_from claims up to limit jobs from the given queues and hands them to the
 * workers. Returns how many it claimed, or -1. */
static int claim_from(control *c, const char *const *queues, size_t nqueues, int limit, int64_t now)
{
    claim_scope scope = {.instance_id = c->inst.id,
                         .queues = queues,
                         .nqueues = nqueues,
                         .kinds = c->kind_names,
                         .kind_max_attempts = c->kind_max,
                         .nkinds = c->nkinds,
                         .lease_ms = c->cfg->lease_ms};
    job **jobs;
    char err[ERR_LEN];
    bool broken;
    int64_t started = now_us();
    int n = claim_jobs(c->conn, &scope, limit, &jobs, c->inst.timeout_ms, &broken, err, sizeof err);
    if (n < 0) {
        check(c, broken, "could not claim jobs", err);
        return -1;
    }
    /* successful claims only: a claim that timed out says nothing about the next one */
    double rtt = (double)(now_us() - started);
    c->avg_claim_us = c->avg_claim_us > 0 ? c->avg_claim_us * 0.9 + rtt * 0.1 : rtt;
    for (int i = 0; i < n; i++) {
        add_held(c, jobs[i], now);
        if (log_enabled(LOG_DEBUG)) {
            char id[24], attempt[16];
            snprintf(id, sizeof id, "%lld", (long long)jobs[i]->id);
            snprintf(attempt, sizeof attempt, "%d", jobs[i]->attempt);
            log_event(LOG_DEBUG, "job claimed", "job_id", id, "kind", jobs[i]->kind, "attempt",
                      attempt, NULL);
        }
    }
    pool_submit(c->pool, jobs, (size_t)n);
    free(jobs);
    return n;
}

/* claim fills the free worker slots (plus the prefetch): one statement for the queues
 * without a limit of their own, then one per queue with a concurrency limit that still
 * has room in this instance. */
/* claim_room is how many jobs a claim may take now: the free workers plus the prefetch,
 * minus what waits in the buffer; 0 while a buffer still half full can wait for a bigger
 * batch, and while a release is not written yet. Finished jobs whose outcomes are not written yet
 * hold leases too: at most two batches' worth, so that claims cannot outrun the outcome writer. */
static int claim_room(const control *c)
{
    /* a release gives the job its attempt back, so a claim of it made before the release
     * is known to be written would look like the old run (same id, same attempt) */
    for (size_t i = 0; i < c->npending + c->ninflight; i++) {
        const pending *p = i < c->npending ? &c->pending[i] : &c->inflight[i - c->npending];
        if (p->item.kind == FINISH_RELEASED || p->item.kind == FINISH_HANDED_BACK)
            return 0;
    }
    int extra = prefetch(c);
    int backlog = pool_backlog(c->pool);
    int budget = c->cfg->concurrency + extra;
    int room = budget - backlog;
    int unwritten = (int)(c->npending + c->ninflight);
    if (room > 2 * budget - unwritten)
        room = 2 * budget - unwritten;
    if (room <= 0 || (extra > 0 && backlog > c->cfg->concurrency && room < budget / 2))
        return 0;
    return room;
}

static void claim(control *c, int64_t now)
{
    if (c->phase != PHASE_RUNNING)
        return;
    int free_slots = claim_room(c);
    if (free_slots <= 0)
        return;
    if (!c->notified && !c->more_waiting && now < c->next_claim)
        return;
    c->notified = false;
    c->more_waiting = false;
    c->next_claim = now + c->cfg->poll_interval_ms;

    const char **open = xcalloc(c->cfg->nqueues, sizeof *open);
    size_t nopen = 0;
    for (size_t i = 0; i < c->cfg->nqueue_configs; i++)
        if (c->cfg->queue_configs[i].concurrency == 0)
            open[nopen++] = c->cfg->queue_configs[i].name;
    if (c->cfg->nqueue_configs == 0) {
        for (size_t i = 0; i < c->cfg->nqueues; i++)
            open[nopen++] = c->cfg->queues[i];
    }
    if (nopen > 0) {
        int n = claim_from(c, (const char *const *)open, nopen, free_slots, now);
        if (n > 0)
            free_slots -= n;
        c->more_waiting = n > 0 && free_slots == 0;
    }
    free(open);
    for (size_t i = 0; i < c->cfg->nqueue_configs && free_slots > 0 && c->conn; i++) {
        const queue_config *q = &c->cfg->queue_configs[i];
        if (q->concurrency == 0)
            continue;
        /* finished jobs whose outcome is not written yet still count: the table shows
         * them running until it is */
        int unwritten = 0;
        for (size_t k = 0; k < c->npending; k++)
            unwritten += strcmp(c->pending[k].queue, q->name) == 0;
        for (size_t k = 0; k < c->ninflight; k++)
            unwritten += strcmp(c->inflight[k].queue, q->name) == 0;
        int room = q->concurrency - pool_running_in_queue(c->pool, q->name) - unwritten;
        int limit = room < free_slots ? room : free_slots;
        if (limit <= 0)
            continue;
        const char *one[] = {q->name};
        int n = claim_from(c, one, 1, limit, now);
        if (n > 0)
            free_slots -= n;
        if (n == limit)
            c->more_waiting = true;
    }
}

/* request_cancel stops a job an admin cancelled (runner.cancel_job): a job still waiting
 * in the prefetch buffer is recorded as cancelled at once, a running one is cancelled
 * and its handler's answer recorded as cancelled when it returns. */
static void request_cancel(control *c, int64_t id)
{
    held *h = find_held(c, id, -1);
    if (!h || h->lost)
        return;
    for (size_t i = 0; i < c->npending; i++)
        if (c->pending[i].item.id == id)
            return; /* finished already; the trigger in 002 turns a release into a cancel */
    for (size_t i = 0; i < c->ninflight; i++)
        if (c->inflight[i].item.id == id)
            return;
    job *j = pool_take_unstarted_id(c->pool, id);
    if (j) {
        add_pending(c, j, FINISH_CANCELLED, xstrdup("cancelled by admin"), 0, 0);
        job_free(j);
        return;
    }
    pool_cancel_job(c->pool, id, CANCEL_JOB);
}

/* tick_schedules enqueues due cron ticks (exactly once across instances, see
 * schedule.c) and learns when the next one is due. */
static void tick_schedules(control *c, int64_t now)
{
    if (c->cfg->nschedules == 0 || c->phase != PHASE_RUNNING || now < c->next_schedule)
        return;
    char err[ERR_LEN];
    bool broken;
    int64_t wait = 0;
    int n = schedule_tick(c->conn, c->cfg, c->inst.id, 0, &wait, &broken, err, sizeof err);
    if (n < 0) {
        check(c, broken, "could not enqueue schedule ticks", err);
        c->next_schedule = now + 1000;
        return;
    }
    if (n > 0)
        c->notified = true;
    c->next_schedule = now + wait;
}

/* prune deletes finished jobs past the retention in small batches; any instance may. */
static void prune(control *c, int64_t now)
{
    if (c->phase != PHASE_RUNNING || now < c->next_prune)
        return;
    char err[ERR_LEN];
    bool broken;
    int n = prune_run(c->conn, c->cfg->retention_ms, &broken, err, sizeof err);
    if (n < 0) {
        check(c, broken, "could not prune old jobs", err);
        c->next_prune = now + PRUNE_INTERVAL_MS;
        return;
    }
    if (n > 0) {
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        log_event(LOG_DEBUG, "pruned finished jobs", "count", count, NULL);
    }
    /* a full batch means more are due: go on soon, leaving room for the real work */
    c->next_prune = n >= PRUNE_BATCH
                        ? now + 100
                        : now + PRUNE_INTERVAL_MS + (int64_t)(backoff_random() * PRUNE_INTERVAL_MS);
}

/* check_unhandled warns, once per kind, about jobs waiting for a kind that no live
 * instance can run: they stay available (a newer instance may know the kind) but an
 * operator should hear about them. */
static void check_unhandled(control *c, int64_t now)
{
    if (c->phase != PHASE_RUNNING || now < c->next_unhandled_check)
        return;
    c->next_unhandled_check = now + UNHANDLED_CHECK_MS;
    claim_scope scope = {.queues = (const char *const *)c->cfg->queues,
                         .nqueues = c->cfg->nqueues,
                         .kinds = c->kind_names,
                         .nkinds = c->nkinds};
    char **kinds;
    char err[ERR_LEN];
    bool broken;
    int n = claim_unhandled_kinds(c->conn, &scope, &kinds, c->inst.timeout_ms, &broken, err,
                                  sizeof err);
    if (n < 0) {
        check(c, broken, "could not look for unhandled kinds", err);
        return;
    }
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (size_t k = 0; k < c->nwarned && !seen; k++)
            seen = strcmp(c->warned_kinds[k], kinds[i]) == 0;
        if (seen) {
            free(kinds[i]);
            continue;
        }
        log_event(LOG_WARN, "jobs waiting for a kind that no running instance handles", "kind",
                  kinds[i], NULL);
        c->warned_kinds = xrealloc(c->warned_kinds, (c->nwarned + 1) * sizeof *c->warned_kinds);
        c->warned_kinds[c->nwarned++] = kinds[i];
    }
    free(kinds);
}

/* ---- shutdown transitions ---- */

static void begin_drain(control *c)
{
    c->phase = PHASE_DRAINING;
    c->inst.state = "draining";
    job **unstarted;
    size_t n = pool_take_unstarted(c->pool, &unstarted);
    for (size_t i = 0; i < n; i++) {
        add_pending(c, unstarted[i], FINISH_HANDED_BACK, NULL, 0, 0);
        job_free(unstarted[i]);
    }
    free(unstarted);
    char count[16];
    snprintf(count, sizeof count, "%d", pool_busy(c->pool));
    log_event(LOG_INFO, "draining: claiming stopped, running jobs may finish", "running", count,
              NULL);
    if (!c->conn)
        return;
    char err[ERR_LEN];
    bool broken;
    if (c->listening_jobs)
        set_listen_jobs(c, false);
    if (c->conn && lease_set_state(c->conn, &c->inst, &broken, err, sizeof err) < 0)
        check(c, broken, "could not mark instance draining", err);
}

static void begin_cancel(control *c, int64_t now)
{
    if (c->phase == PHASE_RUNNING)
        begin_drain(c);
    c->phase = PHASE_CANCELLING;
    c->cancel_deadline = now + c->cfg->kill_after_ms + CANCEL_SLACK_MS;
    char count[16];
    snprintf(count, sizeof count, "%d", pool_busy(c->pool));
    log_event(LOG_INFO, "cancelling running jobs", "running", count, NULL);
    pool_cancel_all(c->pool, CANCEL_SHUTDOWN);
}

static void finish_instance(control *c)
{
    if (c->conn && c->registered) {
        char err[ERR_LEN];
        bool broken;
        c->inst.state = "stopped";
        if (lease_set_state(c->conn, &c->inst, &broken, err, sizeof err) < 0)
            log_event(LOG_WARN, "could not mark instance stopped", "error", err, NULL);
    }
    if (c->nheld > 0) {
        char count[24];
        snprintf(count, sizeof count, "%zu", c->nheld);
        log_event(LOG_ERROR,
                  "stopping with unreleased jobs: their leases expire and a peer rescues them",
                  "count", count, NULL);
    }
}

/* ---- the loop ---- */

static void wait_events(control *c, int64_t until)
{
    struct pollfd fds[3] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}, {.fd = -1}};
    nfds_t nfds = 3;
    if (c->conn && c->listening)
        fds[1] = (struct pollfd){.fd = PQsocket(c->conn), .events = POLLIN};
    if (c->wcall) /* its answer is read by writer_poll in the next turn */
        fds[2] = (struct pollfd){.fd = PQsocket(c->wconn),
                                 .events = db_call_wants_write(c->wcall) ? POLLOUT : POLLIN};
    if (c->conn) {
        /* notifications libpq read during statements sent without a callback */
        db_notifies(c->conn, on_notify, c);
        if (c->notified && c->phase == PHASE_RUNNING && claim_room(c) > 0)
            until = now_ms();
    }
    int64_t left = until - now_ms();
    if (left < 0)
        left = 0;
    if (poll(fds, nfds, (int)(left > 60000 ? 60000 : left)) <= 0)
        return;
    if (fds[0].revents & POLLIN) {
        uint64_t v;
        ssize_t rc = read(c->wake_fd, &v, sizeof v);
        (void)rc;
    }
    if (fds[1].fd >= 0 && fds[1].revents) {
        char err[ERR_LEN];
        if (db_consume(c->conn, on_notify, c, err, sizeof err) < 0)
            disconnect(c, err);
    }
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t next_wakeup(control *c, int64_t now)
{
    int64_t t = now + 60000;
    /* lease deadlines count whether or not the server is reachable */
    int64_t margin = lease_margin(c);
    for (size_t i = 0; i < c->nheld; i++)
        if (!c->held[i].lost)
            t = min64(t, c->held[i].renewed_ms + c->cfg->lease_ms - margin);
    if (c->phase == PHASE_CANCELLING)
        t = min64(t, c->cancel_deadline);
    if (c->wcall)
        t = min64(t, c->wdeadline);
    else if (c->npending > 0 && c->wretry_at > now)
        t = min64(t, c->wretry_at); /* the next try after a failed batch */
    if (!c->conn) {
        t = min64(t, c->reconnect_at);
    } else {
        /* renewals and rescues wait for an outcome batch in flight */
        if (!c->wcall)
            t = min64(t, c->next_renew);
        if (c->phase == PHASE_RUNNING) {
            if (!c->wcall)
                t = min64(t, c->next_rescue);
            t = min64(t, c->next_prune);
            if (c->cfg->nschedules > 0)
                t = min64(t, c->next_schedule);
            if (claim_room(c) > 0)
                t = min64(t, c->notified || c->more_waiting ? now : c->next_claim);
        }
    }
    return t < now ? now : t;
}

static void run_loop(control *c)
{
    for (;;) {
        int64_t now = now_ms();
        int req = atomic_exchange(&c->request, REQ_NONE);
        if (req == REQ_DRAIN && c->phase == PHASE_RUNNING)
            begin_drain(c);
        else if (req == REQ_CANCEL && c->phase != PHASE_CANCELLING)
            begin_cancel(c, now);

        collect_results(c);
        writer_poll(c, now);
        if (!c->conn && now >= c->reconnect_at && connect_db(c) < 0) {
            c->rc = -1;
            return;
        }
        /* renewals and rescues go first: once a batch is answered they run before the
         * next one is sent, so a steady stream of batches cannot starve them */
        if (c->conn && now >= c->next_renew && c->registered && !c->wcall)
            renew(c, now);
        if (c->conn && c->phase == PHASE_RUNNING && now >= c->next_rescue && !c->wcall)
            rescue(c, now);
        if (c->conn) {
            /* while cancelling, wait for every job to return so that all releases go
             * out in one statement */
            bool hold =
                c->phase == PHASE_CANCELLING && pool_busy(c->pool) > 0 && now < c->cancel_deadline;
            if (!hold)
                flush(c, now);
        }
        if (c->conn)
            claim(c, now);
        if (c->conn)
            tick_schedules(c, now);
        if (c->conn)
            prune(c, now);
        if (c->conn)
            check_unhandled(c, now);
        guard_leases(c, now_ms());

        if (c->phase != PHASE_RUNNING && pool_busy(c->pool) == 0 && c->npending == 0 && !c->wcall) {
            finish_instance(c);
            return;
        }
        if (c->phase == PHASE_CANCELLING && now >= c->cancel_deadline + CANCEL_SLACK_MS) {
            finish_instance(c);
            return;
        }
        wait_events(c, next_wakeup(c, now_ms()));
    }
}

static void *control_main(void *arg)
{
    control *c = arg;
    run_loop(c);
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    if (c->wcall) { /* only after the cancel deadline: its leases run out instead */
        db_call_abort(c->wcall);
        c->wcall = NULL;
        unsend(c);
    }
    if (c->wconn) {
        PQfinish(c->wconn);
        c->wconn = NULL;
    }
    uint64_t one = 1;
    ssize_t rc = write(c->done_fd, &one, sizeof one);
    (void)rc;
    return NULL;
}

/* ---- public ---- */

control *control_create(const config *cfg, const char *database_url, worker_pool *pool, int wake_fd,
                        const control_kind *kinds, size_t nkinds)
{
    control *c = xcalloc(1, sizeof *c);
    c->cfg = cfg;
    c->url = database_url;
    c->pool = pool;
    c->wake_fd = wake_fd;
    c->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->kinds = kinds;
    c->nkinds = nkinds;
    c->kind_names = xcalloc(nkinds, sizeof *c->kind_names);
    c->kind_max = xcalloc(nkinds, sizeof *c->kind_max);
    for (size_t i = 0; i < nkinds; i++) {
        c->kind_names[i] = kinds[i].name;
        c->kind_max[i] = kinds[i].max_attempts;
    }
    c->inst.state = "running";
    c->inst.concurrency = cfg->concurrency;
    c->inst.queues = (const char *const *)cfg->queues;
    c->inst.nqueues = cfg->nqueues;
    c->inst.kinds = c->kind_names;
    c->inst.nkinds = nkinds;
    c->inst.lease_ms = cfg->lease_ms;
    c->next_prune = now_ms() + (int64_t)(backoff_random() * PRUNE_INTERVAL_MS);
    /* a statement may not hang longer than a fraction of the lease, so the lease guard
     * always gets to run in time */
    c->inst.timeout_ms = cfg->lease_ms / 4;
    if (c->inst.timeout_ms < 1000)
        c->inst.timeout_ms = 1000;
    if (c->inst.timeout_ms > STATEMENT_TIMEOUT_MS)
        c->inst.timeout_ms = STATEMENT_TIMEOUT_MS;
    return c;
}

void control_destroy(control *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->npending; i++)
        free_pending(&c->pending[i]);
    for (size_t i = 0; i < c->ninflight; i++)
        free_pending(&c->inflight[i]);
    free(c->inflight);
    free(c->witems);
    free(c->held);
    idmap_free(&c->held_at);
    free(c->pending);
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    for (size_t i = 0; i < c->nwarned; i++)
        free(c->warned_kinds[i]);
    free(c->warned_kinds);
    free(c->kind_names);
    free(c->kind_max);
    if (c->done_fd >= 0)
        close(c->done_fd);
    free(c);
}

int control_start(control *c, char *err, size_t errlen)
{
    if (c->done_fd < 0)
        return errf(err, errlen, "could not create eventfd: %s", strerror(errno));
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, control_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return errf(err, errlen, "could not start control thread: %s", strerror(rc));
    c->started = true;
    return 0;
}

static void request(control *c, enum request r)
{
    int cur = atomic_load(&c->request);
    /* a cancel supersedes a drain not yet seen; never downgrade */
    while (cur < (int)r && !atomic_compare_exchange_weak(&c->request, &cur, (int)r))
        ;
    uint64_t one = 1;
    ssize_t rc = write(c->wake_fd, &one, sizeof one);
    (void)rc;
}

void control_drain(control *c)
{
    request(c, REQ_DRAIN);
}

void control_cancel(control *c)
{
    /* workers are cancelled here too, so a loop stuck connecting does not delay them */
    pool_cancel_all(c->pool, CANCEL_SHUTDOWN);
    request(c, REQ_CANCEL);
}

int control_done_fd(const control *c)
{
    return c->done_fd;
}

int control_join(control *c, char *err, size_t errlen)
{
    if (c->started) {
        pthread_join(c->thread, NULL);
        c->started = false;
    }
    if (c->rc < 0)
        return errf(err, errlen, "%s", c->err);
    return 0;
}
