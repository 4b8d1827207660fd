/* fuzz_config.c - libFuzzer target: arbitrary bytes through the runner.yaml loader. */
#include "fuzz.h"

#include "config.h"
#include "cron.h"
#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// DESIGN: the loader must never crash or leak on any input (ASan/LSan/UBSan see to that),
// and it keeps two contracts the fuzzer can check: an error names the place it was found
// as FILE:LINE:COL, and a loaded configuration is valid as a whole (the checks below are
// what the rest of the runner relies on without checking again).

#define NAME "fuzz.yaml"

static void fail(const char *what, const char *detail, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_config: %s: %s\ninput (%zu bytes):\n", what, detail, size);
    fwrite(data, 1, size, stderr);
    fputs("\n", stderr);
    abort();
}

/* read_number reads a positive decimal number at *p, advancing *p past it. */
static bool read_number(const char **p, unsigned long long *out)
{
    char *end;
    if (**p < '1' || **p > '9')
        return false;
    *out = strtoull(*p, &end, 10);
    *p = end;
    return true;
}

/* has_position: err names NAME:LINE:COL with 1 <= LINE, COL <= size + 2 (libyaml may point
 * one past the last line or column at the end of the input). */
static bool has_position(const char *err, size_t size)
{
    for (const char *p = strstr(err, NAME ":"); p; p = strstr(p + 1, NAME ":")) {
        const char *q = p + strlen(NAME ":");
        unsigned long long line, col;
        if (read_number(&q, &line) && *q++ == ':' && read_number(&q, &col) && line <= size + 2 &&
            col <= size + 2)
            return true;
    }
    return false;
}

/* JSON validation of args_json: the loader renders YAML args to JSON text that goes to
 * PostgreSQL as jsonb, so it must be well formed, and free of \u0000 (jsonb rejects it:
 * "unsupported Unicode escape sequence"). */

static const char *json_value(const char *s, int depth);

static bool json_has_nul; /* a string held \u0000, which jsonb rejects */

static const char *json_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return s;
}

static const char *json_string_end(const char *s)
{
    if (*s++ != '"')
        return NULL;
    for (;;) {
        unsigned char c = (unsigned char)*s++;
        if (c == '"')
            return s;
        if (c < 0x20)
            return NULL; /* includes the terminating NUL */
        if (c == '\\') {
            c = (unsigned char)*s++;
            if (c == 'u') {
                if (!strncmp(s, "0000", 4))
                    json_has_nul = true;
                for (int i = 0; i < 4; i++, s++)
                    if (!*s || !strchr("0123456789abcdefABCDEF", *s))
                        return NULL;
            } else if (!c || !strchr("\"\\/bfnrt", c)) {
                return NULL;
            }
        }
    }
}

static const char *json_number_end(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return NULL;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return NULL;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return NULL;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return s;
}

/* json_container reads an object (open '{') or an array (open '['). */
static const char *json_container(const char *s, char open, int depth)
{
    char close = open == '{' ? '}' : ']';
    s = json_ws(s + 1);
    if (*s == close)
        return s + 1;
    for (;;) {
        if (open == '{') {
            s = json_string_end(s);
            if (!s)
                return NULL;
            s = json_ws(s);
            if (*s++ != ':')
                return NULL;
        }
        s = json_value(s, depth + 1);
        if (!s)
            return NULL;
        s = json_ws(s);
        if (*s == close)
            return s + 1;
        if (*s++ != ',')
            return NULL;
        s = json_ws(s);
    }
}

static const char *json_value(const char *s, int depth)
{
    if (depth > 100)
        return NULL;
    s = json_ws(s);
    if (*s == '{' || *s == '[')
        return json_container(s, *s, depth);
    if (*s == '"')
        return json_string_end(s);
    if (!strncmp(s, "true", 4))
        return s + 4;
    if (!strncmp(s, "false", 5))
        return s + 5;
    if (!strncmp(s, "null", 4))
        return s + 4;
    return json_number_end(s);
}

static bool json_object_valid(const char *s)
{
    json_has_nul = false;
    if (*json_ws(s) != '{')
        return false;
    const char *end = json_value(s, 0);
    return end && !*json_ws(end);
}

/* check_config: what a successful load promises (config.h, the README). */
static void check_config(const config *c, const uint8_t *data, size_t size)
{
    char err[ERR_LEN];
#define CHECK(cond, detail)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail("invalid configuration accepted", detail, data, size);                            \
    } while (0)

    CHECK(c->path && !strcmp(c->path, NAME), "path");
    CHECK(c->nqueues >= 1, "queue count");
    for (size_t i = 0; i < c->nqueues; i++) {
        CHECK(c->queues[i].name && *c->queues[i].name, "queue name");
        CHECK(c->queues[i].concurrency >= 0, "queue concurrency");
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(c->queues[i].name, c->queues[j].name) != 0, "duplicate queue");
    }
    CHECK(c->concurrency >= 1 && c->concurrency <= 1000, "concurrency");
    CHECK(c->poll_interval_ms > 0, "poll_interval");
    CHECK(c->lease_ms >= 1000, "lease");
    CHECK(c->heartbeat_ms > 0 && c->heartbeat_ms < c->lease_ms, "heartbeat vs lease");
    CHECK(c->retention_ms > 0, "retention");
    CHECK(c->grace_ms >= 0 && c->kill_after_ms >= 0, "shutdown durations");
    CHECK(c->log_level >= LOG_DEBUG && c->log_level <= LOG_ERROR, "log.level");
    CHECK(c->log_format == LOG_TEXT || c->log_format == LOG_JSON, "log.format");
    CHECK(c->database_url == NULL || *c->database_url, "database.url");

    for (size_t i = 0; i < c->nkinds; i++) {
        const kind_config *k = &c->kinds[i];
        CHECK(k->name && *k->name, "kind name");
        CHECK(!(k->command && k->sql), "kind with both command and sql");
        CHECK(!k->command || (k->command[0] && *k->command[0]), "empty argv");
        CHECK(!k->sql || *k->sql, "empty sql");
        CHECK(k->timeout_ms >= 0, "timeout");
        CHECK(k->max_attempts >= 0 && k->max_attempts <= 1000, "max_attempts");
        CHECK(k->backoff_base_ms > 0 && k->backoff_base_ms <= k->backoff_max_ms, "backoff");
        CHECK(config_kind(c, k->name) != NULL, "config_kind");
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(k->name, c->kinds[j].name) != 0, "duplicate kind");
    }
    for (size_t i = 0; i < c->nschedules; i++) {
        const schedule_config *s = &c->schedules[i];
        cron_expr e;
        CHECK(s->name && *s->name, "schedule name");
        CHECK(s->cron && cron_parse(s->cron, &e, err, sizeof err) == 0, "schedule cron");
        CHECK(s->kind && *s->kind, "schedule kind");
        CHECK(s->queue && *s->queue, "schedule queue");
        CHECK(s->timezone && cron_tz_valid(s->timezone, err, sizeof err) == 0, "timezone");
        CHECK(s->catch_up >= CATCH_UP_LATEST && s->catch_up <= CATCH_UP_NONE, "catch_up");
        CHECK(s->args_json && json_object_valid(s->args_json), "args is not a JSON object");
        CHECK(!json_has_nul, "args hold a NUL character, which jsonb cannot store");
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s->name, c->schedules[j].name) != 0, "duplicate schedule");
    }
#undef CHECK
}

int fuzz_config_one(const uint8_t *data, size_t size)
{
    config c;
    char err[ERR_LEN];

    memset(err, 'x', sizeof err); /* an error must be written, and terminated */
    config_init(&c);
    int rc = config_load_string(&c, (const char *)data, size, NAME, err, sizeof err);
    if (rc == 0) {
        check_config(&c, data, size);
    } else {
        if (rc != -1)
            fail("unexpected return code", "not 0 or -1", data, size);
        if (!memchr(err, '\0', sizeof err))
            fail("error message not set or not terminated", "", data, size);
        if (!has_position(err, size))
            fail("error does not name " NAME ":LINE:COL", err, data, size);
        /* The contract: on error c is as config_init left it. */
        if (c.nqueues != 1 || strcmp(c.queues[0].name, "default") != 0 || c.nkinds || c.nschedules ||
            c.path || c.database_url)
            fail("failed load changed the configuration", err, data, size);
    }
    config_free(&c);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_config_one(data, size);
}
#endif
