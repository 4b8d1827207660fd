/* spawn.c - starting one worker process: argv, own process group, pipes on 0-2.
 *
 * DESIGN: fork() from a threaded process. Everything the child needs (the candidate paths
 * of a PATH search, argv, the default sigaction, the empty mask) is built before fork();
 * the child then makes only async-signal-safe calls until execve(), because another
 * thread may have held the malloc or stdio lock at the moment of the fork. It calls
 * setpgid(0, 0) (the parent repeats it to close the race), so a Ctrl+C reaches the runner
 * only and signals can address the whole group; it asks for PR_SET_PDEATHSIG(SIGKILL),
 * which the kernel ties to the forking *thread* (for worker processes the pool's
 * supervisor, which lives as long as the pool), and exits at once if the runner died
 * before that; it resets every signal disposition (an ignored SIGPIPE would survive
 * execve()) and marks its fds >= 3 close-on-exec. All our fds are O_CLOEXEC from the
 * start, so a sibling thread's fork never keeps our pipes past its own exec. A failed
 * execve() is reported through a CLOEXEC pipe: EOF means it succeeded. This mirrors
 * exec.c's spawning; the two could share one module. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sentinel.h"
#include "util.h"

extern char **environ;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* What the child writes to the report pipe when it cannot execute the command. */
struct spawn_report {
    int err;
    int index; /* candidate path that failed, -1 for the command name, -2 during setup */
};

/* Everything the child uses between fork() and execve(), prepared beforehand. */
struct spawn_plan {
    char **paths;
    size_t npaths;
    bool search;
    char *const *argv;
    pid_t parent;
    int fds[3]; /* the child's stdin, stdout, stderr */
    int report_fd;
    int fd_limit;
    struct sigaction dfl;
    sigset_t empty;
};

static _Noreturn void child_fail(int fd, int err, int index)
{
    struct spawn_report rep = {err, index};
    ssize_t n = write(fd, &rep, sizeof rep);
    (void)n;
    _exit(127);
}

/* move_high returns a close-on-exec copy of fd numbered >= 3, so the dup2() onto 0-2
 * cannot clobber another of our fds. */
static int move_high(int fd, int report_fd)
{
    if (fd >= 3)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        child_fail(report_fd, errno, -2);
    return nfd;
}

/* child_exec runs in the forked child: only async-signal-safe calls from here on. */
static _Noreturn void child_exec(const struct spawn_plan *p)
{
    int rep = p->report_fd;

    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(rep, errno, -2);
    if (getppid() != p->parent)
        _exit(127); /* the runner died before prctl(): the signal will never come */
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &p->dfl, NULL); /* SIG_IGN (SIGPIPE) would survive execve() */

    rep = move_high(rep, rep);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = move_high(p->fds[i], rep);
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            child_fail(rep, errno, -2);
    bool marked = false;
#ifdef SYS_close_range
    marked = syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
#endif
    if (!marked)
        for (int fd = 3; fd < p->fd_limit; fd++)
            if (fd != rep)
                close(fd);
    sigprocmask(SIG_SETMASK, &p->empty, NULL);

    int eacces = -1;
    for (size_t i = 0; i < p->npaths; i++) {
        execve(p->paths[i], p->argv, environ);
        int e = errno;
        if (!p->search)
            child_fail(rep, e, (int)i);
        if (e == EACCES)
            eacces = eacces < 0 ? (int)i : eacces;
        else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT)
            child_fail(rep, e, (int)i);
    }
    child_fail(rep, eacces >= 0 ? EACCES : ENOENT, eacces);
}

/* plan_paths lists where execve() should look for name, the way execvp() would (but
 * never falling back to /bin/sh). */
static void plan_paths(struct spawn_plan *p, const char *name)
{
    p->search = strchr(name, '/') == NULL && *name != '\0';
    if (!p->search) {
        p->paths = xcalloc(1, sizeof(char *));
        p->paths[0] = xstrdup(name);
        p->npaths = 1;
        return;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t n = 1;
    for (const char *s = path; *s; s++)
        n += *s == ':';
    p->paths = xcalloc(n, sizeof(char *));
    for (const char *dir = path;; dir++) {
        size_t len = strcspn(dir, ":");
        p->paths[p->npaths++] =
            len == 0 ? xstrdup(name) : xasprintf("%.*s/%s", (int)len, dir, name);
        dir += len;
        if (*dir == '\0')
            break;
    }
}

static void free_plan(struct spawn_plan *p)
{
    for (size_t i = 0; i < p->npaths; i++)
        free(p->paths[i]);
    free(p->paths);
}

int spawn_start(char *const argv[], bool want_pidfd, spawn_child *c, char *err,
                      size_t errlen)
{
    struct spawn_plan plan = {0};
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, rep[2] = {-1, -1};
    char ebuf[128];
    int rc = -1;

    if (!argv || !argv[0] || !argv[0][0])
        return errf(err, errlen, "empty worker command");
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0 ||
        pipe2(rep, O_CLOEXEC) < 0) {
        errf(err, errlen, "could not create pipes: %s", strerror_r(errno, ebuf, sizeof ebuf));
        goto out;
    }
    plan_paths(&plan, argv[0]);
    plan.argv = argv;
    plan.parent = getpid();
    plan.fds[0] = in[0];
    plan.fds[1] = out[1];
    plan.fds[2] = er[1];
    plan.report_fd = rep[1];
    plan.dfl.sa_handler = SIG_DFL;
    sigemptyset(&plan.dfl.sa_mask);
    sigemptyset(&plan.empty);
    struct rlimit rl;
    plan.fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1 << 20) ? (int)rl.rlim_cur
                                                                                  : (1 << 20);

    pid_t pid = fork();
    if (pid == 0)
        child_exec(&plan);
    if (pid < 0) {
        errf(err, errlen, "could not fork: %s", strerror_r(errno, ebuf, sizeof ebuf));
        goto out;
    }
    setpgid(pid, pid); /* also done by the child; fails harmlessly once it exec'd */
    sentinel_watch(pid);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&er[1]);
    close_fd(&rep[1]);

    /* EOF: execve() succeeded (the pipe is CLOEXEC); a report: it failed. */
    struct spawn_report r;
    ssize_t got;
    do
        got = read(rep[0], &r, sizeof r);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof r) {
        const char *name =
            r.index >= 0 && (size_t)r.index < plan.npaths ? plan.paths[r.index] : argv[0];
        errf(err, errlen, "%s \"%s\": %s",
             r.index == -2 ? "could not set up the worker process for" : "could not execute", name,
             strerror_r(r.err, ebuf, sizeof ebuf));
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        sentinel_forget(pid);
        goto out;
    }

    c->pid = pid;
    c->pidfd = -1;
#ifdef SYS_pidfd_open
    if (want_pidfd)
        c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* O_CLOEXEC */
#endif
    c->stdin_fd = in[1];
    c->stdout_fd = out[0];
    c->stderr_fd = er[0];
    fcntl(c->stdin_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->stdout_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->stderr_fd, F_SETFL, O_NONBLOCK);
    in[1] = out[0] = er[0] = -1;
    rc = 0;

out:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&er[i]);
        close_fd(&rep[i]);
    }
    free_plan(&plan);
    return rc;
}
