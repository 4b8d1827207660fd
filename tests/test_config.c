/* test_config.c - runner.yaml: defaults, every key, every error class with its position. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "duration.h"
#include "cron.h"
#include "util.h"

static const char *data_path(const char *file)
{
    static char path[1024];
    const char *dir = getenv("RUNNER_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/data", file);
    return path;
}

/* load parses yaml as if read from "runner.yaml"; the config must be freed. */
static int load(config *c, const char *yaml, char *err)
{
    config_init(c);
    return config_load_string(c, yaml, strlen(yaml), "runner.yaml", err, ERR_LEN);
}

/* expect_error checks that yaml fails with an error that contains want. */
static void expect_error(const char *yaml, const char *want)
{
    config c;
    char err[ERR_LEN] = "";
    int rc = load(&c, yaml, err);
    cr_expect_eq(rc, -1, "expected an error for:\n%s", yaml);
    cr_expect(strstr(err, want) != NULL, "error\n  %s\ndoes not contain\n  %s", err, want);
    config_free(&c);
}

/* expect_ok loads yaml and fails the test on error. */
static void expect_ok(config *c, const char *yaml)
{
    char err[ERR_LEN] = "";
    cr_assert_eq(load(c, yaml, err), 0, "unexpected error: %s", err);
}

static void check_defaults(const config *c)
{
    cr_expect_null(c->database_url);
    cr_assert_eq(c->nqueues, 1);
    cr_expect_str_eq(c->queues[0].name, "default");
    cr_expect_eq(c->queues[0].concurrency, 0);
    cr_expect_eq(c->concurrency, 20);
    cr_expect_eq(c->poll_interval_ms, 1000);
    cr_expect_eq(c->lease_ms, 30000);
    cr_expect_eq(c->heartbeat_ms, 10000);
    cr_expect_eq(c->retention_ms, 7LL * 24 * 3600 * 1000);
    cr_expect_eq(c->grace_ms, 20000);
    cr_expect_eq(c->kill_after_ms, 5000);
    cr_expect_eq(c->log_level, LOG_INFO);
    cr_expect_eq(c->log_format, LOG_TEXT);
    cr_expect_eq(c->nkinds, 0);
    cr_expect_eq(c->nschedules, 0);
}

Test(config, defaults)
{
    config c;
    config_init(&c);
    check_defaults(&c);
    cr_expect_null(c.path);
    config_free(&c);

    expect_ok(&c, "");
    check_defaults(&c);
    cr_expect_str_eq(c.path, "runner.yaml");
    config_free(&c);

    expect_ok(&c, "# only a comment\n---\n");
    check_defaults(&c);
    config_free(&c);

    expect_ok(&c, "---\n...\n");
    check_defaults(&c);
    config_free(&c);

    /* Empty sections are the same as absent ones. */
    expect_ok(&c, "worker:\nshutdown: {}\nkinds:\nschedules: ~\n");
    check_defaults(&c);
    config_free(&c);
}

Test(config, full_file)
{
    config c;
    char err[ERR_LEN] = "";
    config_init(&c);
    cr_assert_eq(config_load(&c, data_path("config_full.yaml"), err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.path, data_path("config_full.yaml"));
    cr_expect_str_eq(c.database_url, "postgresql://runner@db.internal/runner");

    cr_assert_eq(c.nqueues, 3);
    cr_expect_str_eq(c.queues[0].name, "default");
    cr_expect_eq(c.queues[0].concurrency, 0);
    cr_expect_str_eq(c.queues[1].name, "mail");
    cr_expect_eq(c.queues[1].concurrency, 4);
    cr_expect_str_eq(c.queues[2].name, "reports");
    cr_expect_eq(c.queues[2].concurrency, 1);
    cr_expect_eq(config_queue_limit(&c, "mail"), 4);
    cr_expect_eq(config_queue_limit(&c, "default"), 0);
    cr_expect_eq(config_queue_index(&c, "reports"), 2);
    cr_expect_eq(config_queue_index(&c, "nowhere"), -1);
    cr_expect_eq(c.concurrency, 50);
    cr_expect_eq(c.poll_interval_ms, 250);
    cr_expect_eq(c.lease_ms, 60000);
    cr_expect_eq(c.heartbeat_ms, 15000);
    cr_expect_eq(c.retention_ms, 14LL * 24 * 3600 * 1000);
    cr_expect_eq(c.grace_ms, 0);
    cr_expect_eq(c.kill_after_ms, 10000);
    cr_expect_eq(c.log_level, LOG_DEBUG);
    cr_expect_eq(c.log_format, LOG_JSON);

    cr_assert_eq(c.nkinds, 3);
    const kind_config *k = config_kind(&c, "resize");
    cr_assert_not_null(k);
    cr_assert_not_null(k->command);
    cr_expect_str_eq(k->command[0], "/usr/local/bin/resize");
    cr_expect_str_eq(k->command[1], "--quality");
    cr_expect_str_eq(k->command[2], "85");
    cr_expect_null(k->command[3]);
    cr_expect_null(k->sql);
    cr_expect_eq(k->timeout_ms, 600000);
    cr_expect_eq(k->max_attempts, 10);
    cr_expect_eq(k->backoff_base_ms, 2000);
    cr_expect_eq(k->backoff_max_ms, 5400000);

    k = config_kind(&c, "refresh_totals");
    cr_assert_not_null(k);
    cr_expect_null(k->command);
    cr_expect_str_eq(k->sql, "SELECT app.refresh_totals($1::jsonb)");
    cr_expect_eq(k->timeout_ms, 0);
    cr_expect_eq(k->max_attempts, 0);
    cr_expect_eq(k->backoff_base_ms, 1000);
    cr_expect_eq(k->backoff_max_ms, 3600000);

    k = config_kind(&c, "send_mail");
    cr_assert_not_null(k);
    cr_expect_null(k->command);
    cr_expect_null(k->sql);
    cr_expect_eq(k->max_attempts, 3);
    cr_expect_null(config_kind(&c, "nope"));

    cr_assert_eq(c.nschedules, 2);
    const schedule_config *s = &c.schedules[0];
    cr_expect_str_eq(s->name, "nightly_report");
    cr_expect_str_eq(s->cron, "0 3 * * *");
    cr_expect_str_eq(s->kind, "report");
    cr_expect_str_eq(s->args_json, "{\"format\":\"pdf\",\"pages\":12,\"draft\":false}");
    cr_expect_str_eq(s->queue, "reports");
    cr_expect_eq(s->priority, -5);
    cr_expect_str_eq(s->timezone, "Europe/Berlin");
    cr_expect_eq(s->catch_up, CATCH_UP_ALL);

    s = &c.schedules[1];
    cr_expect_str_eq(s->name, "heartbeat_ping");
    cr_expect_str_eq(s->cron, "@every 5m");
    cr_expect_str_eq(s->kind, "ping");
    cr_expect_str_eq(s->args_json, "{}");
    cr_expect_str_eq(s->queue, "default");
    cr_expect_eq(s->priority, 0);
    cr_expect_str_eq(s->timezone, "UTC");
    cr_expect_eq(s->catch_up, CATCH_UP_NONE);
    config_free(&c);
}

Test(config, kind_without_settings)
{
    config c;
    expect_ok(&c, "kinds:\n  thumbnail:\n  ocr: {}\n");
    cr_assert_eq(c.nkinds, 2);
    const kind_config *k = config_kind(&c, "thumbnail");
    cr_assert_not_null(k);
    cr_expect_null(k->command);
    cr_expect_null(k->sql);
    cr_expect_eq(k->timeout_ms, 0);
    cr_expect_eq(k->max_attempts, 0);
    cr_expect_eq(k->backoff_base_ms, 1000);
    cr_expect_eq(k->backoff_max_ms, 3600000);
    cr_expect_not_null(config_kind(&c, "ocr"));
    config_free(&c);
}

Test(config, missing_file)
{
    config c;
    char err[ERR_LEN] = "";
    config_init(&c);
    cr_expect_eq(config_load(&c, "/nonexistent/runner.yaml", err, sizeof err), -1);
    cr_expect_str_eq(err, "could not open \"/nonexistent/runner.yaml\": No such file or directory");
    check_defaults(&c);
    config_free(&c);
}

/* file_error loads a fixture and checks the whole message after the file name. */
static void file_error(const char *file, const char *before, const char *after)
{
    config c;
    char err[ERR_LEN] = "";
    const char *path = data_path(file);
    char *want = xasprintf("%s%s%s", before, path, after);
    config_init(&c);
    cr_expect_eq(config_load(&c, path, err, sizeof err), -1);
    cr_expect_str_eq(err, want);
    free(want);
    config_free(&c);
}

Test(config, errors_in_files)
{
    file_error("config_unknown_key.yaml", "unrecognized key \"worker.concurency\" at ", ":3:3");
    file_error("config_bad_duration.yaml", "could not parse \"worker.lease\" at ",
               ":4:12: invalid duration \"10x\": unrecognized unit \"x\"");
    file_error("config_syntax.yaml", "YAML syntax error at ", ":4:2: did not find expected key");
    file_error("config_bad_cron.yaml", "could not parse \"schedules.nightly.cron\" at ",
               ":4:11: day-of-month 32 out of range (1-31)");
}

Test(config, syntax_errors)
{
    expect_error("worker:\n  lease: 30s\n poll: 1s\n",
                 "YAML syntax error at runner.yaml:3:2: did not find expected key");
    expect_error("worker: {lease: 30s\n", "YAML syntax error at runner.yaml:2:1: ");
    expect_error("a: b: c\n", "YAML syntax error at runner.yaml:1:5: ");
    expect_error("log:\n  level: info\n  format: \"json\n",
                 "YAML syntax error at runner.yaml:4:1: found unexpected end of stream");
    /* Bad UTF-8 is only known by byte offset; the position is counted from the text. */
    expect_error("log:\n  level: \xff\n", "YAML syntax error at runner.yaml:2:10: ");
    expect_error("log: {}\n---\nlog: {}\n", "unexpected second YAML document at runner.yaml:3:1");
}

Test(config, unknown_keys)
{
    expect_error("worker:\n  concurrency: 5\n  concurency: 10\n",
                 "unrecognized key \"worker.concurency\" at runner.yaml:3:3");
    expect_error("jobs:\n  retention: 7d\n", "unrecognized key \"jobs\" at runner.yaml:1:1");
    expect_error("kinds:\n  a:\n    comand: [x]\n",
                 "unrecognized key \"kinds.a.comand\" at runner.yaml:3:5");
    expect_error("kinds:\n  a: {backoff: {base: 1s, min: 1s}}\n",
                 "unrecognized key \"kinds.a.backoff.min\" at runner.yaml:2:27");
    expect_error("schedules:\n  s: {cron: '* * * * *', kind: k, tz: UTC}\n",
                 "unrecognized key \"schedules.s.tz\" at runner.yaml:2:35");
    expect_error("worker:\n  queues:\n    - {name: a, limit: 2}\n",
                 "unrecognized key \"worker.queues[0].limit\" at runner.yaml:3:17");
    expect_error("? [a, b]\n: 1\n",
                 "invalid key at runner.yaml:1:3: keys must be non-empty strings");
}

Test(config, wrong_types)
{
    expect_error("[a, b]\n",
                 "invalid configuration at runner.yaml:1:1: expected a mapping, got a list");
    expect_error("just text\n", "expected a mapping, got a string");
    expect_error("worker: 5\n",
                 "could not parse \"worker\" at runner.yaml:1:9: expected a mapping, got a string");
    expect_error("worker:\n  concurrency: [1]\n",
                 "could not parse \"worker.concurrency\" at runner.yaml:2:16: expected an integer, "
                 "got a list");
    expect_error("worker:\n  concurrency: \"20\"\n",
                 "could not parse \"worker.concurrency\" at runner.yaml:2:16: expected an integer, "
                 "got a quoted string");
    expect_error(
        "worker:\n  concurrency: twenty\n",
        "could not parse \"worker.concurrency\" at runner.yaml:2:16: invalid integer \"twenty\"");
    expect_error("worker:\n  concurrency: 1.5\n", "invalid integer \"1.5\"");
    expect_error(
        "worker:\n  queues: default\n",
        "could not parse \"worker.queues\" at runner.yaml:2:11: expected a list, got a string");
    expect_error(
        "worker:\n  queues: [a, [b]]\n",
        "could not parse \"worker.queues[1]\" at runner.yaml:2:15: expected a string, got a list");
    expect_error(
        "database:\n  url:\n",
        "could not parse \"database.url\" at runner.yaml:2:7: expected a string, got null");
    expect_error(
        "kinds:\n  a:\n    command: /bin/true\n",
        "could not parse \"kinds.a.command\" at runner.yaml:3:14: expected a list, got a string");
    expect_error("kinds:\n  a:\n    command: [/bin/echo, {a: 1}]\n",
                 "could not parse \"kinds.a.command[1]\" at runner.yaml:3:26: expected a string, "
                 "got a mapping");
    expect_error("kinds: [a]\n",
                 "could not parse \"kinds\" at runner.yaml:1:8: expected a mapping, got a list");
    expect_error(
        "kinds:\n  a: 1\n",
        "could not parse \"kinds.a\" at runner.yaml:2:6: expected a mapping, got a string");
    expect_error(
        "schedules:\n  s: {cron: '@daily', kind: k, args: [1]}\n",
        "could not parse \"schedules.s.args\" at runner.yaml:2:38: expected a mapping, got a list");
    expect_error(
        "log:\n  level: [info]\n",
        "could not parse \"log.level\" at runner.yaml:2:10: expected a string, got a list");
    expect_error(
        "retention: {days: 7}\n",
        "could not parse \"retention\" at runner.yaml:1:12: expected a duration, got a mapping");
}

Test(config, bad_values)
{
    expect_error(
        "worker:\n  concurrency: 0\n",
        "could not parse \"worker.concurrency\" at runner.yaml:2:16: 0 is out of range (1..1000)");
    expect_error("worker:\n  concurrency: 1001\n", "1001 is out of range (1..1000)");
    expect_error("worker:\n  concurrency: 99999999999999999999\n", "is out of range (1..1000)");
    expect_error(
        "worker:\n  poll_interval: 0\n",
        "could not parse \"worker.poll_interval\" at runner.yaml:2:18: must be greater than 0");
    expect_error("worker:\n  lease: 999ms\n",
                 "could not parse \"worker.lease\" at runner.yaml:2:10: must be at least 1s");
    expect_error("worker:\n  lease: 10\n",
                 "could not parse \"worker.lease\" at runner.yaml:2:10: invalid duration \"10\": a "
                 "duration needs a unit (ms, s, m, h, d)");
    expect_error(
        "worker:\n  queues: []\n",
        "could not parse \"worker.queues\" at runner.yaml:2:11: must list at least one queue");
    expect_error("worker:\n  queues: [\"\"]\n",
                 "could not parse \"worker.queues[0]\" at runner.yaml:2:12: must not be empty");
    expect_error(
        "worker:\n  queues: [{name: a, concurrency: 0}]\n",
        "could not parse \"worker.queues[0].concurrency\" at runner.yaml:2:35: 0 is out of range");
    expect_error("retention: 0\n",
                 "could not parse \"retention\" at runner.yaml:1:12: must be greater than 0");
    expect_error("log:\n  level: verbose\n",
                 "could not parse \"log.level\" at runner.yaml:2:10: invalid value \"verbose\" "
                 "(expected debug, info, warn, error)");
    expect_error("log:\n  format: xml\n", "invalid value \"xml\" (expected text, json)");
    expect_error("kinds:\n  a: {max_attempts: 0}\n",
                 "could not parse \"kinds.a.max_attempts\" at runner.yaml:2:21: 0 is out of range "
                 "(1..1000)");
    expect_error("kinds:\n  a: {max_attempts: 1001}\n", "1001 is out of range (1..1000)");
    expect_error("kinds:\n  a: {timeout: -5s}\n",
                 "could not parse \"kinds.a.timeout\" at runner.yaml:2:16: invalid duration "
                 "\"-5s\": must not be negative");
    expect_error("kinds:\n  a:\n    command: []\n",
                 "could not parse \"kinds.a.command\" at runner.yaml:3:14: must not be empty");
    expect_error("kinds:\n  a:\n    command: ['']\n",
                 "could not parse \"kinds.a.command[0]\" at runner.yaml:3:15: must not be empty");
    expect_error("kinds:\n  a:\n    sql: ''\n",
                 "could not parse \"kinds.a.sql\" at runner.yaml:3:10: must not be empty");
    expect_error("kinds:\n  a:\n    command: [/bin/true]\n    sql: SELECT 1\n",
                 "could not parse \"kinds.a.sql\" at runner.yaml:4:10: a kind has either "
                 "\"command\" or \"sql\", not both");
    expect_error(
        "kinds:\n  a:\n    backoff: {base: 2h, max: 1h}\n",
        "could not parse \"kinds.a.backoff\" at runner.yaml:3:14: base 2h is greater than max 1h");
    expect_error("kinds:\n  a:\n    backoff: {base: 2h}\n", "base 2h is greater than max 1h");
    expect_error(
        "kinds:\n  a:\n    backoff: {base: 0}\n",
        "could not parse \"kinds.a.backoff.base\" at runner.yaml:3:21: must be greater than 0");
    expect_error("schedules:\n  s: {cron: '@daily', kind: k, catch_up: first}\n",
                 "could not parse \"schedules.s.catch_up\" at runner.yaml:2:42: invalid value "
                 "\"first\" (expected latest, all, none)");
    expect_error(
        "schedules:\n  s: {cron: '@daily', kind: k, priority: high}\n",
        "could not parse \"schedules.s.priority\" at runner.yaml:2:42: invalid integer \"high\"");
}

/* The cron and time zone reasons come from cron.c; the test asks it for the wording. */
Test(config, bad_cron_and_timezone)
{
    char reason[ERR_LEN], want[2 * ERR_LEN];
    cron_expr e;
    cr_assert_eq(cron_parse("61 * * * *", &e, reason, sizeof reason), -1);
    snprintf(want, sizeof want, "could not parse \"schedules.s.cron\" at runner.yaml:3:11: %s",
             reason);
    expect_error("schedules:\n  s:\n    cron: \"61 * * * *\"\n    kind: k\n", want);

    cr_assert_eq(cron_tz_valid("Mars/Olympus_Mons", reason, sizeof reason), -1);
    snprintf(want, sizeof want, "could not parse \"schedules.s.timezone\" at runner.yaml:2:42: %s",
             reason);
    expect_error("schedules:\n  s: {cron: '@daily', kind: k, timezone: Mars/Olympus_Mons}\n", want);
}

Test(config, duplicate_keys)
{
    expect_error("worker:\n  lease: 30s\n  lease: 40s\n",
                 "duplicate key \"worker.lease\" at runner.yaml:3:3");
    expect_error("log: {}\nworker: {}\nlog: {}\n", "duplicate key \"log\" at runner.yaml:3:1");
    expect_error("kinds:\n  a: {}\n  a: {}\n", "duplicate key \"kinds.a\" at runner.yaml:3:3");
    expect_error("schedules:\n  s: {cron: '@daily', kind: k, args: {a: 1, a: 2}}\n",
                 "duplicate key \"schedules.s.args.a\" at runner.yaml:2:45");
    expect_error("worker:\n  queues: [a, b, a]\n",
                 "could not parse \"worker.queues[2]\" at runner.yaml:2:18: duplicate queue \"a\"");
    expect_error("worker:\n  queues:\n    - a\n    - {name: a, concurrency: 2}\n",
                 "could not parse \"worker.queues[1]\" at runner.yaml:4:7: duplicate queue \"a\"");
}

Test(config, missing_required_keys)
{
    expect_error("schedules:\n  s:\n    kind: k\n",
                 "missing required key \"schedules.s.cron\" at runner.yaml:3:5");
    expect_error("schedules:\n  s: {cron: '@daily'}\n",
                 "missing required key \"schedules.s.kind\" at runner.yaml:2:6");
    expect_error("schedules:\n  s:\n",
                 "missing required key \"schedules.s.cron\" at runner.yaml:2:5");
    expect_error("worker:\n  queues: [{concurrency: 2}]\n",
                 "missing required key \"worker.queues[0].name\" at runner.yaml:2:12");
}

Test(config, durations)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {
        {"250ms", 250},   {"10s", 10000},    {"5m", 300000},
        {"1h", 3600000},  {"2d", 172800000}, {"1h30m", 5400000},
        {"0", 0},         {"0s", 0},         {"1d2h3m4s5ms", 93784005},
        {"1m30s", 90000},
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        int64_t ms = -1;
        char err[ERR_LEN] = "";
        cr_expect_eq(duration_parse(good[i].text, &ms, err, sizeof err), 0, "%s: %s", good[i].text,
                     err);
        cr_expect_eq(ms, good[i].ms, "%s: got %lld", good[i].text, (long long)ms);
    }

    static const struct {
        const char *text, *err;
    } badv[] = {
        {"", "invalid duration \"\": expected a number and a unit, e.g. \"10s\""},
        {"10", "invalid duration \"10\": a duration needs a unit (ms, s, m, h, d)"},
        {"1h30", "invalid duration \"1h30\": a duration needs a unit (ms, s, m, h, d)"},
        {"x", "invalid duration \"x\": expected a number at \"x\""},
        {"10x", "invalid duration \"10x\": unrecognized unit \"x\""},
        {"10sec", "invalid duration \"10sec\": unrecognized unit \"sec\""},
        {"-1s", "invalid duration \"-1s\": must not be negative"},
        {"1.5s", "invalid duration \"1.5s\": a duration needs a unit (ms, s, m, h, d)"},
        {" 10s", "invalid duration \" 10s\": expected a number at \" 10s\""},
        {"9223372036854775808ms", "invalid duration \"9223372036854775808ms\": out of range"},
        {"9223372036854775807s", "invalid duration \"9223372036854775807s\": out of range"},
        {"106751991168d", "invalid duration \"106751991168d\": out of range"},
        {"9223372036854775807ms1ms", "invalid duration \"9223372036854775807ms1ms\": out of range"},
    };
    for (size_t i = 0; i < ARRAY_LEN(badv); i++) {
        int64_t ms = -1;
        char err[ERR_LEN] = "";
        int want = strstr(badv[i].err, "out of range") ? DURATION_RANGE : DURATION_INVALID;
        cr_expect_eq(duration_parse(badv[i].text, &ms, err, sizeof err), want, "%s", badv[i].text);
        cr_expect_str_eq(err, badv[i].err);
        cr_expect_eq(ms, -1, "%s: output written on error", badv[i].text);
    }

    int64_t ms;
    cr_expect_eq(duration_parse("9223372036854775807ms", &ms, NULL, 0), 0);
    cr_expect_eq(ms, INT64_MAX);

    /* Quoted or plain, a YAML scalar is read the same way. */
    config c;
    expect_ok(&c, "worker:\n  poll_interval: \"1h30m\"\n  lease: 2d\nshutdown:\n  grace: 0\n");
    cr_expect_eq(c.poll_interval_ms, 5400000);
    cr_expect_eq(c.lease_ms, 172800000);
    cr_expect_eq(c.grace_ms, 0);
    config_free(&c);
    expect_error("shutdown:\n  grace: ''\n",
                 "could not parse \"shutdown.grace\" at runner.yaml:2:10: invalid duration \"\"");
}

Test(config, heartbeat_defaults_to_a_third_of_the_lease)
{
    config c;
    expect_ok(&c, "worker:\n  lease: 45s\n");
    cr_expect_eq(c.lease_ms, 45000);
    cr_expect_eq(c.heartbeat_ms, 15000);
    config_free(&c);

    expect_ok(&c, "worker:\n  lease: 1s\n");
    cr_expect_eq(c.heartbeat_ms, 333);
    config_free(&c);

    expect_ok(&c, "worker:\n  lease: 1m\n  heartbeat: 59s\n");
    cr_expect_eq(c.heartbeat_ms, 59000);
    config_free(&c);
}

Test(config, heartbeat_must_be_shorter_than_lease)
{
    expect_error("worker:\n  heartbeat: 30s\n",
                 "could not parse \"worker.heartbeat\" at runner.yaml:2:14: must be shorter than "
                 "\"worker.lease\" (30s)");
    expect_error("worker:\n  lease: 10s\n  heartbeat: 15s\n",
                 "could not parse \"worker.heartbeat\" at runner.yaml:3:14: must be shorter than "
                 "\"worker.lease\" (10s)");
    /* When the lease comes later, the lease is what made the pair inconsistent. */
    expect_error("worker:\n  heartbeat: 10s\n  lease: 10s\n",
                 "could not parse \"worker.lease\" at runner.yaml:3:10: must be longer than "
                 "\"worker.heartbeat\" (10s)");
    expect_error(
        "worker:\n  heartbeat: 0\n",
        "could not parse \"worker.heartbeat\" at runner.yaml:2:14: must be greater than 0");
}

/* args_json loads a schedule whose args are the given flow or block text. */
static void expect_args(const char *args_yaml, const char *json)
{
    config c;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "schedules:\n  s:\n    cron: '@hourly'\n    kind: k\n    args: %s\n", args_yaml);
    expect_ok(&c, yaml);
    cr_assert_eq(c.nschedules, 1);
    cr_expect_str_eq(c.schedules[0].args_json, json, "args %s", args_yaml);
    config_free(&c);
}

Test(config, args_to_json)
{
    expect_args("{}", "{}");
    expect_args("", "{}");
    expect_args("{n: 42, neg: -7, f: 1.5, e: 2e10, z: 0}",
                "{\"n\":42,\"neg\":-7,\"f\":1.5,\"e\":2e10,\"z\":0}");
    expect_args("{t: true, f: false, T: True, n: null, tilde: ~, empty: }",
                "{\"t\":true,\"f\":false,\"T\":true,\"n\":null,\"tilde\":null,\"empty\":null}");
    /* Quoted scalars stay strings; so do words YAML 1.1 would have made booleans. */
    expect_args(
        "{q: \"42\", s: 'true', yes: yes, off: off, zip: 007, plus: +1, dot: .5, inf: .inf}",
        "{\"q\":\"42\",\"s\":\"true\",\"yes\":\"yes\",\"off\":\"off\",\"zip\":\"007\","
        "\"plus\":\"+1\",\"dot\":\".5\",\"inf\":\".inf\"}");
    expect_args("{s: \"quote \\\" backslash \\\\ tab \\t nl \\n bell \\a\"}",
                "{\"s\":\"quote \\\" backslash \\\\ tab \\t nl \\n bell \\u0007\"}");
    expect_args("{\"key \\\"q\\\"\": 1, 3: x}", "{\"key \\\"q\\\"\":1,\"3\":\"x\"}");
    expect_args("{unicode: \"h\xc3\xa9llo \xe2\x82\xac\"}",
                "{\"unicode\":\"h\xc3\xa9llo \xe2\x82\xac\"}");
    expect_args("{list: [1, two, [3], {four: 4}], map: {a: {b: {c: []}}}}",
                "{\"list\":[1,\"two\",[3],{\"four\":4}],\"map\":{\"a\":{\"b\":{\"c\":[]}}}}");
    expect_args("\n      format: pdf\n      pages:\n        - 1\n        - 2\n      note: |\n      "
                "  two\n        lines\n",
                "{\"format\":\"pdf\",\"pages\":[1,2],\"note\":\"two\\nlines\\n\"}");
    expect_args("{a: &x [1, 2], b: *x}", "{\"a\":[1,2],\"b\":[1,2]}");

    /* An alias of its own ancestor would recurse forever. */
    expect_error("schedules:\n  s:\n    cron: '@hourly'\n    kind: k\n    args: {a: &x [*x]}\n",
                 "could not parse \"schedules.s.args.a");
    expect_error("schedules:\n  s:\n    cron: '@hourly'\n    kind: k\n    args: {a: &x [*x]}\n",
                 "nested too deeply");
    expect_error("schedules:\n  s:\n    cron: '@hourly'\n    kind: k\n    args: {[1]: x}\n",
                 "invalid key at runner.yaml:5:12: keys must be non-empty strings");
}

Test(config, failed_load_keeps_previous_config)
{
    config c;
    char err[ERR_LEN] = "";
    expect_ok(&c, "worker:\n  concurrency: 7\nkinds:\n  a: {sql: SELECT 1}\n");
    const char *bad = "worker:\n  concurrency: 8\nkinds:\n  b: {sql: SELECT 2}\n  c: {nope: 1}\n";
    cr_expect_eq(config_load_string(&c, bad, strlen(bad), "runner.yaml", err, sizeof err), -1);
    cr_expect_eq(c.concurrency, 7);
    cr_assert_eq(c.nkinds, 1);
    cr_expect_str_eq(c.kinds[0].name, "a");
    config_free(&c);
    config_free(&c); /* freeing twice is harmless */
}
