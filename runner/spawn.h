/* spawn.h - starting a child process: no shell, own process group, fds 0-2, exec report. */
#ifndef RUNNER_SPAWN_H
#define RUNNER_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What one of the child's fds 0-2 is. */
enum spawn_fd {
    SPAWN_INHERIT, /* the runner's own, as it is */
    SPAWN_PIPE,    /* a pipe to the caller */
};

/* What to start; spawn_start() copies what it keeps. */
typedef struct spawn_plan {
    char *const *argv;   /* argv[0] not NULL */
    char *const *envp;   /* NULL: the runner's environment */
    enum spawn_fd fd[3]; /* the child's stdin, stdout, stderr */
    bool want_pidfd;
} spawn_plan;

/* What the child writes to the report pipe when it cannot execute the command. */
struct spawn_report {
    int err;
    int index; /* candidate path that failed, -1 for the command name, -2 during setup */
};

/* A started child, as the parent sees it. pid, pidfd and the pipe ends are the caller's
 * to close; the rest is spawn.c's until spawn_release(). */
typedef struct spawn_child {
    pid_t pid;
    int pidfd;                          /* -1 when not asked for or unavailable */
    int stdin_fd, stdout_fd, stderr_fd; /* our pipe ends, non-blocking, close-on-exec; or -1 */
    int report_fd; /* the child's exec report, -1 once read (poll it for POLLIN) */
    struct spawn_report rep;
    size_t rep_got; /* bytes of rep read */
    char *name;     /* argv[0] */
    char **paths;   /* where execve() looked for it */
    size_t npaths;
} spawn_child;

/* spawn_start forks and runs plan->argv (no shell; argv[0] is looked up in PATH as
 * execvp() does, without its /bin/sh fallback) in its own process group, registered with
 * the sentinel, with PR_SET_PDEATHSIG(SIGKILL) tied to the calling thread, and fds 0-2 as
 * the plan says. The caller has blocked every signal. Returns 0 once the child is forked
 * (whether execve() succeeds is in its report: spawn_read_report(), spawn_wait_exec()),
 * or -1 with "could not create pipes: reason" or "could not fork: reason" in err and
 * nothing left to release. */
int spawn_start(const spawn_plan *plan, spawn_child *c, char *err, size_t errlen);

/* spawn_read_report reads what has come of the child's exec report, without blocking;
 * it closes c->report_fd at EOF (execve() succeeded, or the child died before it) or
 * once the report is whole. */
void spawn_read_report(spawn_child *c);

/* spawn_failure returns, if the child reported that it could not execute, why (malloc'd):
 * "could not execute \"path\": reason", or "could not set up the <what> for \"name\":
 * reason"; NULL otherwise. */
char *spawn_failure(const spawn_child *c, const char *what);

/* spawn_wait_exec waits for the child's report and releases c. Returns 0 when execve()
 * succeeded, or -1 with spawn_failure()'s text in err, the child reaped and forgotten by
 * the sentinel, and its fds closed. */
int spawn_wait_exec(spawn_child *c, const char *what, char *err, size_t errlen);

/* spawn_release frees what spawn.c holds in c (not pid, pidfd or the pipe ends). */
void spawn_release(spawn_child *c);

#endif
