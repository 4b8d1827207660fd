/* job.c - releasing what a claimed job and a handler's result own. */
#include "job.h"

#include <stdlib.h>

void job_free(job *j)
{
    if (!j)
        return;
    free(j->queue);
    free(j->kind);
    free(j->args);
    free(j->lease_owner);
    free(j);
}

void job_result_free(job_result *r)
{
    if (!r)
        return;
    free(r->error);
    r->error = NULL;
}
