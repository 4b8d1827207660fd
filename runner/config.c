/* config.c - runner.yaml: each key declared once in a table, read with libyaml, checked whole. */
#include "config.h"
#include "backoff.h"
#include "cron.h"
#include "duration.h"
#include "http.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define SECOND DURATION_SECOND
#define DAY DURATION_DAY

#define PATH_LEN 256
#define ARGS_MAX_DEPTH 32
#define ARGS_MAX_BYTES (1 << 20) /* aliases can expand a small file into a huge tree */

/* The enums are stored through int pointers by the table. */
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum catch_up) == sizeof(int), "enum size");

/* One load: the document, the name that errors cite, and the caller's error buffer. */
typedef struct loader {
    yaml_document_t doc;
    const char *name;
    char *err;
    size_t errlen;
} loader;

/* The name, line and column (1-based) of node n, for "%s:%zu:%zu". */
#define AT(n) ld->name, (n)->start_mark.line + 1, (n)->start_mark.column + 1

typedef struct key_spec key_spec;
typedef int parse_fn(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target);

/* key_spec declares one key: its parser (its type) writes the value at base + offset. */
struct key_spec {
    const char *name;
    parse_fn *parse;
    size_t offset;
    int64_t min, max; /* bounds for integers; min for durations */
    const void *arg;  /* enum names, a sub-table, a named_spec */
    bool required;
};

/* named_spec describes kinds.<name> and schedules.<name>: how to append an element named
 * after its key, its keys, and the checks that span several keys. */
typedef struct named_spec {
    void *(*append)(config *c, const char *name);
    const key_spec *keys;
    int (*check)(loader *ld, const char *path, yaml_node_t *n, void *elem);
} named_spec;

static int bad(loader *ld, const char *path, yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* bad always returns -1. Saying so at every call lets the clang analyzer and gcc -O3,
 * which see into neither a variadic function nor errf, tell that a failed get_scalar
 * leaves nothing to read: without it, release builds warn maybe-uninitialized. */
#define bad(...) (bad(__VA_ARGS__), -1)

/* bad reports a bad value: could not parse "PATH" at FILE:LINE:COL: REASON. */
static int(bad)(loader *ld, const char *path, yaml_node_t *n, const char *fmt, ...)
{
    char reason[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return errf(ld->err, ld->errlen, "could not parse \"%s\" at %s:%zu:%zu: %s", path, AT(n),
                reason);
}

static yaml_node_t *node_at(loader *ld, yaml_node_item_t i)
{
    return yaml_document_get_node(&ld->doc, i);
}

/* is_null: an empty plain scalar, "~" or "null" (YAML 1.2 core schema). */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *describe(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return is_null(n) ? "null" : "a string";
}

/* get_scalar hands out the text of a non-null scalar, or reports that what is expected. */
static int get_scalar(loader *ld, const char *path, yaml_node_t *n, const char *what,
                      const char **out)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return bad(ld, path, n, "expected %s, got %s", what, describe(n));
    *out = (const char *)n->data.scalar.value;
    if (strlen(*out) != n->data.scalar.length)
        return bad(ld, path, n, "must not contain a NUL character");
    return 0;
}

/* map_get returns the value of key in mapping n, or NULL. */
static yaml_node_t *map_get(loader *ld, yaml_node_t *n, const char *key)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return node_at(ld, p->value);
    }
    return NULL;
}

static void join(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_LEN, "%s%s%s", path, *path ? "." : "", key);
}

/* map_key checks the key of pair p in mapping n: a non-empty string not seen before in n. */
static int map_key(loader *ld, const char *path, yaml_node_t *n, yaml_node_pair_t *p,
                   const char **key)
{
    yaml_node_t *kn = node_at(ld, p->key);
    if (kn->type != YAML_SCALAR_NODE || is_null(kn) || !kn->data.scalar.length)
        return errf(ld->err, ld->errlen,
                    "invalid key at %s:%zu:%zu: keys must be non-empty strings", AT(kn));
    *key = (const char *)kn->data.scalar.value;
    if (strlen(*key) != kn->data.scalar.length)
        return errf(ld->err, ld->errlen,
                    "invalid key at %s:%zu:%zu: keys must not contain a NUL character", AT(kn));
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
        if (strcmp((const char *)node_at(ld, q->key)->data.scalar.value, *key) == 0) {
            char child[PATH_LEN];
            join(child, path, *key);
            return errf(ld->err, ld->errlen, "duplicate key \"%s\" at %s:%zu:%zu", child, AT(kn));
        }
    }
    return 0;
}

/* walk_map parses mapping n (null counts as empty) with the key table into base. */
static int walk_map(loader *ld, const char *path, yaml_node_t *n, const key_spec *keys, void *base)
{
    if (n->type != YAML_MAPPING_NODE && !is_null(n))
        return bad(ld, path, n, "expected a mapping, got %s", describe(n));
    uint64_t seen = 0;
    if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            const char *key;
            char child[PATH_LEN];
            if (map_key(ld, path, n, p, &key) < 0)
                return -1;
            join(child, path, key);
            const key_spec *k = keys;
            while (k->name && strcmp(k->name, key) != 0)
                k++;
            if (!k->name)
                return errf(ld->err, ld->errlen, "unrecognized key \"%s\" at %s:%zu:%zu", child,
                            AT(node_at(ld, p->key)));
            seen |= 1ULL << (k - keys);
            if (k->parse(ld, k, child, node_at(ld, p->value), (char *)base + k->offset) < 0)
                return -1;
        }
    }
    for (const key_spec *k = keys; k->name; k++) {
        if (k->required && !(seen & (1ULL << (k - keys)))) {
            char child[PATH_LEN];
            join(child, path, k->name);
            return errf(ld->err, ld->errlen, "missing required key \"%s\" at %s:%zu:%zu", child,
                        AT(n));
        }
    }
    return 0;
}

/* Parsers, one per type of key. Each writes only after the value proved valid. */

static int parse_string(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                        void *target)
{
    (void)k;
    const char *s;
    if (get_scalar(ld, path, n, "a string", &s) < 0)
        return -1;
    if (!*s)
        return bad(ld, path, n, "must not be empty");
    char **dst = target;
    free(*dst);
    *dst = xstrdup(s);
    return 0;
}

static int parse_int(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target)
{
    const char *s;
    char *end;
    if (get_scalar(ld, path, n, "an integer", &s) < 0)
        return -1;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return bad(ld, path, n, "expected an integer, got a quoted string");
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return bad(ld, path, n, "invalid integer \"%s\"", s);
    if (errno == ERANGE || v < k->min || v > k->max)
        return bad(ld, path, n, "%s is out of range (%lld..%lld)", s, (long long)k->min,
                   (long long)k->max);
    *(int *)target = (int)v;
    return 0;
}

static int parse_duration(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                          void *target)
{
    const char *s;
    char reason[ERR_LEN], buf[32];
    int64_t ms;
    if (get_scalar(ld, path, n, "a duration", &s) < 0)
        return -1;
    if (duration_parse(s, &ms, reason, sizeof reason) < 0)
        return bad(ld, path, n, "%s", reason);
    if (ms < k->min && k->min == 1)
        return bad(ld, path, n, "must be greater than 0");
    if (ms < k->min)
        return bad(ld, path, n, "must be at least %s", duration_format(k->min, buf, sizeof buf));
    *(int64_t *)target = ms;
    return 0;
}

/* parse_enum: k->arg lists the accepted words, NULL-terminated, in enum order. */
static int parse_enum(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target)
{
    const char *const *names = k->arg;
    const char *s;
    if (get_scalar(ld, path, n, "a string", &s) < 0)
        return -1;
    for (int i = 0; names[i]; i++) {
        if (!strcmp(names[i], s)) {
            *(int *)target = i;
            return 0;
        }
    }
    strbuf sb;
    sb_init(&sb);
    for (int i = 0; names[i]; i++)
        sb_printf(&sb, "%s%s", i ? ", " : "", names[i]);
    int rc = bad(ld, path, n, "invalid value \"%s\" (expected %s)", s, sb.data);
    sb_free(&sb);
    return rc;
}

/* parse_section: a nested mapping whose keys fill the same struct (k->arg is its table). */
static int parse_section(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                         void *target)
{
    return walk_map(ld, path, n, k->arg, target);
}

/* parse_cron reads schedules.<name>.cron into the schedule's cron (the text) and, parsed
 * once here, its expr. */
static int parse_cron(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target)
{
    schedule_config *s = (schedule_config *)((char *)target - offsetof(schedule_config, cron));
    char reason[ERR_LEN];
    if (parse_string(ld, k, path, n, target) < 0)
        return -1;
    if (cron_parse(s->cron, &s->expr, reason, sizeof reason) < 0)
        return bad(ld, path, n, "%s", reason);
    return 0;
}

static int parse_timezone(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                          void *target)
{
    char reason[ERR_LEN];
    if (parse_string(ld, k, path, n, target) < 0)
        return -1;
    if (cron_tz_valid(*(char **)target, reason, sizeof reason) < 0)
        return bad(ld, path, n, "%s", reason);
    return 0;
}

/* parse_argv: a non-empty list of strings into a NULL-terminated argv. */
static int parse_argv(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target)
{
    (void)k;
    if (n->type != YAML_SEQUENCE_NODE)
        return bad(ld, path, n, "expected a list, got %s", describe(n));
    size_t len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (len == 0)
        return bad(ld, path, n, "must not be empty");
    char **argv = xcalloc(len + 1, sizeof *argv);
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        const char *s;
        char child[PATH_LEN];
        snprintf(child, sizeof child, "%s[%zu]", path, i);
        int rc = get_scalar(ld, child, item, "a string", &s);
        if (rc == 0 && i == 0 && !*s)
            rc = bad(ld, child, item, "must not be empty");
        if (rc < 0) {
            for (size_t j = 0; j < i; j++)
                free(argv[j]);
            free(argv);
            return -1;
        }
        argv[i] = xstrdup(s);
    }
    char ***dst = target;
    if (*dst) {
        for (char **a = *dst; *a; a++)
            free(*a);
        free(*dst);
    }
    *dst = argv;
    return 0;
}

/* is_json_number: the scalar is a JSON number as written (so "007", "+1", ".5" are not). */
static bool is_json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return false;
    if (*s == '.') {
        if (*++s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        if (*++s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static void json_string(strbuf *sb, const char *s, size_t len)
{
    sb_puts(sb, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc)
            sb_puts(sb, esc);
        else if (c < 0x20)
            sb_printf(sb, "\\u%04x", c);
        else
            sb_append(sb, (const char *)&s[i], 1);
    }
    sb_puts(sb, "\"");
}

/* to_json renders node n as JSON. Plain scalars that read as numbers, true, false or null
 * (YAML 1.2 core schema, restricted to what JSON can say) become literals; every other
 * scalar, and every quoted one, becomes a string. */
static int to_json(loader *ld, const char *path, yaml_node_t *n, strbuf *sb, int depth)
{
    if (depth > ARGS_MAX_DEPTH)
        return bad(ld, path, n, "nested too deeply");
    if (sb->len > ARGS_MAX_BYTES)
        return bad(ld, path, n, "too large");
    if (n->type == YAML_MAPPING_NODE) {
        sb_puts(sb, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            const char *key;
            char child[PATH_LEN];
            if (map_key(ld, path, n, p, &key) < 0)
                return -1;
            join(child, path, key);
            if (p > n->data.mapping.pairs.start)
                sb_puts(sb, ",");
            json_string(sb, key, node_at(ld, p->key)->data.scalar.length);
            sb_puts(sb, ":");
            if (to_json(ld, child, node_at(ld, p->value), sb, depth + 1) < 0)
                return -1;
        }
        sb_puts(sb, "}");
    } else if (n->type == YAML_SEQUENCE_NODE) {
        sb_puts(sb, "[");
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++) {
            char child[PATH_LEN];
            snprintf(child, sizeof child, "%s[%zu]", path,
                     (size_t)(i - n->data.sequence.items.start));
            if (i > n->data.sequence.items.start)
                sb_puts(sb, ",");
            if (to_json(ld, child, node_at(ld, *i), sb, depth + 1) < 0)
                return -1;
        }
        sb_puts(sb, "]");
    } else {
        const char *s = (const char *)n->data.scalar.value;
        bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (plain && is_null(n))
            sb_puts(sb, "null");
        else if (plain && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")))
            sb_puts(sb, "true");
        else if (plain && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")))
            sb_puts(sb, "false");
        else if (plain && is_json_number(s))
            sb_puts(sb, s);
        else if (strlen(s) != n->data.scalar.length)
            return bad(ld, path, n, "must not contain a NUL character"); /* jsonb refuses it */
        else
            json_string(sb, s, n->data.scalar.length);
    }
    return 0;
}

/* parse_args: a mapping (or null for "{}") rendered as JSON text. */
static int parse_args(loader *ld, const key_spec *k, const char *path, yaml_node_t *n, void *target)
{
    (void)k;
    strbuf sb;
    if (n->type != YAML_MAPPING_NODE && !is_null(n))
        return bad(ld, path, n, "expected a mapping, got %s", describe(n));
    sb_init(&sb);
    if (is_null(n))
        sb_puts(&sb, "{}");
    else if (to_json(ld, path, n, &sb, 0) < 0) {
        sb_free(&sb);
        return -1;
    }
    char **dst = target;
    free(*dst);
    *dst = sb.data;
    return 0;
}

/* KEY names a key, its parser and its target; bounds and flags follow as designators. */
#define KEY(n, fn, type, field) .name = n, .parse = fn, .offset = offsetof(type, field) // NOLINT(bugprone-macro-parentheses): offsetof takes a type and a member

static const key_spec queue_keys[] = {
    {KEY("name", parse_string, queue_config, name), .required = true},
    {KEY("concurrency", parse_int, queue_config, concurrency), .min = 1, .max = INT_MAX},
    {0},
};

/* parse_queues: worker.queues, each a name or {name, concurrency}. */
static int parse_queues(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                        void *target)
{
    (void)k;
    config *c = target;
    if (n->type != YAML_SEQUENCE_NODE)
        return bad(ld, path, n, "expected a list, got %s", describe(n));
    if (n->data.sequence.items.top == n->data.sequence.items.start)
        return bad(ld, path, n, "must list at least one queue");
    for (size_t i = 0; i < c->nqueues; i++)
        free(c->queues[i].name);
    c->nqueues = 0;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *item = node_at(ld, *i);
        queue_config q = {0};
        char child[PATH_LEN];
        snprintf(child, sizeof child, "%s[%zu]", path, (size_t)(i - n->data.sequence.items.start));
        int rc = item->type == YAML_MAPPING_NODE ? walk_map(ld, child, item, queue_keys, &q)
                                                 : parse_string(ld, NULL, child, item, &q.name);
        if (rc == 0 && config_queue_index(c, q.name) >= 0)
            rc = bad(ld, child, item, "duplicate queue \"%s\"", q.name);
        if (rc < 0) {
            free(q.name);
            return -1;
        }
        c->queues = xrealloc(c->queues, (c->nqueues + 1) * sizeof *c->queues);
        c->queues[c->nqueues++] = q;
    }
    return 0;
}

/* parse_named: kinds or schedules, a mapping of names to mappings (k->arg: named_spec). */
static int parse_named(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                       void *target)
{
    const named_spec *ns = k->arg;
    if (n->type != YAML_MAPPING_NODE && !is_null(n))
        return bad(ld, path, n, "expected a mapping, got %s", describe(n));
    if (n->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *name;
        char child[PATH_LEN];
        if (map_key(ld, path, n, p, &name) < 0)
            return -1;
        join(child, path, name);
        void *elem = ns->append(target, name);
        yaml_node_t *v = node_at(ld, p->value);
        if (walk_map(ld, child, v, ns->keys, elem) < 0 ||
            (ns->check && ns->check(ld, child, v, elem) < 0))
            return -1;
    }
    return 0;
}

static void *kind_append(config *c, const char *name)
{
    c->kinds = xrealloc(c->kinds, (c->nkinds + 1) * sizeof *c->kinds);
    kind_config *k = &c->kinds[c->nkinds++];
    *k = (kind_config){.name = xstrdup(name), .backoff_base_ms = BACKOFF_DEFAULT_BASE_MS,
                        .backoff_max_ms = BACKOFF_DEFAULT_MAX_MS};
    return k;
}

static int kind_check(loader *ld, const char *path, yaml_node_t *n, void *elem)
{
    kind_config *k = elem;
    char child[PATH_LEN], b1[32], b2[32];
    if (k->command && k->sql) {
        join(child, path, "sql");
        return bad(ld, child, map_get(ld, n, "sql"),
                   "a kind has either \"command\" or \"sql\", not both");
    }
    if (k->worker && (k->command || k->sql)) {
        join(child, path, "worker");
        return bad(ld, child, map_get(ld, n, "worker"),
                   "a kind has either \"worker\" or \"%s\", not both",
                   k->command ? "command" : "sql");
    }
    if (k->processes > 0 && !k->worker) {
        join(child, path, "processes");
        return bad(ld, child, map_get(ld, n, "processes"),
                   "\"processes\" applies only to a kind with \"worker\"");
    }
    if (k->worker && k->processes == 0)
        k->processes = 1;
    if (k->backoff_base_ms > k->backoff_max_ms) {
        join(child, path, "backoff");
        return bad(ld, child, map_get(ld, n, "backoff"), "base %s is greater than max %s",
                   duration_format(k->backoff_base_ms, b1, sizeof b1),
                   duration_format(k->backoff_max_ms, b2, sizeof b2));
    }
    return 0;
}

static void *schedule_append(config *c, const char *name)
{
    c->schedules = xrealloc(c->schedules, (c->nschedules + 1) * sizeof *c->schedules);
    schedule_config *s = &c->schedules[c->nschedules++];
    *s = (schedule_config){
        .name = xstrdup(name),
        .args_json = xstrdup("{}"),
        .queue = xstrdup("default"),
        .timezone = xstrdup("UTC"),
        .catch_up = CATCH_UP_LATEST,
    };
    return s;
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const catch_ups[] = {"latest", "all", "none", NULL};
static const char *const booleans[] = {"false", "true", NULL};

static const key_spec database_keys[] = {
    {KEY("url", parse_string, config, database_url)},
    {0},
};

static const key_spec worker_keys[] = {
    {.name = "queues", .parse = parse_queues},
    {KEY("concurrency", parse_int, config, concurrency), .min = 1, .max = 1000},
    {KEY("poll_interval", parse_duration, config, poll_interval_ms), .min = 1},
    {KEY("lease", parse_duration, config, lease_ms), .min = SECOND},
    {KEY("heartbeat", parse_duration, config, heartbeat_ms), .min = 1},
    {0},
};

static const key_spec shutdown_keys[] = {
    {KEY("grace", parse_duration, config, grace_ms), .min = 0},
    {KEY("kill_after", parse_duration, config, kill_after_ms), .min = 0},
    {0},
};

static const key_spec log_keys[] = {
    {KEY("level", parse_enum, config, log_level), .arg = log_levels},
    {KEY("format", parse_enum, config, log_format), .arg = log_formats},
    {0},
};

static const key_spec web_keys[] = {
    {KEY("listen", parse_string, config, web_listen)},
    {KEY("auth_file", parse_string, config, web_auth_file)},
    {KEY("hide_args", parse_enum, config, web_hide_args), .arg = booleans},
    {0},
};

static const key_spec backoff_keys[] = {
    {KEY("base", parse_duration, kind_config, backoff_base_ms), .min = 1},
    {KEY("max", parse_duration, kind_config, backoff_max_ms), .min = 1},
    {0},
};

static const key_spec kind_keys[] = {
    {KEY("command", parse_argv, kind_config, command)},
    {KEY("sql", parse_string, kind_config, sql)},
    {KEY("worker", parse_argv, kind_config, worker)},
    {KEY("processes", parse_int, kind_config, processes), .min = 1, .max = MAX_WORKER_PROCESSES},
    {KEY("timeout", parse_duration, kind_config, timeout_ms), .min = 0},
    {KEY("max_attempts", parse_int, kind_config, max_attempts), .min = 1, .max = 1000},
    {.name = "backoff", .parse = parse_section, .arg = backoff_keys},
    {0},
};

static const key_spec schedule_keys[] = {
    {KEY("cron", parse_cron, schedule_config, cron), .required = true},
    {KEY("kind", parse_string, schedule_config, kind), .required = true},
    {KEY("args", parse_args, schedule_config, args_json)},
    {KEY("queue", parse_string, schedule_config, queue)},
    {KEY("priority", parse_int, schedule_config, priority), .min = INT_MIN, .max = INT_MAX},
    {KEY("timezone", parse_timezone, schedule_config, timezone)},
    {KEY("catch_up", parse_enum, schedule_config, catch_up), .arg = catch_ups},
    {0},
};

/* parse_listen: a "HOST:PORT" address for a listener (http.listen); resolved at start. */
static int parse_listen(loader *ld, const key_spec *k, const char *path, yaml_node_t *n,
                        void *target)
{
    char host[HTTP_HOST_LEN], port[HTTP_PORT_LEN], reason[ERR_LEN];
    if (parse_string(ld, k, path, n, target) < 0)
        return -1;
    if (http_parse_listen(*(char **)target, host, sizeof host, port, sizeof port, reason,
                          sizeof reason) < 0)
        return bad(ld, path, n, "%s", reason);
    return 0;
}

static const key_spec http_keys[] = {
    {KEY("listen", parse_listen, config, http_listen)},
    {0},
};

static const named_spec kinds_spec = {kind_append, kind_keys, kind_check};
static const named_spec schedules_spec = {schedule_append, schedule_keys, NULL};

static const key_spec top_keys[] = {
    {.name = "database", .parse = parse_section, .arg = database_keys},
    {.name = "worker", .parse = parse_section, .arg = worker_keys},
    {KEY("retention", parse_duration, config, retention_ms), .min = 1},
    {.name = "shutdown", .parse = parse_section, .arg = shutdown_keys},
    {.name = "log", .parse = parse_section, .arg = log_keys},
    {.name = "kinds", .parse = parse_named, .arg = &kinds_spec},
    {.name = "schedules", .parse = parse_named, .arg = &schedules_spec},
    {.name = "http", .parse = parse_section, .arg = http_keys},
    {.name = "web", .parse = parse_section, .arg = web_keys},
    {0},
};

/* check_heartbeat fills the default heartbeat (lease / 3) or checks that the one given is
 * shorter than the lease, blaming whichever of the two keys comes later in the file. */
static int check_heartbeat(loader *ld, yaml_node_t *root, config *c)
{
    yaml_node_t *worker = map_get(ld, root, "worker");
    yaml_node_t *hb = map_get(ld, worker, "heartbeat");
    yaml_node_t *lease = map_get(ld, worker, "lease");
    char buf[32];
    if (!hb) {
        c->heartbeat_ms = c->lease_ms / 3;
        return 0;
    }
    if (c->heartbeat_ms < c->lease_ms)
        return 0;
    if (lease && lease->start_mark.index > hb->start_mark.index)
        return bad(ld, "worker.lease", lease, "must be longer than \"worker.heartbeat\" (%s)",
                   duration_format(c->heartbeat_ms, buf, sizeof buf));
    return bad(ld, "worker.heartbeat", hb, "must be shorter than \"worker.lease\" (%s)",
               duration_format(c->lease_ms, buf, sizeof buf));
}

void config_init(config *c)
{
    *c = (config){
        .concurrency = 20,
        .poll_interval_ms = SECOND,
        .lease_ms = 30 * SECOND,
        .heartbeat_ms = 10 * SECOND,
        .retention_ms = 7 * DAY,
        .grace_ms = 20 * SECOND,
        .kill_after_ms = 5 * SECOND,
        .log_level = LOG_INFO,
        .log_format = LOG_TEXT,
    };
    c->queues = xcalloc(1, sizeof *c->queues);
    c->queues[0].name = xstrdup("default");
    c->nqueues = 1;
}

void config_free(config *c)
{
    free(c->path);
    free(c->database_url);
    free(c->http_listen);
    for (size_t i = 0; i < c->nqueues; i++)
        free(c->queues[i].name);
    free(c->queues);
    for (size_t i = 0; i < c->nkinds; i++) {
        kind_config *k = &c->kinds[i];
        for (char **a = k->command; a && *a; a++)
            free(*a);
        free(k->command);
        for (char **a = k->worker; a && *a; a++)
            free(*a);
        free(k->worker);
        free(k->name);
        free(k->sql);
    }
    free(c->kinds);
    for (size_t i = 0; i < c->nschedules; i++) {
        schedule_config *s = &c->schedules[i];
        free(s->name);
        free(s->cron);
        free(s->kind);
        free(s->args_json);
        free(s->queue);
        free(s->timezone);
    }
    free(c->schedules);
    free(c->web_listen);
    free(c->web_auth_file);
    *c = (config){0};
}

const kind_config *config_kind(const config *c, const char *name)
{
    for (size_t i = 0; i < c->nkinds; i++)
        if (!strcmp(c->kinds[i].name, name))
            return &c->kinds[i];
    return NULL;
}

/* syntax_error reports libyaml's problem at its mark; reader errors (bad UTF-8) only know a
 * byte offset, so their line and column are counted from the text. */
static int syntax_error(loader *ld, const yaml_parser_t *p, const char *text, size_t len)
{
    size_t line = p->problem_mark.line, col = p->problem_mark.column;
    if (p->error == YAML_READER_ERROR) {
        line = col = 0;
        for (size_t i = 0; i < p->problem_offset && i < len; i++, col++) {
            if (text[i] == '\n') {
                line++;
                col = (size_t)-1;
            }
        }
    }
    return errf(ld->err, ld->errlen, "YAML syntax error at %s:%zu:%zu: %s", ld->name, line + 1,
                col + 1, p->problem ? p->problem : "out of memory");
}

int config_load_string(config *c, const char *yaml, size_t len, const char *name, char *err,
                       size_t errlen)
{
    loader state = {.name = name, .err = err, .errlen = errlen}, *ld = &state;
    yaml_parser_t parser;
    yaml_document_t extra;
    config tmp;
    bool have_doc = false, second;
    int rc = -1;

    config_init(&tmp);
    tmp.path = xstrdup(name);
    if (!yaml_parser_initialize(&parser)) {
        config_free(&tmp);
        return errf(err, errlen, "could not initialize the YAML parser");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &ld->doc)) {
        syntax_error(ld, &parser, yaml, len);
        goto done;
    }
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    if (root && is_null(root)) /* a lone "---" */
        root = NULL;
    if (root && root->type != YAML_MAPPING_NODE) {
        errf(err, errlen, "invalid configuration at %s:%zu:%zu: expected a mapping, got %s",
             AT(root), describe(root));
        goto done;
    }
    if (root && walk_map(ld, "", root, top_keys, &tmp) < 0)
        goto done;
    if (check_heartbeat(ld, root, &tmp) < 0)
        goto done;
    /* A second document would be silently ignored, so it is an error. */
    if (!yaml_parser_load(&parser, &extra)) {
        syntax_error(ld, &parser, yaml, len);
        goto done;
    }
    yaml_node_t *next = yaml_document_get_root_node(&extra);
    second = next != NULL;
    if (second)
        errf(err, errlen, "unexpected second YAML document at %s:%zu:%zu", AT(next));
    yaml_document_delete(&extra);
    if (second)
        goto done;
    config_free(c);
    *c = tmp;
    rc = 0;
done:
    if (rc < 0)
        config_free(&tmp);
    if (have_doc)
        yaml_document_delete(&ld->doc);
    yaml_parser_delete(&parser);
    return rc;
}

int config_load(config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
    strbuf sb;
    char buf[8192];
    size_t n;
    sb_init(&sb);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_append(&sb, buf, n);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        sb_free(&sb);
        return errf(err, errlen, "could not read \"%s\": %s", path, strerror(e));
    }
    fclose(f);
    int rc = config_load_string(c, sb.data ? sb.data : "", sb.len, path, err, errlen);
    sb_free(&sb);
    return rc;
}

int config_queue_index(const config *c, const char *queue)
{
    for (size_t i = 0; i < c->nqueues; i++)
        if (strcmp(c->queues[i].name, queue) == 0)
            return (int)i;
    return -1;
}

int config_queue_limit(const config *c, const char *queue)
{
    int i = config_queue_index(c, queue);
    return i < 0 ? 0 : c->queues[i].concurrency;
}
