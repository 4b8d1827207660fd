/* util.h - small helpers shared by every module: errors, memory, clocks. */
#ifndef RUNNER_UTIL_H
#define RUNNER_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of the caller-owned error buffers that travel through the code base. */
#define ERR_LEN 512

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* errf formats a message into a caller's error buffer; returns -1 so callers can
 * `return errf(err, errlen, ...)`. */
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#ifdef __clang_analyzer__
/* the analyzer does not look into variadic functions: tell it errf always fails */
#define errf(...) (errf(__VA_ARGS__), -1)
#endif

/* Allocation that aborts on out-of-memory: a job runner that cannot allocate a few
 * bytes cannot make progress, and the leases make a crash safe. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in milliseconds, for timers and deadlines. */
int64_t now_ms(void);
int64_t now_us(void);

/* Growable string buffer. */
typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
} strbuf;

void sb_init(strbuf *sb);
void sb_free(strbuf *sb);
void sb_reset(strbuf *sb);
void sb_append(strbuf *sb, const char *s, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sb_text appends at most max bytes of s to sb as text that PostgreSQL and the JSON log
 * accept: invalid UTF-8 and NULs become '?', a cut never splits a character. Returns
 * whether it had to cut. */
bool sb_text(strbuf *sb, const char *s, size_t n, size_t max);

#endif
