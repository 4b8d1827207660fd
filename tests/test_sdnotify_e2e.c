/* test_sdnotify_e2e.c - the real `runner run` under a fake service manager: the test binds
 * the NOTIFY_SOCKET itself and checks that READY=1, STATUS=, WATCHDOG=1, then (after
 * SIGTERM) STOPPING=1 and EXTEND_TIMEOUT_USEC= arrive, in that order, from the runner's
 * own pid (what NotifyAccess=main accepts), and that job children never see the socket. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

#define MAX_MSGS 4096
#define WATCHDOG_USEC "1000000"
#define WATCHDOG_MS 1000

/* One assignment ("KEY=value") of a datagram, when it arrived and who sent it. */
typedef struct note {
    int64_t at_ms;
    pid_t sender;
    char text[256];
} note;

typedef struct manager {
    int fd;
    note notes[MAX_MSGS];
    int n;
} manager;

/* manager_bind binds the notify socket in the test's directory, with SO_PASSCRED so that
 * every datagram carries its sender's pid, as systemd's does. */
static const char *manager_bind(manager *m)
{
    const char *path = th_path("notify");
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    th_assert(m->fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    th_assert(strlen(path) < sizeof a.sun_path, "socket path too long: %s", path);
    strcpy(a.sun_path, path);
    th_assert(bind(m->fd, (struct sockaddr *)&a, sizeof a) == 0, "bind %s: %s", path,
              strerror(errno));
    int on = 1;
    setsockopt(m->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    m->n = 0;
    return path;
}

/* manager_collect receives datagrams for at most timeout_ms, splitting each into its
 * assignments, and stops early once an assignment starting with until (may be NULL)
 * has arrived. Returns whether it did. */
static bool manager_collect(manager *m, int64_t timeout_ms, const char *until)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - th_now_ms();
        if (left <= 0)
            return until == NULL;
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        union {
            struct cmsghdr h;
            char space[CMSG_SPACE(sizeof(struct ucred))];
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl};
        ssize_t len = recvmsg(m->fd, &msg, MSG_DONTWAIT);
        if (len < 0)
            continue;
        buf[len] = '\0';
        pid_t sender = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(c), sizeof cred);
                sender = cred.pid;
            }
        }
        bool done = false;
        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            th_assert(m->n < MAX_MSGS, "more than %d notifications", MAX_MSGS);
            note *n = &m->notes[m->n++];
            n->at_ms = th_now_ms();
            n->sender = sender;
            snprintf(n->text, sizeof n->text, "%s", line);
            done = done || (until && strncmp(line, until, strlen(until)) == 0);
        }
        if (done)
            return true;
    }
}

/* first_index is the index of the first assignment starting with prefix at or after
 * from, or -1. */
static int first_index(const manager *m, const char *prefix, int from)
{
    for (int i = from; i < m->n; i++) {
        if (strncmp(m->notes[i].text, prefix, strlen(prefix)) == 0)
            return i;
    }
    return -1;
}

static int count_prefix(const manager *m, const char *prefix, int from, int to)
{
    int n = 0;
    for (int i = from; i < to; i++)
        n += strncmp(m->notes[i].text, prefix, strlen(prefix)) == 0;
    return n;
}

static void dump(const manager *m)
{
    for (int i = 0; i < m->n; i++)
        fprintf(stderr, "  +%5lld ms  pid %d  %s\n",
                (long long)(m->notes[i].at_ms - m->notes[0].at_ms), (int)m->notes[i].sender,
                m->notes[i].text);
}

/* expect_note asserts cond (evaluated once) and shows every notification when it fails. */
#define expect_note(m, cond, ...)                                                                  \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        if (!ok_)                                                                                  \
            dump(m);                                                                               \
        th_assert(ok_, __VA_ARGS__);                                                               \
    } while (0)

/* extend_usec parses "EXTEND_TIMEOUT_USEC=N". */
static long long extend_usec(const note *n)
{
    return atoll(n->text + strlen("EXTEND_TIMEOUT_USEC="));
}

static const char *config(const char *grace, const char *kill_after, const char *sleep_secs)
{
    return th_write_config("worker:\n"
                           "  concurrency: 2\n"
                           "  poll_interval: 100ms\n"
                           "shutdown:\n"
                           "  grace: %s\n"
                           "  kill_after: %s\n"
                           "log:\n"
                           "  level: debug\n"
                           "kinds:\n"
                           "  nap:\n"
                           "    command: [\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\";"
                           " echo \"${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset}\" > \"$SEEN\";"
                           " exec sleep %s']\n",
                           grace, kill_after, sleep_secs);
}

static th_proc *start(th_db *db, const char *cfg, const char *socket_path)
{
    const char **env = calloc(6, sizeof *env);
    env[0] = th_fmt("NOTIFY_SOCKET=%s", socket_path);
    env[1] = "WATCHDOG_USEC=" WATCHDOG_USEC;
    env[2] = th_fmt("PIDS=%s", th_pids_file());
    env[3] = th_fmt("SEEN=%s", th_path("seen"));
    th_proc *p = th_runner_start(db->url, cfg, env);
    free(env);
    return p;
}

/* The whole life of a drained instance: READY=1 once it is registered and claiming,
 * STATUS= at most once a second, WATCHDOG=1 at half the interval, and after SIGTERM
 * STOPPING=1, a draining STATUS and EXTEND_TIMEOUT_USEC within the real deadline. */
Test(sdnotify_e2e, notifications_in_order, .init = th_setup, .fini = th_teardown, .timeout = 90)
{
    th_db *db = th_fresh_db(true);
    static manager m;
    const char *path = manager_bind(&m);
    th_enqueue_many(db->conn, 1, "nap", "{}", NULL);
    th_proc *r = start(db, config("10s", "1s", "3"), path);

    expect_note(&m, manager_collect(&m, 20000, "READY=1"), "no READY=1 within 20 s");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.instances"
                                " WHERE pid = $1::int AND state = 'running'",
                                th_fmt("%d", (int)r->pid), NULL),
                 1, "instances registered as running when READY=1 arrived");
    th_assert(th_wait_lines(th_pids_file(), 1, 20000), "the job did not start");
    int ready = first_index(&m, "READY=1", 0);

    /* a couple of seconds of running */
    manager_collect(&m, 2500, NULL);
    int running_end = m.n;
    expect_note(&m, count_prefix(&m, "WATCHDOG=1", 0, running_end) >= 3,
                "fewer than 3 WATCHDOG=1 in 2.5 s with WatchdogSec=1s");
    expect_note(&m, count_prefix(&m, "STATUS=", 0, running_end) >= 1, "no STATUS= while running");
    int64_t last_ping = -1, last_status = -1;
    for (int i = 0; i < running_end; i++) {
        const note *n = &m.notes[i];
        if (strcmp(n->text, "WATCHDOG=1") == 0) {
            expect_note(&m, last_ping < 0 || n->at_ms - last_ping < WATCHDOG_MS,
                        "%lld ms between two WATCHDOG=1: the interval is %d ms",
                        (long long)(n->at_ms - last_ping), WATCHDOG_MS);
            last_ping = n->at_ms;
        } else if (strncmp(n->text, "STATUS=", 7) == 0) {
            /* receive times jitter a little around the sender's once-a-second */
            expect_note(&m, last_status < 0 || n->at_ms - last_status >= 900,
                        "two STATUS= %lld ms apart", (long long)(n->at_ms - last_status));
            last_status = n->at_ms;
        }
    }
    int st = first_index(&m, "STATUS=", 0);
    expect_note(&m, strstr(m.notes[st].text, "running") && strstr(m.notes[st].text, "/2 busy"),
                "STATUS= does not say running and busy/capacity: %s", m.notes[st].text);

    th_signal(r, SIGTERM);
    expect_note(&m, manager_collect(&m, 10000, "EXTEND_TIMEOUT_USEC="),
                "no EXTEND_TIMEOUT_USEC= within 10 s of SIGTERM");
    th_expect_exit0(r, 20000, "runner after SIGTERM");
    manager_collect(&m, 200, NULL);

    int stopping = first_index(&m, "STOPPING=1", running_end);
    int extend = first_index(&m, "EXTEND_TIMEOUT_USEC=", running_end);
    expect_note(&m, ready >= 0 && stopping > ready && extend > stopping,
                "expected READY=1 (%d) < STOPPING=1 (%d) < EXTEND_TIMEOUT_USEC= (%d)", ready,
                stopping, extend);
    expect_note(&m, first_index(&m, "READY=1", ready + 1) < 0, "READY=1 sent twice");
    expect_note(&m, first_index(&m, "STOPPING=1", 0) == stopping, "STOPPING=1 before SIGTERM");
    /* the deadline is grace (10 s) + kill_after (1 s) + slack, counted from SIGTERM */
    long long us = extend_usec(&m.notes[extend]);
    expect_note(&m, us > 0 && us <= 13000000LL, "EXTEND_TIMEOUT_USEC=%lld is not the real deadline",
                us);
    int draining = first_index(&m, "STATUS=draining", stopping);
    expect_note(&m, draining > stopping, "no STATUS=draining... after STOPPING=1");

    for (int i = 0; i < m.n; i++)
        expect_note(&m, m.notes[i].sender == r->pid, "\"%s\" came from pid %d, not the runner %d",
                    m.notes[i].text, (int)m.notes[i].sender, (int)r->pid);
    char *seen = th_read_file(th_path("seen"));
    th_assert(strcmp(seen, "unset unset\n") == 0, "the job saw NOTIFY_SOCKET/WATCHDOG_USEC: \"%s\"",
              seen);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE state = "
                                "'completed'",
                                NULL),
                 1, "the job finished during the drain");
    close(m.fd);
}

/* The second signal cancels: the runner tells the manager the shorter remaining deadline
 * (kill_after + slack) and exits 0 long before the grace is over. (A STATUS=cancelling may
 * never go out: the process can be gone before a second has passed since the last one.) */
Test(sdnotify_e2e, second_signal_extends_to_the_cancel_deadline, .init = th_setup,
     .fini = th_teardown, .timeout = 90)
{
    th_db *db = th_fresh_db(true);
    static manager m;
    const char *path = manager_bind(&m);
    th_enqueue_many(db->conn, 1, "nap", "{}", NULL);
    th_proc *r = start(db, config("30s", "1s", "60"), path);
    expect_note(&m, manager_collect(&m, 20000, "READY=1"), "no READY=1 within 20 s");
    th_assert(th_wait_lines(th_pids_file(), 1, 20000), "the job did not start");

    th_signal(r, SIGTERM);
    expect_note(&m, manager_collect(&m, 10000, "EXTEND_TIMEOUT_USEC="),
                "no EXTEND_TIMEOUT_USEC= after the first SIGTERM");
    int first = first_index(&m, "EXTEND_TIMEOUT_USEC=", 0);
    long long us = extend_usec(&m.notes[first]);
    expect_note(&m, us > 25000000LL && us <= 33000000LL,
                "first EXTEND_TIMEOUT_USEC=%lld: expected about grace + kill_after", us);

    int before = m.n;
    th_signal(r, SIGTERM);
    expect_note(&m, manager_collect(&m, 10000, "EXTEND_TIMEOUT_USEC="),
                "no EXTEND_TIMEOUT_USEC= after the second SIGTERM");
    int second = first_index(&m, "EXTEND_TIMEOUT_USEC=", before);
    us = extend_usec(&m.notes[second]);
    expect_note(&m, us > 0 && us <= 5000000LL,
                "second EXTEND_TIMEOUT_USEC=%lld: expected about kill_after + slack", us);
    int64_t elapsed;
    th_assert(th_wait_exit(r, 15000, &elapsed), "the runner did not exit after the second signal");
    th_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "exit status 0x%x", r->status);
    manager_collect(&m, 200, NULL);
    expect_note(&m, count_prefix(&m, "STOPPING=1", 0, m.n) == 1,
                "STOPPING=1 not sent exactly once");
    close(m.fd);
}
