/* web_url.h - the dashboard's parsing of what arrives in a request: form and query
 * parameters, ids, paths, and the listen address. No I/O, so all of it is unit-tested. */
#ifndef RUNNER_WEB_URL_H
#define RUNNER_WEB_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One name=value pair, both decoded (malloc'd). */
typedef struct web_param {
    char *name;
    char *value;
} web_param;

/* Parameters in arrival order; lookups return the first of a name. */
typedef struct web_params {
    web_param *v;
    size_t n;
} web_params;

void web_params_add(web_params *p, const char *name, const char *value);
void web_params_free(web_params *p);
/* web_param_get returns the value of the first parameter called name, or NULL. */
const char *web_param_get(const web_params *p, const char *name);

/* web_url_decode percent-decodes s[0..len) into a new string; plus_is_space turns '+'
 * into ' ' (form encoding). Returns NULL for a malformed escape or an encoded NUL. */
char *web_url_decode(const char *s, size_t len, bool plus_is_space);

/* web_form_parse reads an application/x-www-form-urlencoded body ("a=1&b=x+y") into p.
 * Returns -1 with err set on a malformed escape. */
int web_form_parse(const char *body, size_t len, web_params *p, char *err, size_t errlen);

/* web_parse_id reads a job id: 1 to 18 decimal digits, nothing else, greater than 0. */
int web_parse_id(const char *s, int64_t *id);

/* A route taken apart: /jobs/ID[/ACTION], /queues/NAME/ACTION. */
typedef struct web_route {
    enum {
        ROUTE_NONE,
        ROUTE_OVERVIEW,   /* / */
        ROUTE_JOBS,       /* /jobs */
        ROUTE_JOBS_BULK,  /* /jobs/retry, /jobs/cancel (action in .action) */
        ROUTE_JOB,        /* /jobs/ID */
        ROUTE_JOB_ACTION, /* /jobs/ID/retry, /jobs/ID/cancel */
        ROUTE_QUEUES,     /* /queues */
        ROUTE_QUEUE_ACTION, /* /queues/NAME/pause, /queues/NAME/resume */
        ROUTE_SCHEDULES,
        ROUTE_INSTANCES,
        ROUTE_STATIC, /* /static/NAME (name in .name) */
    } kind;
    int64_t id;
    char action[8]; /* retry, cancel, pause, resume */
    char *name;     /* queue or asset name (malloc'd, decoded) */
} web_route;

/* web_route_parse maps a raw (still percent-encoded) path to a route; ROUTE_NONE when
 * nothing matches. Free with web_route_free. */
void web_route_parse(const char *path, web_route *r);
void web_route_free(web_route *r);

/* web_listen_parse reads "HOST:PORT" or "[IPV6]:PORT" (HOST a numeric address or a name
 * that resolves, PORT 0-65535) into a socket address. *loopback tells whether every
 * address the host stands for is a loopback address. */
int web_listen_parse(const char *listen, struct sockaddr_storage *addr, socklen_t *addrlen,
                     bool *loopback, char *err, size_t errlen);

#endif
