/* sdnotify.c - systemd's NOTIFY_SOCKET datagram protocol without libsystemd.
 *
 * DESIGN: sd_notify(3) describes the protocol as stable and small enough to reimplement:
 * one AF_UNIX SOCK_DGRAM datagram per message, newline-separated KEY=VALUE assignments,
 * sent to the path in NOTIFY_SOCKET ("@" prefix: the Linux abstract namespace). systemd
 * turns on SO_PASSCRED on its end, so the kernel attaches our pid and NotifyAccess=main
 * can tell who sent it. Linking libsystemd for this would add a library (and its
 * dependencies' load-time cost) to a process that tries to stay small.
 *
 * A notification is never worth stalling the control loop for: the socket is
 * non-blocking, a full receive queue drops the message, and an error is logged once.
 * The address is given to every sendto() instead of connect()ing once, so a
 * `systemctl daemon-reexec` (which re-binds the socket) does not leave us talking to a
 * stale endpoint. */
#include "sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static struct {
    bool opened;
    int answer; /* what sdnotify_open returned */
    int fd;     /* -1: not under systemd */
    struct sockaddr_un addr;
    socklen_t addrlen;
    atomic_bool failure_logged;

    /* used by the control loop only */
    int64_t watchdog_ms;
    int64_t watchdog_next;
    int64_t status_sent_at;
    bool status_sent;
    char status[SDNOTIFY_MSG_LEN];
} sd = {.fd = -1, .watchdog_next = INT64_MAX};

/* parse_address fills sd.addr from a NOTIFY_SOCKET value. */
static int parse_address(const char *value, char *err, size_t errlen)
{
    size_t n = strlen(value);
    memset(&sd.addr, 0, sizeof sd.addr);
    sd.addr.sun_family = AF_UNIX;
    if (value[0] != '/' && value[0] != '@')
        return errf(err, errlen,
                    "unsupported NOTIFY_SOCKET address \"%s\": expected a path or \"@name\"",
                    value);
    /* a path needs room for its NUL; an abstract name has none but starts with one */
    if (n < 2 || n >= sizeof sd.addr.sun_path + (value[0] == '@'))
        return errf(err, errlen, "invalid NOTIFY_SOCKET address \"%s\": length %zu", value, n);
    memcpy(sd.addr.sun_path, value, n);
    if (value[0] == '@')
        sd.addr.sun_path[0] = '\0';
    /* an abstract name is exactly its bytes (no NUL terminator counted) */
    sd.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (value[0] == '/'));
    return 0;
}

/* parse_watchdog reads WATCHDOG_USEC, honoured only when WATCHDOG_PID is unset or ours
 * (systemd sets it so that a forked helper does not take the watchdog for its own). */
static int parse_watchdog(char *err, size_t errlen)
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || !*usec)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        char *end;
        errno = 0;
        long long p = strtoll(pid, &end, 10);
        if (errno || *end || p <= 0)
            return errf(err, errlen, "invalid WATCHDOG_PID \"%s\"", pid);
        if (p != (long long)getpid())
            return 0;
    }
    char *end;
    errno = 0;
    unsigned long long us = strtoull(usec, &end, 10);
    if (errno || *end || us == 0 || usec[0] == '-')
        return errf(err, errlen, "invalid WATCHDOG_USEC \"%s\"", usec);
    sd.watchdog_ms = us < 1000 ? 1 : (int64_t)(us / 1000);
    /* the first ping is due at once: the loop's first turn proves it turns */
    sd.watchdog_next = 0;
    return 0;
}

int sdnotify_open(char *err, size_t errlen)
{
    if (sd.opened)
        return sd.answer == -1 ? errf(err, errlen, "NOTIFY_SOCKET was unusable") : sd.answer;
    sd.opened = true;
    sd.answer = 0;
    const char *value = getenv("NOTIFY_SOCKET");
    if (value && *value) {
        sd.answer = -1;
        if (parse_address(value, err, errlen) < 0 || parse_watchdog(err, errlen) < 0)
            goto done;
        sd.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (sd.fd < 0) {
            errf(err, errlen, "could not create the notification socket: %s", strerror(errno));
            goto done;
        }
        sd.answer = 1;
    }
done:
    if (sd.answer != 1)
        sd.watchdog_ms = 0, sd.watchdog_next = INT64_MAX;
    /* exec children must not talk to the service manager in our name */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return sd.answer;
}

void sdnotify_close(void)
{
    if (sd.fd >= 0)
        close(sd.fd);
    sd.fd = -1;
    sd.watchdog_ms = 0;
    sd.watchdog_next = INT64_MAX;
}

int sdnotify_send(const char *state)
{
    if (sd.fd < 0)
        return 0;
    size_t n = strlen(state);
    ssize_t sent;
    do
        sent = sendto(sd.fd, state, n, MSG_NOSIGNAL | MSG_DONTWAIT,
                      (const struct sockaddr *)&sd.addr, sd.addrlen);
    while (sent < 0 && errno == EINTR);
    if (sent == (ssize_t)n)
        return 0;
    if (!atomic_exchange(&sd.failure_logged, true)) {
        char why[ERR_LEN];
        snprintf(why, sizeof why, "%s", sent < 0 ? strerror(errno) : "short write");
        log_event(LOG_WARN, "could not notify the service manager; further failures are not logged",
                  "error", why, NULL);
    }
    return -1;
}

int64_t sdnotify_watchdog_interval_ms(void)
{
    return sd.watchdog_ms;
}

int64_t sdnotify_watchdog_next_ms(void)
{
    return sd.watchdog_next;
}

void sdnotify_watchdog(int64_t now)
{
    if (sd.watchdog_ms <= 0 || now < sd.watchdog_next)
        return;
    sdnotify_send("WATCHDOG=1");
    int64_t half = sd.watchdog_ms / 2;
    sd.watchdog_next = now + (half > 0 ? half : 1);
}

void sdnotify_status(int64_t now, const char *line)
{
    if (sd.fd < 0)
        return;
    char msg[SDNOTIFY_MSG_LEN];
    snprintf(msg, sizeof msg, "STATUS=%s", line);
    if (sd.status_sent && strcmp(msg, sd.status) == 0)
        return;
    if (sd.status_sent && now - sd.status_sent_at < SDNOTIFY_STATUS_MIN_MS)
        return;
    sdnotify_send(msg);
    memcpy(sd.status, msg, sizeof msg);
    sd.status_sent = true;
    sd.status_sent_at = now;
}

char *sdnotify_format_status(char *buf, size_t len, const char *phase, int busy, int capacity,
                             int64_t jobs_done)
{
    snprintf(buf, len, "%s: %d/%d busy, %" PRId64 " job%s done", phase, busy, capacity, jobs_done,
             jobs_done == 1 ? "" : "s");
    return buf;
}

char *sdnotify_format_extend(char *buf, size_t len, int64_t remaining_ms)
{
    if (remaining_ms < 1000)
        remaining_ms = 1000;
    snprintf(buf, len, "EXTEND_TIMEOUT_USEC=%" PRId64, remaining_ms * 1000);
    return buf;
}
