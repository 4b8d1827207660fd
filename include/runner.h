/* runner.h - the public C API of runner: embed the job runner, register handlers, and
 * enqueue jobs. The only public header; everything else is internal.
 *
 * Process-wide parts. One runner_run may be active per process at a time; while it runs
 * it owns these, and gives them back when it returns:
 *   - signals: SIGTERM and SIGINT handlers that start the shutdown protocol, and SIGPIPE
 *     ignored (unless runner_set_signals(r, 0): see there);
 *   - the sentinel: a child process forked at the start of runner_run that kills the
 *     process groups of running exec jobs if the process dies (fork it before starting
 *     threads of your own if you can; it closes no fds of yours);
 *   - the log: level and format from the configuration apply to the whole process's
 *     runner log lines, on stderr.
 * Everything else (enqueue, the handles) is per object and thread-safe where noted. */
#ifndef RUNNER_H
#define RUNNER_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RUNNER_ERR_LEN 512

/* RUNNER_API marks the public functions. The library is compiled with hidden visibility,
 * so these are the only symbols librunner.so and librunner.a export. */
#if defined(__GNUC__) || defined(__clang__)
#define RUNNER_API __attribute__((visibility("default")))
#else
#define RUNNER_API
#endif

/* RUNNER_ERROR_MAP lists the error codes once, as X(name, value, description), for the
 * runner_error enum and runner_strerror. Append only: existing values never change.
 *   RUNNER_ERR_CONFIG  runner.yaml or an argument is invalid
 *   RUNNER_ERR_DB      the database refused or could not be reached
 *   RUNNER_ERR_SCHEMA  schema missing, too old or too new
 *   RUNNER_ERR_SYSTEM  a system call failed (threads, pipes, memory)
 *   RUNNER_ERR_STATE   call not valid now (e.g. register while running)
 *   RUNNER_ERR_ARGS    invalid argument (bad JSON, empty kind, ...)
 *   RUNNER_ERR_EXISTS  a handler for that kind is already registered */
#define RUNNER_ERROR_MAP(X)                                                                        \
    X(RUNNER_OK, 0, "success")                                                                     \
    X(RUNNER_ERR_CONFIG, -1, "invalid configuration")                                              \
    X(RUNNER_ERR_DB, -2, "database error")                                                         \
    X(RUNNER_ERR_SCHEMA, -3, "database schema mismatch")                                           \
    X(RUNNER_ERR_SYSTEM, -4, "system error")                                                       \
    X(RUNNER_ERR_STATE, -5, "not allowed in this state")                                           \
    X(RUNNER_ERR_ARGS, -6, "invalid argument")                                                     \
    X(RUNNER_ERR_EXISTS, -7, "already registered")

typedef enum runner_error {
#define RUNNER_ERROR_ENUM_(name, value, description) name = (value),
    RUNNER_ERROR_MAP(RUNNER_ERROR_ENUM_)
#undef RUNNER_ERROR_ENUM_
} runner_error;

/* runner_strerror describes a code ("unrecognized error code" for one not in the list);
 * the string is static. */
RUNNER_API const char *runner_strerror(int code);

typedef struct runner runner;

/* runner_create reads and validates config_path (NULL: built-in defaults) and returns a
 * runner, or NULL with the reason (file:line:column for config errors) in err. Touches
 * no database. Free with runner_destroy. */
RUNNER_API runner *runner_create(const char *config_path, char *err, size_t errlen);
RUNNER_API void runner_destroy(runner *r);

/* runner_create_from_yaml is runner_create on configuration text built in code; name
 * stands for the file in error messages. */
RUNNER_API runner *runner_create_from_yaml(const char *yaml, const char *name, char *err,
                                           size_t errlen);

/* runner_set_database_url overrides database.url (the string is copied). */
RUNNER_API int runner_set_database_url(runner *r, const char *url);

/* ---- handlers ---- */

/* A job as a handler sees it. Every pointer is owned by the runner and valid only
 * during the handler call: copy what you keep. */
typedef struct runner_job {
    int64_t id;
    const char *kind;
    const char *queue;
    const char *args; /* JSON text */
    int attempt;      /* 1 on the first run */
    int max_attempts;
} runner_job;

/* What a handler returns. */
typedef enum runner_outcome {
    RUNNER_JOB_SUCCESS = 0, /* completed (a transactional handler's work commits with it) */
    RUNNER_JOB_RETRY = 1,   /* failed attempt: retry with backoff while attempts are left */
    RUNNER_JOB_DISCARD = 2, /* failed for good: no more attempts */
} runner_outcome;

/* Per-call context, owned by the runner, valid during the call. */
typedef struct runner_ctx runner_ctx;

/* runner_ctx_conn is the connection inside the job's transaction for handlers registered
 * with runner_register_tx, NULL otherwise. Do not COMMIT or ROLLBACK it yourself. */
RUNNER_API PGconn *runner_ctx_conn(runner_ctx *ctx);
/* runner_ctx_cancelled is non-zero once the job should stop: shutdown deadline, timeout,
 * lease lost, or an admin's cancel. Return soon after. */
RUNNER_API int runner_ctx_cancelled(runner_ctx *ctx);
/* runner_ctx_cancel_fd is readable once cancelled, for handlers that poll(). */
RUNNER_API int runner_ctx_cancel_fd(runner_ctx *ctx);
/* runner_ctx_set_error records why the attempt failed (copied; kept in the history). */
RUNNER_API void runner_ctx_set_error(runner_ctx *ctx, const char *message);
/* runner_ctx_retry_in overrides the kind's backoff for a RUNNER_JOB_RETRY. */
RUNNER_API void runner_ctx_retry_in(runner_ctx *ctx, int64_t delay_ms);

typedef runner_outcome (*runner_handler)(runner_ctx *ctx, const runner_job *job, void *userdata);

/* runner_register makes handler run jobs of kind (at-least-once, like exec kinds).
 * runner_register_tx also gives it a connection inside the job's own transaction; the
 * completion is written in that transaction, so its effects happen exactly once.
 * Register before runner_run; userdata stays the caller's. A kinds.<kind> entry in the
 * configuration (without command or sql) supplies timeout, max_attempts and backoff. */
RUNNER_API int runner_register(runner *r, const char *kind, runner_handler handler, void *userdata);
RUNNER_API int runner_register_tx(runner *r, const char *kind, runner_handler handler,
                                  void *userdata);

/* ---- enqueue ---- */

/* Optional settings of a new job; zero-initialize and fill what you need. */
typedef struct runner_enqueue_opts {
    const char *queue;      /* NULL: "default" */
    int priority;           /* lower runs first */
    const char *run_at;     /* timestamptz text; NULL: now */
    int64_t run_in_ms;      /* > 0: now() + this (ignored with run_at) */
    int max_attempts;       /* 0: the kind's setting */
    const char *unique_key; /* NULL: none */
} runner_enqueue_opts;

/* runner_enqueue adds a job through the caller's own connection, inside whatever
 * transaction it is in: a rollback removes the job with the rest. args is JSON text
 * (NULL: {}); opts may be NULL. Returns 0 and the id, or a runner_error with err. */
RUNNER_API int runner_enqueue(PGconn *conn, const char *kind, const char *args,
                              const runner_enqueue_opts *opts, int64_t *id, char *err,
                              size_t errlen);

/* runner_run works jobs until shutdown: it handles SIGTERM and SIGINT (first: drain
 * within shutdown.grace; deadline or second signal: cancel and release) and returns 0
 * after a clean stop, or a negative runner_error with the reason in err. */
RUNNER_API int runner_run(runner *r, char *err, size_t errlen);

/* runner_stop starts the same shutdown protocol as a signal; thread-safe and
 * async-signal-safe. A second call acts as a second signal. */
RUNNER_API void runner_stop(runner *r);

/* runner_reload re-reads the configuration file (as SIGHUP does): validated whole; an
 * invalid file is logged and changes nothing. Kinds, concurrency, queues, schedules, log
 * settings and retention change live; jobs already running finish under the settings
 * they started with. Thread-safe and async-signal-safe; ignored once stopping. */
RUNNER_API void runner_reload(runner *r);

/* runner_set_signals(r, 0), before runner_run, keeps runner_run from installing signal
 * handlers (and from ignoring SIGPIPE): for programs that own their signals. Such a
 * program calls runner_stop from its own handler (or anywhere) to start the shutdown
 * protocol, once for a drain and again to cancel at once. Default: 1. */
RUNNER_API int runner_set_signals(runner *r, int install);

#ifdef __cplusplus
}
#endif

#endif
