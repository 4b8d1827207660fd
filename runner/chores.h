/* chores.h - the control loop's timed chores: rescuing expired leases, cron ticks,
 * the completions rollup, pruning, and the warning about kinds that no instance handles. */
#ifndef RUNNER_CHORES_H
#define RUNNER_CHORES_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "claim.h"
#include "config.h"
#include "lease.h"
#include "upkeep.h"

/* The chore whose statement is on the upkeep connection (or waits for it to open). */
enum upkeep_chore { UPKEEP_NONE, UPKEEP_ROLLUP, UPKEEP_PRUNE };

typedef struct chores {
    const config *cfg;
    int64_t rescue_at;
    int64_t schedule_at;
    int64_t rollup_at;
    int64_t prune_at;
    int64_t unhandled_at;
    char **warned; /* kinds already reported as unhandled */
    size_t nwarned;
    upkeep upkeep; /* retention and the rollup: their own connection, never waited for */
    enum upkeep_chore on_upkeep;
    bool rollup_behind; /* the rollup catches up: pruning waits */
    char prune_older[24], prune_batch[16]; /* the prune statement's parameters */
} chores;

/* chores_init schedules the first run of each chore from now; url is the database's
 * (for the upkeep connection), timeout_ms the deadline of its statements. */
void chores_init(chores *ch, const config *cfg, const char *url, int64_t timeout_ms, int64_t now);
void chores_free(chores *ch);

/* chores_rescue requeues jobs of any instance whose lease expired, when due; each (may
 * be NULL) hears what was rescued. Returns the number rescued (claim now when > 0), or
 * -1 with err (*broken: reconnect). */
int chores_rescue(chores *ch, PGconn *conn, const instance_info *inst, int64_t now,
                  lease_rescued_fn each, void *arg, bool *broken, char *err, size_t errlen);

/* What chores_run and chores_poll name as the chore that failed. */
#define CHORES_FAILED_TICK "could not enqueue schedule ticks"
#define CHORES_FAILED_ROLLUP "could not roll up completions"
#define CHORES_FAILED_PRUNE "could not prune old jobs"
#define CHORES_FAILED_UNHANDLED "could not look for unhandled kinds"

/* chores_run runs whichever of cron ticks and the unhandled-kinds check are due on conn
 * (the main connection), and sends the completions rollup or pruning, when due, on the
 * upkeep connection. *woke is set when jobs were enqueued (claim now). Returns 0, or -1
 * at the first failure with err and *what naming the chore (*broken: reconnect conn). */
int chores_run(chores *ch, PGconn *conn, const instance_info *inst, const claim_scope *scope,
               int64_t now, bool *woke, const char **what, bool *broken, char *err, size_t errlen);

/* chores_poll reads the answer of the upkeep statement in flight. Returns 1 when it
 * succeeded, -1 with err when it failed (the upkeep connection looks after itself), both
 * with *what naming its chore as it is named on failure; 0 when nothing ended. */
int chores_poll(chores *ch, int64_t now, const char **what, char *err, size_t errlen);

/* chores_poll_fd is the descriptor of the upkeep connection to poll() (-1: none). */
int chores_poll_fd(const chores *ch, short *events);

/* chores_upkeep_due is when chores_poll has something to do without a descriptor waking
 * the loop: the deadline of a statement in flight (INT64_MAX: none). While the instance
 * does not run its chores (draining, or the main connection down) this is all the loop
 * waits for; a chore waiting to be sent is not. */
int64_t chores_upkeep_due(const chores *ch);

/* chores_due is when the next of chores_run's chores is due (rescue included when
 * with_rescue), or chores_poll has something to do. */
int64_t chores_due(const chores *ch, bool with_rescue);

#endif
