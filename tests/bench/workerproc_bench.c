/* workerproc_bench.c - the worker process throughput figure: no-op jobs through a pool of
 * long-lived example workers against exec_run of the same no-op logic. No database.
 *
 *   workerproc_bench [JOBS]      (run from the source root, or set RUNNER_SOURCE_ROOT)
 *
 * The interpreter is $BENCH_PYTHON, else /usr/bin/python3 when it exists (a "python3"
 * found on PATH may be a version manager's shell shim that triples the start-up cost),
 * else python3.
 *
 * For worker.sh and worker.py, 4 threads (the runner's worker threads) push JOBS jobs in
 * total through workerproc_run on a pool with processes: 4; then the same 4 threads run
 * JOBS/10 jobs (JOBS/100 for Python, whose start costs ~30 ms) through exec_run with a
 * command that does what the worker does per job: read the args from stdin, do nothing.
 * Prints "RESULT key=value" lines: jobs/s of each and the ratio. A benchmark, not a
 * test: it never runs in meson test, and it asserts nothing about speed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "job.h"
#include "util.h"
#include "workerproc.h"

#define THREADS 4
#define PROCESSES 4

struct load {
    workerproc_pool *pool; /* NULL: exec_run of argv */
    char *const *argv;
    int first, count;
    int failed;
};

static void *push(void *arg)
{
    struct load *l = arg;
    for (int i = 0; i < l->count; i++) {
        job j = {.id = l->first + i,
                 .queue = "default",
                 .kind = "noop",
                 .args = "{}",
                 .attempt = 1,
                 .max_attempts = 1};
        job_result res;
        if (l->pool)
            workerproc_run(l->pool, &j, 0, NULL, &res);
        else
            exec_run(l->argv, &j, 0, 1000, NULL, &res);
        l->failed += res.outcome != JOB_COMPLETED;
        job_result_free(&res);
    }
    return NULL;
}

/* rate runs jobs on THREADS threads and returns jobs per second; exits on failures. */
static double rate(workerproc_pool *pool, char *const argv[], int jobs, const char *name)
{
    pthread_t t[THREADS];
    struct load l[THREADS];
    int64_t start = now_us();
    for (int i = 0; i < THREADS; i++) {
        l[i] = (struct load){
            .pool = pool, .argv = argv, .first = 1 + i * (jobs / THREADS), .count = jobs / THREADS};
        pthread_create(&t[i], NULL, push, &l[i]);
    }
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        failed += l[i].failed;
    }
    double secs = (double)(now_us() - start) / 1e6;
    if (failed) {
        fprintf(stderr, "workerproc_bench: %d of %d %s jobs failed\n", failed, jobs, name);
        exit(1);
    }
    return (jobs / THREADS) * THREADS / secs;
}

static void compare(const char *name, char *const worker[], char *const exec_argv[], int jobs,
                    int exec_jobs)
{
    char err[ERR_LEN];
    workerproc_pool *pool = workerproc_create("noop", worker, PROCESSES, 1000, err, sizeof err);
    if (!pool) {
        fprintf(stderr, "workerproc_bench: %s\n", err);
        exit(1);
    }
    rate(pool, NULL, THREADS * 10, name); /* start the processes: not part of the figure */
    double w = rate(pool, NULL, jobs, name);
    workerproc_destroy(pool, 5000);
    double e = rate(NULL, exec_argv, exec_jobs, name);
    printf("RESULT %s_worker_jobs_per_s=%.0f\n", name, w);
    printf("RESULT %s_exec_jobs_per_s=%.0f\n", name, e);
    printf("RESULT %s_ratio=%.1f\n", name, w / e);
}

int main(int argc, char **argv)
{
    int jobs = argc > 1 ? atoi(argv[1]) : 5000;
    if (jobs < THREADS * 10) {
        fprintf(stderr, "usage: workerproc_bench [JOBS >= %d]\n", THREADS * 10);
        return 2;
    }
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    root = root && *root ? root : ".";
    char *sh_path = xasprintf("%s/examples/workers/worker.sh", root);
    char *py_path = xasprintf("%s/examples/workers/worker.py", root);

    char *sh_worker[] = {"sh", sh_path, NULL};
    char *sh_exec[] = {"sh", "-c", "IFS= read -r args; exit 0", NULL};
    compare("sh", sh_worker, sh_exec, jobs, jobs / 10);

    char *python = getenv("BENCH_PYTHON");
    if (!python || !*python)
        python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char *py_worker[] = {python, py_path, NULL};
    char *py_exec[] = {python, "-c", "import json, sys; json.load(sys.stdin)", NULL};
    printf("RESULT python=%s\n", python);
    compare("python", py_worker, py_exec, jobs, jobs / 100);

    free(sh_path);
    free(py_path);
    return 0;
}
