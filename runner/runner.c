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

#include "backoff.h"
#include "config.h"
#include "control.h"
#include "db.h"
#include "dbpool.h"
#include "enqueue.h"
#include "exec.h"
#include "http.h"
#include "log.h"
#include "reload.h"
#include "sentinel.h"
#include "shutdown.h"
#include "txjob.h"
#include "util.h"
#include "worker.h"
#include "workerproc.h"

/* how long a handler waits for a connection of its own to open */
#define HANDLER_CONNECT_TIMEOUT_MS 10000
/* how long the end of runner_run waits for connection attempts still in flight */
#define RUNNER_CONNECT_SETTLE_MS 1000

typedef struct registered {
    char *kind;
    runner_handler fn;
    void *userdata;
    bool transactional;
} registered;

/* A configuration in force, and the kinds it gives the control loop. A reload adds one;
 * the earlier ones stay until runner_run returns, since jobs claimed under them still
 * run by them (job.cfg), and are freed with the runner. */
typedef struct generation {
    config cfg;
    control_kind *kinds;
    size_t nkinds;
} generation;

struct runner {
    config *cfg;       /* the one in force: &gens[ngens - 1]->cfg */
    generation **gens; /* every configuration this runner has had, oldest first */
    size_t ngens;
    registered *handlers;
    size_t nhandlers;
    char *database_url;
    int stop_pipe[2];
    _Atomic bool running; /* register and configure before runner_run only */
    bool own_signals;     /* runner_set_signals(r, 0): the program keeps its signals */
    bool abandoned;       /* threads were left running at exit: never free what they use */
    dbpool *handler_db;   /* connections for sql and transactional handlers */
    worker_pool *pool;    /* while runner_run runs */
    workerproc_kinds *procs; /* the worker processes of worker kinds, while runner_run runs */
    control *ctl;         /* while runner_run runs */
};

struct runner_ctx {
    PGconn *conn;
    cancel_token *cancel;
    job_result *out;
};

static void generation_free(generation *g)
{
    config_free(&g->cfg);
    free(g->kinds);
    free(g);
}

/* add_generation puts g in force (the runner takes it over). */
static void add_generation(runner *r, generation *g)
{
    r->gens = xrealloc(r->gens, (r->ngens + 1) * sizeof *r->gens);
    r->gens[r->ngens++] = g;
    r->cfg = &g->cfg;
}

/* create_loaded completes a runner from its loaded first configuration. */
static runner *create_loaded(generation *g, char *err, size_t errlen)
{
    runner *r = xcalloc(1, sizeof *r);
    if (pipe2(r->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        errf(err, errlen, "could not create pipe: %s", strerror(errno));
        generation_free(g);
        free(r);
        return NULL;
    }
    add_generation(r, g);
    if (r->cfg->database_url)
        r->database_url = xstrdup(r->cfg->database_url);
    return r;
}

runner *runner_create(const char *config_path, char *err, size_t errlen)
{
    generation *g = xcalloc(1, sizeof *g);
    config_init(&g->cfg);
    if (config_path && config_load(&g->cfg, config_path, err, errlen) < 0) {
        generation_free(g);
        return NULL;
    }
    return create_loaded(g, err, errlen);
}

runner *runner_create_from_yaml(const char *yaml, const char *name, char *err, size_t errlen)
{
    generation *g = xcalloc(1, sizeof *g);
    config_init(&g->cfg);
    if (config_load_string(&g->cfg, yaml, strlen(yaml), name ? name : "<config>", err, errlen) <
        0) {
        generation_free(g);
        return NULL;
    }
    return create_loaded(g, err, errlen);
}

void runner_destroy(runner *r)
{
    if (!r || r->abandoned)
        return; /* stuck handlers may still read it: leaked on purpose */
    for (size_t i = 0; i < r->ngens; i++)
        generation_free(r->gens[i]);
    free(r->gens);
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

int runner_set_signals(runner *r, int install)
{
    if (r->running)
        return RUNNER_ERR_STATE;
    r->own_signals = !install;
    return RUNNER_OK;
}

void runner_stop(runner *r)
{
    unsigned char b = SHUTDOWN_BYTE_STOP;
    ssize_t rc = write(r->stop_pipe[1], &b, 1);
    (void)rc;
}

void runner_reload(runner *r)
{
    unsigned char b = SHUTDOWN_BYTE_RELOAD;
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
        out->outcome = cancel_outcome(reason);
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
    const config *cfg = j->cfg ? j->cfg : r->cfg; /* the one it was claimed under */
    const kind_config *k = config_kind(cfg, j->kind);
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
        exec_run(k->command, j, k->timeout_ms, cfg->kill_after_ms, cancel, out);
        return;
    }
    if (k && k->sql) {
        txjob_run_sql(r->handler_db, j, k->sql, k->timeout_ms, cancel, out);
        return;
    }
    if (k && k->worker) {
        workerproc_kinds_run(r->procs, j, k->timeout_ms, cancel, out);
        return;
    }
    out->outcome = JOB_RETRY;
    out->error = xasprintf("no handler for kind \"%s\" in this instance", j->kind);
}

/* kind_room: a worker kind may start as many jobs as it has free processes. */
static int kind_room(void *arg, const char *kind)
{
    runner *r = arg;
    return workerproc_kinds_free(r->procs, kind);
}

/* collect_kinds lists the kinds this instance can run under cfg, with their settings,
 * into g. */
static int collect_kinds(const runner *r, generation *g, char *err, size_t errlen)
{
    const config *cfg = &g->cfg;
    g->kinds = xcalloc(cfg->nkinds + r->nhandlers, sizeof *g->kinds);
    g->nkinds = 0;
    for (size_t i = 0; i < r->nhandlers; i++) {
        const kind_config *k = config_kind(cfg, r->handlers[i].kind);
        if (k && (k->command || k->sql || k->worker))
            return errf(err, errlen,
                        "kind \"%s\" has both a registered handler and a %s in the configuration",
                        k->name, k->command ? "command" : k->sql ? "sql statement" : "worker");
        g->kinds[g->nkinds++] =
            (control_kind){.name = r->handlers[i].kind, .max_attempts = k ? k->max_attempts : 0};
    }
    for (size_t i = 0; i < cfg->nkinds; i++) {
        const kind_config *k = &cfg->kinds[i];
        if (find_handler(r, k->name))
            continue;
        if (!k->command && !k->sql && !k->worker)
            return errf(err, errlen,
                        "kind \"%s\" has no handler: give it a command, sql or worker in %s",
                        k->name, cfg->path ? cfg->path : "the configuration");
        g->kinds[g->nkinds++] = (control_kind){.name = k->name, .max_attempts = k->max_attempts};
    }
    if (g->nkinds == 0)
        return errf(err, errlen, "no job kinds configured: add kinds to %s",
                    cfg->path ? cfg->path : "the configuration");
    return 0;
}

/* reload reads the configuration file again, validated whole, and puts it in force:
 * jobs claimed from now on run under it, running ones finish under theirs. An invalid
 * file changes nothing. Settings that only a restart can change keep their old values
 * (reload.c says which and logs them). */
static void reload(void *arg)
{
    runner *r = arg;
    char err[ERR_LEN];
    if (!r->cfg->path) {
        log_event(LOG_WARN, "reload ignored: the configuration was not read from a file", NULL);
        return;
    }
    generation *g = xcalloc(1, sizeof *g);
    config_init(&g->cfg);
    if (config_load(&g->cfg, r->cfg->path, err, sizeof err) < 0 ||
        collect_kinds(r, g, err, sizeof err) < 0) {
        log_event(LOG_ERROR, "could not reload the configuration, keeping the running one",
                  "error", err, NULL);
        generation_free(g);
        return;
    }
    reload_keep_restart_only(r->cfg, &g->cfg);
    if (pool_set_limit(r->pool, g->cfg.concurrency, err, sizeof err) < 0) {
        log_event(LOG_ERROR, "could not reload the configuration, keeping the running one",
                  "error", err, NULL);
        pool_set_limit(r->pool, r->cfg->concurrency, err, sizeof err);
        generation_free(g);
        return;
    }
    if (workerproc_kinds_reload(r->procs, &g->cfg, err, sizeof err) < 0)
        log_event(LOG_ERROR, "could not start the worker processes of a new kind", "error", err,
                  NULL);
    reload_log_changes(r->cfg, &g->cfg);
    add_generation(r, g);
    log_setup(g->cfg.log_level, g->cfg.log_format);
    control_reload(r->ctl, &g->cfg, g->kinds, g->nkinds);
}

/* start_http starts the listener of http.listen, with the queue statistics it serves. */
static http_server *start_http(runner *r, metrics *m, qstats **qs, char *err, size_t errlen)
{
    const char **names = xcalloc(r->cfg->nqueues, sizeof *names);
    for (size_t i = 0; i < r->cfg->nqueues; i++)
        names[i] = r->cfg->queues[i].name;
    *qs = qstats_create(r->database_url, names, r->cfg->nqueues, 0);
    free(names);
    int64_t turn = control_longest_turn_ms(r->cfg) + 2000;
    http_options opt = {.liveness_ms = turn > HTTP_LIVENESS_MS ? turn : HTTP_LIVENESS_MS};
    http_server *hs = http_start(r->cfg->http_listen, m, *qs, &opt, err, errlen);
    if (hs) {
        char where[HTTP_HOST_LEN + HTTP_PORT_LEN + 4];
        http_address(hs, where, sizeof where);
        log_event(LOG_INFO, "http listener started", "listen", where, NULL);
    }
    return hs;
}

/* abandon is how runner_run returns while threads are stuck (the control loop, or a
 * handler that ignored its cancel past kill_after): they are left running, and nothing
 * they use (the configuration, the pool, the loop, wake_fd, the metrics) is ever freed;
 * the listener is stopped. Their jobs'
 * leases expire and a peer rescues them. runner_destroy then leaks the runner on
 * purpose. Returns rc. */
static int abandon(runner *r, http_server *hs, int rc, const char *why)
{
    log_event(LOG_WARN, why, NULL);
    http_stop(hs); /* the metrics it reads stay: the stuck threads may still feed them */
    sentinel_stop();
    shutdown_signals_restore();
    r->running = false;
    r->abandoned = true;
    return rc;
}

int runner_run(runner *r, char *err, size_t errlen)
{
    if (r->running)
        return errf(err, errlen, "runner is already running"), RUNNER_ERR_STATE;
    log_setup(r->cfg->log_level, r->cfg->log_format);
    generation *g = r->gens[r->ngens - 1];
    free(g->kinds);
    if (collect_kinds(r, g, err, errlen) < 0)
        return RUNNER_ERR_CONFIG;

    int rc = RUNNER_ERR_SYSTEM;
    worker_pool *pool = NULL;
    control *ctl = NULL;
    metrics *m = metrics_create();
    qstats *qs = NULL;
    http_server *hs = NULL;
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
    if (!r->own_signals && shutdown_signals_install(r->stop_pipe[1], err, errlen) < 0)
        goto out;
    r->running = true;
    if (r->cfg->http_listen && !(hs = start_http(r, m, &qs, err, errlen)))
        goto out;
    r->procs = workerproc_kinds_create(r->cfg, err, errlen);
    if (!r->procs)
        goto out;
    r->handler_db = dbpool_create(r->database_url, r->cfg->concurrency, "runner worker",
                                  HANDLER_CONNECT_TIMEOUT_MS);
    pool = pool_create(r->cfg->concurrency, dispatch, r, wake_fd, err, errlen);
    if (!pool)
        goto out;
    ctl = control_create(r->cfg, r->database_url, pool, wake_fd, g->kinds, g->nkinds, m);
    control_set_kind_room(ctl, kind_room, r);
    if (control_start(ctl, err, errlen) < 0)
        goto out;
    r->pool = pool;
    r->ctl = ctl;

    if (shutdown_run(r->stop_pipe[0], ctl, (const config *const *)&r->cfg, reload, r) < 0)
        return abandon(r, hs, RUNNER_OK,
                       "runner stopped with work left to its leases: the control loop is stuck");
    if (control_join(ctl, err, errlen) < 0) {
        rc = RUNNER_ERR_SCHEMA;
        pool_cancel_all(pool, CANCEL_SHUTDOWN);
    } else {
        rc = RUNNER_OK;
        log_event(LOG_INFO, "runner stopped", NULL);
    }
    if (pool_backlog(pool) > 0) /* a handler ignored its cancel past kill_after */
        return abandon(r, hs, rc,
                       "runner stopped with work left to its leases: handlers still running");
out:
    if (ctl)
        control_join(ctl, NULL, 0);
    pool_destroy(pool);
    control_destroy(ctl);
    /* a connection the loop was still opening (outcome writer, upkeep) at the end */
    db_connect_settle(RUNNER_CONNECT_SETTLE_MS);
    /* no job runs any more: each process gets EOF and kill_after to leave */
    workerproc_kinds_destroy(r->procs, r->cfg->kill_after_ms);
    r->procs = NULL;
    dbpool_destroy(r->handler_db);
    r->handler_db = NULL;
    sentinel_stop();
    shutdown_signals_restore();
    r->running = false;
    r->pool = NULL;
    r->ctl = NULL;
    if (wake_fd >= 0)
        close(wake_fd);
    /* the listener goes last: probes and scrapes are answered through the whole drain */
    http_stop(hs);
    qstats_destroy(qs);
    metrics_destroy(m);
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
