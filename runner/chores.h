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

typedef struct chores {
    const config *cfg;
    int64_t rescue_at;
    int64_t schedule_at;
    int64_t rollup_at;
    int64_t prune_at;
    int64_t unhandled_at;
    char **warned; /* kinds already reported as unhandled */
    size_t nwarned;
} chores;

/* chores_init schedules the first run of each chore from now. */
void chores_init(chores *ch, const config *cfg, int64_t now);
void chores_free(chores *ch);

/* chores_rescue requeues jobs of any instance whose lease expired, when due; each (may
 * be NULL) hears what was rescued. Returns the number rescued (claim now when > 0), or
 * -1 with err (*broken: reconnect). */
int chores_rescue(chores *ch, PGconn *conn, const instance_info *inst, int64_t now,
                  lease_rescued_fn each, void *arg, bool *broken, char *err, size_t errlen);

/* What chores_run names as the chore that failed. */
#define CHORES_FAILED_TICK "could not enqueue schedule ticks"
#define CHORES_FAILED_ROLLUP "could not roll up completions"
#define CHORES_FAILED_PRUNE "could not prune old jobs"
#define CHORES_FAILED_UNHANDLED "could not look for unhandled kinds"

/* chores_run runs whichever of cron ticks, the completions rollup, pruning and the
 * unhandled-kinds check are due, in that order. *woke is set when jobs were enqueued (claim now). Returns 0, or -1
 * at the first failure with err and *what naming the chore (*broken: reconnect). */
int chores_run(chores *ch, PGconn *conn, const instance_info *inst, const claim_scope *scope,
               int64_t now, bool *woke, const char **what, bool *broken, char *err, size_t errlen);

/* chores_due is when the next of chores_run's chores is due (rescue included when
 * with_rescue). */
int64_t chores_due(const chores *ch, bool with_rescue);

#endif
