/* workerproto.c - the worker process protocol: job and cancel lines out, answers in.
 *
 * DESIGN: jansson builds and parses every line; nothing here formats JSON by hand. Job
 * lines are compact with a fixed member order ("id" first, "args" last) because the
 * POSIX sh example worker finds both by pattern; the args are embedded as parsed JSON,
 * so whatever the job holds, the line is one line. Answers are strict: a line that is
 * not exactly one of the documented shapes is refused with a reason that quotes its
 * start, and the caller replaces the process (a worker that writes anything else to
 * stdout cannot be trusted to keep the one-answer-per-job rule). Texts that come back
 * are cut and made valid UTF-8 without NULs: they are stored as PostgreSQL text. */
#include "workerproto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIPPET_MAX 80 /* bytes of a refused line quoted in the error */

/* dump renders v compactly with a newline; takes v over. */
static char *dump(json_t *v, size_t *len)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *line = xmalloc(n + 2);
    memcpy(line, text, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    free(text); /* jansson's default allocator is malloc */
    *len = n + 1;
    return line;
}

char *workerproto_job_line(const job *j, int64_t timeout_ms, size_t *len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *args = json_loads(j->args ? j->args : "null", JSON_DECODE_ANY, &je);
    if (!args) {
        errf(err, errlen, "could not parse the job's args: %s", je.text);
        return NULL;
    }
    json_t *o = json_object();
    int bad = json_object_set_new(o, "id", json_integer(j->id));
    bad |= json_object_set_new(o, "kind", json_string(j->kind ? j->kind : ""));
    bad |= json_object_set_new(o, "queue", json_string(j->queue ? j->queue : ""));
    bad |= json_object_set_new(o, "attempt", json_integer(j->attempt));
    bad |= json_object_set_new(o, "deadline_ms",
                               timeout_ms > 0 ? json_integer(timeout_ms) : json_null());
    bad |= json_object_set_new(o, "args", args); /* last: see DESIGN */
    char *line = bad ? NULL : dump(o, len);
    if (bad)
        json_decref(o);
    if (!line)
        errf(err, errlen, "could not encode job %lld as JSON", (long long)j->id);
    return line;
}

char *workerproto_cancel_line(int64_t id, size_t *len)
{
    char *line = dump(json_pack("{s:I}", "cancel", (json_int_t)id), len);
    if (!line) /* only out of memory makes jansson fail here */
        abort();
    return line;
}

/* refuse fills err with why and the start of the line; returns -1. */
static int refuse(char *err, size_t errlen, const char *why, const char *line, size_t len)
{
    strbuf s;
    sb_init(&s);
    bool cut = sb_text(&s, line, len, SNIPPET_MAX);
    errf(err, errlen, "%s: \"%s%s\"", why, s.data ? s.data : "", cut ? "..." : "");
    sb_free(&s);
    return -1;
}

int workerproto_parse(const char *line, size_t len, workerproto_answer *a, char *err, size_t errlen)
{
    json_error_t je;
    char why[256];

    *a = (workerproto_answer){.retry_in_ms = -1};
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        snprintf(why, sizeof why, "worker process wrote a line that is not JSON (%s)", je.text);
        return refuse(err, errlen, why, line, len);
    }
    json_t *id = json_object_get(v, "id");
    json_t *ok = json_object_get(v, "ok");
    json_t *error = json_object_get(v, "error");
    json_t *discard = json_object_get(v, "discard");
    json_t *retry = json_object_get(v, "retry_in_ms");
    int rc = 0;
    if (!json_is_object(v) || !json_is_integer(id)) {
        rc = refuse(err, errlen,
                    "worker process wrote a line that is not an answer with an integer \"id\"",
                    line, len);
    } else if (json_is_true(ok) && !error) {
        a->id = json_integer_value(id);
        a->ok = true;
    } else if (json_is_string(error) && !json_is_true(ok) &&
               (!discard || json_is_boolean(discard)) &&
               (!retry || (json_is_integer(retry) && json_integer_value(retry) >= 0))) {
        strbuf text;
        sb_init(&text);
        if (sb_text(&text, json_string_value(error), json_string_length(error),
                    WORKERPROTO_ERROR_MAX - 3))
            sb_puts(&text, "...");
        a->id = json_integer_value(id);
        a->error = text.data ? text.data : xstrdup("");
        a->discard = json_is_true(discard);
        a->retry_in_ms = retry ? (int64_t)json_integer_value(retry) : -1;
    } else {
        rc = refuse(err, errlen,
                    "worker process wrote an invalid answer (it needs \"ok\": true, or an "
                    "\"error\" string with an optional boolean \"discard\" and a non-negative "
                    "integer \"retry_in_ms\")",
                    line, len);
    }
    json_decref(v);
    return rc;
}
