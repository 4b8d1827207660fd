/* exec.h - the exec handler: runs a job's command as a child process. */
#ifndef RUNNER_EXEC_H
#define RUNNER_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#include "cancel.h"
#include "job.h"

/* Bytes of the child's stderr kept (the tail) for the error message. */
#define EXEC_STDERR_TAIL 2048

/* RUNNER_JOB_ARGS is set only when the args JSON is at most this many bytes (the kernel
 * caps one environment string at 128 KiB); stdin always carries the whole args. */
#define EXEC_ENV_ARGS_MAX (64 * 1024)

/* exec_run runs argv (no shell) for job j and fills res:
 * - the child gets the job's args JSON on stdin, the runner's environment plus
 *   RUNNER_JOB_ID/KIND/QUEUE/ATTEMPT/ARGS, its own process group, and PR_SET_PDEATHSIG
 *   so it dies with the runner;
 * - exit 0 -> JOB_COMPLETED; non-zero exit or death by signal -> JOB_RETRY with the
 *   status and the tail of stderr in res->error;
 * - timeout_ms > 0 elapsed -> SIGTERM to the group, SIGKILL after kill_after_ms,
 *   JOB_RETRY "timed out after ...";
 * - cancel fires -> same TERM/KILL sequence; outcome JOB_INTERRUPTED (shutdown),
 *   JOB_ABANDONED (lease lost) or JOB_CANCELLED (admin cancel).
 *   Once SIGTERM was sent the cause decides, even if the child then exits 0; a child that
 *   exits 0 before the cancel is acted on is JOB_COMPLETED. A token already cancelled on
 *   entry starts nothing (outcome per the reason, returns 0). A lost lease turns any
 *   failure into JOB_ABANDONED.
 * The child's stdout is passed through to the runner's stdout.
 * Returns 0, or -1 when the child could not be started (then res is JOB_RETRY too). */
int exec_run(char *const argv[], const job *j, int64_t timeout_ms, int64_t kill_after_ms,
             cancel_token *cancel, job_result *res);

/* Tests set this to exercise the fallback used where pidfd_open() is unavailable. */
extern bool exec_test_no_pidfd;

#endif
