/* job.c - allocating and releasing claimed jobs and handler results. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* put copies s to *at and returns the copy, moving *at past it. */
static char *put(char **at, const char *s, size_t len)
{
    char *copy = *at;
    memcpy(copy, s, len + 1);
    *at += len + 1;
    return copy;
}

job *job_new(const char *queue, const char *kind, const char *args, const char *lease_owner)
{
    size_t lq = strlen(queue), lk = strlen(kind), la = strlen(args), lo = strlen(lease_owner);
    job *j = xcalloc(1, sizeof *j + lq + lk + la + lo + 4);
    char *at = (char *)(j + 1);
    j->queue = put(&at, queue, lq);
    j->kind = put(&at, kind, lk);
    j->args = put(&at, args, la);
    j->lease_owner = put(&at, lease_owner, lo);
    return j;
}

void job_free(job *j)
{
    free(j);
}

void job_result_free(job_result *r)
{
    if (!r)
        return;
    free(r->error);
    r->error = NULL;
}
