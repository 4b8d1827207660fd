/* sentinel.c - kills the process groups of running exec jobs when the runner dies.
 *
 * DESIGN: PR_SET_PDEATHSIG kills only the direct child of a SIGKILLed runner; a
 * `sh -c "a | b"` job leaves its grandchildren running a job that a peer is about to
 * redo. So before any thread exists the runner forks a sentinel that holds the read end
 * of a pipe and learns, through fixed-size records, the process group of every exec job
 * while it runs. When the runner dies, however it dies, the kernel closes the write end;
 * the sentinel reads EOF, SIGKILLs every group still registered, and exits. The sentinel
 * ignores SIGINT and SIGTERM so that a Ctrl+C to the terminal's group or a service
 * manager's SIGTERM cannot take it away before the runner is gone. */
#include "sentinel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define MAX_GROUPS 4096

struct record {
    int32_t op; /* +1 watch, -1 forget */
    int32_t pgid;
};

static int write_fd = -1;
static pid_t sentinel_pid = -1;

static void sentinel_main(int read_fd)
{
    static pid_t groups[MAX_GROUPS];
    size_t n = 0;
    struct record rec;
    for (;;) {
        ssize_t got = read(read_fd, &rec, sizeof rec);
        if (got < 0 && errno == EINTR)
            continue;
        if (got != (ssize_t)sizeof rec)
            break; /* EOF: the runner is gone */
        if (rec.op > 0 && n < MAX_GROUPS) {
            groups[n++] = rec.pgid;
        } else if (rec.op < 0) {
            for (size_t i = 0; i < n; i++)
                if (groups[i] == rec.pgid) {
                    groups[i] = groups[--n];
                    break;
                }
        }
    }
    for (size_t i = 0; i < n; i++)
        kill(-groups[i], SIGKILL);
    _exit(0);
}

int sentinel_start(char *err, size_t errlen)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return errf(err, errlen, "could not create sentinel pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return errf(err, errlen, "could not fork sentinel: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[1]);
        struct sigaction ign;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigaction(SIGINT, &ign, NULL);
        sigaction(SIGTERM, &ign, NULL);
        sigaction(SIGPIPE, &ign, NULL);
        prctl(PR_SET_NAME, "runner-sentinel");
        /* keep only the pipe: no inherited sockets or files stay open in here */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != fds[0])
                close(fd);
        sentinel_main(fds[0]);
    }
    close(fds[0]);
    write_fd = fds[1];
    sentinel_pid = pid;
    return 0;
}

void sentinel_stop(void)
{
    if (write_fd < 0)
        return;
    close(write_fd);
    write_fd = -1;
    int status;
    while (waitpid(sentinel_pid, &status, 0) < 0 && errno == EINTR)
        ;
    sentinel_pid = -1;
}

static void send_record(int32_t op, pid_t pgid)
{
    int fd = write_fd;
    if (fd < 0 || pgid <= 0)
        return;
    struct record rec = {.op = op, .pgid = (int32_t)pgid};
    ssize_t rc;
    do
        rc = write(fd, &rec, sizeof rec);
    while (rc < 0 && errno == EINTR);
}

void sentinel_watch(pid_t pgid)
{
    send_record(1, pgid);
}

void sentinel_forget(pid_t pgid)
{
    send_record(-1, pgid);
}
