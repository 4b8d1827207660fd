/* web_url.c - parsing of request targets, form bodies, ids and the listen address. */
#include "web_url.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void web_params_add(web_params *p, const char *name, const char *value)
{
    p->v = xrealloc(p->v, (p->n + 1) * sizeof *p->v);
    p->v[p->n].name = xstrdup(name);
    p->v[p->n].value = xstrdup(value);
    p->n++;
}

void web_params_free(web_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free(p->v[i].value);
    }
    free(p->v);
    *p = (web_params){0};
}

const char *web_param_get(const web_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return p->v[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *web_url_decode(const char *s, size_t len, bool plus_is_space)
{
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (len - i < 3) {
                free(out);
                return NULL;
            }
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else if (c == '\0') {
            free(out);
            return NULL;
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return out;
}

int web_form_parse(const char *body, size_t len, web_params *p, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(body + i, '=', end - i);
            size_t nlen = eq ? (size_t)(eq - (body + i)) : end - i;
            char *name = web_url_decode(body + i, nlen, true);
            char *value = eq ? web_url_decode(eq + 1, (size_t)(body + end - eq - 1), true)
                             : xstrdup("");
            if (!name || !value) {
                free(name);
                free(value);
                return errf(err, errlen, "malformed percent-encoding in parameter %zu",
                            p->n + 1);
            }
            web_params_add(p, name, value);
            free(name);
            free(value);
        }
        i = end + 1;
    }
    return 0;
}

int web_parse_id(const char *s, int64_t *id)
{
    size_t n = s ? strspn(s, "0123456789") : 0;
    if (n == 0 || n > 18 || s[n] != '\0')
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    if (v <= 0)
        return -1;
    *id = v;
    return 0;
}

/* segment decodes the path segment [s, s+len) (no '+' rule in paths); NULL if malformed
 * or if it holds a '/' (a decoded slash would let one segment pose as two). */
static char *segment(const char *s, size_t len)
{
    char *d = web_url_decode(s, len, false);
    if (d && (strchr(d, '/') || !*d)) {
        free(d);
        return NULL;
    }
    return d;
}

void web_route_parse(const char *path, web_route *r)
{
    *r = (web_route){.kind = ROUTE_NONE};
    if (path[0] != '/')
        return;
    /* split into at most four segments */
    const char *seg[4];
    size_t len[4];
    int n = 0;
    const char *p = path + 1;
    if (*p == '\0') {
        r->kind = ROUTE_OVERVIEW;
        return;
    }
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 4 || l == 0)
            return;
        seg[n] = p;
        len[n] = l;
        n++;
        if (!slash)
            break;
        p = slash + 1;
        if (*p == '\0')
            return; /* trailing slash */
    }
#define SEG_IS(i, lit) (len[i] == sizeof(lit) - 1 && memcmp(seg[i], lit, len[i]) == 0)
    if (n == 1 && SEG_IS(0, "jobs"))
        r->kind = ROUTE_JOBS;
    else if (n == 1 && SEG_IS(0, "queues"))
        r->kind = ROUTE_QUEUES;
    else if (n == 1 && SEG_IS(0, "schedules"))
        r->kind = ROUTE_SCHEDULES;
    else if (n == 1 && SEG_IS(0, "instances"))
        r->kind = ROUTE_INSTANCES;
    else if (n == 2 && SEG_IS(0, "jobs") && (SEG_IS(1, "retry") || SEG_IS(1, "cancel"))) {
        r->kind = ROUTE_JOBS_BULK;
        memcpy(r->action, seg[1], len[1]);
        r->action[len[1]] = '\0';
    } else if ((n == 2 || n == 3) && SEG_IS(0, "jobs")) {
        char idbuf[24];
        if (len[1] >= sizeof idbuf)
            return;
        memcpy(idbuf, seg[1], len[1]);
        idbuf[len[1]] = '\0';
        if (web_parse_id(idbuf, &r->id) < 0)
            return;
        if (n == 2) {
            r->kind = ROUTE_JOB;
        } else if (SEG_IS(2, "retry") || SEG_IS(2, "cancel")) {
            r->kind = ROUTE_JOB_ACTION;
            memcpy(r->action, seg[2], len[2]);
            r->action[len[2]] = '\0';
        }
    } else if (n == 3 && SEG_IS(0, "queues") && (SEG_IS(2, "pause") || SEG_IS(2, "resume"))) {
        r->name = segment(seg[1], len[1]);
        if (!r->name)
            return;
        r->kind = ROUTE_QUEUE_ACTION;
        memcpy(r->action, seg[2], len[2]);
        r->action[len[2]] = '\0';
    } else if (n == 2 && SEG_IS(0, "static")) {
        r->name = segment(seg[1], len[1]);
        if (r->name)
            r->kind = ROUTE_STATIC;
    }
#undef SEG_IS
}

void web_route_free(web_route *r)
{
    free(r->name);
    r->name = NULL;
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

int web_listen_parse(const char *listen, struct sockaddr_storage *addr, socklen_t *addrlen,
                     bool *loopback, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return errf(err, errlen, "invalid listen address \"%s\": expected [ADDRESS]:PORT",
                        listen);
        size_t hl = (size_t)(close - listen - 1);
        if (hl == 0 || hl >= sizeof host)
            return errf(err, errlen, "invalid listen address \"%s\": bad host", listen);
        memcpy(host, listen + 1, hl);
        host[hl] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || strchr(listen, ':') != colon)
            return errf(err, errlen,
                        "invalid listen address \"%s\": expected HOST:PORT or [ADDRESS]:PORT",
                        listen);
        size_t hl = (size_t)(colon - listen);
        if (hl == 0 || hl >= sizeof host)
            return errf(err, errlen, "invalid listen address \"%s\": bad host", listen);
        memcpy(host, listen, hl);
        host[hl] = '\0';
        port = colon + 1;
    }
    size_t pl = strspn(port, "0123456789");
    if (pl == 0 || pl > 5 || port[pl] != '\0' || strtol(port, NULL, 10) > 65535)
        return errf(err, errlen, "invalid listen address \"%s\": port must be 0 to 65535", listen);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res)
        return errf(err, errlen, "could not resolve listen address \"%s\": %s", listen,
                    rc ? gai_strerror(rc) : "no address");
    *loopback = true;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (!is_loopback(ai->ai_addr))
            *loopback = false;
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}
