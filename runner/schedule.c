/* schedule.c - cron schedules: due ticks computed here, enqueued exactly once by the database.
 *
 * DESIGN: no instance is a leader. Every instance that runs a schedule computes its due
 * ticks and calls runner.schedule_fire(), which locks the schedule's row, skips ticks at
 * or before last_fire_at, and inserts each remaining tick into runner.schedule_ticks
 * (primary key: schedule, fire_at) together with its job in one transaction. Concurrent
 * callers take turns on the row lock and the later ones find the tick taken, so a tick
 * is enqueued once however many instances race for it. The time a tick is due is read
 * from the database clock, so instances with skewed clocks agree.
 *
 * Definitions. runner.schedules holds one definition per name, written by the instance
 * that synced last (at its start: a deploy hands schedules to the new release) and
 * identified by a hash. An instance fires a schedule only while the row's hash equals
 * its own definition's, and schedule_fire checks that again under the row lock, so two
 * releases with different definitions never both fire it. When the instance that wrote a
 * definition is gone (stopped, lost, heartbeat older than its lease), any instance with a
 * different definition takes the row over, so a rolled-back deploy does not silence a
 * schedule. A new or changed definition fires only ticks after it was written.
 *
 * Ticks. Field schedules use cron_next() in the schedule's time zone (DST rules in
 * cron.c); @every <d> ticks lie on the grid of multiples of d since the unix epoch, so
 * every instance computes the same instants. Ticks due since the last one (missed while
 * no instance ran the schedule) follow catch_up:
 *   latest  enqueue only the most recent due tick;
 *   all     enqueue every due tick, oldest first, SCHEDULE_MAX_TICKS per call;
 *   none    enqueue a tick only when it is the only one due and at most
 *           NONE_TOLERANCE_MS late; otherwise skip everything due and wait for the next. */
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define NONE_TOLERANCE_MS 60000
#define NO_TIME INT64_MIN

static const char *const catch_up_names[] = {
    [CATCH_UP_LATEST] = "latest", [CATCH_UP_ALL] = "all", [CATCH_UP_NONE] = "none"};

/* The configured definitions as parallel arrays, in the order of cfg->schedules. */
typedef struct defs {
    char *names, *crons, *tzs, *kinds, *args, *queues, *priorities, *catch_ups;
    char *next; /* each one's first tick after now_ms (NULL when unknown) */
} defs;

static int schedule_next_of(const schedule_config *s, int64_t after_ms, int64_t *next_ms);

/* defs_build collects the schedules selected by only (NULL: all); now_ms, when > 0, fills
 * in their next ticks. */
static void defs_build(defs *d, const config *cfg, const bool *only, int64_t now_ms)
{
    size_t n = cfg->nschedules, k = 0;
    const char **names = xcalloc(n + 1, sizeof *names), **crons = xcalloc(n + 1, sizeof *crons),
               **tzs = xcalloc(n + 1, sizeof *tzs), **kinds = xcalloc(n + 1, sizeof *kinds),
               **args = xcalloc(n + 1, sizeof *args), **queues = xcalloc(n + 1, sizeof *queues),
               **modes = xcalloc(n + 1, sizeof *modes);
    int *prio = xcalloc(n + 1, sizeof *prio);
    int64_t *next = xcalloc(n + 1, sizeof *next);
    for (size_t i = 0; i < n; i++) {
        if (only && !only[i])
            continue;
        const schedule_config *s = &cfg->schedules[i];
        names[k] = s->name;
        crons[k] = s->cron;
        tzs[k] = s->timezone;
        kinds[k] = s->kind;
        args[k] = s->args_json;
        queues[k] = s->queue;
        prio[k] = s->priority;
        modes[k] = catch_up_names[s->catch_up];
        if (now_ms <= 0 || schedule_next_of(s, now_ms, &next[k]) < 0)
            next[k] = 0;
        k++;
    }
    d->names = db_text_array(names, k);
    d->crons = db_text_array(crons, k);
    d->tzs = db_text_array(tzs, k);
    d->kinds = db_text_array(kinds, k);
    d->args = db_text_array(args, k);
    d->queues = db_text_array(queues, k);
    d->priorities = db_int_array(prio, k);
    d->catch_ups = db_text_array(modes, k);
    d->next = db_int64_array(next, k);
    free(next);
    free(names);
    free(crons);
    free(tzs);
    free(kinds);
    free(args);
    free(queues);
    free(modes);
    free(prio);
}

static void defs_free(defs *d)
{
    free(d->names);
    free(d->crons);
    free(d->tzs);
    free(d->kinds);
    free(d->args);
    free(d->queues);
    free(d->priorities);
    free(d->catch_ups);
    free(d->next);
}

#define DEFS_UNNEST                                                                                \
    "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],"    \
    "       $8::text[])"
#define DEFS_HASH                                                                                  \
    "runner.schedule_hash(c.cron, c.tz, c.kind, c.args::jsonb, c.queue, c.priority, c.catch_up)"
#define DEFINER_GONE                                                                               \
    "(s.defined_by IS NULL OR NOT EXISTS (SELECT 1 FROM runner.instances i"                        \
    "   WHERE i.id = s.defined_by AND i.state IN ('running', 'draining')"                          \
    "     AND i.heartbeat_at > now() - i.lease))"

/* Writes the definitions: new rows always; differing rows when $10 (force) is true or
 * their definer is gone. $11: each schedule's next tick (unix ms), for schedule_status. */
static const char upsert_sql[] =
    "INSERT INTO runner.schedules AS s (name, cron, timezone, kind, args, queue, priority,"
    "    catch_up, def_hash, defined_by, defined_at, next_fire_at)"
    " SELECT c.name, c.cron, c.tz, c.kind, c.args::jsonb, c.queue, c.priority, c.catch_up,"
    "        " DEFS_HASH ", $9::uuid, now(),"
    "        CASE WHEN n.next_ms > 0"
    "             THEN timestamptz 'epoch' + n.next_ms * interval '1 ms' END"
    "   FROM " DEFS_UNNEST " WITH ORDINALITY"
    "          AS c(name, cron, tz, kind, args, queue, priority, catch_up, ord)"
    "   JOIN unnest($11::bigint[]) WITH ORDINALITY AS n(next_ms, ord) ON n.ord = c.ord"
    " ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone,"
    "    kind = excluded.kind, args = excluded.args, queue = excluded.queue,"
    "    priority = excluded.priority, catch_up = excluded.catch_up,"
    "    def_hash = excluded.def_hash, defined_by = excluded.defined_by, defined_at = now(),"
    "    next_fire_at = excluded.next_fire_at"
    "  WHERE s.def_hash <> excluded.def_hash AND ($10::bool OR " DEFINER_GONE ")"
    " RETURNING s.name, s.cron, (xmax = 0)";

/* Per configured schedule, in order: registered, own hash, whether the row holds it,
 * whether its definer is gone, the time after which ticks are due, and the db clock. */
static const char state_sql[] =
    "SELECT s.name IS NOT NULL, " DEFS_HASH ", s.def_hash = " DEFS_HASH ", " DEFINER_GONE ","
    "       floor(extract(epoch FROM greatest(s.last_fire_at, s.defined_at)) * 1000)::bigint,"
    "       floor(extract(epoch FROM now()) * 1000)::bigint"
    "  FROM " DEFS_UNNEST " WITH ORDINALITY"
    "         AS c(name, cron, tz, kind, args, queue, priority, catch_up, ord)"
    "  LEFT JOIN runner.schedules s ON s.name = c.name"
    " ORDER BY c.ord";

static const char fire_sql[] = "SELECT floor(extract(epoch FROM f.tick) * 1000)::bigint, f.job"
                               "  FROM runner.schedule_fire($1, $2,"
                               "         ARRAY(SELECT timestamptz 'epoch' + u.m * interval '1 ms'"
                               "                 FROM unnest($3::bigint[]) WITH ORDINALITY"
                               "                 AS u(m, o) ORDER BY u.o),"
                               "         timestamptz 'epoch' + $4::bigint * interval '1 ms',"
                               "         timestamptz 'epoch' + $5::bigint * interval '1 ms') AS f";

int schedule_next_fire(const cron_expr *c, const char *tz, int64_t after_ms, int64_t *next_ms,
                       char *err, size_t errlen)
{
    if (c->every_ms > 0) {
        int64_t q = after_ms / c->every_ms - (after_ms % c->every_ms < 0);
        int64_t t;
        if (__builtin_mul_overflow(q + 1, c->every_ms, &t)) {
            /* an explicit -1: gcc -O3 cannot see errf's, and then warns that a caller's
             * *next_ms may be read uninitialized */
            errf(err, errlen, "@every interval is too long");
            return -1;
        }
        *next_ms = t;
        return 0;
    }
    /* cron ticks are whole seconds: strictly after after_ms is strictly after its second */
    int64_t after_s = after_ms / 1000 - (after_ms % 1000 < 0), next_s;
    if (cron_next(c, tz, after_s, &next_s, err, errlen) < 0)
        return -1;
    *next_ms = next_s * 1000;
    return 0;
}

/* latest_due finds the last tick at or before now, given that first (the first tick after
 * lower) is due: @every by arithmetic, cron by searching windows ending at now that
 * double in length until one holds a tick, then walking through that window. */
static int latest_due(const cron_expr *c, const char *tz, int64_t lower, int64_t first, int64_t now,
                      int64_t *last, char *err, size_t errlen)
{
    if (c->every_ms > 0) {
        *last = now / c->every_ms * c->every_ms;
        return 0;
    }
    int64_t t = first;
    for (int64_t w = 60000; w < INT64_MAX / 2; w *= 2) {
        int64_t start = now - w > lower ? now - w : lower;
        if (schedule_next_fire(c, tz, start, &t, err, errlen) < 0)
            return -1;
        if (t <= now || start == lower)
            break;
    }
    for (;;) {
        int64_t n;
        if (schedule_next_fire(c, tz, t, &n, err, errlen) < 0)
            return -1;
        if (n > now)
            break;
        t = n;
    }
    *last = t;
    return 0;
}

/* schedule_next_of is schedule_next_fire for a configured schedule. */
static int schedule_next_of(const schedule_config *s, int64_t after_ms, int64_t *next_ms)
{
    char err[ERR_LEN];
    return schedule_next_fire(&s->expr, s->timezone, after_ms, next_ms, err, sizeof err);
}

/* What one schedule should do in this pass. */
typedef struct plan {
    int64_t *ticks; /* to enqueue, ascending */
    size_t nticks;
    int64_t advance_to; /* skip through this tick, NO_TIME: nothing to skip */
    int64_t next;       /* the first tick not dealt with: > now, or <= now when capped */
    bool skipped_some;  /* latest: older due ticks are passed over */
} plan;

static int make_plan(const cron_expr *c, const schedule_config *s, int64_t lower, int64_t now,
                     plan *p, char *err, size_t errlen)
{
    *p = (plan){.advance_to = NO_TIME};
    int64_t first = 0;
    if (schedule_next_fire(c, s->timezone, lower, &first, err, errlen) < 0)
        return -1;
    if (first > now) {
        p->next = first;
        return 0;
    }
    if (s->catch_up == CATCH_UP_ALL) {
        p->ticks = xcalloc(SCHEDULE_MAX_TICKS, sizeof *p->ticks);
        int64_t t = first;
        while (t <= now && p->nticks < SCHEDULE_MAX_TICKS) {
            p->ticks[p->nticks++] = t;
            if (schedule_next_fire(c, s->timezone, t, &t, err, errlen) < 0)
                return -1;
        }
        p->next = t;
        return 0;
    }
    int64_t last;
    if (latest_due(c, s->timezone, lower, first, now, &last, err, errlen) < 0 ||
        schedule_next_fire(c, s->timezone, now, &p->next, err, errlen) < 0)
        return -1;
    if (s->catch_up == CATCH_UP_NONE && (last != first || now - last > NONE_TOLERANCE_MS)) {
        p->advance_to = last;
        return 0;
    }
    p->ticks = xcalloc(1, sizeof *p->ticks);
    p->ticks[p->nticks++] = last;
    p->skipped_some = last != first;
    return 0;
}

static void format_ms(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms / 1000 - (ms % 1000 < 0));
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(out, outlen, "%s.%03dZ", base, frac);
    else
        snprintf(out, outlen, "%sZ", base);
}

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* upsert writes the definitions of the schedules selected by only (NULL: all) and logs
 * every row it created or changed. */
static int upsert(PGconn *conn, const config *cfg, const bool *only, const char *instance_id,
                  bool force, int64_t now_ms, bool *broken, char *err, size_t errlen)
{
    defs d;
    defs_build(&d, cfg, only, now_ms);
    const char *params[] = {
        d.names,  d.crons,      d.tzs,       d.kinds,     d.args,
        d.queues, d.priorities, d.catch_ups, instance_id, force ? "true" : "false",
        d.next};
    PGresult *res =
        db_exec(conn, upsert_sql, 11, params, SCHEDULE_TIMEOUT_MS, NULL, NULL, broken, err, errlen);
    defs_free(&d);
    if (!res)
        return -1;
    int n = PQntuples(res);
    for (int r = 0; r < n; r++) {
        bool inserted = strcmp(PQgetvalue(res, r, 2), "t") == 0;
        log_event(LOG_INFO, inserted ? "schedule registered" : "schedule definition changed",
                  "schedule", PQgetvalue(res, r, 0), "cron", PQgetvalue(res, r, 1), NULL);
    }
    PQclear(res);
    return n;
}

int schedule_sync(PGconn *conn, const config *cfg, const char *instance_id, bool *broken, char *err,
                  size_t errlen)
{
    *broken = false;
    if (cfg->nschedules == 0)
        return 0;
    return upsert(conn, cfg, NULL, instance_id, true, realtime_ms(), broken, err, errlen);
}

/* fire hands one schedule's plan to runner.schedule_fire and logs what it did; returns
 * the number of jobs enqueued. */
static int fire(PGconn *conn, const schedule_config *s, const char *hash, const plan *p,
                int64_t now, bool *broken, char *err, size_t errlen)
{
    char *ticks = db_int64_array(p->ticks, p->nticks);
    char advance[24], next[24];
    snprintf(advance, sizeof advance, "%lld", (long long)p->advance_to);
    snprintf(next, sizeof next, "%lld", (long long)p->next);
    const char *params[] = {s->name, hash, ticks, p->advance_to == NO_TIME ? NULL : advance,
                            p->next > now ? next : NULL};
    PGresult *res =
        db_exec(conn, fire_sql, 5, params, SCHEDULE_TIMEOUT_MS, NULL, NULL, broken, err, errlen);
    free(ticks);
    if (!res)
        return -1;
    int fired = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        char at[40];
        format_ms(strtoll(PQgetvalue(res, r, 0), NULL, 10), at, sizeof at);
        if (PQgetisnull(res, r, 1)) {
            log_event(LOG_INFO, "schedule missed ticks skipped", "schedule", s->name, "catch_up",
                      catch_up_names[s->catch_up], "through", at, NULL);
            continue;
        }
        if (p->skipped_some && fired == 0)
            log_event(LOG_INFO, "schedule missed ticks skipped", "schedule", s->name, "catch_up",
                      catch_up_names[s->catch_up], "before", at, NULL);
        log_event(LOG_INFO, "schedule tick enqueued", "schedule", s->name, "fire_at", at, "job_id",
                  PQgetvalue(res, r, 1), NULL);
        fired++;
    }
    PQclear(res);
    return fired;
}

int schedule_tick(PGconn *conn, const config *cfg, const char *instance_id, int64_t now_ms,
                  int64_t *wait_ms, bool *broken, char *err, size_t errlen)
{
    *broken = false;
    if (wait_ms)
        *wait_ms = SCHEDULE_MAX_WAIT_MS;
    size_t n = cfg->nschedules;
    if (n == 0)
        return 0;

    defs d;
    defs_build(&d, cfg, NULL, 0);
    const char *params[] = {d.names, d.crons,  d.tzs,        d.kinds,
                            d.args,  d.queues, d.priorities, d.catch_ups};
    PGresult *res =
        db_exec(conn, state_sql, 8, params, SCHEDULE_TIMEOUT_MS, NULL, NULL, broken, err, errlen);
    defs_free(&d);
    if (!res)
        return -1;
    if ((size_t)PQntuples(res) != n) {
        PQclear(res);
        return errf(err, errlen, "schedule state: expected %zu rows, got %d", n, PQntuples(res));
    }

    int total = 0, rc = 0;
    bool *takeover = xcalloc(n, sizeof *takeover);
    size_t ntakeover = 0;
    int64_t now = 0, wait = SCHEDULE_MAX_WAIT_MS;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const schedule_config *s = &cfg->schedules[i];
        int r = (int)i;
        bool registered = strcmp(PQgetvalue(res, r, 0), "t") == 0;
        bool mine = registered && strcmp(PQgetvalue(res, r, 2), "t") == 0;
        bool gone = registered && strcmp(PQgetvalue(res, r, 3), "t") == 0;
        now = now_ms > 0 ? now_ms : strtoll(PQgetvalue(res, r, 5), NULL, 10);

        const cron_expr *c = &s->expr;
        char why[ERR_LEN];
        if (!registered || (!mine && gone)) {
            /* registered or taken over below: due from now on */
            takeover[i] = true;
            ntakeover++;
            int64_t next = now + SCHEDULE_MAX_WAIT_MS;
            if (schedule_next_fire(c, s->timezone, now, &next, why, sizeof why) == 0 &&
                next - now < wait)
                wait = next - now;
            continue;
        }
        if (!mine)
            continue; /* a live peer's definition: theirs to fire */

        plan p;
        int64_t lower = strtoll(PQgetvalue(res, r, 4), NULL, 10);
        if (make_plan(c, s, lower, now, &p, why, sizeof why) < 0) {
            log_event(LOG_ERROR, "schedule skipped: no fire time", "schedule", s->name, "error",
                      why, NULL);
            free(p.ticks);
            continue;
        }
        if (p.nticks > 0 || p.advance_to != NO_TIME) {
            int fired = fire(conn, s, PQgetvalue(res, r, 1), &p, now, broken, err, errlen);
            if (fired < 0)
                rc = -1;
            else
                total += fired;
        }
        if (p.next - now < wait)
            wait = p.next - now;
        free(p.ticks);
    }
    PQclear(res);
    if (rc == 0 && ntakeover > 0 &&
        upsert(conn, cfg, takeover, instance_id, false, now, broken, err, errlen) < 0)
        rc = -1;
    free(takeover);
    if (rc < 0)
        return -1;
    if (wait_ms)
        *wait_ms = wait < 0 ? 0 : wait;
    return total;
}
