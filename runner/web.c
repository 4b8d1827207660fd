/* web.c - the dashboard's HTTP server on libmicrohttpd: request bodies, authentication,
 * sessions and CSRF checks, security headers, static files, and the process around it.
 *
 * DESIGN: `runner web` is its own process with its own database role, so the database
 * decides what it may do: a page offers an action only when has_function_privilege says
 * the role may run it, and the action is one call of that admin function, so a role
 * without the right gets PostgreSQL's "permission denied" even for a forged request.
 * Requests run on a small thread pool (MHD_OPTION_THREAD_POOL_SIZE), each taking a
 * connection from a pool for the length of the request. Signals are blocked in every
 * thread; the main thread waits for SIGTERM/SIGINT in sigwait and stops the daemon. */
#include "web.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dbpool.h"
#include "log.h"
#include "util.h"
#include "web_assets.h"
#include "web_auth.h"
#include "web_pages.h"
#include "web_query.h"
#include "web_url.h"

#define WEB_THREADS 4
#define WEB_MAX_BODY (64 * 1024)
#define WEB_MIGRATION 6 /* sql/006_web.sql: the roles and indexes the pages need */

typedef struct web_server {
    dbpool *pool; /* connections for the request threads */
    web_creds creds;
    bool auth; /* credentials are required */
    bool hide_args;
    unsigned char secret[WEB_SECRET_LEN];
} web_server;

/* One HTTP request, from its first line to its response. */
typedef struct web_request {
    char *uri; /* the request target as sent: path and query, still percent-encoded */
    bool started;
    strbuf body;
    bool too_large;
} web_request;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    web_request *r = xcalloc(1, sizeof *r);
    r->uri = xstrdup(uri);
    sb_init(&r->body);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    web_request *r = *con_cls;
    if (!r)
        return;
    free(r->uri);
    sb_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_event(LOG_WARN, "http server", "error", msg, NULL);
}

/* reply queues a response with the headers every response carries. */
static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *type,
                            struct MHD_Response *resp, const char *cookie, bool cache)
{
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; frame-ancestors 'none'; form-action 'self'");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", cache ? "max-age=300" : "no-store");
    if (cookie)
        MHD_add_response_header(resp, "Set-Cookie", cookie);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *text)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                                MHD_RESPMEM_MUST_COPY);
    return reply(c, status, "text/plain; charset=utf-8", resp, NULL, false);
}

static enum MHD_Result send_static(struct MHD_Connection *c, const char *name)
{
    for (int i = 0; i < web_assets_count; i++) {
        if (strcmp(web_assets[i].name, name) == 0) {
            struct MHD_Response *resp = MHD_create_response_from_buffer(
                web_assets[i].len, (void *)web_assets[i].data, MHD_RESPMEM_PERSISTENT);
            return reply(c, 200, web_assets[i].type, resp, NULL, true);
        }
    }
    return send_text(c, 404, "not found\n");
}

/* authenticate checks HTTP basic credentials; user receives the name ("" without auth). */
static bool authenticate(const web_server *s, struct MHD_Connection *c, char *user,
                         size_t usercap)
{
    user[0] = '\0';
    if (!s->auth)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    char password[512];
    if (web_basic_parse(h, user, usercap, password, sizeof password) < 0)
        return false;
    bool ok = web_creds_check(&s->creds, user, password);
    explicit_bzero(password, sizeof password);
    return ok;
}

/* rights reads the role's name, the database clock and what the role may run. */
static int rights(web_req *rq, char *err, size_t errlen)
{
    int64_t t0 = now_us();
    PGresult *res = web_exec_text(
        rq->conn,
        "SELECT current_user, extract(epoch FROM now()),"
        " has_function_privilege('runner.retry_job(bigint)', 'EXECUTE'),"
        " has_function_privilege('runner.cancel_job(bigint)', 'EXECUTE'),"
        " has_function_privilege('runner.pause_queue(text)', 'EXECUTE'),"
        " has_function_privilege('runner.resume_queue(text)', 'EXECUTE')",
        0, NULL, &rq->broken, err, errlen);
    rq->db_ms += (double)(now_us() - t0) / 1000.0;
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 6) {
        PQclear(res);
        return errf(err, errlen, "got %d rows and %d fields, expected 1 row and 6 fields",
                    PQntuples(res), PQnfields(res));
    }
    snprintf(rq->role, sizeof rq->role, "%s", PQgetvalue(res, 0, 0));
    rq->now = strtod(PQgetvalue(res, 0, 1), NULL);
    rq->may.retry = PQgetvalue(res, 0, 2)[0] == 't';
    rq->may.cancel = PQgetvalue(res, 0, 3)[0] == 't';
    rq->may.pause = PQgetvalue(res, 0, 4)[0] == 't';
    rq->may.resume = PQgetvalue(res, 0, 5)[0] == 't';
    PQclear(res);
    return 0;
}

/* put_conn gives a request's connection back; a broken one is closed. */
static void put_conn(dbpool *pool, PGconn *conn, bool broken)
{
    if (broken && conn)
        PQfinish(conn);
    else
        dbpool_put(pool, conn);
}

static enum MHD_Result respond(web_server *s, struct MHD_Connection *c, web_request *r,
                               bool post)
{
    int64_t t0 = now_us();
    char user[256], err[ERR_LEN];
    if (!authenticate(s, c, user, sizeof user)) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            strlen("authentication required\n"), (void *)"authentication required\n",
            MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "WWW-Authenticate",
                                "Basic realm=\"runner\", charset=\"UTF-8\"");
        return reply(c, 401, "text/plain; charset=utf-8", resp, NULL, false);
    }

    char *q = strchr(r->uri, '?');
    char *path = q ? xstrndup(r->uri, (size_t)(q - r->uri)) : xstrdup(r->uri);
    web_route route;
    web_route_parse(path, &route);
    free(path);
    if (route.kind == ROUTE_STATIC) {
        enum MHD_Result rc = send_static(c, route.name);
        web_route_free(&route);
        return rc;
    }
    if (route.kind == ROUTE_NONE) {
        web_route_free(&route);
        return send_text(c, 404, "not found\n");
    }

    web_params query = {0}, form = {0};
    if (q && web_form_parse(q + 1, strlen(q + 1), &query, err, sizeof err) < 0) {
        web_route_free(&route);
        web_params_free(&query);
        return send_text(c, 400, "malformed query string\n");
    }

    /* the session: an existing cookie, or a new one set with this response */
    char session[WEB_SESSION_LEN + 1], cookie[128];
    bool new_session = false;
    const char *cookies = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
    if (web_cookie_get(cookies, WEB_SESSION_COOKIE, session, sizeof session) < 0 ||
        !web_session_valid(session)) {
        if (post) {
            web_route_free(&route);
            web_params_free(&query);
            return send_text(c, 403, "refused: no session cookie (load the page, then submit "
                                     "its form)\n");
        }
        if (web_session_new(session, err, sizeof err) < 0) {
            web_route_free(&route);
            web_params_free(&query);
            return send_text(c, 500, "could not create a session\n");
        }
        new_session = true;
    }
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict",
             WEB_SESSION_COOKIE, session);

    if (post) {
        const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        const char *referer = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Referer");
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        const char *why = NULL;
        if (!web_origin_ok(origin, referer, host))
            why = "refused: the request does not come from this dashboard (Origin check)\n";
        else if (!type || strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0)
            why = "refused: expected a form (application/x-www-form-urlencoded)\n";
        else if (web_form_parse(r->body.data ? r->body.data : "", r->body.len, &form, err,
                                sizeof err) < 0)
            why = "refused: malformed form body\n";
        else if (!web_csrf_check(s->secret, session, user, web_param_get(&form, "csrf")))
            why = "refused: missing or invalid CSRF token (reload the page and try again)\n";
        if (why) {
            log_event(LOG_WARN, "dashboard refused a POST", "path", r->uri, "reason", why, NULL);
            web_route_free(&route);
            web_params_free(&query);
            web_params_free(&form);
            return send_text(c, 403, why);
        }
    }

    char token[WEB_TOKEN_LEN + 1];
    web_csrf_token(s->secret, session, user, token);
    web_req rq = {.post = post, .route = &route, .query = &query, .form = &form,
                  .csrf = token, .hide_args = s->hide_args};
    web_resp rs = {.status = 200};
    sb_init(&rs.body);
    rq.conn = dbpool_get(s->pool, err, sizeof err);
    if (!rq.conn || rights(&rq, err, sizeof err) < 0) {
        log_event(LOG_WARN, "dashboard has no database", "error", err, NULL);
        snprintf(rq.role, sizeof rq.role, "?");
        char msg[ERR_LEN + 32];
        snprintf(msg, sizeof msg, "the database is not available: %s", err);
        page_error(&rq, &rs, 503, "Database unavailable", msg);
    } else {
        web_handle(&rq, &rs);
    }
    put_conn(s->pool, rq.conn, rq.broken);

    struct MHD_Response *resp;
    if (rs.location) {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Location", rs.location);
    } else {
        resp = MHD_create_response_from_buffer(rs.body.len, rs.body.data, MHD_RESPMEM_MUST_FREE);
        rs.body = (strbuf){0}; /* MHD frees it */
    }
    if (log_enabled(LOG_DEBUG)) {
        char status[8], ms[32];
        snprintf(status, sizeof status, "%d", rs.status);
        snprintf(ms, sizeof ms, "%.1f", (double)(now_us() - t0) / 1000.0);
        log_event(LOG_DEBUG, "dashboard request", "method", post ? "POST" : "GET", "path",
                  r->uri, "status", status, "ms", ms, NULL);
    }
    enum MHD_Result rc =
        reply(c, rs.status, "text/html; charset=utf-8", resp, new_session ? cookie : NULL, false);
    free(rs.location);
    sb_free(&rs.body);
    web_route_free(&route);
    web_params_free(&query);
    web_params_free(&form);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)url;
    (void)version;
    web_server *s = cls;
    web_request *r = *con_cls;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (!r)
        return MHD_NO;
    if (!r->started) {
        r->started = true;
        if (!post && strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            return send_text(c, 405, "method not allowed\n");
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (r->body.len + *upload_data_size > WEB_MAX_BODY)
            r->too_large = true;
        else
            sb_append(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        return send_text(c, 413, "request body too large\n");
    return respond(s, c, r, post);
}

/* check_schema fails unless the dashboard's migration has been applied. */
static int check_schema(dbpool *pool, char *err, size_t errlen)
{
    PGconn *conn = dbpool_get(pool, err, errlen);
    if (!conn)
        return -1;
    bool broken = false;
    char e[ERR_LEN];
    PGresult *res = web_exec_text(conn,
                                  "SELECT CASE WHEN to_regclass('runner.migrations') IS NULL"
                                  " THEN 0 ELSE (SELECT coalesce(max(version), 0)"
                                  " FROM runner.migrations) END",
                                  0, NULL, &broken, e, sizeof e);
    int rc = 0;
    if (!res) {
        rc = errf(err, errlen, "could not read the schema version: %s", e);
    } else {
        int v = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (v == 0)
            rc = errf(err, errlen, "the runner schema is not installed: run \"runner migrate\"");
        else if (v < WEB_MIGRATION)
            rc = errf(err, errlen,
                      "database schema is at version %d, the dashboard needs %d: run "
                      "\"runner migrate\"",
                      v, WEB_MIGRATION);
        PQclear(res);
    }
    put_conn(pool, conn, broken);
    return rc;
}

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "runner: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nusage: runner web [--listen HOST:PORT] [--hide-args]\n");
    return 2;
}

int web_main(const config *cfg, const char *url, char **args, int nargs)
{
    const char *listen = cfg->web_listen ? cfg->web_listen : WEB_DEFAULT_LISTEN;
    web_server s = {.hide_args = cfg->web_hide_args != 0};
    for (int i = 0; i < nargs; i++) {
        if (strcmp(args[i], "--listen") == 0 && i + 1 < nargs)
            listen = args[++i];
        else if (strncmp(args[i], "--listen=", 9) == 0)
            listen = args[i] + 9;
        else if (strcmp(args[i], "--hide-args") == 0)
            s.hide_args = true;
        else
            return usage_error("unexpected argument \"%s\"", args[i]);
    }
    log_setup(cfg->log_level, cfg->log_format);

    char err[ERR_LEN];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool loopback;
    if (web_listen_parse(listen, &addr, &addrlen, &loopback, err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        return 2;
    }
    const char *env = getenv("RUNNER_WEB_AUTH");
    if (cfg->web_auth_file && web_creds_load(&s.creds, cfg->web_auth_file, err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        return 2;
    }
    if (env && *env && web_creds_parse(&s.creds, env, "RUNNER_WEB_AUTH", err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        web_creds_free(&s.creds);
        return 2;
    }
    s.auth = s.creds.n > 0;
    if (!loopback && !s.auth) {
        fprintf(stderr,
                "runner: refusing to serve the dashboard on \"%s\", which is not a loopback "
                "address, without credentials\nhint: set web.auth_file or RUNNER_WEB_AUTH to "
                "\"user:HASH\" lines (HASH from `openssl passwd -6`), or listen on 127.0.0.1\n",
                listen);
        return 2;
    }
    if (web_random(s.secret, sizeof s.secret, err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        web_creds_free(&s.creds);
        return 1;
    }

    /* the request threads inherit this mask: only sigwait below sees the signals */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    s.pool = dbpool_create(url, WEB_THREADS, "runner web", WEB_STATEMENT_TIMEOUT_MS);
    struct MHD_Daemon *d = NULL;
    if (check_schema(s.pool, err, sizeof err) < 0) {
        fprintf(stderr, "runner: %s\n", err);
        goto out;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, &s,
                         MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)WEB_THREADS,
                         MHD_OPTION_CONNECTION_LIMIT, 256u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "runner: could not listen on \"%s\" (address in use, or not ours)\n",
                listen);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN] = "?", where[INET6_ADDRSTRLEN + 16];
    if (addr.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    snprintf(where, sizeof where, addr.ss_family == AF_INET6 ? "http://[%s]:%u/" : "http://%s:%u/",
             host, info ? (unsigned)info->port : 0u);
    log_event(LOG_INFO, "dashboard listening", "url", where, "auth", s.auth ? "basic" : "none",
              "hide_args", s.hide_args ? "true" : "false", NULL);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    log_event(LOG_INFO, "dashboard stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
              NULL);
    rc = 0;
out:
    if (d)
        MHD_stop_daemon(d);
    dbpool_destroy(s.pool);
    web_creds_free(&s.creds);
    explicit_bzero(s.secret, sizeof s.secret);
    return rc;
}
