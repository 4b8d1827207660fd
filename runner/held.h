/* held.h - the jobs this instance holds a lease on, and the names they point at. */
#ifndef RUNNER_HELD_H
#define RUNNER_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idmap.h"
#include "job.h"

/* One held lease: claimed, running, or finished with its outcome not written yet. */
typedef struct held_job {
    int64_t id;
    int attempt;
    const char *kind;   /* interned (held_intern) */
    int64_t renewed_ms; /* when the last renewal (or the claim) that covered it was sent */
    bool lost;          /* the lease is no longer ours: never renew, never write */
    bool abandoning;    /* stopped because renewals failed: release when possible */
} held_job;

typedef struct held_set {
    held_job *jobs;
    size_t n, cap;
    idmap newest;       /* id -> index in jobs of its newest attempt */
    size_t superseded;  /* entries whose id also has a newer attempt held */
    char **names;       /* interned kind and queue names */
    size_t nnames;
} held_set;

/* held_intern returns the set's own copy of a kind or queue name: held jobs and their
 * outcomes point at it instead of copying it (the names are few; the jobs many). The
 * copy lives until held_free. */
const char *held_intern(held_set *s, const char *name);

/* held_find finds job id at attempt (< 0: its newest attempt), or NULL. */
held_job *held_find(held_set *s, int64_t id, int attempt);
/* held_add records a job just claimed; sent_ms is when the claim was sent. */
void held_add(held_set *s, const job *j, int64_t sent_ms);
/* held_drop forgets job id at attempt (no-op when not held). */
void held_drop(held_set *s, int64_t id, int attempt);
void held_free(held_set *s);

/* held_lease_margin is how long before a lease could run out that its job gets stopped:
 * enough for a renewal interval and for the job's process to be killed. */
int64_t held_lease_margin(int64_t lease_ms, int64_t heartbeat_ms, int64_t kill_after_ms);
/* held_guard_due is when the first lease still ours reaches its margin (INT64_MAX when
 * none is held). */
int64_t held_guard_due(const held_set *s, int64_t lease_ms, int64_t margin);

#endif
