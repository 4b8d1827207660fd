/* runner.c - the runner object behind include/runner.h: wires config, workers, the
 * control loop and the shutdown protocol, and dispatches jobs to their handlers. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "dbpool.h"
#include "enqueue.h"
#include "exec.h"
#include "log.h"
#include "sentinel.h"
#include "shutdown.h"
#include "txjob.h"
#include "util.h"
#include "worker.h"

typedef struct registered {
    char *kind;
    runner_handler fn;
    void *userdata;
    bool transactional;
} registered;

struct runner {
    config cfg;
    registered *handlers;
    size_t nhandlers;
    char *database_url;
    int stop_pipe[2];
    _Atomic bool running; /* register and configure before runner_run only */
    bool abandoned;       /* threads were left running at exit: never free what they use */
    dbpool *handler_db;   /* connections for sql and transactional handlers */
};

struct runner_ctx {
    PGconn *conn;
    cancel_token *cancel;
    job_result *out;
};

/* finish_create completes a runner whose configuration is loaded. */
static runner *finish_create(runner *r, char *err, size_t errlen)
{
    if (pipe2(r->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        errf(err, errlen, "could not create pipe: %s", strerror(errno));
        config_free(&r->cfg);
        free(r);
        return NULL;
    }
    if (r->cfg.database_url)
        r->database_url = xstrdup(r->cfg.database_url);
    return r;
}

runner *runner_create(const char *config_path, char *err, size_t errlen)
{
    runner *r = xcalloc(1, sizeof *r);
    config_init(&r->cfg);
    if (config_path && config_load(&r->cfg, config_path, err, errlen) < 0) {
        config_free(&r->cfg);
        free(r);
        return NULL;
    }
    return finish_create(r, err, errlen);
}

runner *runner_create_from_yaml(const char *yaml, const char *name, char *err, size_t errlen)
{
    runner *r = xcalloc(1, sizeof *r);
    config_init(&r->cfg);
    if (config_load_string(&r->cfg, yaml, strlen(yaml), name ? name : "<config>", err, errlen) <
        0) {
        config_free(&r->cfg);
        free(r);
        return NULL;
    }
    return finish_create(r, err, errlen);
}

void runner_destroy(runner *r)
{
    if (!r || r->abandoned)
        return; /* stuck handlers may still read it: leaked on purpose */
    config_free(&r->cfg);
    for (size_t i = 0; i < r->nhandlers; i++)
        free(r->handlers[i].kind);
    free(r->handlers);
    free(r->database_url);
    close(r->stop_pipe[0]);
    close(r->stop_pipe[1]);
    free(r);
}

int runner_set_database_url(runner *r, const char *url)
{
    if (r->running)
        return RUNNER_ERR_STATE;
    free(r->database_url);
    r->database_url = url ? xstrdup(url) : NULL;
    return RUNNER_OK;
}

void runner_stop(runner *r)
{
    unsigned char b = 0;
    ssize_t rc = write(r->stop_pipe[1], &b, 1);
    (void)rc;
}

/* ---- C handlers ---- */

static const registered *find_handler(const runner *r, const char *kind)
{
    for (size_t i = 0; i < r->nhandlers; i++)
        if (strcmp(r->handlers[i].kind, kind) == 0)
            return &r->handlers[i];
    return NULL;
}

static int add_handler(runner *r, const char *kind, runner_handler fn, void *userdata,
                       bool transactional)
{
    if (!kind || !*kind || !fn)
        return RUNNER_ERR_ARGS;
    if (r->running)
        return RUNNER_ERR_STATE;
    if (find_handler(r, kind))
        return RUNNER_ERR_EXISTS;
    r->handlers = xrealloc(r->handlers, (r->nhandlers + 1) * sizeof *r->handlers);
    r->handlers[r->nhandlers++] = (registered){
        .kind = xstrdup(kind), .fn = fn, .userdata = userdata, .transactional = transactional};
    return RUNNER_OK;
}

int runner_register(runner *r, const char *kind, runner_handler handler, void *userdata)
{
    return add_handler(r, kind, handler, userdata, false);
}

int runner_register_tx(runner *r, const char *kind, runner_handler handler, void *userdata)
{
    return add_handler(r, kind, handler, userdata, true);
}

PGconn *runner_ctx_conn(runner_ctx *ctx)
{
    return ctx->conn;
}

int runner_ctx_cancelled(runner_ctx *ctx)
{
    return cancel_get(ctx->cancel) != CANCEL_NONE;
}

int runner_ctx_cancel_fd(runner_ctx *ctx)
{
    return ctx->cancel->fd;
}

void runner_ctx_set_error(runner_ctx *ctx, const char *message)
{
    free(ctx->out->error);
    ctx->out->error = message ? xstrdup(message) : NULL;
}

void runner_ctx_retry_in(runner_ctx *ctx, int64_t delay_ms)
{
    ctx->out->delay_ms = delay_ms < 0 ? 0 : delay_ms;
}

/* call_handler runs a C handler and maps its answer (and a cancel) to an outcome. */
static void call_handler(const registered *h, PGconn *conn, const job *j, cancel_token *cancel,
                         job_result *out)
{
    runner_job rj = {.id = j->id,
                     .kind = j->kind,
                     .queue = j->queue,
                     .args = j->args,
                     .attempt = j->attempt,
                     .max_attempts = j->max_attempts};
    runner_ctx ctx = {.conn = conn, .cancel = cancel, .out = out};
    runner_outcome rc = h->fn(&ctx, &rj, h->userdata);
    enum cancel_reason reason = cancel_get(cancel);
    if (rc == RUNNER_JOB_SUCCESS) {
        out->outcome = JOB_COMPLETED;
    } else if (reason != CANCEL_NONE) {
        out->outcome = reason == CANCEL_SHUTDOWN ? JOB_INTERRUPTED
                       : reason == CANCEL_JOB    ? JOB_CANCELLED
                                                 : JOB_ABANDONED;
    } else {
        out->outcome = rc == RUNNER_JOB_DISCARD ? JOB_DISCARD : JOB_RETRY;
        if (!out->error)
            out->error = xstrdup(rc == RUNNER_JOB_DISCARD ? "handler discarded the job"
                                                          : "handler asked for a retry");
    }
}

static void tx_handler_body(void *arg, PGconn *conn, const job *j, cancel_token *cancel,
                            job_result *out)
{
    call_handler(arg, conn, j, cancel, out);
}

/* dispatch runs one job through the handler its kind names. */
static void dispatch(void *ctx, const job *j, cancel_token *cancel, job_result *out)
{
    runner *r = ctx;
    const kind_config *k = config_kind(&r->cfg, j->kind);
    const registered *h = find_handler(r, j->kind);
    if (h && h->transactional) {
        txjob_run(r->handler_db, j, k ? k->timeout_ms : 0, cancel, tx_handler_body, (void *)h, out);
        return;
    }
    if (h) {
        call_handler(h, NULL, j, cancel, out);
        return;
    }
    if (k && k->command) {
        exec_run(k->command, j, k->timeout_ms, r->cfg.kill_after_ms, cancel, out);
        return;
    }
    if (k && k->sql) {
        txjob_run_sql(r->handler_db, j, k->sql, k->timeout_ms, cancel, out);
        return;
    }
    out->outcome = JOB_RETRY;
    out->error = xasprintf("no handler for kind \"%s\" in this instance", j->kind);
}

/* collect_kinds lists the kinds this instance can run, with their settings. */
static int collect_kinds(runner *r, control_kind **out, size_t *n, char *err, size_t errlen)
{
    *out = xcalloc(r->cfg.nkinds + r->nhandlers, sizeof **out);
    *n = 0;
    for (size_t i = 0; i < r->nhandlers; i++) {
        const kind_config *k = config_kind(&r->cfg, r->handlers[i].kind);
        if (k && (k->command || k->sql)) {
            free(*out);
            return errf(err, errlen,
                        "kind \"%s\" has both a registered handler and a %s in the configuration",
                        k->name, k->command ? "command" : "sql statement");
        }
        (*out)[(*n)++] = (control_kind){.name = r->handlers[i].kind,
                                        .max_attempts = k ? k->max_attempts : 0,
                                        .backoff_base_ms = k ? k->backoff_base_ms : 1000,
                                        .backoff_max_ms = k ? k->backoff_max_ms : 3600000};
    }
    for (size_t i = 0; i < r->cfg.nkinds; i++) {
        const kind_config *k = &r->cfg.kinds[i];
        if (find_handler(r, k->name))
            continue;
        if (!k->command && !k->sql) {
            free(*out);
            return errf(err, errlen, "kind \"%s\" has no handler: give it a command (or sql) in %s",
                        k->name, r->cfg.path ? r->cfg.path : "the configuration");
        }
        (*out)[(*n)++] = (control_kind){.name = k->name,
                                        .max_attempts = k->max_attempts,
                                        .backoff_base_ms = k->backoff_base_ms,
                                        .backoff_max_ms = k->backoff_max_ms};
    }
    return 0;
}

int runner_run(runner *r, char *err, size_t errlen)
{
    if (r->running)
        return errf(err, errlen, "runner is already running"), RUNNER_ERR_STATE;
    log_setup(r->cfg.log_level, r->cfg.log_format);

    control_kind *kinds;
    size_t nkinds;
    if (collect_kinds(r, &kinds, &nkinds, err, errlen) < 0)
        return RUNNER_ERR_CONFIG;
    if (nkinds == 0) {
        free(kinds);
        errf(err, errlen, "no job kinds configured: add kinds to %s",
             r->cfg.path ? r->cfg.path : "the configuration");
        return RUNNER_ERR_CONFIG;
    }

    int rc = RUNNER_ERR_SYSTEM;
    worker_pool *pool = NULL;
    control *ctl = NULL;
    int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        errf(err, errlen, "could not create eventfd: %s", strerror(errno));
        goto out;
    }
    /* drop stop requests made before this run */
    unsigned char junk[64];
    while (read(r->stop_pipe[0], junk, sizeof junk) > 0)
        ;
    if (sentinel_start(err, errlen) < 0)
        goto out;
    if (shutdown_signals_install(r->stop_pipe[1], err, errlen) < 0)
        goto out;
    r->running = true;
    r->handler_db = dbpool_create(r->database_url, r->cfg.concurrency);
    pool = pool_create(r->cfg.concurrency, dispatch, r, wake_fd, err, errlen);
    if (!pool)
        goto out;
    ctl = control_create(&r->cfg, r->database_url, pool, wake_fd, kinds, nkinds);
    if (control_start(ctl, err, errlen) < 0)
        goto out;

    bool forced = shutdown_run(r->stop_pipe[0], ctl, &r->cfg) < 0;
    if (forced) {
        /* the loop or a handler is stuck: leave them; leases expire and peers rescue */
        rc = RUNNER_OK;
        log_event(LOG_WARN, "runner stopped with work left to its leases", NULL);
        sentinel_stop();
        shutdown_signals_restore();
        r->running = false;
        r->abandoned = true; /* the control thread still uses kinds and the config */
        return rc;
    }
    if (control_join(ctl, err, errlen) < 0) {
        rc = RUNNER_ERR_SCHEMA;
        pool_cancel_all(pool, CANCEL_SHUTDOWN);
    } else {
        rc = RUNNER_OK;
        log_event(LOG_INFO, "runner stopped", NULL);
    }
    if (pool_backlog(pool) > 0) {
        /* a handler ignored its cancel past kill_after: do not wait for it (the pool
         * and what it uses are left behind; its job's lease expires) */
        log_event(LOG_WARN, "handlers still running at exit: left behind", NULL);
        control_destroy(ctl);
        sentinel_stop();
        shutdown_signals_restore();
        r->running = false;
        r->abandoned = true; /* workers still use the config and wake_fd */
        free(kinds);
        return rc;
    }
out:
    if (ctl)
        control_join(ctl, NULL, 0);
    pool_destroy(pool);
    control_destroy(ctl);
    dbpool_destroy(r->handler_db);
    r->handler_db = NULL;
    sentinel_stop();
    shutdown_signals_restore();
    r->running = false;
    if (wake_fd >= 0)
        close(wake_fd);
    free(kinds);
    return rc;
}

int runner_enqueue(PGconn *conn, const char *kind, const char *args,
                   const runner_enqueue_opts *opts, int64_t *id, char *err, size_t errlen)
{
    if (!conn || !kind || !*kind || !id) {
        errf(err, errlen, "runner_enqueue needs a connection, a kind and an id pointer");
        return RUNNER_ERR_ARGS;
    }
    runner_enqueue_opts none = {0};
    if (!opts)
        opts = &none;
    char priority[16], max_attempts[16];
    snprintf(priority, sizeof priority, "%d", opts->priority);
    snprintf(max_attempts, sizeof max_attempts, "%d", opts->max_attempts);
    enqueue_opts e = {.kind = kind,
                      .args = args,
                      .queue = opts->queue,
                      .priority = priority,
                      .run_at = opts->run_at,
                      .run_in_ms = opts->run_at ? 0 : opts->run_in_ms,
                      .max_attempts = opts->max_attempts > 0 ? max_attempts : NULL,
                      .unique_key = opts->unique_key};
    if (enqueue_job(conn, &e, id, err, errlen) < 0)
        return PQstatus(conn) == CONNECTION_OK ? RUNNER_ERR_ARGS : RUNNER_ERR_DB;
    return RUNNER_OK;
}
