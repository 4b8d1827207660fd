/* shutdown.c - the shutdown protocol: its phases, its deadlines, and the signals that
 * drive it from the thread that called runner_run.
 *
 * DESIGN: signal handlers only write one byte to a pipe (errno saved); everything else
 * happens here in plain code, PgBouncer-style: the first SIGTERM/SIGINT drains (no new
 * claims, running jobs may finish within shutdown.grace); the grace deadline or a second
 * signal cancels. The cancel's deadlines are computed once, here, and handed to the
 * control loop, which acts on the same numbers: handlers have until kill_after plus
 * reaping slack to return, then the releases are written, then the loop ends. The last
 * deadline makes the process exit 0 before a deploy tool's SIGKILL even if the database
 * hangs: leases then expire and a peer rescues the jobs. */
#include "shutdown.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "sdnotify.h"
#include "util.h"

static volatile sig_atomic_t signal_fd = -1;
static struct sigaction old_term, old_int, old_hup, old_pipe;
static bool installed;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (signal_fd >= 0) {
        ssize_t rc = write(signal_fd, &b, 1);
        (void)rc;
    }
    errno = saved;
}

int shutdown_signals_install(int write_fd, char *err, size_t errlen)
{
    signal_fd = write_fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, &old_term) < 0 || sigaction(SIGINT, &sa, &old_int) < 0 ||
        sigaction(SIGHUP, &sa, &old_hup) < 0)
        return errf(err, errlen, "could not install signal handlers: %s", strerror(errno));
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    installed = true;
    /* the calling thread must receive them: worker threads block every signal */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

void shutdown_signals_restore(void)
{
    if (!installed)
        return;
    installed = false;
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    signal_fd = -1;
}

const char *shutdown_phase_name(enum shutdown_phase p)
{
    switch (p) {
    case PHASE_RUNNING:
        return "running";
    case PHASE_DRAINING:
        return "draining";
    case PHASE_CANCELLING:
        return "cancelling";
    }
    return "running";
}

shutdown_deadlines shutdown_cancel_deadlines(const config *cfg, int64_t now)
{
    shutdown_deadlines d;
    d.handlers_ms = now + cfg->kill_after_ms + SHUTDOWN_REAP_MS;
    d.loop_ms = d.handlers_ms + SHUTDOWN_WRITE_MS;
    d.exit_ms = d.loop_ms + SHUTDOWN_EXIT_MS;
    return d;
}

static const char *request_name(int b)
{
    switch (b) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    case SHUTDOWN_BYTE_RELOAD:
        return "runner_reload";
    default:
        return "runner_stop";
    }
}

static bool is_reload(int b)
{
    return b == SIGHUP || b == SHUTDOWN_BYTE_RELOAD;
}

int shutdown_run(int read_fd, struct control *ctl, const config *const *cfgp,
                 void (*reload)(void *arg), void *arg)
{
    enum shutdown_phase phase = PHASE_RUNNING;
    int64_t deadline = -1;
    char ms[24];

    for (;;) {
        struct pollfd fds[2] = {{.fd = read_fd, .events = POLLIN},
                                {.fd = control_done_fd(ctl), .events = POLLIN}};
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            timeout = left < 0 ? 0 : (int)left;
        }
        int rc = poll(fds, 2, timeout);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (fds[1].revents & POLLIN)
            return 0;

        int got = -1;
        if (rc > 0 && (fds[0].revents & POLLIN)) {
            unsigned char b;
            if (read(read_fd, &b, 1) == 1)
                got = b;
        }
        bool expired = deadline >= 0 && now_ms() >= deadline;
        const config *cfg = *cfgp;

        if (got >= 0 && is_reload(got)) {
            if (phase == PHASE_RUNNING) {
                log_event(LOG_INFO, "reload requested", "signal", request_name(got), NULL);
                sdnotify_send("RELOADING=1");
                reload(arg);
                sdnotify_send("READY=1");
            } else {
                log_event(LOG_INFO, "reload ignored while stopping", "signal", request_name(got),
                          NULL);
            }
            got = -1;
            if (!expired)
                continue;
        }

        if (got >= 0 && phase == PHASE_RUNNING) {
            snprintf(ms, sizeof ms, "%lld", (long long)cfg->grace_ms);
            log_event(LOG_INFO, "shutdown requested", "signal", request_name(got), "grace_ms", ms,
                      NULL);
            /* tell systemd the real deadline: a unit with a shorter stop timeout is
             * extended to it */
            int64_t now = now_ms();
            shutdown_deadlines end = shutdown_cancel_deadlines(cfg, now + cfg->grace_ms);
            char ext[SDNOTIFY_MSG_LEN];
            sdnotify_send("STOPPING=1");
            sdnotify_send(sdnotify_format_extend(ext, sizeof ext, end.exit_ms - now));
            control_drain(ctl);
            phase = PHASE_DRAINING;
            deadline = now_ms() + cfg->grace_ms;
            if (cfg->grace_ms == 0)
                expired = true, got = -1;
            else
                continue;
        }
        if (phase == PHASE_DRAINING && (got >= 0 || expired)) {
            if (got >= 0)
                log_event(LOG_INFO, "second stop request: cancelling running jobs now", "signal",
                          request_name(got), NULL);
            else
                log_event(LOG_INFO, "grace period over: cancelling running jobs", NULL);
            int64_t now = now_ms();
            shutdown_deadlines d = shutdown_cancel_deadlines(cfg, now);
            char ext[SDNOTIFY_MSG_LEN];
            sdnotify_send(sdnotify_format_extend(ext, sizeof ext, d.exit_ms - now));
            control_cancel(ctl, &d);
            phase = PHASE_CANCELLING;
            deadline = d.exit_ms;
            continue;
        }
        if (phase == PHASE_CANCELLING && got >= 0) {
            log_event(LOG_INFO, "already stopping", "signal", request_name(got), NULL);
            continue;
        }
        if (phase == PHASE_CANCELLING && expired) {
            log_event(LOG_ERROR, "control loop did not stop in time: exiting anyway", NULL);
            return -1;
        }
    }
}
