/* main.c - the runner command line: parses argv and hands each command to its module. */
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "duration.h"
#include "db.h"
#include "enqueue.h"
#include "log.h"
#include "migrate.h"
#include "runner.h"
#include "sdnotify.h"
#include "status.h"
#include "util.h"
#include "web.h"

#define EXIT_USAGE 2
#define CONNECT_TIMEOUT_MS 10000

typedef struct options {
    const char *config_path;  /* --config, NULL when not given */
    const char *database_url; /* --database-url, NULL when not given */
    char **args;              /* after the command */
    int nargs;
} options;

/* One entry per command: `runner --help` lists them in this order, and adding a command
 * is one line here plus its function. */
typedef struct command {
    const char *name;
    const char *synopsis; /* what follows the name on the usage line */
    const char *summary;  /* its line in `runner --help` */
    const char *help;     /* the body of `runner NAME --help` */
    /* run keeps SIGTERM/SIGINT blocked until it has installed its own handlers */
    bool holds_stop_signals;
    int (*fn)(const options *o);
} command;

static int cmd_run(const options *o);
static int cmd_migrate(const options *o);
static int cmd_enqueue(const options *o);
static int cmd_status(const options *o);
static int cmd_web(const options *o);
static int cmd_version(const options *o);
static int cmd_help(const options *o);

static const command commands[] = {
    {"run", "", "work jobs until SIGTERM/SIGINT",
     "Work the jobs of the configured kinds and queues until SIGTERM or SIGINT. The first\n"
     "signal stops claiming and lets running jobs finish within shutdown.grace; at the\n"
     "deadline, or on a second signal, the rest are cancelled and released to other\n"
     "instances, and the process exits 0. SIGHUP reloads the configuration. Needs the\n"
     "schema migrated (runner migrate). Started by systemd with Type=notify, it reports\n"
     "READY=1, STATUS=, STOPPING=1, EXTEND_TIMEOUT_USEC= and WATCHDOG=1 on $NOTIFY_SOCKET.\n",
     true, cmd_run},
    {"migrate", "", "apply pending schema migrations",
     "Apply the schema migrations compiled into this binary that the database lacks, under\n"
     "an advisory lock (safe to run from many instances at once), and print the version.\n",
     false, cmd_migrate},
    {"enqueue", "KIND [JSON] [OPTIONS]", "add a job and print its id",
     "Add one job of KIND with JSON as its args (default {}) and print its id.\n"
     "\n"
     "options:\n"
     "  --queue Q            queue (default \"default\")\n"
     "  --priority N         lower runs first (default 0)\n"
     "  --run-at TS          not before this timestamp (PostgreSQL syntax)\n"
     "  --in DURATION        not before now + DURATION (e.g. 90s, 1h30m)\n"
     "  --max-attempts N     attempts before the job fails for good (default 25)\n"
     "  --unique-key K       do nothing if an unfinished job has this key; print its id\n",
     false, cmd_enqueue},
    {"status", "[--json]", "queues, instances and the oldest waiting job",
     "Print the queue summary, the live and recently stopped instances and the oldest\n"
     "waiting job as aligned tables.\n"
     "\n"
     "options:\n"
     "  --json               the same data as one JSON document, for scripts\n",
     false, cmd_status},
    {"web", "[--listen HOST:PORT] [--hide-args]", "the dashboard (default 127.0.0.1:9641)",
     "Serve the dashboard: queues, jobs, schedules and instances, with retry, cancel and\n"
     "pause/resume for a database role that may run the admin functions. A separate process\n"
     "with its own database role (runner_viewer or runner_operator). Refuses a non-loopback\n"
     "address unless web.auth_file or RUNNER_WEB_AUTH holds credentials.\n"
     "\n"
     "options:\n"
     "  --listen HOST:PORT   where to listen (default web.listen, else 127.0.0.1:9641)\n"
     "  --hide-args          never show or search job args (they may hold personal data)\n",
     false, cmd_web},
    {"version", "", "print the version",
     "Print the runner's version and the schema version it was built for.\n", false, cmd_version},
    {"help", "[COMMAND]", "this overview, or a command's help",
     "Print the overview of the commands, or the help of COMMAND.\n", false, cmd_help},
};

static const char global_options[] =
    "global options:\n"
    "  --config FILE         the configuration (default ./runner.yaml when it exists)\n"
    "  --database-url URL    the database; else RUNNER_DATABASE_URL, else database.url,\n"
    "                        else libpq's PG* environment variables\n"
    "  -h, --help            print help and exit\n";

static const char usage_prefix[] = "usage: runner [--config FILE] [--database-url URL]";

static void print_overview(FILE *out)
{
    fprintf(out, "%s <command> [ARGS]\n\ncommands:\n", usage_prefix);
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].synopsis);
        fprintf(out, "  %-30s %s\n", left, commands[i].summary);
    }
    fprintf(out, "\n%s\n`runner COMMAND --help` describes a command; man runner has the rest.\n",
            global_options);
}

static void print_command_help(const command *c, FILE *out)
{
    fprintf(out, "%s %s%s%s\n\n%s\n%s", usage_prefix, c->name, c->synopsis[0] ? " " : "",
            c->synopsis, c->help, global_options);
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* usage_error reports a wrong command line on stderr and returns the usage exit status.
 * cmd (may be NULL) names the command whose usage line is shown. */
static int usage_error(const command *cmd, const char *fmt, const char *what)
{
    fputs("runner: ", stderr);
    fprintf(stderr, fmt, what);
    if (cmd)
        fprintf(stderr, "\n%s %s%s%s\nTry \"runner %s --help\" for more information.\n",
                usage_prefix, cmd->name, cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->name);
    else
        fputs("\nTry \"runner --help\" for more information.\n", stderr);
    return EXIT_USAGE;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* default_config_path is the configuration file to read: --config, else ./runner.yaml
 * when it exists, else NULL (the built-in defaults). */
static const char *default_config_path(const options *o)
{
    if (o->config_path)
        return o->config_path;
    return access("runner.yaml", F_OK) == 0 ? "runner.yaml" : NULL;
}

/* database_url applies the precedence --database-url > RUNNER_DATABASE_URL >
 * database.url (config_url, may be NULL) > libpq's PG* environment (NULL). */
static const char *database_url(const options *o, const char *config_url)
{
    if (o->database_url)
        return o->database_url;
    const char *env = getenv("RUNNER_DATABASE_URL");
    if (env && *env)
        return env;
    return config_url;
}

/* open_database reads the configuration and connects (blocking mode) with the URL the
 * precedence picks. Returns 0, or the exit status to end with. */
/* read_config loads the configuration the options name (or the defaults). Returns 0, or
 * the exit status to end with (cfg is then freed). */
static int read_config(const options *o, config *cfg)
{
    config_init(cfg);
    char err[ERR_LEN];
    const char *path = default_config_path(o);
    if (path && config_load(cfg, path, err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        config_free(cfg);
        return EXIT_USAGE;
    }
    return 0;
}

static int open_database(const options *o, PGconn **conn)
{
    config cfg;
    char err[ERR_LEN];
    if (read_config(o, &cfg) != 0)
        return EXIT_USAGE;
    *conn = db_connect(database_url(o, cfg.database_url), "runner", CONNECT_TIMEOUT_MS, err,
                       sizeof err);
    config_free(&cfg);
    if (!*conn) {
        fprintf(stderr, "runner: %s\n", err);
        return 1;
    }
    PQsetnonblocking(*conn, 0);
    return 0;
}

static int cmd_run(const options *o)
{
    if (o->nargs > 0)
        return usage_error(find_command("run"), "unexpected argument \"%s\"", o->args[0]);
    /* the control thread allocates nearly everything; two malloc arenas instead of
     * glibc's eight per core keep the peak footprint about 0.5 MiB lower */
    mallopt(M_ARENA_MAX, 2);
    char err[ERR_LEN];
    runner *r = runner_create(default_config_path(o), err, sizeof err);
    if (!r) {
        fprintf(stderr, "runner: %s\n", err);
        return EXIT_USAGE;
    }
    /* NULL config URL: the runner keeps its database.url unless a flag or env overrides */
    const char *url = database_url(o, NULL);
    if (url)
        runner_set_database_url(r, url);
    /* Under systemd the control loop and the shutdown protocol report through the
     * notify socket. Opened here, not in runner_run: a program that embeds the runner
     * owns its NOTIFY_SOCKET. No thread runs yet, so the environment may change. Never
     * closed: after a last-resort return the loop may still be sending. */
    char nerr[ERR_LEN];
    if (sdnotify_open(nerr, sizeof nerr) < 0)
        log_event(LOG_WARN, "ignoring NOTIFY_SOCKET", "error", nerr, NULL);
    int rc = runner_run(r, err, sizeof err);
    if (rc != RUNNER_OK)
        fprintf(stderr, "runner: %s\n", err);
    runner_destroy(r);
    return rc == RUNNER_OK ? 0 : rc == RUNNER_ERR_CONFIG ? EXIT_USAGE : 1;
}

static int cmd_migrate(const options *o)
{
    if (o->nargs > 0)
        return usage_error(find_command("migrate"), "unexpected argument \"%s\"", o->args[0]);
    PGconn *conn;
    int rc = open_database(o, &conn);
    if (rc != 0)
        return rc;
    PQsetnonblocking(conn, 1);
    char err[ERR_LEN];
    int applied;
    rc = migrate_apply(conn, &applied, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "runner: %s\n", err);
    else
        printf("schema at version %d (%d migration%s applied)\n", migrate_latest(), applied,
               applied == 1 ? "" : "s");
    PQfinish(conn);
    return rc < 0 ? 1 : 0;
}

/* is_int accepts an optional sign and 1..9 digits: what fits an int column. */
static bool is_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    size_t n = strspn(s, "0123456789");
    return n > 0 && n <= 9 && s[n] == '\0';
}

/* parse_enqueue reads KIND [JSON] and the enqueue options. */
static int parse_enqueue(const options *o, enqueue_opts *e)
{
    const command *self = find_command("enqueue");
    int positional = 0;
    for (int i = 0; i < o->nargs; i++) {
        const char *a = o->args[i];
        const char *v = i + 1 < o->nargs ? o->args[i + 1] : NULL;
        if (a[0] == '-' && a[1] == '-') {
            if (!v)
                return usage_error(self, "option \"%s\" needs a value", a);
            if ((strcmp(a, "--priority") == 0 || strcmp(a, "--max-attempts") == 0) && !is_int(v)) {
                fprintf(stderr, "runner: %s needs an integer, got \"%s\"\n", a, v);
                return EXIT_USAGE;
            }
            if (strcmp(a, "--queue") == 0)
                e->queue = v;
            else if (strcmp(a, "--priority") == 0)
                e->priority = v;
            else if (strcmp(a, "--run-at") == 0)
                e->run_at = v;
            else if (strcmp(a, "--in") == 0) {
                char err[ERR_LEN];
                if (duration_parse(v, &e->run_in_ms, err, sizeof err) < 0) {
                    fprintf(stderr, "runner: invalid --in \"%s\": %s\n", v, err);
                    return EXIT_USAGE;
                }
            } else if (strcmp(a, "--max-attempts") == 0)
                e->max_attempts = v;
            else if (strcmp(a, "--unique-key") == 0)
                e->unique_key = v;
            else
                return usage_error(self, "unrecognized enqueue option \"%s\"", a);
            i++;
        } else if (positional == 0) {
            e->kind = a;
            positional++;
        } else if (positional == 1) {
            e->args = a;
            positional++;
        } else {
            return usage_error(self, "unexpected argument \"%s\"", a);
        }
    }
    if (!e->kind)
        return usage_error(self, "%s", "enqueue needs a job kind");
    if (e->run_at && e->run_in_ms > 0)
        return usage_error(self, "%s", "--run-at and --in exclude each other");
    return 0;
}

static int cmd_enqueue(const options *o)
{
    enqueue_opts e = {0};
    int rc = parse_enqueue(o, &e);
    if (rc != 0)
        return rc;
    PGconn *conn;
    rc = open_database(o, &conn);
    if (rc != 0)
        return rc;
    int64_t id;
    char err[ERR_LEN];
    rc = enqueue_job(conn, &e, &id, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "runner: %s\n", err);
    else
        printf("%lld\n", (long long)id);
    PQfinish(conn);
    return rc < 0 ? 1 : 0;
}

static int cmd_status(const options *o)
{
    bool json = false;
    for (int i = 0; i < o->nargs; i++) {
        if (strcmp(o->args[i], "--json") == 0)
            json = true;
        else
            return usage_error(find_command("status"),
                               o->args[i][0] == '-' ? "unrecognized status option \"%s\""
                                                    : "unexpected argument \"%s\"",
                               o->args[i]);
    }
    PGconn *conn;
    int rc = open_database(o, &conn);
    if (rc != 0)
        return rc;
    PQsetnonblocking(conn, 1);
    char err[ERR_LEN];
    bool broken;
    rc = migrate_check(conn, &broken, err, sizeof err);
    if (rc == 0)
        rc = json ? status_print_json(conn, stdout, err, sizeof err)
                  : status_print(conn, stdout, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "runner: %s\n", err);
    PQfinish(conn);
    return rc < 0 ? 1 : 0;
}

static int cmd_web(const options *o)
{
    config cfg;
    if (read_config(o, &cfg) != 0)
        return EXIT_USAGE;
    int rc = web_main(&cfg, database_url(o, cfg.database_url), o->args, o->nargs);
    config_free(&cfg);
    return rc;
}

static int cmd_version(const options *o)
{
    if (o->nargs > 0)
        return usage_error(find_command("version"), "unexpected argument \"%s\"", o->args[0]);
    printf("runner %s (schema version %d)\n", RUNNER_VERSION, migrate_latest());
    return 0;
}

static int cmd_help(const options *o)
{
    if (o->nargs == 0) {
        print_overview(stdout);
        return 0;
    }
    const command *c = find_command(o->args[0]);
    if (!c || o->nargs > 1)
        return usage_error(find_command("help"), "unrecognized command \"%s\"", o->args[0]);
    print_command_help(c, stdout);
    return 0;
}

/* parse_global reads the options before the command; returns the index of the command
 * in argv, 0 when --help was asked for, or -1 after a usage error. */
static int parse_global(int argc, char **argv, options *o)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (is_help(a))
            return 0;
        if (strcmp(a, "--config") == 0 && i + 1 < argc)
            o->config_path = argv[++i];
        else if (strncmp(a, "--config=", 9) == 0)
            o->config_path = a + 9;
        else if (strcmp(a, "--database-url") == 0 && i + 1 < argc)
            o->database_url = argv[++i];
        else if (strncmp(a, "--database-url=", 15) == 0)
            o->database_url = a + 15;
        else {
            usage_error(NULL, "unrecognized or incomplete option \"%s\"", a);
            return -1;
        }
    }
    if (i >= argc) {
        usage_error(NULL, "%s", "no command given");
        return -1;
    }
    o->args = argv + i + 1;
    o->nargs = argc - i - 1;
    return i;
}

int main(int argc, char **argv)
{
    /* hold SIGTERM/SIGINT/SIGHUP from the first instruction until runner_run has its
     * handlers in place: a deploy tool may signal a process that is still starting, and
     * for `run` that must mean "stop" (or "reload"), not death. Other commands get the
     * default back at once. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, NULL);

    options o = {0};
    int at = parse_global(argc, argv, &o);
    if (at <= 0) {
        if (at == 0)
            print_overview(stdout);
        return at == 0 ? 0 : EXIT_USAGE;
    }
    const command *c = find_command(argv[at]);
    if (!c)
        return usage_error(NULL, "unrecognized command \"%s\"", argv[at]);
    if (!c->holds_stop_signals)
        sigprocmask(SIG_UNBLOCK, &stop, NULL);
    /* `--help` anywhere after the command: option values that are literally "--help"
     * or "-h" are not worth a parser that knows which options take values */
    for (int i = 0; i < o.nargs; i++) {
        if (is_help(o.args[i])) {
            print_command_help(c, stdout);
            return 0;
        }
    }
    return c->fn(&o);
}
