/* metrics.c - a registry of counters, gauges and histograms, rendered for Prometheus.
 *
 * DESIGN
 * The control loop handles tens of thousands of jobs a second and must not wait for a
 * scrape; the listener thread renders whenever Prometheus asks. So every number is a C11
 * atomic that writers bump with relaxed order and the renderer reads without a lock:
 * one uncontended atomic add per counter per job, no lock on the hot path. A scrape may
 * see a histogram a few observations apart from its counter; Prometheus tolerates that,
 * and the _count written is the sum of the buckets written, so each histogram is
 * consistent in itself.
 *
 * Series (one per (queue, kind), or per queue) are created on first use under a mutex
 * and never freed before the registry, so a handle stays valid, and lookups and the
 * renderer walk the published prefix of a fixed array (count read with acquire) without
 * the mutex.
 * Label values come only from configured queue and kind names (and rescued jobs' names),
 * never from job ids or error texts; METRICS_MAX_SERIES caps them regardless.
 *
 * Clocks: the loop passes now_ms() (monotonic); ages are computed at render time, so a
 * wedged loop shows a growing runner_lease_renewal_age_seconds and fails /healthz. */
#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket bounds in seconds. Durations: from no-op C handlers (sub-millisecond) to exec
 * jobs of an hour. Waits: from a NOTIFY wake-up (about a millisecond) to a backlog of
 * an hour. */
static const double duration_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1,   2.5,
                                         5,     10,    30,   60,   300, 900, 3600};
static const double wait_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1,
                                     5,     10,    30,   60,   300, 900, 3600};
#define MAX_BUCKETS 16

typedef struct histogram {
    const double *bounds;
    size_t nbounds;
    atomic_uint_fast64_t counts[MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    atomic_uint_fast64_t sum_ns;
} histogram;

struct metrics_series {
    char *queue, *kind;
    atomic_uint_fast64_t outcomes[METRICS_NOUTCOMES];
    histogram duration;
};

struct metrics_queue {
    char *queue;
    histogram wait;
};

struct metrics {
    pthread_mutex_t lock; /* creation of series only */
    metrics_series *series[METRICS_MAX_SERIES];
    atomic_size_t nseries;
    metrics_queue *queues[METRICS_MAX_QUEUES];
    atomic_size_t nqueues;
    atomic_uint_fast64_t dropped;

    atomic_int_fast64_t workers, workers_busy, jobs_held, outcomes_unwritten;
    atomic_int phase;
    atomic_bool db_up;
    atomic_uint_fast64_t reconnects;
    atomic_int_fast64_t created_ms, renewed_ms, tick_ms; /* renewed_ms 0: never */
};

static const struct {
    const char *name, *help;
} outcome_info[] = {
#define METRICS_INFO_(e, name, help) {name, help},
    METRICS_OUTCOMES(METRICS_INFO_)
#undef METRICS_INFO_
};

metrics *metrics_create(void)
{
    metrics *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    int64_t now = now_ms();
    atomic_init(&m->created_ms, now);
    atomic_init(&m->tick_ms, now);
    return m;
}

void metrics_destroy(metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < atomic_load(&m->nseries); i++) {
        free(m->series[i]->queue);
        free(m->series[i]->kind);
        free(m->series[i]);
    }
    for (size_t i = 0; i < atomic_load(&m->nqueues); i++) {
        free(m->queues[i]->queue);
        free(m->queues[i]);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void histogram_init(histogram *h, const double *bounds, size_t nbounds)
{
    h->bounds = bounds;
    h->nbounds = nbounds;
}

static void histogram_observe(histogram *h, double v)
{
    if (!(v >= 0)) /* NaN too */
        v = 0;
    if (v > 1e9) /* keeps the conversion to nanoseconds defined */
        v = 1e9;
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)(v * 1e9), memory_order_relaxed);
}

/* find_series scans the published series without the lock: they are never moved or freed,
 * and each slot is written before the count that publishes it (release/acquire). */
static metrics_series *find_series(metrics *m, const char *queue, const char *kind)
{
    size_t n = atomic_load_explicit(&m->nseries, memory_order_acquire);
    /* linear: a few dozen (queue, kind) pairs in practice */
    for (size_t i = 0; i < n; i++)
        if (!strcmp(m->series[i]->kind, kind) && !strcmp(m->series[i]->queue, queue))
            return m->series[i];
    return NULL;
}

static metrics_queue *find_queue(metrics *m, const char *queue)
{
    size_t n = atomic_load_explicit(&m->nqueues, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(m->queues[i]->queue, queue))
            return m->queues[i];
    return NULL;
}

metrics_series *metrics_series_for(metrics *m, const char *queue, const char *kind)
{
    metrics_series *found = find_series(m, queue, kind);
    if (found)
        return found;
    pthread_mutex_lock(&m->lock);
    found = find_series(m, queue, kind); /* another thread may have created it meanwhile */
    size_t n = atomic_load_explicit(&m->nseries, memory_order_relaxed);
    if (!found && n < METRICS_MAX_SERIES) {
        found = xcalloc(1, sizeof *found);
        found->queue = xstrdup(queue);
        found->kind = xstrdup(kind);
        histogram_init(&found->duration, duration_bounds, ARRAY_LEN(duration_bounds));
        m->series[n] = found;
        atomic_store_explicit(&m->nseries, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    if (!found)
        atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
    return found;
}

metrics_queue *metrics_queue_for(metrics *m, const char *queue)
{
    metrics_queue *found = find_queue(m, queue);
    if (found)
        return found;
    pthread_mutex_lock(&m->lock);
    found = find_queue(m, queue);
    size_t n = atomic_load_explicit(&m->nqueues, memory_order_relaxed);
    if (!found && n < METRICS_MAX_QUEUES) {
        found = xcalloc(1, sizeof *found);
        found->queue = xstrdup(queue);
        histogram_init(&found->wait, wait_bounds, ARRAY_LEN(wait_bounds));
        m->queues[n] = found;
        atomic_store_explicit(&m->nqueues, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    if (!found)
        atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
    return found;
}

void metrics_job_outcome(metrics *m, metrics_series *s, enum metrics_outcome o, double duration_s)
{
    if (!s) {
        atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&s->outcomes[o], 1, memory_order_relaxed);
    if (o == METRICS_DISCARDED) /* the last attempt failed too */
        atomic_fetch_add_explicit(&s->outcomes[METRICS_FAILED], 1, memory_order_relaxed);
    if (duration_s >= 0)
        histogram_observe(&s->duration, duration_s);
}

void metrics_jobs_rescued(metrics *m, const char *queue, const char *kind, uint64_t n)
{
    metrics_series *s = metrics_series_for(m, queue ? queue : "unknown", kind ? kind : "unknown");
    if (s)
        atomic_fetch_add_explicit(&s->outcomes[METRICS_RESCUED], n, memory_order_relaxed);
}

void metrics_job_started(metrics *m, metrics_queue *q, double wait_s)
{
    if (!q) {
        atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
        return;
    }
    /* run_at is in the database's clock and the start in ours: a small skew must not
     * make a negative wait */
    histogram_observe(&q->wait, wait_s > 0 ? wait_s : 0);
}

void metrics_publish(metrics *m, const metrics_gauges *g)
{
    atomic_store_explicit(&m->workers, g->workers, memory_order_relaxed);
    atomic_store_explicit(&m->workers_busy, g->workers_busy, memory_order_relaxed);
    atomic_store_explicit(&m->jobs_held, g->jobs_held, memory_order_relaxed);
    atomic_store_explicit(&m->outcomes_unwritten, g->outcomes_unwritten, memory_order_relaxed);
}

void metrics_set_phase(metrics *m, enum shutdown_phase phase)
{
    atomic_store(&m->phase, (int)phase);
}

void metrics_set_db_up(metrics *m, bool up)
{
    atomic_store(&m->db_up, up);
}

void metrics_db_reconnected(metrics *m)
{
    atomic_fetch_add_explicit(&m->reconnects, 1, memory_order_relaxed);
}

void metrics_lease_renewed(metrics *m, int64_t now)
{
    atomic_store_explicit(&m->renewed_ms, now, memory_order_relaxed);
}

void metrics_loop_tick(metrics *m, int64_t now)
{
    atomic_store_explicit(&m->tick_ms, now, memory_order_relaxed);
}

bool metrics_live(const metrics *m, int64_t now, int64_t max_age_ms)
{
    return now - atomic_load_explicit(&m->tick_ms, memory_order_relaxed) <= max_age_ms;
}

bool metrics_ready(const metrics *m)
{
    return atomic_load(&m->phase) == PHASE_RUNNING && atomic_load(&m->db_up);
}

/* ---- rendering ---- */

void metrics_escape_label(strbuf *out, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (esc) {
            sb_append(out, run, (size_t)(s - run));
            sb_puts(out, esc);
            run = s + 1;
        }
    }
    sb_append(out, run, (size_t)(s - run));
}

static void family(strbuf *out, const char *name, const char *type, const char *help)
{
    sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels appends {queue="...",kind="..."} (kind NULL: queue only) and extra ("le=..."). */
static void labels(strbuf *out, const char *queue, const char *kind, const char *extra)
{
    sb_puts(out, "{queue=\"");
    metrics_escape_label(out, queue);
    if (kind) {
        sb_puts(out, "\",kind=\"");
        metrics_escape_label(out, kind);
    }
    sb_puts(out, "\"");
    if (extra) {
        sb_puts(out, ",");
        sb_puts(out, extra);
    }
    sb_puts(out, "}");
}

static void histogram_render(strbuf *out, const char *name, const histogram *h, const char *queue,
                             const char *kind)
{
    uint64_t cumulative = 0;
    char le[64];
    for (size_t i = 0; i <= h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->nbounds)
            snprintf(le, sizeof le, "le=\"%g\"", h->bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        sb_printf(out, "%s_bucket", name);
        labels(out, queue, kind, le);
        sb_printf(out, " %" PRIu64 "\n", cumulative);
    }
    sb_printf(out, "%s_sum", name);
    labels(out, queue, kind, NULL);
    uint64_t ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    sb_printf(out, " %" PRIu64 ".%09" PRIu64 "\n", ns / 1000000000, ns % 1000000000);
    sb_printf(out, "%s_count", name);
    labels(out, queue, kind, NULL);
    sb_printf(out, " %" PRIu64 "\n", cumulative);
}

static void gauge(strbuf *out, const char *name, const char *help, int64_t v)
{
    family(out, name, "gauge", help);
    sb_printf(out, "%s %" PRId64 "\n", name, v);
}

void metrics_render(metrics *m, strbuf *out, int64_t now)
{
    size_t ns = atomic_load_explicit(&m->nseries, memory_order_acquire);
    size_t nq = atomic_load_explicit(&m->nqueues, memory_order_acquire);
    char name[96];

    for (int o = 0; o < METRICS_NOUTCOMES; o++) {
        snprintf(name, sizeof name, "runner_jobs_%s_total", outcome_info[o].name);
        family(out, name, "counter", outcome_info[o].help);
        for (size_t i = 0; i < ns; i++) {
            const metrics_series *s = m->series[i];
            sb_puts(out, name);
            labels(out, s->queue, s->kind, NULL);
            sb_printf(out, " %" PRIu64 "\n",
                      (uint64_t)atomic_load_explicit(&s->outcomes[o], memory_order_relaxed));
        }
    }

    family(out, "runner_job_duration_seconds", "histogram",
           "How long attempts that ran in this instance took, from start to outcome.");
    for (size_t i = 0; i < ns; i++)
        histogram_render(out, "runner_job_duration_seconds", &m->series[i]->duration,
                         m->series[i]->queue, m->series[i]->kind);
    family(out, "runner_job_wait_seconds", "histogram",
           "How long jobs waited from due (run_at) to their start in this instance.");
    for (size_t i = 0; i < nq; i++)
        histogram_render(out, "runner_job_wait_seconds", &m->queues[i]->wait, m->queues[i]->queue,
                         NULL);

    gauge(out, "runner_workers", "Worker threads of this instance (capacity).",
          atomic_load(&m->workers));
    gauge(out, "runner_workers_busy", "Workers running a job.", atomic_load(&m->workers_busy));
    gauge(out, "runner_jobs_held", "Jobs this instance holds a lease on.",
          atomic_load(&m->jobs_held));
    gauge(out, "runner_outcomes_unwritten", "Job outcomes not yet written to the database.",
          atomic_load(&m->outcomes_unwritten));
    gauge(out, "runner_phase", "Shutdown phase: 0 running, 1 draining, 2 cancelling.",
          atomic_load(&m->phase));
    gauge(out, "runner_database_up", "1 while the control loop's database connection works.",
          atomic_load(&m->db_up) ? 1 : 0);
    int64_t renewed = atomic_load(&m->renewed_ms);
    int64_t age = now - (renewed ? renewed : atomic_load(&m->created_ms));
    if (age < 0)
        age = 0;
    family(out, "runner_lease_renewal_age_seconds", "gauge",
           "Seconds since leases and heartbeat were last renewed (since start before the first).");
    sb_printf(out, "runner_lease_renewal_age_seconds %" PRId64 ".%03d\n", age / 1000,
              (int)(age % 1000));
    family(out, "runner_database_reconnects_total", "counter",
           "Times the control loop reconnected to the database.");
    sb_printf(out, "runner_database_reconnects_total %" PRIu64 "\n",
              (uint64_t)atomic_load(&m->reconnects));
    family(out, "runner_metrics_series_dropped_total", "counter",
           "Events not counted because their label set exceeded the series cap.");
    sb_printf(out, "runner_metrics_series_dropped_total %" PRIu64 "\n",
              (uint64_t)atomic_load(&m->dropped));
    family(out, "runner_build_info", "gauge", "The runner's version; always 1.");
    sb_puts(out, "runner_build_info{version=\"");
    metrics_escape_label(out, RUNNER_VERSION);
    sb_puts(out, "\"} 1\n");
}
