/* spawn.c - starting a child process: no shell, own process group, fds 0-2, exec report. */

/*
 * DESIGN
 *
 * Two uses. exec.c starts one child per job (stdin a pipe fed the args, stdout the
 * runner's own, stderr a pipe for the tail, the runner's environment plus RUNNER_JOB_*)
 * and reads the exec report in the poll() that also watches the job's timeout and cancel.
 * workerproc.c starts long-lived worker processes (three pipes, the runner's environment)
 * and waits for the report before it hands the process a job.
 *
 * fork() in a threaded process. Everything the child needs (candidate paths for the PATH
 * search, argv, envp, the default sigaction, the empty mask) is built before fork(); the
 * child then only makes async-signal-safe calls until execve(), because another thread may
 * have held the malloc or stdio lock at the moment of the fork. The caller blocks all
 * signals across fork() so no runner handler can run in the child before it resets
 * dispositions (an ignored SIGPIPE would survive execve()). Every fd we create is
 * O_CLOEXEC, so a sibling thread forking at the same time never keeps our pipes past its
 * exec, and the child marks all its fds >= 3 close-on-exec (close_range) for fds other
 * code opened without the flag.
 *
 * Process groups. The child calls setpgid(0, 0) and the parent repeats setpgid(pid, pid)
 * to close the race: a Ctrl+C delivered to the terminal's foreground group reaches the
 * runner only, and the callers signal the whole group. The group is registered with the
 * sentinel, which kills it should the runner die.
 *
 * Dying with the runner. PR_SET_PDEATHSIG(SIGKILL) kills the child when the runner dies.
 * The kernel ties it to the *thread* that forked, so each caller forks from a thread that
 * outlives its children: exec.c from the worker thread that waits for the job, workerproc.c
 * from the pool's supervisor. The child checks getppid() against the pid captured before
 * fork(): if the runner died before prctl(), the signal will never come, so the child
 * exits at once.
 *
 * Exec failure. The child reports errno through a CLOEXEC pipe: EOF means execve()
 * succeeded, a report means it failed; the PATH search follows execvp() (EACCES
 * remembered, ENOENT-like errors skipped) but never falls back to /bin/sh on ENOEXEC.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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

/* Everything the child uses between fork() and execve(), prepared beforehand. */
struct child_plan {
    char *const *paths; /* candidates to execve() in order */
    size_t npaths;
    bool search; /* paths came from a PATH search (execvp error rules apply) */
    char *const *argv;
    char *const *envp;
    pid_t parent;
    int fd[3]; /* what becomes the child's stdin, stdout, stderr; -1: left as it is */
    int report_fd;
    int fd_limit; /* for closing fds when close_range() is unavailable */
    struct sigaction dfl;
    sigset_t empty;
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static _Noreturn void child_fail(int fd, int err, int index)
{
    struct spawn_report rep = {err, index};
    ssize_t n = write(fd, &rep, sizeof rep);
    (void)n;
    _exit(127);
}

/* move_high returns a close-on-exec copy of fd numbered >= 3, so the dup2() onto 0-2
 * cannot clobber it (fds 0-2 may be free in the runner and handed out to our pipes). */
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
static _Noreturn void child_exec(const struct child_plan *p)
{
    int rep = p->report_fd;

    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(rep, errno, -2);
    if (getppid() != p->parent)
        _exit(127); /* the runner died before prctl(): nobody is waiting for us */

    /* Dispositions first, while every signal is still blocked; SIG_IGN would survive exec.
     * Errors are expected for SIGKILL, SIGSTOP and the C library's internal signals. */
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &p->dfl, NULL);

    rep = move_high(rep, rep);
    int fd[3];
    for (int i = 0; i < 3; i++)
        fd[i] = p->fd[i] >= 0 ? move_high(p->fd[i], rep) : -1;
    for (int i = 0; i < 3; i++)
        if (fd[i] >= 0 && dup2(fd[i], i) < 0)
            child_fail(rep, errno, -2);

    bool marked = false;
#ifdef SYS_close_range
    marked = syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
#endif
    if (!marked)
        for (int i = 3; i < p->fd_limit; i++)
            if (i != rep)
                close(i);

    sigprocmask(SIG_SETMASK, &p->empty, NULL);

    int eacces = -1;
    for (size_t i = 0; i < p->npaths; i++) {
        execve(p->paths[i], p->argv, p->envp);
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

/* plan_paths lists in c where execve() should look for name, the way execvp() would;
 * returns whether that was a PATH search. */
static bool plan_paths(spawn_child *c, const char *name)
{
    if (strchr(name, '/') || *name == '\0') {
        c->paths = xcalloc(1, sizeof(char *));
        c->paths[0] = xstrdup(name);
        c->npaths = 1;
        return false;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin"; /* glibc's default, confstr(_CS_PATH) */
    size_t n = 1;
    for (const char *s = path; *s; s++)
        n += *s == ':';
    c->paths = xcalloc(n, sizeof(char *));
    c->npaths = 0;
    for (const char *dir = path;; dir++) {
        size_t len = strcspn(dir, ":");
        /* An empty element means the current directory, as in execvp(). */
        c->paths[c->npaths++] =
            len == 0 ? xstrdup(name) : xasprintf("%.*s/%s", (int)len, dir, name);
        dir += len;
        if (*dir == '\0')
            break;
    }
    return true;
}

int spawn_start(const spawn_plan *plan, spawn_child *c, char *err, size_t errlen)
{
    struct child_plan p = {0};
    int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}}, rep[2] = {-1, -1};
    char ebuf[128];

    *c = (spawn_child){
        .pid = -1, .pidfd = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .report_fd = -1};
    for (int i = 0; i < 3; i++)
        if (plan->fd[i] == SPAWN_PIPE && pipe2(pipes[i], O_CLOEXEC) < 0)
            goto pipe_fail;
    if (pipe2(rep, O_CLOEXEC) < 0)
        goto pipe_fail;

    /* Everything the child touches is prepared here, before fork(). */
    c->name = xstrdup(plan->argv[0]);
    p.search = plan_paths(c, plan->argv[0]);
    p.paths = c->paths;
    p.npaths = c->npaths;
    p.argv = plan->argv;
    p.envp = plan->envp ? plan->envp : environ;
    p.parent = getpid();
    /* The child gets the read end of its stdin and the write ends of stdout and stderr. */
    for (int i = 0; i < 3; i++)
        p.fd[i] = pipes[i][i == 0 ? 0 : 1];
    p.report_fd = rep[1];
    p.dfl.sa_handler = SIG_DFL;
    sigemptyset(&p.dfl.sa_mask);
    sigemptyset(&p.empty);
    struct rlimit rl;
    p.fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1 << 20) ? (int)rl.rlim_cur
                                                                               : (1 << 20);

    pid_t pid = fork();
    if (pid == 0)
        child_exec(&p);
    if (pid < 0) {
        errf(err, errlen, "could not fork: %s", strerror_r(errno, ebuf, sizeof ebuf));
        spawn_release(c);
        goto fail;
    }
    setpgid(pid, pid);   /* also done by the child; fails harmlessly once it exec'd */
    sentinel_watch(pid); /* kills the whole group should the runner die */

    /* Only our ends are non-blocking: the child's are ordinary blocking fds. */
    int *ours[3] = {&c->stdin_fd, &c->stdout_fd, &c->stderr_fd};
    for (int i = 0; i < 3; i++) {
        close_fd(&p.fd[i]);
        *ours[i] = pipes[i][i == 0 ? 1 : 0];
        if (*ours[i] >= 0)
            fcntl(*ours[i], F_SETFL, O_NONBLOCK);
    }
    close(rep[1]);
    c->report_fd = rep[0];
    fcntl(c->report_fd, F_SETFL, O_NONBLOCK);
    c->pid = pid;
#ifdef SYS_pidfd_open
    if (plan->want_pidfd)
        c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* always O_CLOEXEC */
#endif
    return 0;

pipe_fail:
    errf(err, errlen, "could not create pipes: %s", strerror_r(errno, ebuf, sizeof ebuf));
fail:
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 3; k++)
            close_fd(&pipes[k][i]);
        close_fd(&rep[i]);
    }
    return -1;
}

void spawn_read_report(spawn_child *c)
{
    while (c->report_fd >= 0) {
        ssize_t n = read(c->report_fd, (char *)&c->rep + c->rep_got, sizeof c->rep - c->rep_got);
        if (n > 0 && (c->rep_got += (size_t)n) < sizeof c->rep)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n >= 0 || errno != EAGAIN)
            close_fd(&c->report_fd);
        return;
    }
}

char *spawn_failure(const spawn_child *c, const char *what)
{
    char ebuf[128];

    if (c->rep_got != sizeof c->rep)
        return NULL;
    const char *name =
        c->rep.index >= 0 && (size_t)c->rep.index < c->npaths ? c->paths[c->rep.index] : c->name;
    const char *why = strerror_r(c->rep.err, ebuf, sizeof ebuf);
    if (c->rep.index == -2)
        return xasprintf("could not set up the %s for \"%s\": %s", what, name, why);
    return xasprintf("could not execute \"%s\": %s", name, why);
}

int spawn_wait_exec(spawn_child *c, const char *what, char *err, size_t errlen)
{
    while (c->report_fd >= 0) {
        struct pollfd pfd = {.fd = c->report_fd, .events = POLLIN};
        (void)poll(&pfd, 1, -1); /* EINTR or not, the read says what there is */
        spawn_read_report(c);
    }
    char *failure = spawn_failure(c, what);
    spawn_release(c);
    if (!failure)
        return 0;
    errf(err, errlen, "%s", failure);
    free(failure);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    sentinel_forget(c->pid);
    close_fd(&c->pidfd);
    close_fd(&c->stdin_fd);
    close_fd(&c->stdout_fd);
    close_fd(&c->stderr_fd);
    return -1;
}

void spawn_release(spawn_child *c)
{
    close_fd(&c->report_fd);
    for (size_t i = 0; i < c->npaths; i++)
        free(c->paths[i]);
    free(c->paths);
    free(c->name);
    c->paths = NULL;
    c->npaths = 0;
    c->name = NULL;
}
