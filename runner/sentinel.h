/* sentinel.h - a watcher process that kills job process groups if the runner dies. */
#ifndef RUNNER_SENTINEL_H
#define RUNNER_SENTINEL_H

#include <stddef.h>
#include <sys/types.h>

/* sentinel_start forks the sentinel; call before any thread exists. */
int sentinel_start(char *err, size_t errlen);
/* sentinel_stop lets the sentinel exit (it kills the groups still registered) and reaps
 * it. */
void sentinel_stop(void);

/* sentinel_watch / sentinel_forget register a job's process group while it runs. No-ops
 * when no sentinel is running. Thread-safe (one atomic pipe write each). */
void sentinel_watch(pid_t pgid);
void sentinel_forget(pid_t pgid);

#endif
