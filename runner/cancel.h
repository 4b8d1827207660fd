/* cancel.h - a per-worker cancellation token that a poll() loop can wait on. */
#ifndef RUNNER_CANCEL_H
#define RUNNER_CANCEL_H

#include <libpq-fe.h>
#include <stdatomic.h>

#include "job.h"

enum cancel_reason {
    CANCEL_NONE = 0,
    CANCEL_SHUTDOWN,   /* grace deadline or second signal */
    CANCEL_LEASE_LOST, /* renewals failed for too long */
    CANCEL_JOB,        /* runner.cancel_job() by an admin */
};

typedef struct cancel_token {
    _Atomic int reason;            /* enum cancel_reason; first request wins */
    int fd;                        /* eventfd: readable once cancelled */
    _Atomic(PGcancel *) statement; /* a statement in flight to cancel with the job */
} cancel_token;

int cancel_init(cancel_token *c);
void cancel_destroy(cancel_token *c);
/* cancel_request is thread-safe; the first reason wins. It also cancels an armed
 * statement (cancel_send: it never waits for the server). */
void cancel_request(cancel_token *c, enum cancel_reason reason);
enum cancel_reason cancel_get(cancel_token *c);
/* cancel_arm_statement makes a cancel request also cancel the statement running on the
 * connection pc was taken from (cancel_send from the requesting thread: a handler blocked
 * in PQexec cannot watch the fd). The token owns pc from here on. If a cancel was requested
 * before, it fires at once. */
void cancel_arm_statement(cancel_token *c, PGcancel *pc);
/* cancel_disarm_statement ends that (the owner thread, once the statement is done). */
void cancel_disarm_statement(cancel_token *c);

/* cancel_send asks the server to cancel the statement pc was taken from, on a thread of
 * its own (libpq 15's PQcancel connects and waits without a timeout), and frees pc. It
 * returns at once, whatever the server does; NULL is ignored. */
void cancel_send(PGcancel *pc);

/* cancel_reset rearms the token between jobs (owner thread only). */
void cancel_reset(cancel_token *c);
const char *cancel_reason_str(enum cancel_reason reason);

/* cancel_outcome is what a job stopped for reason became: shutdown -> JOB_INTERRUPTED
 * (released, attempt not charged), lease lost -> JOB_ABANDONED, admin -> JOB_CANCELLED;
 * CANCEL_NONE (not cancelled at all) -> JOB_RETRY. Every handler maps through it. */
job_outcome cancel_outcome(enum cancel_reason reason);

#endif
