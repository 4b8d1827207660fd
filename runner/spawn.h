/* spawn.h - starting one worker process: argv, own process group, pipes on 0-2. */
#ifndef RUNNER_SPAWN_H
#define RUNNER_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct spawn_child {
    pid_t pid;
    int pidfd;                          /* -1 when not asked for or unavailable */
    int stdin_fd, stdout_fd, stderr_fd; /* our ends: non-blocking, close-on-exec */
} spawn_child;

/* spawn_start runs argv (no shell; PATH searched as execvp() does, without its
 * /bin/sh fallback) with the runner's environment, in its own process group, registered
 * with the sentinel, with PR_SET_PDEATHSIG(SIGKILL) tied to the calling thread, and
 * pipes on its stdin, stdout and stderr. It returns once execve() has succeeded (0, c
 * filled) or failed (-1, "could not execute \"path\": reason" in err, the child reaped).
 * The caller reaps the child and calls sentinel_forget(c->pid) once it has exited. */
int spawn_start(char *const argv[], bool want_pidfd, spawn_child *c, char *err,
                      size_t errlen);

#endif
