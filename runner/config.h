/* config.h - runner.yaml: parsed with libyaml into a fresh struct and validated whole. */
#ifndef RUNNER_CONFIG_H
#define RUNNER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cron.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

/* What to do with cron ticks that fell while no instance was running. */
enum catch_up { CATCH_UP_LATEST, CATCH_UP_ALL, CATCH_UP_NONE };

/* kinds.<name>: at most one of command (exec handler), sql (sql handler) or worker
 * (long-lived worker processes) is set; none when the kind only sets options for a C
 * handler registered by an embedding program. */
typedef struct kind_config {
    char *name;
    char **command;          /* NULL-terminated argv for exec kinds, else NULL */
    char *sql;               /* statement for sql kinds, else NULL */
    char **worker;           /* NULL-terminated argv for worker kinds, else NULL */
    int processes;           /* worker kinds: pool size (default 1); 0 for other kinds */
    int64_t timeout_ms;      /* 0: no timeout */
    int max_attempts;        /* 0: the default (DEFAULT_MAX_ATTEMPTS) */
    int64_t backoff_base_ms; /* default 1s */
    int64_t backoff_max_ms;  /* default 1h */
} kind_config;

/* schedules.<name> */
typedef struct schedule_config {
    char *name;
    char *cron;     /* the expression as written */
    cron_expr expr; /* and parsed, once, at load */
    char *kind;
    char *args_json; /* args rendered as JSON text; "{}" when absent */
    char *queue;     /* default "default" */
    int priority;
    char *timezone; /* IANA name, default "UTC" */
    enum catch_up catch_up;
} schedule_config;

/* worker.queues entries: per-queue settings inside one instance (one per queue, in order). */
typedef struct queue_config {
    char *name;
    int concurrency; /* 0: no limit beyond worker.concurrency */
} queue_config;

typedef struct config {
    char *path;         /* file it was read from, NULL for built-in defaults */
    char *database_url; /* NULL: libpq's PG* environment */

    queue_config *queues; /* worker.queues, in order; at least one */
    size_t nqueues;
    int concurrency;
    int64_t poll_interval_ms;
    int64_t lease_ms;
    int64_t heartbeat_ms; /* default lease / 3 */
    int64_t retention_ms; /* retention: finished jobs older than this are pruned */

    int64_t grace_ms;
    int64_t kill_after_ms;

    enum log_level log_level;
    enum log_format log_format;

    kind_config *kinds;
    size_t nkinds;
    schedule_config *schedules;
    size_t nschedules;

    char *http_listen; /* http.listen "HOST:PORT" for runner run; NULL: no listener */
    char *web_listen;    /* web.listen: NULL means the default 127.0.0.1:9641 */
    char *web_auth_file; /* web.auth_file: "user:crypt-hash" lines for HTTP basic auth */
    int web_hide_args;   /* web.hide_args: the dashboard never shows job args */
} config;

#define DEFAULT_MAX_ATTEMPTS 25
/* Upper bound of kinds.<name>.processes, the same as worker.concurrency's. */
#define MAX_WORKER_PROCESSES 1000

/* config_init fills c with the documented defaults. */
void config_init(config *c);
/* config_load parses and validates the YAML file at path into c (which config_init
 * prepared). On error returns -1 with "... at FILE:LINE:COL: reason" in err and leaves c
 * as it was, safe to config_free. */
int config_load(config *c, const char *path, char *err, size_t errlen);
/* config_load_string is config_load on text held in memory; name stands for the file. */
int config_load_string(config *c, const char *yaml, size_t len, const char *name, char *err,
                       size_t errlen);
void config_free(config *c);

const kind_config *config_kind(const config *c, const char *name);

/* config_queue_index is queue's position in worker.queues, or -1 when the instance does
 * not work it. */
int config_queue_index(const config *c, const char *queue);
/* config_queue_limit is queue's concurrency limit in this instance (0: none of its own). */
int config_queue_limit(const config *c, const char *queue);


#endif
