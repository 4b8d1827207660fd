/* control.c - the control loop: claims jobs, keeps their leases, and walks the shutdown
 * phases, on a thread of its own.
 *
 * DESIGN: one thread, one non-blocking main connection (claims, renewals, LISTEN), and
 * one poll() over its socket, the outcome writer's socket (outcome.c) and an eventfd that
 * the workers and the shutdown path write. Every statement runs with a deadline, so a
 * stalled server never blocks the loop for longer than that.
 *
 * A loop turn runs the steps in `steps` in order. Each step is one function that both
 * acts, when its time has come, and says when that time is; after the turn the loop asks
 * every step again and sleeps until the earliest answer (as Redis' ae.c sleeps until its
 * earliest timer). The guard that decides whether a step acts and the time the loop
 * wakes for it are the same code, so they cannot drift apart.
 *
 * The loop renews exactly the leases it holds (held.c). Database failures never lose a
 * job: outcomes stay queued and are retried after a reconnect (capped exponential
 * backoff with jitter, logged once per state change). When renewals have failed for so
 * long that a lease might run out, the jobs are cancelled here first, before a peer can
 * rescue them, and released once the server is back.
 *
 * Claims take as many jobs as there are free workers. For very short jobs that is not
 * enough to keep the workers busy while the next claim is in flight, so the loop also
 * prefetches: from the measured job duration and claim round trip it claims enough
 * extra jobs to cover two round trips (at most MAX_PREFETCH). Jobs of a second or more
 * are never prefetched, so an instance never hoards work that an idle peer could run.
 *
 * Shutdown (shutdown.h's phases, entered through control_drain / control_cancel):
 *   draining:   no more claims, UNLISTEN, unstarted jobs handed back, running jobs go on
 *               and their outcomes are written as usual; leases keep being renewed;
 *   cancelling: every running job is cancelled; once all have returned, or at the
 *               deadline for handlers, all outcomes, the releases included, are written
 *               in one statement, the instance is marked stopped, the loop ends (at the
 *               loop's deadline at the latest). */
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
#include "chores.h"
#include "claim.h"
#include "db.h"
#include "held.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "outcome.h"
#include "schedule.h"
#include "sdnotify.h"
#include "util.h"

#define STATEMENT_TIMEOUT_MS 30000
/* short, so a black-holed server cannot hold up the lease guard for long */
#define CONNECT_TIMEOUT_MS 3000
#define MAX_PREFETCH 1000
/* the longest single sleep: nothing is due, but the loop still looks around */
/* the loop turns at least this often, busy or not: /healthz and the systemd watchdog
 * take a turn as proof of life */
#define TICK_MS 1000
#define NEVER INT64_MAX

/* A statement that keeps failing (not for a lost connection): logged when it starts,
 * counted while it repeats. */
#define MAX_FAILING 8
typedef struct failing {
    const char *what;
    long repeats;
} failing;

struct control {
    const config *cfg;
    const char *url;
    worker_pool *pool;
    metrics *metrics; /* what /metrics and the probes show */
    const control_kind *kinds;
    size_t nkinds;
    const char **kind_names;
    int *kind_max;
    const char **queue_names; /* worker.queues' names, for the instance row and scopes */
    control_kind_room_fn kind_room; /* NULL: no kind has a limit of its own */
    void *kind_room_arg;
    int *kind_limit; /* per kind, at claim time: the kind's room (-1: none of its own) */
    int wake_fd;
    int done_fd;

    pthread_t thread;
    _Atomic int requested; /* the phase asked for by control_drain / control_cancel */
    int rc;
    shutdown_deadlines deadlines; /* written before requested becomes PHASE_CANCELLING */
    pthread_mutex_t reload_lock;   /* guards the reload handed over by control_reload */
    const config *reload_cfg;     /* NULL: none waiting */
    const control_kind *reload_kinds;
    size_t reload_nkinds;
    char err[ERR_LEN];

    shutdown_deadlines cancel; /* in force from PHASE_CANCELLING on */
    PGconn *conn;
    db_connecting *connecting; /* an attempt to open conn, in flight */
    int64_t reconnect_at;
    int64_t reconnect_delay;

    instance_info inst;
    held_set held;
    outcome_writer out;
    chores chores;

    int64_t next_claim;
    int64_t next_renew;
    double avg_job_us;   /* moving average of handler run times */
    double avg_claim_us; /* moving average of claim round trips */
    long turns[3];       /* loop turns per phase, logged at the end (debug) */
    failing failing[MAX_FAILING]; /* statements failing turn after turn (report_failure) */
    size_t nfailing;

    /* the small fields last, so the struct packs */
    enum shutdown_phase phase;
    bool kinds_limited;  /* some kind had a limit of its own at the last claim */
    bool started;
    bool ended;
    bool listening;      /* LISTEN runner_control (always while connected) */
    bool listening_jobs; /* LISTEN runner_jobs (while running) */
    bool down_logged;
    bool registered;
    bool schedules_synced;
    bool notified;     /* a NOTIFY (or a reconnect, a rescue, a tick) says: claim now */
    bool more_waiting; /* the last claim was full, or a limited queue got room */
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- the main connection ---- */

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
    if (config_queue_index(c->cfg, n->extra) >= 0)
        c->notified = true;
}

static void disconnect(control *c, const char *why)
{
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->listening = false;
    c->listening_jobs = false;
    metrics_set_db_up(c->metrics, false);
    if (!c->down_logged) {
        log_event(LOG_WARN, "database connection lost", "error", why, NULL);
        c->down_logged = true;
    }
    c->reconnect_delay = backoff_next_delay(c->reconnect_delay);
    c->reconnect_at = now_ms() + backoff_jitter(c->reconnect_delay);
}

/* report_failure reports a failed statement: a broken connection is dropped (and logged
 * once), any other error is logged when it starts failing; repeats are only counted, and
 * report_ok logs their count when the statement succeeds again. */
static void report_failure(control *c, bool broken, const char *what, const char *err)
{
    if (broken) {
        disconnect(c, err);
        return;
    }
    for (size_t i = 0; i < c->nfailing; i++) {
        if (strcmp(c->failing[i].what, what) == 0) {
            c->failing[i].repeats++;
            return;
        }
    }
    log_event(LOG_ERROR, what, "error", err, NULL);
    if (c->nfailing < MAX_FAILING)
        c->failing[c->nfailing++] = (failing){.what = what};
}

/* report_ok ends what's failing state, if it was failing. */
static void report_ok(control *c, const char *what)
{
    for (size_t i = 0; i < c->nfailing; i++) {
        if (strcmp(c->failing[i].what, what) != 0)
            continue;
        char repeats[24];
        snprintf(repeats, sizeof repeats, "%ld", c->failing[i].repeats);
        log_event(LOG_INFO, "statement succeeds again", "failed", what, "repeats", repeats, NULL);
        c->failing[i] = c->failing[--c->nfailing];
        return;
    }
}

static int listen_stmt(control *c, const char *sql)
{
    char err[ERR_LEN];
    bool broken;
    PGresult *res =
        db_exec(c->conn, sql, 0, NULL, c->inst.timeout_ms, on_notify, c, &broken, err, sizeof err);
    if (!res) {
        report_failure(c, broken, "could not change LISTEN", err);
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

/* connected takes the connection an attempt opened (NULL: it failed with err), checks
 * the schema and (re)registers the instance. A schema mismatch is fatal: no amount of
 * retrying fixes it. */
static int connected(control *c, PGconn *conn, const char *why)
{
    char err[ERR_LEN];
    bool broken = false;
    c->conn = conn;
    if (!c->conn) {
        snprintf(err, sizeof err, "%s", why);
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
    c->inst.state = shutdown_phase_name(c->phase == PHASE_RUNNING ? PHASE_RUNNING
                                                                  : PHASE_DRAINING);
    if (lease_register(c->conn, &c->inst, &broken, err, sizeof err) < 0) {
        report_failure(c, broken, "could not register instance", err);
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
        if (c->phase == PHASE_RUNNING)
            sdnotify_send("READY=1"); /* claiming from now on */
    } else {
        metrics_db_reconnected(c->metrics);
        if (c->down_logged)
            log_event(LOG_INFO, "database connection restored", "instance", c->inst.id, NULL);
    }
    metrics_set_db_up(c->metrics, true);
    c->down_logged = false;
    c->reconnect_delay = 0;
    if (listen_stmt(c, "LISTEN runner_control") == 0)
        c->listening = true;
    if (c->conn && c->phase == PHASE_RUNNING)
        set_listen_jobs(c, true);
    if (c->conn && !c->schedules_synced && c->cfg->nschedules > 0 && c->phase == PHASE_RUNNING) {
        /* once per process: a reconnecting old release must not take schedules back */
        if (schedule_sync(c->conn, c->cfg, c->inst.id, &broken, err, sizeof err) < 0)
            report_failure(c, broken, "could not sync schedules", err);
        else
            c->schedules_synced = true;
    }
    c->notified = true; /* whatever arrived while we were away */
    c->next_renew = 0;  /* renew at once: leases may be close to running out */
    return 0;
}

/* ---- leases ---- */

/* lease_lost handles a renewal that found job h no longer ours: its handler is stopped,
 * its outcome (if already collected) dropped, since the fence would refuse it. Whether
 * the handler's own transaction committed first is known only when it returns, so the
 * loss is reported then. */
static void lease_lost(control *c, held_job *h)
{
    h->lost = true;
    h->abandoning = false;
    int64_t id = h->id;
    pool_cancel_job(c->pool, id, CANCEL_LEASE_LOST);
    outcome_forget(&c->out, id);
}

/* renew extends the leases of every job still ours and beats the heartbeat. */
static void renew(control *c, int64_t now)
{
    size_t n = 0;
    int64_t *ids = xcalloc(c->held.n, sizeof *ids);
    int *attempts = xcalloc(c->held.n, sizeof *attempts);
    bool *ok = xcalloc(c->held.n, sizeof *ok);
    bool *cancel = xcalloc(c->held.n, sizeof *cancel);
    for (size_t i = 0; i < c->held.n; i++) {
        if (c->held.jobs[i].lost)
            continue;
        ids[n] = c->held.jobs[i].id;
        attempts[n++] = c->held.jobs[i].attempt;
    }
    char err[ERR_LEN];
    bool broken, missing = false;
    c->next_renew = now + c->cfg->heartbeat_ms;
    if (lease_renew(c->conn, &c->inst, ids, attempts, n, ok, cancel, &missing, &broken, err,
                    sizeof err) < 0) {
        report_failure(c, broken, "could not renew leases", err);
        c->next_renew = min64(now + 1000, c->next_renew);
    } else {
        report_ok(c, "could not renew leases");
        for (size_t i = 0; i < n; i++) {
            held_job *h = held_find(&c->held, ids[i], attempts[i]);
            if (!h)
                continue; /* dropped meanwhile (its lost outcome) */
            if (!ok[i]) {
                lease_lost(c, h);
                continue;
            }
            h->renewed_ms = now;
            if (cancel[i])
                request_cancel(c, h->id);
        }
        metrics_lease_renewed(c->metrics, now_ms());
        if (missing) {
            log_event(LOG_WARN, "instance row missing, registering again", "instance", c->inst.id,
                      NULL);
            if (lease_register(c->conn, &c->inst, &broken, err, sizeof err) < 0)
                report_failure(c, broken, "could not register instance", err);
        }
    }
    free(ids);
    free(attempts);
    free(ok);
    free(cancel);
}

static int64_t lease_margin(const control *c)
{
    return held_lease_margin(c->cfg->lease_ms, c->cfg->heartbeat_ms, c->cfg->kill_after_ms);
}

/* guard_leases cancels running jobs whose lease could expire before the next renewal
 * succeeds, so no peer ever runs a job while this process still does. */
static void guard_leases(control *c, int64_t now)
{
    int64_t margin = lease_margin(c);
    for (size_t i = 0; i < c->held.n; i++) {
        held_job *h = &c->held.jobs[i];
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

/* ---- the claim policy ---- */

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

/* claim_room is how many jobs a claim may take now: the free workers plus the prefetch,
 * minus what waits in the buffer; 0 while a buffer still half full can wait for a bigger
 * batch, and while a release is not written yet (a release gives the job its attempt
 * back, so a claim of it made before the release is known to be written would look like
 * the old run: same id, same attempt). Finished jobs whose outcomes are not written yet
 * hold leases too: at most two batches' worth, so that claims cannot outrun the outcome
 * writer. */
static int claim_room(const control *c)
{
    if (outcome_release_unwritten(&c->out))
        return 0;
    int extra = prefetch(c);
    int backlog = pool_backlog(c->pool);
    int budget = c->cfg->concurrency + extra;
    int room = budget - backlog;
    int unwritten = (int)outcome_unwritten(&c->out);
    if (room > 2 * budget - unwritten)
        room = 2 * budget - unwritten;
    if (room <= 0 || (extra > 0 && backlog > c->cfg->concurrency && room < budget / 2))
        return 0;
    return room;
}

/* claim_from claims up to limit jobs from the given queues and hands them to the
 * workers. Returns how many it claimed, or -1. */
static int claim_from(control *c, const char *const *queues, size_t nqueues, int limit, int64_t now)
{
    c->kinds_limited = false;
    for (size_t i = 0; i < c->nkinds; i++) {
        c->kind_limit[i] = c->kind_room ? c->kind_room(c->kind_room_arg, c->kind_names[i]) : -1;
        c->kinds_limited |= c->kind_limit[i] >= 0;
    }
    claim_scope scope = {.instance_id = c->inst.id,
                         .queues = queues,
                         .nqueues = nqueues,
                         .kinds = c->kind_names,
                         .kind_max_attempts = c->kind_max,
                         .kind_limit = c->kind_limit,
                         .nkinds = c->nkinds,
                         .lease_ms = c->cfg->lease_ms};
    job **jobs;
    char err[ERR_LEN];
    bool broken;
    int64_t started = now_us();
    int n = claim_jobs(c->conn, &scope, limit, &jobs, c->inst.timeout_ms, &broken, err, sizeof err);
    if (n < 0) {
        report_failure(c, broken, "could not claim jobs", err);
        return -1;
    }
    report_ok(c, "could not claim jobs");
    /* successful claims only: a claim that timed out says nothing about the next one */
    double rtt = (double)(now_us() - started);
    c->avg_claim_us = c->avg_claim_us > 0 ? c->avg_claim_us * 0.9 + rtt * 0.1 : rtt;
    for (int i = 0; i < n; i++) {
        jobs[i]->cfg = c->cfg; /* it runs under the configuration it was claimed with */
        metrics_job_started(c->metrics, metrics_queue_for(c->metrics, jobs[i]->queue),
                            jobs[i]->waited_s);
        held_add(&c->held, jobs[i], now);
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
static void claim(control *c, int64_t now, int free_slots)
{
    c->notified = false;
    c->more_waiting = false;
    c->next_claim = now + c->cfg->poll_interval_ms;

    const char **open = xcalloc(c->cfg->nqueues, sizeof *open);
    size_t nopen = 0;
    for (size_t i = 0; i < c->cfg->nqueues; i++)
        if (c->cfg->queues[i].concurrency == 0)
            open[nopen++] = c->cfg->queues[i].name;
    if (nopen > 0) {
        int n = claim_from(c, (const char *const *)open, nopen, free_slots, now);
        if (n > 0)
            free_slots -= n;
        c->more_waiting = n > 0 && free_slots == 0;
    }
    free(open);
    for (size_t i = 0; i < c->cfg->nqueues && free_slots > 0 && c->conn; i++) {
        const queue_config *q = &c->cfg->queues[i];
        if (q->concurrency == 0)
            continue;
        /* finished jobs whose outcome is not written yet still count: the table shows
         * them running until it is */
        int room = q->concurrency - pool_running_in_queue(c->pool, q->name) -
                   outcome_unwritten_in_queue(&c->out, q->name);
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
    held_job *h = held_find(&c->held, id, -1);
    if (!h || h->lost)
        return;
    if (outcome_unwritten_for(&c->out, id))
        return; /* finished already; the trigger in 002 turns a release into a cancel */
    job *j = pool_take_unstarted_id(c->pool, id);
    if (j) {
        outcome_add(&c->out, j, FINISH_CANCELLED, xstrdup("cancelled by admin"), 0, 0);
        job_free(j);
        return;
    }
    pool_cancel_job(c->pool, id, CANCEL_JOB);
}

/* collect_results turns the jobs the workers finished into outcomes to write. */
static void collect_results(control *c)
{
    finished_job *done;
    size_t n = pool_collect(c->pool, &done);
    for (size_t i = 0; i < n; i++) {
        double us = (double)done[i].duration_us;
        c->avg_job_us = c->avg_job_us > 0 ? c->avg_job_us * 0.9 + us * 0.1 : us;
        /* a kind with a limit of its own (a worker kind's processes) has room again:
         * claim for it now rather than at the next poll */
        if (c->kinds_limited && c->kind_room(c->kind_room_arg, done[i].job->kind) >= 0)
            c->more_waiting = true;
        /* the backoff of the configuration the job ran under */
        const config *ran_under = done[i].job->cfg ? done[i].job->cfg : c->cfg;
        const kind_config *k = config_kind(ran_under, done[i].job->kind);
        outcome_of_result(&c->out, &done[i], k ? k->backoff_base_ms : BACKOFF_DEFAULT_BASE_MS,
                          k ? k->backoff_max_ms : BACKOFF_DEFAULT_MAX_MS, c->inst.id);
        job_free(done[i].job);
    }
    free(done);
}

/* ---- configuration ---- */

/* set_config puts cfg and kinds in force: what claims ask for and the instance row
 * shows. */
static void set_config(control *c, const config *cfg, const control_kind *kinds, size_t nkinds)
{
    c->cfg = cfg;
    c->kinds = kinds;
    c->nkinds = nkinds;
    free(c->kind_names);
    free(c->kind_max);
    free(c->kind_limit);
    free(c->queue_names);
    c->kind_limit = xcalloc(nkinds, sizeof *c->kind_limit);
    c->kind_names = xcalloc(nkinds, sizeof *c->kind_names);
    c->kind_max = xcalloc(nkinds, sizeof *c->kind_max);
    for (size_t i = 0; i < nkinds; i++) {
        c->kind_names[i] = kinds[i].name;
        c->kind_max[i] = kinds[i].max_attempts;
    }
    c->queue_names = xcalloc(cfg->nqueues, sizeof *c->queue_names);
    for (size_t i = 0; i < cfg->nqueues; i++)
        c->queue_names[i] = cfg->queues[i].name;
    c->inst.concurrency = cfg->concurrency;
    c->inst.queues = c->queue_names;
    c->inst.nqueues = cfg->nqueues;
    c->inst.kinds = c->kind_names;
    c->inst.nkinds = nkinds;
    c->out.cfg = cfg;
    c->chores.cfg = cfg;
}

/* take_reload puts in force a configuration control_reload handed over, and tells the
 * database at once: the instance row, and the schedules it defines. */
static void take_reload(control *c)
{
    pthread_mutex_lock(&c->reload_lock);
    const config *cfg = c->reload_cfg;
    const control_kind *kinds = c->reload_kinds;
    size_t nkinds = c->reload_nkinds;
    c->reload_cfg = NULL;
    pthread_mutex_unlock(&c->reload_lock);
    if (!cfg)
        return;
    set_config(c, cfg, kinds, nkinds);
    c->notified = true; /* new kinds or queues may have jobs waiting */
    c->chores.schedule_at = 0;
    c->schedules_synced = false;
    if (!c->conn || !c->registered)
        return;
    char err[ERR_LEN];
    bool broken;
    if (lease_register(c->conn, &c->inst, &broken, err, sizeof err) < 0) {
        report_failure(c, broken, "could not register instance", err);
        return;
    }
    if (cfg->nschedules > 0) {
        if (schedule_sync(c->conn, cfg, c->inst.id, &broken, err, sizeof err) < 0)
            report_failure(c, broken, "could not sync schedules", err);
        else
            c->schedules_synced = true;
    }
}

/* ---- the phases ---- */

static void begin_drain(control *c)
{
    c->phase = PHASE_DRAINING;
    c->inst.state = shutdown_phase_name(PHASE_DRAINING);
    job **unstarted;
    size_t n = pool_take_unstarted(c->pool, &unstarted);
    for (size_t i = 0; i < n; i++) {
        outcome_add(&c->out, unstarted[i], FINISH_HANDED_BACK, NULL, 0, 0);
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
        report_failure(c, broken, "could not mark instance draining", err);
}

static void begin_cancel(control *c)
{
    if (c->phase == PHASE_RUNNING)
        begin_drain(c);
    c->phase = PHASE_CANCELLING;
    c->cancel = c->deadlines;
    char count[16];
    snprintf(count, sizeof count, "%d", pool_busy(c->pool));
    log_event(LOG_INFO, "cancelling running jobs", "running", count, NULL);
    pool_cancel_all(c->pool, CANCEL_SHUTDOWN);
}

/* take_request enters the phase control_drain or control_cancel asked for; phases only
 * move forward. */
static void take_request(control *c)
{
    int want = atomic_load(&c->requested);
    if (want == PHASE_DRAINING && c->phase == PHASE_RUNNING)
        begin_drain(c);
    else if (want == PHASE_CANCELLING && c->phase != PHASE_CANCELLING)
        begin_cancel(c);
}

/* stop_instance marks the instance stopped; the loop ends after it. */
static void stop_instance(control *c)
{
    if (c->conn && c->registered) {
        char err[ERR_LEN];
        bool broken;
        c->inst.state = "stopped";
        if (lease_set_state(c->conn, &c->inst, &broken, err, sizeof err) < 0)
            log_event(LOG_WARN, "could not mark instance stopped", "error", err, NULL);
    }
    if (c->held.n > 0) {
        char count[24];
        snprintf(count, sizeof count, "%zu", c->held.n);
        log_event(LOG_ERROR,
                  "stopping with unreleased jobs: their leases expire and a peer rescues them",
                  "count", count, NULL);
    }
    c->ended = true;
}

/* ---- the steps of a loop turn ----
 * step(c, now, act): with act, do the step's work if it is due; either way return when
 * it is next due (NEVER: only an event on a watched fd can make it due). */

/* step_reconnect opens the main connection again once its backoff has passed. The
 * attempt runs on a thread of its own (db_connect_begin), so a server that accepts and
 * then never answers holds no loop turn: the lease guard and shutdown keep their times. */
static int64_t step_reconnect(control *c, int64_t now, bool act)
{
    if (c->conn)
        return NEVER;
    if (act && !c->connecting && now >= c->reconnect_at) {
        c->connecting = db_connect_begin(c->url, "runner", CONNECT_TIMEOUT_MS);
        if (!c->connecting) { /* no thread to be had: connect here, within the timeout */
            char err[ERR_LEN];
            PGconn *conn = db_connect(c->url, "runner", CONNECT_TIMEOUT_MS, err, sizeof err);
            if (connected(c, conn, err) < 0)
                c->ended = true, c->rc = -1;
            return c->conn ? now : c->reconnect_at;
        }
    }
    if (act && c->connecting && db_connecting_done(c->connecting)) {
        char err[ERR_LEN] = "";
        PGconn *conn = db_connect_end(c->connecting, err, sizeof err);
        c->connecting = NULL;
        if (connected(c, conn, err) < 0) {
            c->rc = -1;
            c->ended = true;
            return NEVER;
        }
    }
    if (c->conn)
        return now;
    return c->connecting ? NEVER : c->reconnect_at; /* its fd wakes the loop */
}

/* renewals and rescues wait for an outcome batch in flight: they go first once it is
 * answered, so a steady stream of batches cannot starve them */
static int64_t step_renew(control *c, int64_t now, bool act)
{
    if (!c->conn || !c->registered || outcome_in_flight(&c->out))
        return NEVER;
    if (act && now >= c->next_renew)
        renew(c, now);
    return c->next_renew;
}

static void count_rescued(void *arg, const char *queue, const char *kind, int n)
{
    control *c = arg;
    metrics_jobs_rescued(c->metrics, queue, kind, (uint64_t)n);
}

static int64_t step_rescue(control *c, int64_t now, bool act)
{
    if (!c->conn || c->phase != PHASE_RUNNING || outcome_in_flight(&c->out))
        return NEVER;
    if (act) {
        char err[ERR_LEN];
        bool broken;
        int n = chores_rescue(&c->chores, c->conn, &c->inst, now, count_rescued, c, &broken, err,
                              sizeof err);
        if (n < 0)
            report_failure(c, broken, "could not rescue expired leases", err);
        else
            report_ok(c, "could not rescue expired leases");
        c->notified |= n > 0;
    }
    return c->chores.rescue_at;
}

/* step_flush writes collected outcomes. While cancelling it holds them until every
 * cancelled handler has returned (or their deadline passed), so that all releases go
 * out in one statement. */
static int64_t step_flush(control *c, int64_t now, bool act)
{
    if (!c->conn)
        return NEVER;
    bool cancelling = c->phase == PHASE_CANCELLING;
    if (cancelling && pool_busy(c->pool) > 0 && now < c->cancel.handlers_ms)
        return c->cancel.handlers_ms;
    if (act) {
        char err[ERR_LEN];
        if (outcome_flush(&c->out, c->conn, now, cancelling ? c->cancel.loop_ms : 0, on_notify, c,
                          err, sizeof err) < 0)
            disconnect(c, err);
        if (c->out.limited_room) {
            c->out.limited_room = false;
            c->more_waiting = true;
        }
    }
    return outcome_due(&c->out);
}

static int64_t step_claim(control *c, int64_t now, bool act)
{
    if (!c->conn || c->phase != PHASE_RUNNING)
        return NEVER;
    int room = claim_room(c);
    if (room <= 0)
        return NEVER; /* a finished job or a written batch wakes the loop */
    int64_t due = c->notified || c->more_waiting ? now : c->next_claim;
    if (act && now >= due) {
        claim(c, now, room);
        return step_claim(c, now, false);
    }
    return due;
}

/* the chores chores_run runs on the main connection */
static const char *const chore_failures[] = {CHORES_FAILED_TICK, CHORES_FAILED_UNHANDLED};

static int64_t step_chores(control *c, int64_t now, bool act)
{
    char err[ERR_LEN];
    const char *what = NULL;
    /* an upkeep statement's answer is read in every phase, so that its socket does not
     * stay readable while the instance drains */
    int polled = act ? chores_poll(&c->chores, now, &what, err, sizeof err) : 0;
    if (polled < 0)
        report_failure(c, false, what, err);
    else if (polled > 0)
        report_ok(c, what);
    if (!c->conn || c->phase != PHASE_RUNNING)
        return chores_upkeep_due(&c->chores);
    if (act) {
        claim_scope scope = {.queues = c->inst.queues,
                             .nqueues = c->inst.nqueues,
                             .kinds = c->kind_names,
                             .nkinds = c->nkinds};
        bool broken, woke = false;
        if (chores_run(&c->chores, c->conn, &c->inst, &scope, now, &woke, &what, &broken, err,
                       sizeof err) < 0)
            report_failure(c, broken, what, err);
        else
            for (size_t i = 0; i < ARRAY_LEN(chore_failures); i++)
                report_ok(c, chore_failures[i]);
        c->notified |= woke;
    }
    return chores_due(&c->chores, false);
}

/* the lease guard runs whether or not the server is reachable */
static int64_t step_guard(control *c, int64_t now, bool act)
{
    if (act)
        guard_leases(c, now);
    return held_guard_due(&c->held, c->cfg->lease_ms, lease_margin(c));
}

/* step_end ends the loop once a stopping instance has nothing left, or at the cancel's
 * loop deadline whatever is left. */
static int64_t step_end(control *c, int64_t now, bool act)
{
    if (c->phase == PHASE_RUNNING)
        return NEVER;
    bool idle = pool_busy(c->pool) == 0 && outcome_unwritten(&c->out) == 0;
    bool late = c->phase == PHASE_CANCELLING && now >= c->cancel.loop_ms;
    if (act && (idle || late))
        stop_instance(c);
    if (idle)
        return now;
    return c->phase == PHASE_CANCELLING ? c->cancel.loop_ms : NEVER;
}

/* step_tick publishes the loop's numbers: it is the proof of life /healthz and the
 * systemd watchdog read (sent from here, so that a wedged loop is caught) */
static int64_t step_tick(control *c, int64_t now, bool act)
{
    if (act) {
        char line[SDNOTIFY_MSG_LEN];
        sdnotify_watchdog(now);
        sdnotify_status(now, sdnotify_format_status(line, sizeof line, shutdown_phase_name(c->phase),
                                                    pool_running(c->pool), c->cfg->concurrency,
                                                    (int64_t)c->out.completed));
        metrics_loop_tick(c->metrics, now);
        metrics_publish(c->metrics, &(metrics_gauges){
                                        .workers = c->cfg->concurrency,
                                        .workers_busy = pool_running(c->pool),
                                        .jobs_held = (int64_t)c->held.n,
                                        .outcomes_unwritten = (int64_t)outcome_unwritten(&c->out),
                                    });
    }
    return min64(now + TICK_MS, sdnotify_watchdog_next_ms());
}

typedef int64_t (*step_fn)(control *c, int64_t now, bool act);

/* The order matters: a reconnect comes first; renewals and rescues before the batch of
 * outcomes that would make them wait; claims after outcomes (a written release makes
 * room); the guard after everything that could renew; the end last. */
static const step_fn steps[] = {step_reconnect, step_renew, step_rescue, step_flush, step_claim,
                                step_chores,    step_guard, step_tick,   step_end};

/* ---- the loop ---- */

static void wait_events(control *c, int64_t until)
{
    struct pollfd fds[4] = {
        {.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}, {.fd = -1}, {.fd = -1}};
    if (c->conn && c->listening)
        fds[1] = (struct pollfd){.fd = PQsocket(c->conn), .events = POLLIN};
    else if (c->connecting) /* readable once the attempt ended */
        fds[1] = (struct pollfd){.fd = db_connecting_fd(c->connecting), .events = POLLIN};
    short events = 0;
    int wfd = outcome_poll_fd(&c->out, &events);
    if (wfd >= 0) /* its answer is read by outcome_poll in the next turn */
        fds[2] = (struct pollfd){.fd = wfd, .events = events};
    int ufd = chores_poll_fd(&c->chores, &events);
    if (ufd >= 0) /* and this one by chores_poll */
        fds[3] = (struct pollfd){.fd = ufd, .events = events};
    int64_t left = until - now_ms();
    if (left < 0)
        left = 0;
    if (poll(fds, 4, (int)left) <= 0)
        return;
    if (fds[0].revents & POLLIN) {
        uint64_t v;
        ssize_t rc = read(c->wake_fd, &v, sizeof v);
        (void)rc;
    }
    if (fds[1].fd >= 0 && fds[1].revents && c->conn) {
        char err[ERR_LEN];
        if (db_consume(c->conn, on_notify, c, err, sizeof err) < 0)
            disconnect(c, err);
    }
}

static void run_loop(control *c)
{
    while (!c->ended) {
        int64_t now = now_ms();
        take_request(c);
        if (c->phase == PHASE_RUNNING)
            take_reload(c);
        c->turns[c->phase]++;
        collect_results(c);
        outcome_poll(&c->out, now);
        for (size_t i = 0; i < ARRAY_LEN(steps) && !c->ended; i++)
            steps[i](c, now, true);
        if (c->ended)
            break;
        /* notifications libpq read during statements sent without a callback */
        if (c->conn)
            db_notifies(c->conn, on_notify, c);
        now = now_ms();
        int64_t due = NEVER;
        for (size_t i = 0; i < ARRAY_LEN(steps); i++)
            due = min64(due, steps[i](c, now, false));
        wait_events(c, due);
    }
    char turns[2][24];
    snprintf(turns[0], sizeof turns[0], "%ld", c->turns[PHASE_DRAINING]);
    snprintf(turns[1], sizeof turns[1], "%ld", c->turns[PHASE_CANCELLING]);
    log_event(LOG_DEBUG, "control loop ended", "turns_draining", turns[0], "turns_cancelling",
              turns[1], NULL);
}

static void *control_main(void *arg)
{
    control *c = arg;
    run_loop(c);
    if (c->connecting) { /* its thread closes what it gets */
        db_connect_abandon(c->connecting);
        c->connecting = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    outcome_writer_free(&c->out);
    uint64_t one = 1;
    ssize_t rc = write(c->done_fd, &one, sizeof one);
    (void)rc;
    return NULL;
}

/* ---- public ---- */

int64_t control_statement_timeout_ms(const config *cfg)
{
    /* a statement may not hang longer than a fraction of the lease, so the lease guard
     * always gets to run in time */
    int64_t t = cfg->lease_ms / 4;
    return t < 1000 ? 1000 : t > STATEMENT_TIMEOUT_MS ? STATEMENT_TIMEOUT_MS : t;
}

int64_t control_longest_turn_ms(const config *cfg)
{
    /* a hung server costs one statement (then the connection counts as broken and the
     * turn's other statements are skipped) and one connect attempt */
    return control_statement_timeout_ms(cfg) + CONNECT_TIMEOUT_MS;
}

control *control_create(const config *cfg, const char *database_url, worker_pool *pool, int wake_fd,
                        const control_kind *kinds, size_t nkinds, metrics *m)
{
    control *c = xcalloc(1, sizeof *c);
    c->metrics = m;
    c->url = database_url;
    c->pool = pool;
    c->wake_fd = wake_fd;
    c->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&c->reload_lock, NULL);
    c->phase = PHASE_RUNNING;
    c->inst.state = shutdown_phase_name(PHASE_RUNNING);
    set_config(c, cfg, kinds, nkinds);
    c->inst.lease_ms = cfg->lease_ms;
    c->inst.timeout_ms = control_statement_timeout_ms(cfg);
    outcome_writer_init(&c->out, cfg, database_url, c->inst.id, c->inst.timeout_ms, &c->held, m);
    chores_init(&c->chores, cfg, database_url, c->inst.timeout_ms, now_ms());
    return c;
}

void control_destroy(control *c)
{
    if (!c)
        return;
    outcome_writer_free(&c->out);
    held_free(&c->held);
    chores_free(&c->chores);
    free(c->kind_names);
    free(c->kind_max);
    free(c->kind_limit);
    free(c->queue_names);
    pthread_mutex_destroy(&c->reload_lock);
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

/* request asks the loop for a phase; a later phase supersedes one not yet seen, and a
 * request never moves the phase back. */
static void request(control *c, enum shutdown_phase p)
{
    int cur = atomic_load(&c->requested);
    while (cur < (int)p && !atomic_compare_exchange_weak(&c->requested, &cur, (int)p))
        ;
    uint64_t one = 1;
    ssize_t rc = write(c->wake_fd, &one, sizeof one);
    (void)rc;
}

void control_set_kind_room(control *c, control_kind_room_fn room, void *arg)
{
    c->kind_room = room;
    c->kind_room_arg = arg;
}

void control_reload(control *c, const config *cfg, const control_kind *kinds, size_t nkinds)
{
    pthread_mutex_lock(&c->reload_lock);
    c->reload_cfg = cfg;
    c->reload_kinds = kinds;
    c->reload_nkinds = nkinds;
    pthread_mutex_unlock(&c->reload_lock);
    uint64_t one = 1;
    ssize_t rc = write(c->wake_fd, &one, sizeof one);
    (void)rc;
}

void control_drain(control *c)
{
    metrics_set_phase(c->metrics, PHASE_DRAINING); /* readiness turns 503 at once */
    request(c, PHASE_DRAINING);
}

void control_cancel(control *c, const shutdown_deadlines *d)
{
    /* the deadlines are written before the request that makes the loop read them */
    c->deadlines = *d;
    metrics_set_phase(c->metrics, PHASE_CANCELLING);
    /* workers are cancelled here too, so a loop stuck connecting does not delay them */
    pool_cancel_all(c->pool, CANCEL_SHUTDOWN);
    request(c, PHASE_CANCELLING);
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
