/* log.h - one line per event on stderr: logfmt (text) or JSON lines. */
#ifndef RUNNER_LOG_H
#define RUNNER_LOG_H

#include <stdbool.h>

#include "config.h"

void log_setup(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);

/* log_event writes one line: the message, then key/value pairs given as
 * alternating const char * keys and values, closed by NULL:
 *   log_event(LOG_INFO, "job completed", "job_id", "42", "kind", "resize", NULL);
 * Values are quoted and escaped as the format needs. Thread-safe. */
void log_event(enum log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
