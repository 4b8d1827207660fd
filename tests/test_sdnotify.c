/* test_sdnotify.c - the notify protocol against sockets the test binds itself: a path
 * socket and an abstract one, the watchdog schedule, the status rate limit, and that a
 * send never blocks and logs its failure once. Each criterion test is its own process,
 * so the module's process-wide state starts fresh in each. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sdnotify.h"
#include "util.h"

typedef struct receiver {
    int fd;
    char dir[64];
    char path[96];
    char env[160]; /* the NOTIFY_SOCKET value */
} receiver;

/* bind_receiver binds a datagram socket the module will send to: at a path in a fresh
 * directory, or (abstract) under a unique name in the abstract namespace. Receives wait
 * at most 2 s, so a missing message fails the test instead of hanging it. */
static void bind_receiver(receiver *r, bool abstract)
{
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(r->fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        snprintf(r->env, sizeof r->env, "@runner-test-sdnotify-%d-%lld", (int)getpid(),
                 (long long)now_us());
        size_t n = strlen(r->env);
        memcpy(a.sun_path, r->env, n);
        a.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        snprintf(r->dir, sizeof r->dir, "/tmp/runner-sdnotify.XXXXXX");
        cr_assert(mkdtemp(r->dir) != NULL, "mkdtemp: %s", strerror(errno));
        snprintf(r->path, sizeof r->path, "%s/notify", r->dir);
        snprintf(r->env, sizeof r->env, "%s", r->path);
        snprintf(a.sun_path, sizeof a.sun_path, "%s", r->path);
        len = sizeof a;
    }
    cr_assert(bind(r->fd, (struct sockaddr *)&a, len) == 0, "bind %s: %s", r->env, strerror(errno));
    struct timeval tv = {.tv_sec = 2};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", r->env, 1);
}

static void close_receiver(receiver *r)
{
    close(r->fd);
    if (r->path[0]) {
        unlink(r->path);
        rmdir(r->dir);
    }
}

/* expect_message receives one datagram and compares it with want. */
static void expect_message(receiver *r, const char *want)
{
    char buf[512];
    ssize_t n = recv(r->fd, buf, sizeof buf - 1, 0);
    cr_assert(n >= 0, "no message (expected \"%s\"): %s", want, strerror(errno));
    buf[n] = '\0';
    cr_assert_str_eq(buf, want);
}

/* expect_nothing asserts that no datagram is waiting. */
static void expect_nothing(receiver *r)
{
    char buf[512];
    ssize_t n = recv(r->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n >= 0)
        buf[n] = '\0';
    cr_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "unexpected message \"%s\"",
              n >= 0 ? buf : strerror(errno));
}

static void open_ok(void)
{
    char err[ERR_LEN] = "";
    cr_assert_eq(sdnotify_open(err, sizeof err), 1, "sdnotify_open: %s", err);
}

Test(sdnotify, path_socket)
{
    receiver r = {0};
    bind_receiver(&r, false);
    open_ok();
    cr_assert_eq(sdnotify_send("READY=1"), 0);
    cr_assert_eq(sdnotify_send("STOPPING=1\nSTATUS=draining"), 0);
    expect_message(&r, "READY=1");
    expect_message(&r, "STOPPING=1\nSTATUS=draining");
    /* exec children inherit the environment: the socket is not theirs to use */
    cr_assert_null(getenv("NOTIFY_SOCKET"));
    sdnotify_close();
    cr_assert_eq(sdnotify_send("READY=1"), 0, "a send after close is a no-op");
    expect_nothing(&r);
    close_receiver(&r);
}

Test(sdnotify, abstract_socket)
{
    receiver r = {0};
    bind_receiver(&r, true);
    open_ok();
    cr_assert_eq(sdnotify_send("READY=1"), 0);
    expect_message(&r, "READY=1");
    close_receiver(&r);
}

Test(sdnotify, without_notify_socket_everything_is_a_no_op)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "1000000", 1);
    char err[ERR_LEN] = "";
    cr_assert_eq(sdnotify_open(err, sizeof err), 0);
    cr_assert_eq(sdnotify_send("READY=1"), 0);
    cr_assert_eq(sdnotify_watchdog_interval_ms(), 0, "no socket, no watchdog");
    cr_assert_eq(sdnotify_watchdog_next_ms(), INT64_MAX);
    cr_assert_null(getenv("WATCHDOG_USEC"));
}

Test(sdnotify, unusable_addresses_are_errors)
{
    static const struct {
        const char *value, *needle;
    } cases[] = {
        {"relative/path", "unsupported NOTIFY_SOCKET address \"relative/path\""},
        {"vsock:2:1234", "unsupported NOTIFY_SOCKET address"},
        {"@", "invalid NOTIFY_SOCKET address \"@\""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char err[ERR_LEN] = "";
        pid_t pid = fork(); /* the state is process-wide: one open per process */
        cr_assert(pid >= 0);
        if (pid == 0) {
            setenv("NOTIFY_SOCKET", cases[i].value, 1);
            int rc = sdnotify_open(err, sizeof err);
            _exit(rc == -1 && strstr(err, cases[i].needle) && sdnotify_send("READY=1") == 0 ? 0
                                                                                            : 1);
        }
        int st;
        waitpid(pid, &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "NOTIFY_SOCKET=\"%s\" not rejected as "
                  "\"%s\"",
                  cases[i].value, cases[i].needle);
    }
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    char err[ERR_LEN] = "";
    cr_assert_eq(sdnotify_open(err, sizeof err), -1);
    cr_assert(strstr(err, "length 199") != NULL, "%s", err);
}

Test(sdnotify, watchdog_pings_at_half_the_interval)
{
    receiver r = {0};
    bind_receiver(&r, false);
    setenv("WATCHDOG_USEC", "200000", 1);
    unsetenv("WATCHDOG_PID");
    open_ok();
    cr_assert_eq(sdnotify_watchdog_interval_ms(), 200);
    cr_assert_eq(sdnotify_watchdog_next_ms(), 0, "the first ping is due at once");
    sdnotify_watchdog(1000);
    expect_message(&r, "WATCHDOG=1");
    cr_assert_eq(sdnotify_watchdog_next_ms(), 1100);
    sdnotify_watchdog(1099);
    expect_nothing(&r);
    sdnotify_watchdog(1100);
    expect_message(&r, "WATCHDOG=1");
    cr_assert_eq(sdnotify_watchdog_next_ms(), 1200);
    cr_assert_null(getenv("WATCHDOG_USEC"));
    close_receiver(&r);
}

Test(sdnotify, watchdog_of_another_process_is_not_ours)
{
    receiver r = {0};
    bind_receiver(&r, false);
    setenv("WATCHDOG_USEC", "200000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    open_ok();
    cr_assert_eq(sdnotify_watchdog_interval_ms(), 0);
    sdnotify_watchdog(1000);
    expect_nothing(&r);
    cr_assert_null(getenv("WATCHDOG_PID"));
    close_receiver(&r);
}

Test(sdnotify, watchdog_pid_that_is_ours)
{
    receiver r = {0};
    bind_receiver(&r, false);
    setenv("WATCHDOG_USEC", "3000000", 1);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    open_ok();
    cr_assert_eq(sdnotify_watchdog_interval_ms(), 3000);
    close_receiver(&r);
}

Test(sdnotify, invalid_watchdog_usec_is_an_error)
{
    setenv("NOTIFY_SOCKET", "/run/nothing-here", 1);
    setenv("WATCHDOG_USEC", "10s", 1);
    char err[ERR_LEN] = "";
    cr_assert_eq(sdnotify_open(err, sizeof err), -1);
    cr_assert_str_eq(err, "invalid WATCHDOG_USEC \"10s\"");
}

Test(sdnotify, status_at_most_once_a_second_and_only_when_changed)
{
    receiver r = {0};
    bind_receiver(&r, false);
    open_ok();
    sdnotify_status(10000, "running: 0/20 busy, 0 jobs done");
    expect_message(&r, "STATUS=running: 0/20 busy, 0 jobs done");
    sdnotify_status(10500, "running: 1/20 busy, 0 jobs done");
    expect_nothing(&r);
    sdnotify_status(11000, "running: 2/20 busy, 1 job done");
    expect_message(&r, "STATUS=running: 2/20 busy, 1 job done");
    sdnotify_status(15000, "running: 2/20 busy, 1 job done");
    expect_nothing(&r);
    close_receiver(&r);
}

Test(sdnotify, formats)
{
    char buf[SDNOTIFY_MSG_LEN];
    cr_assert_str_eq(sdnotify_format_status(buf, sizeof buf, "draining", 3, 20, 1042),
                     "draining: 3/20 busy, 1042 jobs done");
    cr_assert_str_eq(sdnotify_format_status(buf, sizeof buf, "running", 0, 1, 1),
                     "running: 0/1 busy, 1 job done");
    cr_assert_str_eq(sdnotify_format_extend(buf, sizeof buf, 24500),
                     "EXTEND_TIMEOUT_USEC=24500000");
    cr_assert_str_eq(sdnotify_format_extend(buf, sizeof buf, -5), "EXTEND_TIMEOUT_USEC=1000000");
}

/* A receiver that never reads must not stall the sender: its queue fills, sends fail at
 * once (not after a timeout), and only the first failure is logged. */
Test(sdnotify, full_queue_never_blocks_and_logs_once, .timeout = 20)
{
    receiver r = {0};
    bind_receiver(&r, false);
    open_ok();

    char logpath[] = "/tmp/runner-sdnotify-log.XXXXXX";
    int logfd = mkstemp(logpath);
    cr_assert(logfd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(logfd, 2);

    int failed = 0;
    int64_t start = now_ms(), slowest = 0;
    for (int i = 0; i < 5000; i++) {
        int64_t t = now_ms();
        if (sdnotify_send("STATUS=filling the queue of a receiver that never reads") < 0)
            failed++;
        if (now_ms() - t > slowest)
            slowest = now_ms() - t;
    }
    int64_t elapsed = now_ms() - start;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    cr_assert(failed > 0, "the receive queue never filled");
    cr_assert(slowest < 100 && elapsed < 5000, "a send blocked: slowest %lld ms, all %lld ms",
              (long long)slowest, (long long)elapsed);
    char text[4096] = "";
    ssize_t n = pread(logfd, text, sizeof text - 1, 0);
    close(logfd);
    unlink(logpath);
    text[n > 0 ? n : 0] = '\0';
    int lines = 0;
    for (const char *p = text; (p = strstr(p, "could not notify the service manager")); p++)
        lines++;
    cr_assert_eq(lines, 1, "%d failures logged %d times:\n%s", failed, lines, text);
    close_receiver(&r);
}
