/* noop_runner.c - a runner whose kinds "noop" (plain C) and "noop_tx" (transactional C) do
 * nothing: the benchmark's way to measure the runner's own overhead. Stops on SIGTERM.
 * usage: noop_runner DATABASE_URL [CONFIG_YAML]
 *
 * With BENCH_STAMPS=FILE in the environment the "noop" handler also notes the wall-clock
 * time (CLOCK_REALTIME, microseconds) at which it was called for each job, and the
 * program writes "id microseconds" lines to FILE after runner_run returns. The benchmark
 * compares them with the jobs' created_at: the database server runs on the same host, so
 * its now() reads the same clock. At most MAX_STAMPS jobs are noted. */
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runner.h"

#define MAX_STAMPS 65536

typedef struct stamp {
    int64_t id;
    int64_t us;
} stamp;

static stamp *stamps;
static atomic_size_t nstamps;

static runner_outcome noop(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)ctx;
    (void)userdata;
    if (stamps) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        size_t i = atomic_fetch_add(&nstamps, 1);
        if (i < MAX_STAMPS)
            stamps[i] = (stamp){.id = job->id, .us = ts.tv_sec * 1000000 + ts.tv_nsec / 1000};
    }
    return RUNNER_JOB_SUCCESS;
}

static int write_stamps(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t n = atomic_load(&nstamps);
    if (n > MAX_STAMPS)
        n = MAX_STAMPS;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%lld %lld\n", (long long)stamps[i].id, (long long)stamps[i].us);
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: noop_runner DATABASE_URL [CONFIG_YAML]\n");
        return 2;
    }
    mallopt(M_ARENA_MAX, 2); /* as `runner run` does (runner/main.c) */
    const char *stamp_path = getenv("BENCH_STAMPS");
    if (stamp_path && *stamp_path) {
        stamps = calloc(MAX_STAMPS, sizeof *stamps);
        if (!stamps) {
            fprintf(stderr, "noop_runner: out of memory\n");
            return 1;
        }
    }
    char err[RUNNER_ERR_LEN];
    runner *r = argc > 2
                    ? runner_create(argv[2], err, sizeof err)
                    : runner_create_from_yaml("log: {level: warn}\n", "<bench>", err, sizeof err);
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
    if (stamps && write_stamps(stamp_path) < 0)
        rc = RUNNER_ERR_SYSTEM;
    free(stamps);
    return rc == RUNNER_OK ? 0 : 1;
}
