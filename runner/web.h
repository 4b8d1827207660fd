/* web.h - `runner web`: the dashboard, a separate process serving HTML over HTTP. */
#ifndef RUNNER_WEB_H
#define RUNNER_WEB_H

#include "config.h"

#define WEB_DEFAULT_LISTEN "127.0.0.1:9641"

/* web_main parses `runner web` arguments ([--listen HOST:PORT] [--hide-args]), serves
 * the dashboard for database url until SIGTERM or SIGINT, and returns the exit status
 * (0 after a signal, 1 on a runtime error, 2 on a usage or configuration error). */
int web_main(const config *cfg, const char *url, char **args, int nargs);

#endif
