/* metrics.h - the numbers `runner run` exposes: fed by the control loop, read by /metrics.
 *
 * Who calls what:
 *   every loop turn        metrics_loop_tick, metrics_publish (workers, busy, held, unwritten)
 *   each claimed job       metrics_job_started (due-to-claim wait, from the database clock)
 *   each written outcome   metrics_job_outcome (and for a transactional job's commit)
 *   a rescue               metrics_jobs_rescued
 *   renewal round trip ok  metrics_lease_renewed
 *   connect / disconnect   metrics_set_db_up, metrics_db_reconnected
 *   first / second signal  metrics_set_phase, at once (readiness turns 503 within 100 ms) */
#ifndef RUNNER_METRICS_H
#define RUNNER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shutdown.h"
#include "util.h"

/* What happened to a job, one counter family each, by queue and kind. X(enum, metric
 * name without runner_jobs_ and _total, HELP text). FAILED counts every failed attempt;
 * DISCARDED, the last failed attempt of a job that failed for good, counts as FAILED too. */
#define METRICS_OUTCOMES(X)                                                                        \
    X(METRICS_COMPLETED, "completed", "Jobs that completed.")                                      \
    X(METRICS_FAILED, "failed", "Attempts that failed (retried or not).")                          \
    X(METRICS_DISCARDED, "discarded",                                                              \
      "Jobs that failed for good (no attempts left, or discarded).")                               \
    X(METRICS_RELEASED, "released",                                                                \
      "Jobs handed back by this instance at shutdown, attempt not charged.")                       \
    X(METRICS_RESCUED, "rescued",                                                                  \
      "Jobs of dead instances whose expired leases this instance requeued.")                       \
    X(METRICS_CANCELLED, "cancelled", "Jobs cancelled by an admin while this instance held them.")

#define METRICS_ENUM_(e, name, help) e,
enum metrics_outcome { METRICS_OUTCOMES(METRICS_ENUM_) METRICS_NOUTCOMES };
#undef METRICS_ENUM_

/* Label sets are bounded by the configuration (queues, kinds); these caps hold anyway,
 * e.g. against kinds of rescued jobs that no instance configures. Events of a label set
 * beyond the cap are counted in runner_metrics_series_dropped_total only. */
#define METRICS_MAX_SERIES 512 /* (queue, kind) pairs */
#define METRICS_MAX_QUEUES 128 /* queues of runner_job_wait_seconds */

typedef struct metrics metrics;
typedef struct metrics_series metrics_series; /* one (queue, kind) */
typedef struct metrics_queue metrics_queue;   /* one queue */

/* The gauges the control loop publishes once per turn (metrics_publish). */
typedef struct metrics_gauges {
    int64_t workers;            /* capacity: worker threads */
    int64_t workers_busy;       /* workers running a job */
    int64_t jobs_held;          /* jobs this instance holds a lease on (running or prefetched) */
    int64_t outcomes_unwritten; /* outcomes not yet written to the database */
} metrics_gauges;

/* metrics_create makes an empty registry; its liveness clock starts now. */
metrics *metrics_create(void);
void metrics_destroy(metrics *m);

/* metrics_series_for returns the stable handle of (queue, kind), creating it on first use
 * (under a mutex; finding an existing one takes none); NULL once METRICS_MAX_SERIES exist
 * (the events are then dropped and counted). A scan of the series: callers on the hot
 * path may keep the handle next to their interned names. */
metrics_series *metrics_series_for(metrics *m, const char *queue, const char *kind);
metrics_queue *metrics_queue_for(metrics *m, const char *queue);

/* metrics_job_outcome counts one outcome of a job of series s (NULL: dropped). When
 * duration_s >= 0 the attempt ran here for that long and runner_job_duration_seconds
 * observes it; pass -1 for jobs that did not run (released before start, rescued). */
void metrics_job_outcome(metrics *m, metrics_series *s, enum metrics_outcome o, double duration_s);
/* metrics_jobs_rescued counts n rescued jobs of (queue, kind); NULL names: "unknown". */
void metrics_jobs_rescued(metrics *m, const char *queue, const char *kind, uint64_t n);
/* metrics_job_started observes how long a job waited from due (run_at) to its start. */
void metrics_job_started(metrics *m, metrics_queue *q, double wait_s);

/* Everything below is lock-free and may be called from any thread; metrics_set_phase
 * and metrics_loop_tick also from a signal handler (lock-free atomic stores). */
void metrics_publish(metrics *m, const metrics_gauges *g);
/* runner_phase is the shutdown protocol's phase as its number (shutdown.h). */
void metrics_set_phase(metrics *m, enum shutdown_phase phase);
void metrics_set_db_up(metrics *m, bool up);
void metrics_db_reconnected(metrics *m);
/* metrics_lease_renewed: a renewal round trip (leases and heartbeat) succeeded at now (ms,
 * now_ms() clock). */
void metrics_lease_renewed(metrics *m, int64_t now);
/* metrics_loop_tick: the control loop turned at now (ms, now_ms() clock). */
void metrics_loop_tick(metrics *m, int64_t now);

/* metrics_live: the loop ticked within max_age_ms before now. metrics_ready: running
 * (not draining or cancelling) and the database up. */
bool metrics_live(const metrics *m, int64_t now, int64_t max_age_ms);
bool metrics_ready(const metrics *m);

/* metrics_render appends every family in the Prometheus text format 0.0.4. */
void metrics_render(metrics *m, strbuf *out, int64_t now);

/* metrics_escape_label appends s escaped for a label value (\\, \", \n). */
void metrics_escape_label(strbuf *out, const char *s);

#endif
