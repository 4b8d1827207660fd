/* reload.c - what a reload of runner.yaml may change while the instance runs, and the log
 * of what it did change.
 *
 * DESIGN: a reload is a new configuration, validated whole like the first one, that the
 * control loop takes at the start of a turn: jobs claimed from then on carry it, jobs
 * already running finish under the one they were claimed with (job.cfg). Everything is
 * reloadable except what the instance's identity and its leases hang on: the database it
 * is connected to, the lease and heartbeat its running jobs' leases were taken with, and
 * the address its listener is bound to.
 * Those keep their values until a restart, and the log names them. */
#include "reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void reload_keep_restart_only(const config *running, config *fresh)
{
    if (!same_text(running->database_url, fresh->database_url)) {
        /* the URL may hold a password: never logged, only named */
        log_event(LOG_WARN, "database.url changed: takes effect at the next restart", NULL);
        free(fresh->database_url);
        fresh->database_url = running->database_url ? xstrdup(running->database_url) : NULL;
    }
    if (!same_text(running->http_listen, fresh->http_listen)) {
        log_event(LOG_WARN, "http.listen changed: takes effect at the next restart", NULL);
        free(fresh->http_listen);
        fresh->http_listen = running->http_listen ? xstrdup(running->http_listen) : NULL;
    }
    if (running->lease_ms != fresh->lease_ms || running->heartbeat_ms != fresh->heartbeat_ms) {
        log_event(LOG_WARN, "worker.lease and worker.heartbeat changed: take effect at the next restart",
                  NULL);
        fresh->lease_ms = running->lease_ms;
        fresh->heartbeat_ms = running->heartbeat_ms;
    }
}

static bool same_argv(char *const *a, char *const *b)
{
    for (; a && b && *a && *b; a++, b++)
        if (strcmp(*a, *b) != 0)
            return false;
    return (!a || !*a) && (!b || !*b);
}

static bool same_kind(const kind_config *a, const kind_config *b)
{
    return same_argv(a->command, b->command) && same_text(a->sql, b->sql) &&
           same_argv(a->worker, b->worker) && a->processes == b->processes &&
           a->timeout_ms == b->timeout_ms && a->max_attempts == b->max_attempts &&
           a->backoff_base_ms == b->backoff_base_ms && a->backoff_max_ms == b->backoff_max_ms;
}

/* kind_names appends the names of kinds of `from` missing in (or, with changed, differing
 * from) `other` to sb, comma-separated. */
static void kind_names(strbuf *sb, const config *from, const config *other, bool changed)
{
    for (size_t i = 0; i < from->nkinds; i++) {
        const kind_config *o = config_kind(other, from->kinds[i].name);
        if (changed ? (o && !same_kind(o, &from->kinds[i])) : !o) {
            if (sb->len)
                sb_puts(sb, ",");
            sb_puts(sb, from->kinds[i].name);
        }
    }
}

static void queue_list(strbuf *sb, const config *c)
{
    for (size_t i = 0; i < c->nqueues; i++) {
        if (i)
            sb_puts(sb, ",");
        sb_puts(sb, c->queues[i].name);
        if (c->queues[i].concurrency)
            sb_printf(sb, ":%d", c->queues[i].concurrency);
    }
}

void reload_log_changes(const config *running, const config *fresh)
{
    strbuf added, removed, changed, queues;
    sb_init(&added);
    sb_init(&removed);
    sb_init(&changed);
    sb_init(&queues);
    kind_names(&added, fresh, running, false);
    kind_names(&removed, running, fresh, false);
    kind_names(&changed, fresh, running, true);
    queue_list(&queues, fresh);
    char conc[16], scheds[16];
    snprintf(conc, sizeof conc, "%d", fresh->concurrency);
    snprintf(scheds, sizeof scheds, "%zu", fresh->nschedules);
    log_event(LOG_INFO, "configuration reloaded", "file", fresh->path,
              "kinds_added", added.len ? added.data : "", "kinds_removed",
              removed.len ? removed.data : "", "kinds_changed", changed.len ? changed.data : "",
              "queues", queues.data, "concurrency", conc, "schedules", scheds, NULL);
    sb_free(&added);
    sb_free(&removed);
    sb_free(&changed);
    sb_free(&queues);
}
