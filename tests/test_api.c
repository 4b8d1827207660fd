/* test_api.c - the public C API (include/runner.h) where it needs no server: error codes
 * and their strings, handler registration, configuration errors, and the checks
 * runner_run and runner_enqueue make before touching a database. */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

static const int codes[] = {RUNNER_OK,         RUNNER_ERR_CONFIG, RUNNER_ERR_DB,
                            RUNNER_ERR_SCHEMA, RUNNER_ERR_SYSTEM, RUNNER_ERR_STATE,
                            RUNNER_ERR_ARGS,   RUNNER_ERR_EXISTS};
#define NCODES (sizeof codes / sizeof codes[0])

static runner_outcome nop(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)ctx;
    (void)job;
    (void)userdata;
    return RUNNER_JOB_SUCCESS;
}

/* expect_location asserts that err names file:line:column of the given file. */
static void expect_location(const char *err, const char *file)
{
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s:[0-9]+:[0-9]+", file);
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, err, 0, NULL, 0);
    regfree(&re);
    cr_assert_eq(rc, 0, "error does not name %s:line:column: \"%s\"", file, err);
}

Test(api, strerror_every_code_distinct)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = runner_strerror(codes[i]);
        cr_assert(s != NULL && s[0] != '\0', "runner_strerror(%d) is empty", codes[i]);
        for (size_t k = 0; k < i; k++)
            cr_assert(strcmp(s, runner_strerror(codes[k])) != 0,
                      "runner_strerror(%d) and runner_strerror(%d) are both \"%s\"", codes[i],
                      codes[k], s);
    }
    /* the codes are fixed values: append only */
    cr_assert_eq(RUNNER_ERR_EXISTS, -7);
    const char *unknown = runner_strerror(-1000);
    cr_assert(unknown != NULL && unknown[0] != '\0', "runner_strerror of an unknown code");
    for (size_t i = 0; i < NCODES; i++)
        cr_assert(strcmp(unknown, runner_strerror(codes[i])) != 0,
                  "an unknown code reads like code %d", codes[i]);
}

/* The values are ABI (append only) and the strings are what programs print: both fixed. */
Test(api, error_codes_fixed)
{
    static const struct {
        int code, value;
        const char *text;
    } want[] = {
        {RUNNER_OK, 0, "success"},
        {RUNNER_ERR_CONFIG, -1, "invalid configuration"},
        {RUNNER_ERR_DB, -2, "database error"},
        {RUNNER_ERR_SCHEMA, -3, "database schema mismatch"},
        {RUNNER_ERR_SYSTEM, -4, "system error"},
        {RUNNER_ERR_STATE, -5, "not allowed in this state"},
        {RUNNER_ERR_ARGS, -6, "invalid argument"},
        {RUNNER_ERR_EXISTS, -7, "already registered"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(want[i].code, want[i].value, "code \"%s\" changed its value", want[i].text);
        cr_assert_str_eq(runner_strerror(want[i].code), want[i].text);
    }
    cr_assert_str_eq(runner_strerror(1), "unrecognized error code");
    cr_assert_str_eq(runner_strerror(-1000), "unrecognized error code");
}

Test(api, register_twice_is_exists)
{
    char err[RUNNER_ERR_LEN] = "";
    runner *r = runner_create(NULL, err, sizeof err);
    cr_assert_not_null(r, "runner_create(NULL) failed: %s", err);
    cr_assert_eq(runner_register(r, "mail", nop, NULL), RUNNER_OK);
    cr_assert_eq(runner_register(r, "mail", nop, NULL), RUNNER_ERR_EXISTS);
    cr_assert_eq(runner_register_tx(r, "mail", nop, NULL), RUNNER_ERR_EXISTS,
                 "a transactional handler may not replace a plain one");
    cr_assert_eq(runner_register_tx(r, "ledger", nop, NULL), RUNNER_OK);
    cr_assert_eq(runner_register_tx(r, "ledger", nop, NULL), RUNNER_ERR_EXISTS);
    cr_assert_eq(runner_register(r, "ledger", nop, NULL), RUNNER_ERR_EXISTS);
    cr_assert_eq(runner_register(r, "", nop, NULL), RUNNER_ERR_ARGS);
    cr_assert_eq(runner_register(r, NULL, nop, NULL), RUNNER_ERR_ARGS);
    cr_assert_eq(runner_register(r, "other", NULL, NULL), RUNNER_ERR_ARGS);
    runner_destroy(r);
    runner_destroy(NULL);
}

Test(api, bad_yaml_text_names_line_and_column)
{
    char err[RUNNER_ERR_LEN] = "";
    runner *r = runner_create_from_yaml("worker:\n  concurrency: 5\n poll_interval: 1s\n",
                                        "app.yaml", err, sizeof err);
    cr_assert_null(r, "a YAML syntax error was accepted");
    expect_location(err, "app\\.yaml");
    cr_assert(strstr(err, "app.yaml:3:2") != NULL, "syntax error not at 3:2: \"%s\"", err);

    r = runner_create_from_yaml("worker:\n  concurency: 5\n", "app.yaml", err, sizeof err);
    cr_assert_null(r, "an unrecognized key was accepted");
    cr_assert(strstr(err, "worker.concurency") != NULL && strstr(err, "app.yaml:2:3") != NULL,
              "unrecognized key error: \"%s\"", err);

    r = runner_create_from_yaml("kinds:\n  x:\n    timeout: soon\n", "app.yaml", err, sizeof err);
    cr_assert_null(r, "a bad duration was accepted");
    expect_location(err, "app\\.yaml");
}

Test(api, bad_yaml_file_names_line_and_column)
{
    const char *data = getenv("RUNNER_TEST_DATA");
    cr_assert(data != NULL, "RUNNER_TEST_DATA is not set: run through meson test");
    char path[1024], err[RUNNER_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/config_syntax.yaml", data);
    runner *r = runner_create(path, err, sizeof err);
    cr_assert_null(r, "runner_create accepted %s", path);
    expect_location(err, "config_syntax\\.yaml");
    cr_assert(strstr(err, ":4:2") != NULL, "error not at line 4, column 2: \"%s\"", err);

    r = runner_create("/nonexistent/runner.yaml", err, sizeof err);
    cr_assert_null(r, "runner_create accepted a missing file");
    cr_assert(strstr(err, "/nonexistent/runner.yaml") != NULL, "missing file not named: \"%s\"",
              err);
}

/* runner_run refuses what it cannot run before it connects anywhere: the URL points at
 * nothing, so reaching the database would show up as RUNNER_ERR_DB. */
Test(api, run_checks_kinds_before_connecting)
{
    char err[RUNNER_ERR_LEN] = "";
    runner *r = runner_create_from_yaml("log: {level: error}\n", "app.yaml", err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    runner_set_database_url(r, "postgresql:///none?host=/nonexistent");
    cr_assert_eq(runner_run(r, err, sizeof err), RUNNER_ERR_CONFIG, "no kinds: %s", err);
    cr_assert(err[0] != '\0', "no message for a runner without kinds");
    runner_destroy(r);

    r = runner_create_from_yaml("log: {level: error}\nkinds: {orphan: {timeout: 1s}}\n", "app.yaml",
                                err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    runner_set_database_url(r, "postgresql:///none?host=/nonexistent");
    cr_assert_eq(runner_run(r, err, sizeof err), RUNNER_ERR_CONFIG, "kind without handler");
    cr_assert(strstr(err, "orphan") != NULL, "error does not name the kind: \"%s\"", err);
    runner_destroy(r);

    r = runner_create_from_yaml("log: {level: error}\nkinds: {both: {sql: \"SELECT 1\"}}\n",
                                "app.yaml", err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(runner_register_tx(r, "both", nop, NULL), RUNNER_OK);
    runner_set_database_url(r, "postgresql:///none?host=/nonexistent");
    cr_assert_eq(runner_run(r, err, sizeof err), RUNNER_ERR_CONFIG,
                 "a kind with both a handler and sql");
    cr_assert(strstr(err, "both") != NULL, "error does not name the kind: \"%s\"", err);
    runner_destroy(r);
}

Test(api, enqueue_checks_arguments)
{
    char err[RUNNER_ERR_LEN] = "";
    int64_t id = 0;
    cr_assert_eq(runner_enqueue(NULL, "mail", "{}", NULL, &id, err, sizeof err), RUNNER_ERR_ARGS);
    cr_assert(err[0] != '\0', "no message for a NULL connection");
}
