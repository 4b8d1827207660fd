/* http.c - the HTTP listener of `runner run`, on libmicrohttpd: metrics and probes.
 *
 * DESIGN
 * Thread model: libmicrohttpd's own listening thread plus one thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION with poll(), not select(), so descriptors above
 * FD_SETSIZE work). The control loop never serves a request: it only stores numbers into
 * the metrics registry (atomics), so a scrape adds no latency to it and a wedged loop
 * cannot wedge the probes. A thread per connection rather than one polling thread for
 * all: /metrics may wait on the database for the queue statistics (up to their statement
 * timeout, see qstats.c) and must not hold up a /healthz probe meanwhile; with one
 * polling thread, a slow database would fail the kubelet's liveness probe (1 s timeout
 * by default), which the database being down must never do. The threads are bounded by
 * the connection limit and exit with their connection.
 *
 * Limits: HTTP_MAX_CONNECTIONS (16) connections at once: probes and a few scrapers need
 * a handful; libmicrohttpd closes a connection beyond them unanswered. HTTP_TIMEOUT_S (10 s) closes idle
 * and slow clients (Prometheus' default scrape timeout is 10 s; keep-alive connections
 * are reopened at no cost). 16 KiB of memory per connection for the request: headers of
 * a GET are far smaller, a larger request is refused by libmicrohttpd. Responses are built
 * in memory; /metrics is bounded by the series caps of metrics.h.
 *
 * Liveness: /healthz answers 503 once the loop has not ticked for liveness_ms, by
 * default HTTP_LIVENESS_MS (10 s). The loop wakes at least once a second, so ten missed
 * ticks are a wedge, not a slow turn. One turn may legitimately last a statement timeout
 * plus a connect timeout while the database hangs (the loop's statements time out after
 * a quarter of the lease, up to 30 s); a hung database must not fail liveness, so with a
 * lease above 20 s the caller passes that sum plus slack. The kubelet restarts only after
 * failureThreshold such answers.
 *
 * The listener stays up through the whole shutdown (drain and cancel), so /readyz can
 * say 503 while jobs finish; the caller stops it last, just before the process exits. */
#include "http.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECTION_MEMORY (16 * 1024)
#define THREAD_STACK (256 * 1024)
#define LISTEN_BACKLOG 64

struct http_server {
    struct MHD_Daemon *daemon;
    int fd;
    metrics *m;
    qstats *qs;
    int64_t liveness_ms;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

int http_parse_listen(const char *listen, char *host, size_t hostlen, char *port, size_t portlen,
                      char *err, size_t errlen)
{
    const char *h = listen, *hend, *p;
    if (*listen == '[') {
        h = listen + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return errf(
                err, errlen,
                "invalid listen address \"%s\": expected \"[IPv6]:PORT\", e.g. \"[::1]:9640\"",
                listen);
        p = hend + 2;
    } else {
        hend = strrchr(listen, ':');
        if (!hend)
            return errf(
                err, errlen,
                "invalid listen address \"%s\": expected HOST:PORT, e.g. \"127.0.0.1:9640\"",
                listen);
        if (memchr(listen, ':', (size_t)(hend - listen)))
            return errf(err, errlen,
                        "invalid listen address \"%s\": an IPv6 address needs brackets, e.g. "
                        "\"[::1]:9640\"",
                        listen);
        p = hend + 1;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0)
        return errf(err, errlen,
                    "invalid listen address \"%s\": the host is missing (\"0.0.0.0:PORT\" listens "
                    "on every interface)",
                    listen);
    if (hl >= hostlen)
        return errf(err, errlen, "invalid listen address \"%s\": host name too long", listen);
    long n = 0;
    const char *d = p;
    for (; *d >= '0' && *d <= '9' && n <= 65535; d++)
        n = n * 10 + (*d - '0');
    if (d == p || *d || n > 65535 || (size_t)(d - p) >= portlen)
        return errf(err, errlen,
                    "invalid listen address \"%s\": the port must be a number from 0 to 65535",
                    listen);
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%ld", n);
    return 0;
}

/* reply queues a short text response; body is copied. allow: the Allow header, or NULL. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result serve_metrics(http_server *s, struct MHD_Connection *c)
{
    strbuf sb;
    sb_init(&sb);
    int64_t now = now_ms();
    metrics_render(s->m, &sb, now);
    if (s->qs)
        qstats_render(s->qs, &sb, now_ms());
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sb.len, sb.data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        sb_free(&sb);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* handle answers one request. libmicrohttpd strips the query string from url, omits the
 * body of HEAD responses and keeps their Content-Length. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    http_server *s = cls;
    bool is_metrics = !strcmp(url, "/metrics"), is_healthz = !strcmp(url, "/healthz"),
         is_readyz = !strcmp(url, "/readyz");
    if (!is_metrics && !is_healthz && !is_readyz)
        return reply(c, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "GET, HEAD");
    if (is_metrics)
        return serve_metrics(s, c);
    if (is_healthz)
        return metrics_live(s->m, now_ms(), s->liveness_ms)
                   ? reply(c, MHD_HTTP_OK, "ok\n", NULL)
                   : reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "control loop stalled\n", NULL);
    return metrics_ready(s->m) ? reply(c, MHD_HTTP_OK, "ready\n", NULL)
                               : reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n", NULL);
}

/* mhd_log routes libmicrohttpd's messages (client errors, the connection limit) to the
 * debug log: they are about clients, and a flood of them must not flood the log. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!log_enabled(LOG_DEBUG))
        return;
    char msg[ERR_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    log_event(LOG_DEBUG, "http listener", "detail", msg, NULL);
}

/* bind_listen opens, binds and listens on the first address of host:port that works. */
static int bind_listen(http_server *s, const char *spec, char *err, size_t errlen)
{
    char host[HTTP_HOST_LEN], port[HTTP_PORT_LEN];
    if (http_parse_listen(spec, host, sizeof host, port, sizeof port, err, errlen) < 0)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return errf(err, errlen, "could not resolve \"%s\" of http.listen \"%s\": %s", host, spec,
                    gai_strerror(gai));
    int e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        /* a restarted runner binds again at once, past its predecessor's TIME_WAIT */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
            s->fd = fd;
            s->addrlen = sizeof s->addr;
            getsockname(fd, (struct sockaddr *)&s->addr, &s->addrlen);
            freeaddrinfo(res);
            return 0;
        }
        e = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return errf(err, errlen, "could not listen on \"%s\": %s", spec, strerror(e));
}

http_server *http_start(const char *listen, metrics *m, qstats *qs, const http_options *opt,
                        char *err, size_t errlen)
{
    http_options o = opt ? *opt : (http_options){0};
    http_server *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->qs = qs;
    s->fd = -1;
    s->liveness_ms = o.liveness_ms > 0 ? o.liveness_ms : HTTP_LIVENESS_MS;
    if (bind_listen(s, listen, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    /* libmicrohttpd's threads inherit this thread's mask: signals belong to the main
     * thread only. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
            (s->addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->fd,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(o.max_connections ? o.max_connections : HTTP_MAX_CONNECTIONS),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(o.timeout_s ? o.timeout_s : HTTP_TIMEOUT_S),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)THREAD_STACK, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->daemon) {
        close(s->fd);
        free(s);
        errf(err, errlen, "could not start the http listener on \"%s\"", listen);
        return NULL;
    }
    return s;
}

void http_address(const http_server *s, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (s->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%d", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&s->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%d", host, ntohs(a->sin_port));
    }
}

int http_port(const http_server *s)
{
    if (s->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&s->addr)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&s->addr)->sin_port);
}

void http_stop(http_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon); /* closes the listening socket it was given, too */
    free(s);
}
