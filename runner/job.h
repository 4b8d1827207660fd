/* job.h - a claimed job as the workers see it, and what running it produced. */
#ifndef RUNNER_JOB_H
#define RUNNER_JOB_H

#include <stdint.h>

/* The states of runner.jobs (its CHECK constraint; 'scheduled' since sql/004: due
 * later, promoted to 'available' by the claim), in lifecycle order: the one list the
 * code knows them by. */
#define JOB_STATE_NAMES "scheduled", "available", "running", "completed", "failed", "cancelled"

typedef struct job {
    int64_t id;
    char *queue;
    char *kind;
    char *args; /* JSON text */
    int attempt;
    int max_attempts;
    int priority;
    double waited_s; /* from due (run_at) to the claim, by the database clock */
    char *lease_owner; /* the instance holding the lease (for fenced writes) */
    /* the configuration in force when the job was claimed: it runs under that one,
     * whatever a reload changes meanwhile (set by the control loop) */
    const struct config *cfg;
} job;

typedef enum job_outcome {
    JOB_COMPLETED,   /* handler succeeded; completion still to be written */
    JOB_COMMITTED,   /* handler's transaction already wrote the completion */
    JOB_RETRY,       /* failed attempt: retry with backoff, or fail when none are left */
    JOB_DISCARD,     /* failed for good, no more attempts */
    JOB_INTERRUPTED, /* cancelled by shutdown: release, attempt not charged */
    JOB_CANCELLED,   /* cancelled by an admin (runner.cancel_job) */
    JOB_ABANDONED,   /* lease lost: released if the lease guard stopped it before it ran
                      * out, else nothing is written (a peer owns the job now) */
} job_outcome;

typedef struct job_result {
    job_outcome outcome;
    char *error;      /* malloc'd message for failures, else NULL */
    int64_t delay_ms; /* JOB_RETRY: explicit delay, -1 for the kind's backoff */
} job_result;

/* job_new allocates a job and copies of its strings in one block (a claim makes
 * thousands of them); the numbers are the caller's to fill in. */
job *job_new(const char *queue, const char *kind, const char *args, const char *lease_owner);
/* job_free frees a job from job_new; NULL is a no-op. */
void job_free(job *j);
/* job_result_free frees the result's error message; the struct is the caller's. */
void job_result_free(job_result *r);

#endif
