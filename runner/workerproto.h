/* workerproto.h - the worker process protocol: job and cancel lines out, answers in. */
#ifndef RUNNER_WORKERPROTO_H
#define RUNNER_WORKERPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "util.h"

/* Bytes of a process's error text kept in the job's error; longer texts are cut. */
#define WORKERPROTO_ERROR_MAX 2048

/* What a process answered for a job. */
typedef struct workerproto_answer {
    int64_t id;
    bool ok;             /* {"ok": true}; else error is set */
    char *error;         /* malloc'd, valid UTF-8 without NULs, at most WORKERPROTO_ERROR_MAX */
    bool discard;        /* "discard": true */
    int64_t retry_in_ms; /* "retry_in_ms", -1 when absent */
} workerproto_answer;

/* workerproto_job_line renders j as the line that hands it to a process, newline
 * included: compact JSON with the members in this order, which a worker without a JSON
 * parser relies on: {"id":..,"kind":..,"queue":..,"attempt":..,"deadline_ms":..,"args":..}.
 * deadline_ms is timeout_ms, or null when it is 0. Returns the malloc'd line (its length
 * in *len), or NULL with err filled when the args are not JSON or a name not UTF-8. */
char *workerproto_job_line(const job *j, int64_t timeout_ms, size_t *len, char *err, size_t errlen);

/* workerproto_cancel_line renders {"cancel":id} and its newline (malloc'd). */
char *workerproto_cancel_line(int64_t id, size_t *len);

/* workerproto_parse reads one line a process wrote (without its newline) into a.
 * Returns 0, or -1 with why the line is no answer in err ("... is not JSON (...)",
 * "... not an answer with an integer \"id\"", "... invalid answer ..."), quoting the
 * line's start. a->error is the caller's to free. */
int workerproto_parse(const char *line, size_t len, workerproto_answer *a, char *err,
                      size_t errlen);

#endif
