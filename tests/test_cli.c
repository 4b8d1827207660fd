/* test_cli.c - the command line without a database: --help for the program and for every
 * command it lists, usage errors, the default config path and the database URL
 * precedence (seen in which socket a failed connection names), and the man page. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define CLI_TIMEOUT_MS 10000

static const char usage_line[] = "usage: runner [--config FILE] [--database-url URL]";

/* listed_commands fills names with the commands `runner --help` lists (the lines of its
 * "commands:" section) and returns how many. */
static int listed_commands(char names[][32], int max)
{
    th_output o = th_run(CLI_TIMEOUT_MS, NULL, "--help", NULL);
    th_assert(o.exit_code == 0, "runner --help: exit %d\n%s", o.exit_code, o.err);
    const char *p = strstr(o.out, "\ncommands:\n");
    th_assert(p != NULL, "runner --help has no commands section:\n%s", o.out);
    p += strlen("\ncommands:\n");
    int n = 0;
    while (n < max && strncmp(p, "  ", 2) == 0) {
        p += 2;
        size_t len = strcspn(p, " \n");
        th_assert(len > 0 && len < 32, "odd command line in runner --help: %s", p);
        memcpy(names[n], p, len);
        names[n++][len] = '\0';
        p = strchr(p, '\n');
        th_assert(p != NULL, "unterminated runner --help");
        p++;
    }
    return n;
}

Test(cli, help_lists_every_command, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    const char *forms[][2] = {{"--help", NULL}, {"-h", NULL}, {"help", NULL}};
    for (size_t f = 0; f < ARRAY_LEN(forms); f++) {
        th_output o = th_run(CLI_TIMEOUT_MS, NULL, forms[f][0], NULL);
        th_assert(o.exit_code == 0, "runner %s: exit %d", forms[f][0], o.exit_code);
        th_assert(strncmp(o.out, usage_line, strlen(usage_line)) == 0,
                  "runner %s: stdout lacks the usage line:\n%s", forms[f][0], o.out);
        th_assert(o.err[0] == '\0', "runner %s wrote to stderr: %s", forms[f][0], o.err);
    }
    char names[32][32];
    int n = listed_commands(names, 32);
    const char *required[] = {"run", "migrate", "enqueue", "status", "version"};
    for (size_t i = 0; i < ARRAY_LEN(required); i++) {
        bool found = false;
        for (int j = 0; j < n; j++)
            found = found || strcmp(names[j], required[i]) == 0;
        th_assert(found, "runner --help does not list \"%s\"", required[i]);
    }
}

/* Every listed command answers --help, -h and `help NAME` on stdout with exit 0 and its
 * own usage line, without touching a database (there is none in this suite). */
Test(cli, every_command_has_help, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    char names[32][32];
    int n = listed_commands(names, 32);
    th_assert(n >= 5, "only %d commands listed", n);
    for (int i = 0; i < n; i++) {
        char *want = th_fmt("%s %s", usage_line, names[i]);
        th_output outs[] = {
            th_run(CLI_TIMEOUT_MS, NULL, names[i], "--help", NULL),
            th_run(CLI_TIMEOUT_MS, NULL, names[i], "-h", NULL),
            th_run(CLI_TIMEOUT_MS, NULL, "help", names[i], NULL),
            /* --help wins over whatever else is on the line */
            th_run(CLI_TIMEOUT_MS, NULL, "--database-url", "host=/nonexistent", names[i], "x",
                   "--help", NULL),
        };
        for (size_t k = 0; k < ARRAY_LEN(outs); k++) {
            th_output *o = &outs[k];
            th_assert(o->exit_code == 0, "%s --help (form %zu): exit %d\n%s", names[i], k,
                      o->exit_code, o->err);
            th_assert(strncmp(o->out, want, strlen(want)) == 0,
                      "%s --help (form %zu): expected \"%s...\", got:\n%s", names[i], k, want,
                      o->out);
            th_assert(strstr(o->out, "global options:") != NULL, "%s --help lacks the options",
                      names[i]);
            th_assert(o->err[0] == '\0', "%s --help wrote to stderr: %s", names[i], o->err);
        }
    }
    th_output e = th_run(CLI_TIMEOUT_MS, NULL, "enqueue", "--help", NULL);
    th_assert(strstr(e.out, "--unique-key") && strstr(e.out, "--in DURATION"),
              "enqueue --help lacks its options:\n%s", e.out);
    th_output s = th_run(CLI_TIMEOUT_MS, NULL, "status", "--help", NULL);
    th_assert(strstr(s.out, "--json") != NULL, "status --help lacks --json:\n%s", s.out);
}

Test(cli, usage_errors_go_to_stderr_with_status_2, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    static const struct {
        const char *args[4];
        const char *needle;
    } cases[] = {
        {{NULL}, "no command given"},
        {{"frobnicate"}, "unrecognized command \"frobnicate\""},
        {{"--verbose", "status"}, "unrecognized or incomplete option \"--verbose\""},
        {{"--config"}, "unrecognized or incomplete option \"--config\""},
        {{"status", "--xml"}, "unrecognized status option \"--xml\""},
        {{"status", "queues"}, "unexpected argument \"queues\""},
        {{"enqueue"}, "enqueue needs a job kind"},
        {{"enqueue", "k", "--queue"}, "option \"--queue\" needs a value"},
        {{"enqueue", "k", "--colour", "red"}, "unrecognized enqueue option \"--colour\""},
        {{"run", "now"}, "unexpected argument \"now\""},
        {{"migrate", "up"}, "unexpected argument \"up\""},
        {{"version", "2"}, "unexpected argument \"2\""},
        {{"help", "frobnicate"}, "unrecognized command \"frobnicate\""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const char *const *a = cases[i].args;
        th_output o = th_run(CLI_TIMEOUT_MS, NULL, a[0], a[0] ? a[1] : NULL,
                             a[0] && a[1] ? a[2] : NULL, a[0] && a[1] && a[2] ? a[3] : NULL, NULL);
        th_assert(o.exit_code == 2, "case %zu (%s): exit %d, expected 2\n%s", i, cases[i].needle,
                  o.exit_code, o.err);
        th_assert(o.out[0] == '\0', "case %zu: usage error on stdout: %s", i, o.out);
        th_assert(strncmp(o.err, "runner: ", 8) == 0 && strstr(o.err, cases[i].needle),
                  "case %zu: stderr lacks \"%s\":\n%s", i, cases[i].needle, o.err);
        th_assert(strstr(o.err, "--help\" for more information") != NULL,
                  "case %zu: no pointer to --help:\n%s", i, o.err);
    }
}

/* expect_socket runs `status` (which connects at once) and asserts that the connection
 * failure names the socket directory the precedence should have picked. */
static void expect_socket(const char *const env[], const char *dir, const char *a0, const char *a1)
{
    th_output o =
        th_run(CLI_TIMEOUT_MS, env, a0 ? a0 : "status", a0 ? a1 : NULL, a0 ? "status" : NULL, NULL);
    char *want = th_fmt("socket \"%s/.s.PGSQL.", dir);
    th_assert(o.exit_code == 1 && strstr(o.err, want) != NULL,
              "expected a connection failure on %s (exit 1), got exit %d:\n%s", dir, o.exit_code,
              o.err);
}

/* --database-url > RUNNER_DATABASE_URL > database.url of --config, else of ./runner.yaml
 * (the working directory of th_run is the test's directory) > PG* variables. Sockets in
 * directories that do not exist fail at once and name themselves in the error. */
Test(cli, database_url_precedence_and_default_config, .init = th_setup, .fini = th_teardown,
     .timeout = 60)
{
    const char *pg_vars[] = {"RUNNER_DATABASE_URL", "PGHOST",        "PGHOSTADDR", "PGPORT",
                             "PGSERVICE",           "PGSERVICEFILE", "PGDATABASE"};
    for (size_t i = 0; i < ARRAY_LEN(pg_vars); i++)
        unsetenv(pg_vars[i]);
    const char *no_url = th_write_file("no-url.yaml", "worker:\n  concurrency: 2\n");
    const char *other =
        th_write_file("other.yaml", "database:\n  url: "
                                    "\"postgresql:///x?host=/nonexistent/other\"\n");

    const char *pg_env[] = {"PGHOST=/nonexistent/pg", NULL};
    const char *all_env[] = {"PGHOST=/nonexistent/pg",
                             "RUNNER_DATABASE_URL=postgresql:///x?host=/nonexistent/env", NULL};
    const char *empty_env[] = {"PGHOST=/nonexistent/pg", "RUNNER_DATABASE_URL=", NULL};

    /* no ./runner.yaml yet: PG* decide */
    expect_socket(pg_env, "/nonexistent/pg", NULL, NULL);
    th_write_file("runner.yaml",
                  "database:\n  url: \"postgresql:///x?host=/nonexistent/config\"\n");
    expect_socket(pg_env, "/nonexistent/config", NULL, NULL);
    expect_socket(empty_env, "/nonexistent/config", NULL, NULL); /* empty means unset */
    expect_socket(pg_env, "/nonexistent/other", "--config", other);
    expect_socket(pg_env, "/nonexistent/pg", "--config", no_url);
    expect_socket(all_env, "/nonexistent/env", NULL, NULL);
    expect_socket(all_env, "/nonexistent/env", "--config", other);
    expect_socket(all_env, "/nonexistent/flag", "--database-url",
                  "postgresql:///x?host=/nonexistent/flag");

    /* an invalid ./runner.yaml is read, and is a configuration error (2) */
    th_write_file("runner.yaml", "database:\n  urll: x\n");
    th_output o = th_run(CLI_TIMEOUT_MS, pg_env, "status", NULL);
    th_assert(o.exit_code == 2 && strstr(o.err, "runner.yaml:2:3") != NULL,
              "a bad ./runner.yaml: exit %d\n%s", o.exit_code, o.err);
}

#ifdef RUNNER_MAN_PAGE
/* The man page is built (scdoc) and has the sections of a command's manual, and a
 * command `runner --help` lists is documented in it. */
Test(cli, man_page, .init = th_setup, .fini = th_teardown, .timeout = 30)
{
    char *man = th_read_file(RUNNER_MAN_PAGE);
    th_assert(strstr(man, ".TH \"runner\" \"1\"") != NULL, "%s is not a roff page of runner(1)",
              RUNNER_MAN_PAGE);
    const char *sections[] = {"NAME",     "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS",
                              "COMMANDS", "SIGNALS",  "EXIT STATUS", "ENVIRONMENT",
                              "FILES",    "SEE ALSO"};
    for (size_t i = 0; i < ARRAY_LEN(sections); i++)
        th_assert(strstr(man, th_fmt("\n.SH %s\n", sections[i])) != NULL,
                  "the man page lacks the section %s", sections[i]);
    const char *words[] = {"SIGTERM",  "SIGINT",        "SIGHUP",        "RUNNER_DATABASE_URL",
                           "PGHOST",   "NOTIFY_SOCKET", "WATCHDOG_USEC", "--json",
                           "--config", "--database-url"};
    for (size_t i = 0; i < ARRAY_LEN(words); i++)
        th_assert(strstr(man, words[i]) != NULL, "the man page never mentions %s", words[i]);
    char names[32][32];
    int n = listed_commands(names, 32);
    for (int i = 0; i < n; i++)
        th_assert(strstr(man, th_fmt("\\fB%s\\fR", names[i])) != NULL,
                  "the man page does not document the command \"%s\"", names[i]);
}
#endif
