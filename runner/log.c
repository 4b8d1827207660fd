/* log.c - structured event log on stderr: logfmt lines or JSON lines. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* atomic: a reload changes them while other threads log */
static _Atomic int min_level = LOG_INFO;
static _Atomic int format = LOG_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format fmt)
{
    min_level = level;
    format = fmt;
}

bool log_enabled(enum log_level level)
{
    return (int)level >= min_level;
}

/* put_quoted writes v as a double-quoted string with JSON escapes (valid logfmt too). */
static void put_quoted(strbuf *sb, const char *v)
{
    sb_puts(sb, "\"");
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(sb, "\\%c", *p);
        else if (*p == '\n')
            sb_puts(sb, "\\n");
        else if ((unsigned char)*p < 0x20)
            sb_printf(sb, "\\u%04x", (unsigned char)*p);
        else
            sb_append(sb, p, 1);
    }
    sb_puts(sb, "\"");
}

/* put_logfmt quotes a value only when it is empty or holds spaces, quotes, '=' or
 * control characters. */
static void put_logfmt(strbuf *sb, const char *v)
{
    bool quote = *v == '\0';
    for (const char *p = v; *p && !quote; p++)
        quote = *p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20;
    if (quote)
        put_quoted(sb, v);
    else
        sb_puts(sb, v);
}

static void put_pair(strbuf *sb, int fmt, const char *key, const char *value, bool first)
{
    if (fmt == LOG_JSON) {
        sb_puts(sb, first ? "{" : ",");
        put_quoted(sb, key);
        sb_puts(sb, ":");
        put_quoted(sb, value);
    } else {
        if (!first)
            sb_puts(sb, " ");
        sb_puts(sb, key);
        sb_puts(sb, "=");
        put_logfmt(sb, value);
    }
}

void log_event(enum log_level level, const char *msg, ...)
{
    if (!log_enabled(level))
        return;

    struct timespec ts;
    struct tm tm;
    char stamp[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);

    int fmt = format; /* one format for the whole line, whatever a reload does */
    strbuf sb;
    sb_init(&sb);
    put_pair(&sb, fmt, "ts", stamp, true);
    put_pair(&sb, fmt, "level", level_names[level], false);
    put_pair(&sb, fmt, "msg", msg, false);

    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        put_pair(&sb, fmt, key, value ? value : "", false);
    }
    va_end(ap);
    sb_puts(&sb, fmt == LOG_JSON ? "}\n" : "\n");

    pthread_mutex_lock(&log_lock);
    fwrite(sb.data, 1, sb.len, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
    sb_free(&sb);
}
