/* chores.c - the control loop's timed chores: rescuing expired leases, cron ticks,
 * the completions rollup, pruning, and the warning about kinds that no instance handles.
 *
 * Each chore keeps its own next time; every instance runs them, and each is safe to run
 * from many instances at once (the statements skip what another one holds). Rescue and
 * pruning are jittered so that instances started together do not all scan at once. */
#include "chores.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "prune.h"
#include "schedule.h"
#include "util.h"

#define UNHANDLED_CHECK_MS (60 * 1000)
#define UNHANDLED_FIRST_CHECK_MS 5000
#define PRUNE_INTERVAL_MS (60 * 1000)
/* the first prune after the start: soon (a backlog may have grown while no instance ran),
 * jittered over ten times this so that instances started together do not all prune */
#define PRUNE_FIRST_MS 1000
/* after a full prune batch: go on soon, leaving room for the real work */
#define PRUNE_CATCH_UP_MS 100
#define SCHEDULE_RETRY_MS 1000

static int64_t jittered(int64_t base, int64_t spread)
{
    return base + (int64_t)(backoff_random() * (double)spread);
}

void chores_init(chores *ch, const config *cfg, const char *url, int64_t timeout_ms, int64_t now)
{
    *ch = (chores){.cfg = cfg,
                   .rollup_at = jittered(now, PRUNE_ROLLUP_INTERVAL_MS),
                   .prune_at = jittered(now + PRUNE_FIRST_MS, PRUNE_FIRST_MS * 10),
                   .unhandled_at = now + UNHANDLED_FIRST_CHECK_MS};
    upkeep_init(&ch->upkeep, url, timeout_ms < PRUNE_TIMEOUT_MS ? PRUNE_TIMEOUT_MS : timeout_ms);
}

void chores_free(chores *ch)
{
    upkeep_free(&ch->upkeep);
    for (size_t i = 0; i < ch->nwarned; i++)
        free(ch->warned[i]);
    free(ch->warned);
    ch->warned = NULL;
    ch->nwarned = 0;
}

int chores_rescue(chores *ch, PGconn *conn, const instance_info *inst, int64_t now,
                  lease_rescued_fn each, void *arg, bool *broken, char *err, size_t errlen)
{
    if (now < ch->rescue_at)
        return 0;
    int64_t beat = ch->cfg->heartbeat_ms;
    ch->rescue_at = jittered(now + beat / 2, beat / 2);
    int n = lease_rescue(conn, inst, each, arg, broken, err, errlen);
    if (n > 0) {
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        log_event(LOG_WARN, "rescued jobs with expired leases", "count", count, NULL);
    }
    return n;
}

/* tick enqueues due cron ticks (exactly once across instances, see schedule.c) and
 * learns when the next one is due. */
static int tick(chores *ch, PGconn *conn, const instance_info *inst, int64_t now, bool *woke,
                bool *broken, char *err, size_t errlen)
{
    int64_t wait = 0;
    int n = schedule_tick(conn, ch->cfg, inst->id, 0, &wait, broken, err, errlen);
    if (n < 0) {
        ch->schedule_at = now + SCHEDULE_RETRY_MS;
        return -1;
    }
    *woke |= n > 0;
    ch->schedule_at = now + wait;
    return 0;
}

/* Upkeep: the rollup counts the jobs completed since its last step into
 * runner.completed_minutes, so that runner.queue_summary counts at most a few seconds of
 * completions row by row; pruning deletes finished jobs past the retention in small
 * batches (any instance may). Both go out on the upkeep connection, one statement at a
 * time, the rollup first; the loop claims meanwhile. */

/* send_upkeep sends the due upkeep chore's statement, unless one is in flight. */
static void send_upkeep(chores *ch, int64_t now)
{
    if (ch->on_upkeep == UPKEEP_NONE) {
        if (now >= ch->rollup_at)
            ch->on_upkeep = UPKEEP_ROLLUP;
        else if (now >= ch->prune_at && !ch->rollup_behind) /* it would skip the uncounted */
            ch->on_upkeep = UPKEEP_PRUNE;
        else
            return;
    }
    if (upkeep_busy(&ch->upkeep))
        return;
    if (ch->on_upkeep == UPKEEP_ROLLUP) {
        upkeep_send(&ch->upkeep, PRUNE_ROLLUP_SQL, 0, NULL, now);
    } else {
        const char *params[2];
        prune_params(ch->cfg->retention_ms, ch->prune_older, ch->prune_batch, params);
        upkeep_send(&ch->upkeep, PRUNE_SQL, 2, params, now);
    }
}

/* prune_interval is the pause after a prune that found less than a batch: a tenth of the
 * retention, between 1 s and PRUNE_INTERVAL_MS, so that a short retention (1m at 2,000
 * jobs/s) keeps the table near its size instead of growing by a minute's jobs between
 * prunes. */
static int64_t prune_interval(const chores *ch)
{
    int64_t i = ch->cfg->retention_ms / 10;
    return i < 1000 ? 1000 : i > PRUNE_INTERVAL_MS ? PRUNE_INTERVAL_MS : i;
}

/* upkeep_done schedules the next run of the chore whose statement ended (res NULL: it
 * failed). Returns what prune_read or prune_rollup_read returned (-1 on failure). */
static int upkeep_done(chores *ch, enum upkeep_chore which, const PGresult *res, int64_t now,
                       char *err, size_t errlen)
{
    if (which == UPKEEP_ROLLUP) {
        bool more = false;
        int n = res ? prune_rollup_read(res, &more, err, errlen) : -1;
        ch->rollup_behind = more;
        ch->rollup_at = more ? now + PRUNE_CATCH_UP_MS
                             : jittered(now + PRUNE_ROLLUP_INTERVAL_MS / 2,
                                        PRUNE_ROLLUP_INTERVAL_MS / 2);
        return n;
    }
    int n = res ? prune_read(res, err, errlen) : -1;
    if (n > 0) {
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        log_event(LOG_DEBUG, "pruned finished jobs", "count", count, NULL);
    }
    if (n >= PRUNE_BATCH) /* more are due: go on soon */
        ch->prune_at = now + PRUNE_CATCH_UP_MS;
    else if (n < 0)
        ch->prune_at = now + PRUNE_INTERVAL_MS;
    else
        ch->prune_at = jittered(now + prune_interval(ch), prune_interval(ch));
    return n;
}

int chores_poll(chores *ch, int64_t now, const char **what, char *err, size_t errlen)
{
    PGresult *res = NULL;
    int rc = upkeep_poll(&ch->upkeep, now, &res, err, errlen);
    if (rc == 0 || ch->on_upkeep == UPKEEP_NONE) {
        PQclear(res);
        return 0;
    }
    enum upkeep_chore which = ch->on_upkeep;
    ch->on_upkeep = UPKEEP_NONE;
    int n = upkeep_done(ch, which, res, now, err, errlen);
    PQclear(res);
    *what = which == UPKEEP_ROLLUP ? CHORES_FAILED_ROLLUP : CHORES_FAILED_PRUNE;
    return n >= 0 ? 1 : -1;
}

int chores_poll_fd(const chores *ch, short *events)
{
    return upkeep_fd(&ch->upkeep, events);
}

/* warn_unhandled warns, once per kind, about jobs waiting for a kind that no live
 * instance can run: they stay available (a newer instance may know the kind) but an
 * operator should hear about them. */
static int warn_unhandled(chores *ch, PGconn *conn, const instance_info *inst,
                          const claim_scope *scope, int64_t now, bool *broken, char *err,
                          size_t errlen)
{
    ch->unhandled_at = now + UNHANDLED_CHECK_MS;
    char **kinds;
    int n = claim_unhandled_kinds(conn, scope, &kinds, inst->timeout_ms, broken, err, errlen);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (size_t k = 0; k < ch->nwarned && !seen; k++)
            seen = strcmp(ch->warned[k], kinds[i]) == 0;
        if (seen) {
            free(kinds[i]);
            continue;
        }
        log_event(LOG_WARN, "jobs waiting for a kind that no running instance handles", "kind",
                  kinds[i], NULL);
        ch->warned = xrealloc(ch->warned, (ch->nwarned + 1) * sizeof *ch->warned);
        ch->warned[ch->nwarned++] = kinds[i];
    }
    free(kinds);
    return 0;
}

int chores_run(chores *ch, PGconn *conn, const instance_info *inst, const claim_scope *scope,
               int64_t now, bool *woke, const char **what, bool *broken, char *err, size_t errlen)
{
    if (ch->cfg->nschedules > 0 && now >= ch->schedule_at &&
        tick(ch, conn, inst, now, woke, broken, err, errlen) < 0)
        return *what = CHORES_FAILED_TICK, -1;
    send_upkeep(ch, now);
    if (now >= ch->unhandled_at &&
        warn_unhandled(ch, conn, inst, scope, now, broken, err, errlen) < 0)
        return *what = CHORES_FAILED_UNHANDLED, -1;
    return 0;
}

int64_t chores_upkeep_due(const chores *ch)
{
    /* only a statement in flight: a chore waiting to be sent waits for chores_run */
    return ch->upkeep.call ? upkeep_due(&ch->upkeep) : INT64_MAX;
}

int64_t chores_due(const chores *ch, bool with_rescue)
{
    int64_t due = ch->unhandled_at;
    if (ch->on_upkeep != UPKEEP_NONE) { /* its descriptor or its deadline wakes the loop */
        int64_t u = upkeep_due(&ch->upkeep);
        due = u < due ? u : due;
    } else {
        if (!ch->rollup_behind)
            due = ch->prune_at < due ? ch->prune_at : due;
        due = ch->rollup_at < due ? ch->rollup_at : due;
    }
    if (ch->cfg->nschedules > 0 && ch->schedule_at < due)
        due = ch->schedule_at;
    if (with_rescue && ch->rescue_at < due)
        due = ch->rescue_at;
    return due;
}
