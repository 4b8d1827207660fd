/* http.h - the HTTP listener of `runner run`: /metrics, /healthz and /readyz. */
#ifndef RUNNER_HTTP_H
#define RUNNER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "qstats.h"

#define HTTP_HOST_LEN 256
#define HTTP_PORT_LEN 8

/* Defaults of http_options (0 selects them); see http.c for why these values. */
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_TIMEOUT_S 10
#define HTTP_LIVENESS_MS 10000

typedef struct http_options {
    unsigned max_connections; /* connections served at once */
    unsigned timeout_s;       /* an idle or slow connection is closed after this */
    int64_t liveness_ms;      /* /healthz fails when the loop's last tick is older; at
                               * least the longest turn the loop can take on a hung
                               * database (statement + connect timeout) */
} http_options;

typedef struct http_server http_server;

/* http_parse_listen splits "HOST:PORT" ("[IPv6]:PORT" for IPv6 addresses) into host and
 * port; the port is a number from 0 to 65535 (0: any free port). */
int http_parse_listen(const char *listen, char *host, size_t hostlen, char *port, size_t portlen,
                      char *err, size_t errlen);

/* http_start binds listen (names resolve with getaddrinfo; the first address that binds
 * is used) and serves m, and the queue statistics of qs when not NULL, from threads of its
 * own with every signal blocked. opt may be NULL (defaults). m and qs must outlive the
 * server. NULL with err on failure. */
http_server *http_start(const char *listen, metrics *m, qstats *qs, const http_options *opt,
                        char *err, size_t errlen);

/* http_address writes the bound address as "HOST:PORT" (the real port when 0 was asked). */
void http_address(const http_server *s, char *out, size_t outlen);
int http_port(const http_server *s);

/* http_stop closes the listener and every connection and joins its threads (NULL: no-op). */
void http_stop(http_server *s);

#endif
