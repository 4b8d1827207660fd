/* test_http_e2e.c - the listener of the real `runner run`: metrics of jobs of every outcome
 * validated by promtool, probes through start, drain and exit.
 *
 * Needs the control loop to feed runner/metrics.c and runner.c to start the listener
 * (see the README's "Metrics and probes"); register it in tests/meson.build's db_tests
 * once they do. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "prom.h"

#define IO_TIMEOUT_MS 5000

/* free_port returns a loopback port that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    th_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "could not bind a free port");
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* http_get does GET path on 127.0.0.1:port; returns the status (body in *body when not
 * NULL, malloc'd), or -1 when nothing listens or no answer came within IO_TIMEOUT_MS. */
static int http_get(int port, const char *path, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int64_t deadline = th_now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - th_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            free(buf);
            close(fd);
            return -1;
        }
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }
    if (body)
        *body = strdup(end + 4);
    free(buf);
    return status;
}

/* wait_status polls path until it answers want, at most timeout_ms. */
static bool wait_status(int port, const char *path, int want, int64_t timeout_ms)
{
    for (int64_t deadline = th_now_ms() + timeout_ms; th_now_ms() < deadline; th_sleep_ms(20))
        if (http_get(port, path, NULL) == want)
            return true;
    return false;
}

static char *scrape(int port)
{
    char *body = NULL;
    int status = http_get(port, "/metrics", &body);
    th_assert(status == 200, "GET /metrics answered %d", status);
    char *kept = th_fmt("%s", body); /* lives until teardown */
    free(body);
    return kept;
}

#define SERIES(name, queue, kind) th_fmt("%s{queue=\"%s\",kind=\"%s\"}", name, queue, kind)

/* wait_sample waits until series has value want in /metrics (counters reach their value
 * once the loop has written the outcomes; queue statistics refresh every few seconds). */
static void expect_sample(int port, const char *series, double want, int64_t timeout_ms)
{
    double v = -1;
    for (int64_t deadline = th_now_ms() + timeout_ms; th_now_ms() < deadline; th_sleep_ms(100)) {
        if (prom_sample(scrape(port), series, &v) && v == want)
            return;
    }
    th_fail("%s: expected %g, got %g within %lld ms", series, want, v, (long long)timeout_ms);
}

Test(http_e2e, metrics_of_every_outcome_and_probes_through_shutdown, .init = th_setup,
     .fini = th_teardown, .timeout = 120)
{
    th_db *db = th_fresh_db(true);
    int port = free_port();
    const char *cfg = th_write_config(
        "worker:\n"
        "  concurrency: 4\n"
        "  poll_interval: 100ms\n"
        "  lease: 3s\n"
        "  heartbeat: 1s\n"
        "shutdown:\n"
        "  grace: 20s\n"
        "  kill_after: 2s\n"
        "http:\n"
        "  listen: \"127.0.0.1:%d\"\n"
        "kinds:\n"
        "  ok:\n"
        "    command: [\"true\"]\n"
        "  fail:\n"
        "    command: [\"sh\", \"-c\", \"exit 3\"]\n"
        "    max_attempts: 2\n"
        "    backoff: { base: 10ms, max: 10ms }\n"
        "  hang:\n"
        "    command: [\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; exec sleep 30']\n"
        "  long:\n"
        "    command: [\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; exec sleep 2']\n",
        port);
    const char *env[] = {th_fmt("PIDS=%s", th_pids_file()), NULL};
    th_proc *r = th_runner_start(db->url, cfg, env);

    th_assert(wait_status(port, "/healthz", 200, 10000), "/healthz not 200 within 10 s");
    th_assert(wait_status(port, "/readyz", 200, 10000), "/readyz not 200 within 10 s");

    /* every outcome: completed, failed twice then discarded, cancelled, and a rescue of a
     * job whose owner (a made-up dead instance) let its lease expire */
    th_enqueue_many(db->conn, 5, "ok", "{}", "default");
    th_enqueue_many(db->conn, 1, "fail", "{}", "default");
    th_enqueue_many(db->conn, 1, "hang", "{}", "default");
    th_exec(db->conn,
            "INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, lease_owner,"
            "  lease_expires_at, started_at)"
            " VALUES ('default', 'ghost', 'running', 1, 5, gen_random_uuid(),"
            "  now() - interval '1 min', now() - interval '2 min')",
            NULL);
    th_assert(th_wait_lines(th_pids_file(), 1, 10000), "the hang job did not start");
    th_exec(db->conn, "SELECT runner.cancel_job(id) FROM runner.jobs WHERE kind = 'hang'", NULL);
    th_expect_until(db->conn, 15000, "every job settled",
                    "SELECT count(*) FILTER (WHERE kind = 'ok' AND state = 'completed') = 5"
                    "   AND count(*) FILTER (WHERE kind = 'fail' AND state = 'failed') = 1"
                    "   AND count(*) FILTER (WHERE kind = 'hang' AND state = 'cancelled') = 1"
                    "   AND count(*) FILTER (WHERE kind = 'ghost' AND state = 'available') = 1"
                    " FROM runner.jobs",
                    NULL);

    expect_sample(port, SERIES("runner_jobs_completed_total", "default", "ok"), 5, 5000);
    expect_sample(port, SERIES("runner_jobs_failed_total", "default", "fail"), 2, 5000);
    expect_sample(port, SERIES("runner_jobs_discarded_total", "default", "fail"), 1, 5000);
    expect_sample(port, SERIES("runner_jobs_cancelled_total", "default", "hang"), 1, 5000);
    expect_sample(port, SERIES("runner_jobs_rescued_total", "default", "ghost"), 1, 5000);
    expect_sample(port, SERIES("runner_job_duration_seconds_count", "default", "ok"), 5, 5000);
    expect_sample(port, "runner_queue_jobs{queue=\"default\",state=\"completed\"}", 5, 10000);
    expect_sample(port, "runner_queue_jobs{queue=\"default\",state=\"available\"}", 1, 10000);
    const char *text = scrape(port);
    prom_check_metrics(text);
    double waits = prom_value(text, "runner_job_wait_seconds_count{queue=\"default\"}");
    th_assert(waits >= 8, "runner_job_wait_seconds_count %g, expected at least 8 starts", waits);
    th_assert_eq(prom_value(text, "runner_workers"), 4, "runner_workers");
    th_assert_eq(prom_value(text, "runner_phase"), 0, "runner_phase");
    th_assert_eq(prom_value(text, "runner_database_up"), 1, "runner_database_up");
    double age = prom_value(text, "runner_lease_renewal_age_seconds");
    th_assert(age >= 0 && age < 3, "runner_lease_renewal_age_seconds %g with a 1 s heartbeat", age);

    /* SIGTERM while a job runs: not ready within 100 ms, still alive and answering */
    th_enqueue_many(db->conn, 1, "long", "{}", "default");
    th_assert(th_wait_lines(th_pids_file(), 2, 10000), "the long job did not start");
    int64_t t0 = th_now_ms();
    th_signal(r, SIGTERM);
    int status = 200;
    while (status != 503 && th_now_ms() - t0 < 1000)
        status = http_get(port, "/readyz", NULL);
    int64_t flipped = th_now_ms() - t0;
    th_assert(status == 503, "/readyz still %d 1 s after SIGTERM", status);
    th_assert(flipped <= 100, "/readyz turned 503 %lld ms after SIGTERM (limit 100 ms)",
              (long long)flipped);
    th_assert(th_alive(r), "the runner exited instead of draining");
    th_assert_eq(http_get(port, "/healthz", NULL), 200, "/healthz while draining");
    th_assert_eq(prom_value(scrape(port), "runner_phase"), 1, "runner_phase while draining");

    /* the listener answers until the process exits */
    int answered = 0;
    while (th_alive(r) && th_now_ms() - t0 < 30000) {
        if (http_get(port, "/readyz", NULL) == 503) {
            answered++;
        } else {
            bool exited = th_wait_exit(r, 200, NULL);
            th_assert(exited, "the listener stopped answering while the runner still runs");
        }
        th_sleep_ms(20);
    }
    th_expect_exit0(r, 30000, "runner run after draining the long job");
    th_assert(answered > 10, "only %d answers during a 2 s drain", answered);
    cr_log_info("/readyz 503 %lld ms after SIGTERM; %d probes answered during the drain",
                (long long)flipped, answered);
    th_expect_until(db->conn, 1000, "the long job completed during the drain",
                    "SELECT state = 'completed' FROM runner.jobs WHERE kind = 'long'", NULL);
    th_assert_eq(http_get(port, "/healthz", NULL), -1, "listening after exit");
}
