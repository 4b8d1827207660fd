/* noop_runner.c - a runner whose kinds "noop" (plain C) and "noop_tx" (transactional C) do
 * nothing: the benchmark's way to measure the runner's own overhead. Stops on SIGTERM.
 * usage: noop_runner DATABASE_URL [CONFIG_YAML] */
#include <stdio.h>
#include <stdlib.h>

#include "runner.h"

static runner_outcome noop(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)ctx;
    (void)job;
    (void)userdata;
    return RUNNER_JOB_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: noop_runner DATABASE_URL [CONFIG_YAML]\n");
        return 2;
    }
    char err[RUNNER_ERR_LEN];
    runner *r = argc > 2 ? runner_create(argv[2], err, sizeof err)
                         : runner_create_from_yaml("log: {level: warn}\n", "<bench>", err,
                                                   sizeof err);
    if (!r) {
        fprintf(stderr, "noop_runner: %s\n", err);
        return 2;
    }
    runner_set_database_url(r, argv[1]);
    runner_register(r, "noop", noop, NULL);
    runner_register_tx(r, "noop_tx", noop, NULL);
    int rc = runner_run(r, err, sizeof err);
    if (rc != RUNNER_OK)
        fprintf(stderr, "noop_runner: %s\n", err);
    runner_destroy(r);
    return rc == RUNNER_OK ? 0 : 1;
}
