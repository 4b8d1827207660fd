/* test_http.c - the listener over real loopback sockets: paths, methods, probes, limits,
 * timeouts, addresses, and the http.listen key of runner.yaml. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "metrics.h"
#include "prom.h"
#include "qstats.h"
#include "util.h"

/* Every wait on a socket gives up after this: a hung server fails the test, never hangs it. */
#define IO_TIMEOUT_MS 5000

typedef struct response {
    int status;
    char head[4096]; /* status line and headers */
    char *body;
    size_t body_len;
} response;

static int connect_to(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                                 .sin6_port = htons((uint16_t)port),
                                 .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    }
    cr_assert_eq(rc, 0, "connect to port %d: %s", port, strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        cr_assert(n > 0, "send: %s", strerror(errno));
        s += n;
        len -= (size_t)n;
    }
}

/* read_until_eof reads everything until the server closes, at most timeout_ms; returns
 * the bytes (malloc'd) or NULL on timeout. */
static char *read_until_eof(int fd, int64_t timeout_ms, size_t *len)
{
    int64_t deadline = now_ms() + timeout_ms;
    strbuf sb;
    sb_init(&sb);
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            sb_free(&sb);
            return NULL;
        }
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) /* EOF, or a reset: the server closed */
            break;
        sb_append(&sb, buf, (size_t)n);
    }
    sb_append(&sb, "", 0);
    if (!sb.data)
        sb_puts(&sb, "");
    *len = sb.len;
    return sb.data;
}

static void parse(response *r, char *raw, size_t len)
{
    char *end = strstr(raw, "\r\n\r\n");
    cr_assert_not_null(end, "no end of headers in:\n%s", raw);
    size_t hl = (size_t)(end - raw);
    cr_assert_lt(hl, sizeof r->head);
    memcpy(r->head, raw, hl);
    r->head[hl] = '\0';
    cr_assert_eq(sscanf(raw, "HTTP/1.%*d %d", &r->status), 1, "bad status line: %s", raw);
    r->body_len = len - hl - 4;
    r->body = xstrndup(end + 4, r->body_len);
    free(raw);
}

/* request sends one request on a new connection ("Connection: close") and reads the
 * whole response. */
static response request(int port, const char *method, const char *path)
{
    response r = {0};
    int fd = connect_to(AF_INET, port);
    char req[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
             method, path);
    send_all(fd, req);
    size_t len;
    char *raw = read_until_eof(fd, IO_TIMEOUT_MS, &len);
    close(fd);
    cr_assert_not_null(raw, "no complete response to %s %s within %d ms", method, path,
                       IO_TIMEOUT_MS);
    parse(&r, raw, len);
    return r;
}

/* header returns the value of header name in r (case-insensitive name), or NULL. */
static const char *header(const response *r, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p, "\r\n")) {
        p += 2;
        if (!strncasecmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out, outlen, "%.*s", (int)vl, v);
            return out;
        }
    }
    return NULL;
}

static metrics *m;
static http_server *srv;

static int start(const http_options *opt)
{
    char err[ERR_LEN] = "";
    m = metrics_create();
    srv = http_start("127.0.0.1:0", m, NULL, opt, err, sizeof err);
    cr_assert_not_null(srv, "http_start: %s", err);
    cr_assert_gt(http_port(srv), 0);
    return http_port(srv);
}

static void stop(void)
{
    http_stop(srv);
    metrics_destroy(m);
    srv = NULL;
    m = NULL;
}

Test(http, metrics_are_served_and_valid, .fini = stop)
{
    int port = start(NULL);
    metrics_job_outcome(m, metrics_series_for(m, "default", "hello"), METRICS_COMPLETED, 0.5);
    response r = request(port, "GET", "/metrics");
    cr_assert_eq(r.status, 200, "%s", r.head);
    char v[256];
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v),
                     "text/plain; version=0.0.4; charset=utf-8");
    prom_check_metrics(r.body);
    cr_expect_eq(
        prom_value(r.body, "runner_jobs_completed_total{queue=\"default\",kind=\"hello\"}"), 1);
    free(r.body);

    r = request(port, "GET", "/metrics?name[]=x"); /* query strings are ignored */
    cr_expect_eq(r.status, 200);
    free(r.body);
}

Test(http, head_has_no_body, .fini = stop)
{
    int port = start(NULL);
    const char *paths[] = {"/metrics", "/healthz", "/readyz"};
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        response g = request(port, "GET", paths[i]);
        response h = request(port, "HEAD", paths[i]);
        char v[64];
        cr_expect_eq(h.status, g.status, "HEAD %s", paths[i]);
        cr_expect_eq(h.body_len, 0, "HEAD %s sent a body", paths[i]);
        cr_assert_not_null(header(&h, "Content-Length", v, sizeof v), "%s", h.head);
        cr_expect_gt(atol(v), 0, "HEAD %s: Content-Length %s", paths[i], v);
        free(g.body);
        free(h.body);
    }
}

Test(http, unknown_paths_are_404, .fini = stop)
{
    int port = start(NULL);
    const char *paths[] = {"/", "/metricsx", "/metrics/", "/health", "/jobs", "/%00"};
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        response r = request(port, "GET", paths[i]);
        cr_expect_eq(r.status, 404, "GET %s: %d", paths[i], r.status);
        free(r.body);
    }
    response r = request(port, "POST", "/nowhere");
    cr_expect_eq(r.status, 404);
    free(r.body);
}

Test(http, other_methods_are_405_with_allow, .fini = stop)
{
    int port = start(NULL);
    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
        response r = request(port, methods[i], i % 2 ? "/healthz" : "/metrics");
        char v[64];
        cr_expect_eq(r.status, 405, "%s: %d", methods[i], r.status);
        cr_expect_str_eq(header(&r, "Allow", v, sizeof v) ? v : "(none)", "GET, HEAD");
        free(r.body);
    }
}

Test(http, readyz_follows_phase_and_database, .fini = stop)
{
    int port = start(NULL);
    response r = request(port, "GET", "/readyz");
    cr_expect_eq(r.status, 503, "not ready before the database is up");
    free(r.body);
    metrics_set_db_up(m, true);
    r = request(port, "GET", "/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "ready\n");
    free(r.body);
    metrics_set_phase(m, PHASE_DRAINING);
    r = request(port, "GET", "/readyz");
    cr_expect_eq(r.status, 503, "draining");
    free(r.body);
    metrics_set_phase(m, PHASE_CANCELLING);
    r = request(port, "GET", "/readyz");
    cr_expect_eq(r.status, 503, "cancelling");
    free(r.body);
    metrics_set_phase(m, PHASE_RUNNING);
    metrics_set_db_up(m, false);
    r = request(port, "GET", "/readyz");
    cr_expect_eq(r.status, 503, "database down");
    free(r.body);
    /* liveness does not care about the database */
    r = request(port, "GET", "/healthz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "ok\n");
    free(r.body);
}

Test(http, healthz_fails_when_ticks_stop, .fini = stop)
{
    int port = start(&(http_options){.liveness_ms = 300});
    metrics_loop_tick(m, now_ms());
    response r = request(port, "GET", "/healthz");
    cr_expect_eq(r.status, 200);
    free(r.body);
    usleep(500 * 1000);
    r = request(port, "GET", "/healthz");
    cr_expect_eq(r.status, 503, "no tick for 500 ms with a 300 ms threshold");
    free(r.body);
    metrics_loop_tick(m, now_ms());
    r = request(port, "GET", "/healthz");
    cr_expect_eq(r.status, 200, "ticking again");
    free(r.body);
}

/* A connection that has not sent a whole request within the timeout is closed. */
Test(http, slow_clients_are_cut_off, .fini = stop)
{
    int port = start(&(http_options){.timeout_s = 1});
    int idle = connect_to(AF_INET, port), partial = connect_to(AF_INET, port);
    send_all(partial, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
    int64_t t0 = now_ms();
    size_t len;
    char *a = read_until_eof(idle, IO_TIMEOUT_MS, &len);
    char *b = read_until_eof(partial, IO_TIMEOUT_MS, &len);
    int64_t took = now_ms() - t0;
    cr_expect_not_null(a, "an idle connection stayed open for %d ms", IO_TIMEOUT_MS);
    cr_expect_not_null(b, "a half-sent request stayed open for %d ms", IO_TIMEOUT_MS);
    cr_expect_geq(took, 500, "closed after %lld ms, before the 1 s timeout", (long long)took);
    free(a);
    free(b);
    close(idle);
    close(partial);
    /* and the server still serves */
    response r = request(port, "GET", "/healthz");
    cr_expect_eq(r.status, 200);
    free(r.body);
}

/* At the connection limit, a further connection is closed unanswered (libmicrohttpd
 * accepts and closes it) until one of the others closes. */
Test(http, connection_limit, .fini = stop)
{
    int port = start(&(http_options){.max_connections = 2});
    int held[2];
    for (int i = 0; i < 2; i++)
        held[i] = connect_to(AF_INET, port);
    usleep(200 * 1000); /* let the server accept both */
    int extra = connect_to(AF_INET, port);
    send(extra, "GET /healthz HTTP/1.0\r\n\r\n", 25, MSG_NOSIGNAL);
    size_t len = 0;
    char *raw = read_until_eof(extra, 1000, &len);
    cr_expect(raw == NULL || len == 0, "a third connection was served with the limit at 2:\n%s",
              raw ? raw : "");
    free(raw);
    close(extra);
    close(held[0]);
    /* a slot frees once the server has seen the close */
    int status = 0;
    for (int64_t deadline = now_ms() + IO_TIMEOUT_MS; status == 0 && now_ms() < deadline;) {
        int fd = connect_to(AF_INET, port);
        send_all(fd, "GET /healthz HTTP/1.0\r\n\r\n");
        raw = read_until_eof(fd, IO_TIMEOUT_MS, &len);
        close(fd);
        if (raw && len)
            sscanf(raw, "HTTP/1.%*d %d", &status);
        else
            usleep(20 * 1000);
        free(raw);
    }
    cr_expect_eq(status, 200, "no connection served after one of the two closed");
    close(held[1]);
}

/* Request headers beyond the per-connection memory are refused, not buffered. */
Test(http, oversized_requests_are_refused, .fini = stop)
{
    int port = start(NULL);
    int fd = connect_to(AF_INET, port);
    strbuf req;
    sb_init(&req);
    sb_puts(&req, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 64 * 1024; i++)
        sb_puts(&req, "a");
    sb_puts(&req, "\r\nConnection: close\r\n\r\n");
    send(fd, req.data, req.len, MSG_NOSIGNAL); /* the server may close before all of it */
    sb_free(&req);
    size_t len;
    char *raw = read_until_eof(fd, IO_TIMEOUT_MS, &len);
    close(fd);
    cr_assert_not_null(raw, "no answer to a 64 KiB header");
    int status = 0;
    if (len)
        sscanf(raw, "HTTP/1.%*d %d", &status);
    cr_expect(len == 0 || status == 431 || status == 413 || status == 400,
              "a 64 KiB header got status %d", status);
    free(raw);
}

Test(http, addresses_ipv6_and_names)
{
    const char *specs[] = {"[::1]:0", "localhost:0", "127.0.0.1:0"};
    for (size_t i = 0; i < ARRAY_LEN(specs); i++) {
        char err[ERR_LEN] = "", addr[128];
        metrics *mm = metrics_create();
        http_server *s = http_start(specs[i], mm, NULL, NULL, err, sizeof err);
        cr_assert_not_null(s, "%s: %s", specs[i], err);
        http_address(s, addr, sizeof addr);
        int v6 = specs[i][0] == '[';
        cr_expect(strncmp(addr, v6 ? "[::1]:" : "127.0.0.1:", v6 ? 6 : 10) == 0, "%s bound %s",
                  specs[i], addr);
        int fd = connect_to(v6 ? AF_INET6 : AF_INET, http_port(s));
        send_all(fd, "GET /healthz HTTP/1.0\r\n\r\n");
        size_t len;
        char *raw = read_until_eof(fd, IO_TIMEOUT_MS, &len);
        close(fd);
        cr_assert_not_null(raw, "%s: no answer", specs[i]);
        cr_expect(strstr(raw, " 200 "), "%s: %s", specs[i], raw);
        free(raw);
        http_stop(s);
        metrics_destroy(mm);
    }
}

Test(http, stop_closes_the_port)
{
    char err[ERR_LEN];
    metrics *mm = metrics_create();
    http_server *s = http_start("127.0.0.1:0", mm, NULL, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    int port = http_port(s);
    int fd = connect_to(AF_INET, port); /* an open connection does not hold up the stop */
    http_stop(s);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_expect_neq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "port %d still open", port);
    close(fd);
    http_stop(NULL);
    metrics_destroy(mm);
}

Test(http, start_errors)
{
    char err[ERR_LEN];
    metrics *mm = metrics_create();
    http_server *a = http_start("127.0.0.1:0", mm, NULL, NULL, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", http_port(a));
    cr_expect_null(http_start(spec, mm, NULL, NULL, err, sizeof err));
    cr_expect(strstr(err, "could not listen on \"127.0.0.1:") && strstr(err, "in use"), "%s", err);
    cr_expect_null(http_start("no-such-host.invalid:9640", mm, NULL, NULL, err, sizeof err));
    cr_expect(strstr(err, "could not resolve \"no-such-host.invalid\""), "%s", err);
    cr_expect_null(http_start("127.0.0.1", mm, NULL, NULL, err, sizeof err));
    cr_expect(strstr(err, "expected HOST:PORT"), "%s", err);
    http_stop(a);
    metrics_destroy(mm);
}

Test(http, parse_listen)
{
    char host[HTTP_HOST_LEN], port[HTTP_PORT_LEN], err[ERR_LEN];
    cr_assert_eq(
        http_parse_listen("127.0.0.1:9640", host, sizeof host, port, sizeof port, err, sizeof err),
        0, "%s", err);
    cr_expect_str_eq(host, "127.0.0.1");
    cr_expect_str_eq(port, "9640");
    cr_assert_eq(
        http_parse_listen("[::1]:80", host, sizeof host, port, sizeof port, err, sizeof err), 0,
        "%s", err);
    cr_expect_str_eq(host, "::1");
    cr_expect_str_eq(port, "80");
    cr_assert_eq(http_parse_listen("metrics.internal:0", host, sizeof host, port, sizeof port, err,
                                   sizeof err),
                 0, "%s", err);
    cr_expect_str_eq(host, "metrics.internal");

    static const struct {
        const char *in, *want;
    } bad[] = {
        {"9640", "expected HOST:PORT"},       {":9640", "the host is missing"},
        {"::1:9640", "needs brackets"},       {"[::1]9640", "expected \"[IPv6]:PORT\""},
        {"[::1", "expected \"[IPv6]:PORT\""}, {"host:", "from 0 to 65535"},
        {"host:65536", "from 0 to 65535"},    {"host:99999999999999999999", "from 0 to 65535"},
        {"host:http", "from 0 to 65535"},     {"host:-1", "from 0 to 65535"},
        {"host:80 ", "from 0 to 65535"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        cr_expect_eq(
            http_parse_listen(bad[i].in, host, sizeof host, port, sizeof port, err, sizeof err), -1,
            "accepted \"%s\"", bad[i].in);
        cr_expect(strstr(err, bad[i].want), "\"%s\": %s", bad[i].in, err);
    }
}

Test(http, config_key)
{
    config c;
    char err[ERR_LEN] = "";
    config_init(&c);
    cr_expect_null(c.http_listen, "off unless configured");
    const char *ok = "http:\n  listen: \"[::1]:9640\"\n";
    cr_assert_eq(config_load_string(&c, ok, strlen(ok), "runner.yaml", err, sizeof err), 0, "%s",
                 err);
    cr_expect_str_eq(c.http_listen, "[::1]:9640");
    config_free(&c);

    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"http:\n  listen: 9640\n",
         "could not parse \"http.listen\" at runner.yaml:2:11: invalid listen address \"9640\""},
        {"worker:\n  concurrency: 2\nhttp:\n  listen: \"localhost:http\"\n",
         "could not parse \"http.listen\" at runner.yaml:4:11: invalid listen address"},
        {"http:\n  listen: [a]\n", "\"http.listen\" at runner.yaml:2:11: expected a string"},
        {"http:\n  listn: \"127.0.0.1:1\"\n", "unrecognized key \"http.listn\" at runner.yaml:2:3"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        config_init(&c);
        err[0] = '\0';
        cr_expect_eq(config_load_string(&c, bad[i].yaml, strlen(bad[i].yaml), "runner.yaml", err,
                                        sizeof err),
                     -1);
        cr_expect(strstr(err, bad[i].want), "got: %s\nwant: %s", err, bad[i].want);
        config_free(&c);
    }
}

/* The example runner.yaml turns the listener on for localhost. */
Test(http, example_config_listens_on_localhost)
{
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/runner.yaml", root && *root ? root : ".");
    config c;
    config_init(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.http_listen ? c.http_listen : "(none)", "127.0.0.1:9640");
    config_free(&c);
}

/* A server that accepts TCP connections (the kernel does, into the backlog) and never
 * answers: what a hung database looks like to libpq. */
static int blackhole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static int scrape_port;
static response scraped;
static int64_t scrape_ms;

static void *scrape(void *arg)
{
    (void)arg;
    int64_t t0 = now_ms();
    scraped = request(scrape_port, "GET", "/metrics");
    scrape_ms = now_ms() - t0;
    return NULL;
}

/* /metrics waiting on a hung database holds up neither a probe nor another scrape, and
 * gives up within the statistics' timeout. */
Test(http, hung_database_blocks_no_probe, .fini = stop)
{
    int dbport, hole = blackhole(&dbport);
    char url[128], err[ERR_LEN];
    snprintf(url, sizeof url, "postgresql://127.0.0.1:%d/runner?sslmode=disable", dbport);
    const char *queues[] = {"default"};
    qstats *qs = qstats_create(url, queues, 1, 0);
    m = metrics_create();
    srv = http_start("127.0.0.1:0", m, qs, NULL, err, sizeof err);
    cr_assert_not_null(srv, "%s", err);
    scrape_port = http_port(srv);

    pthread_t t;
    pthread_create(&t, NULL, scrape, NULL);
    usleep(300 * 1000); /* the first scrape is now waiting for the database */
    int64_t t0 = now_ms();
    response h = request(scrape_port, "GET", "/healthz");
    int64_t probe_ms = now_ms() - t0;
    cr_expect_eq(h.status, 200);
    cr_expect_lt(probe_ms, 1000, "/healthz took %lld ms while /metrics waited on the database",
                 (long long)probe_ms);
    t0 = now_ms();
    response other = request(scrape_port, "GET", "/metrics");
    int64_t other_ms = now_ms() - t0;
    cr_expect_eq(other.status, 200);
    cr_expect_lt(other_ms, 1000, "a second scrape waited %lld ms for the first one's refresh",
                 (long long)other_ms);
    pthread_join(t, NULL);
    cr_expect_eq(scraped.status, 200);
    cr_expect_lt(scrape_ms, QSTATS_TIMEOUT_MS + 2000, "the hung refresh took %lld ms",
                 (long long)scrape_ms);
    cr_expect_null(strstr(scraped.body, "runner_queue_jobs{"),
                   "queue statistics rendered without a database");
    prom_check_metrics(scraped.body);
    free(h.body);
    free(other.body);
    free(scraped.body);
    http_stop(srv);
    srv = NULL;
    qstats_destroy(qs);
    close(hole);
}

/* sigblk reads the blocked-signal mask of thread tid from /proc. */
static unsigned long long sigblk(const char *tid)
{
    char path[320], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    FILE *f = fopen(path, "r");
    unsigned long long mask = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", &mask) == 1)
            break;
    if (f)
        fclose(f);
    return mask;
}

/* Signals belong to the main thread: the listener's threads, the per-connection ones
 * included, block SIGTERM, SIGINT and SIGHUP. */
Test(http, listener_threads_block_signals, .fini = stop)
{
    int port = start(NULL);
    int fd = connect_to(AF_INET, port); /* a connection thread */
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    usleep(200 * 1000);
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    char self[32];
    snprintf(self, sizeof self, "%d", (int)getpid());
    int others = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, self))
            continue;
        others++;
        unsigned long long m = sigblk(e->d_name);
        unsigned long long want =
            1ULL << (SIGTERM - 1) | 1ULL << (SIGINT - 1) | 1ULL << (SIGHUP - 1);
        cr_expect_eq(m & want, want, "thread %s does not block SIGTERM/SIGINT/SIGHUP (SigBlk %llx)",
                     e->d_name, m);
    }
    closedir(d);
    cr_expect_geq(others, 2, "expected the listening and a connection thread, found %d", others);
    close(fd);
}
