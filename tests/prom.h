/* prom.h - test helpers for Prometheus text: promtool checks and reading one sample. */
#ifndef RUNNER_TEST_PROM_H
#define RUNNER_TEST_PROM_H

#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* prom_promtool returns the path of promtool on PATH, failing the test when it is absent:
 * these checks are the point of the tests, never skipped. */
static inline const char *prom_promtool(void)
{
    static char found[4096];
    const char *path = getenv("PATH");
    if (path) {
        const char *p = path;
        while (*p) {
            size_t n = strcspn(p, ":");
            snprintf(found, sizeof found, "%.*s/promtool", (int)n, p);
            if (n && access(found, X_OK) == 0)
                return found;
            p += n + (p[n] == ':');
        }
    }
    cr_assert_fail("promtool not found on PATH: install the Debian package \"prometheus\" "
                   "(./dev.sh test does)");
    return NULL;
}

/* prom_run runs "promtool ARGS" with stdin from the file in_path (NULL: none) and returns
 * its exit status; its output goes to *out (malloc'd). */
static inline int prom_run(const char *args, const char *in_path, char **out)
{
    char cmd[8192];
    /* checked, which also keeps gcc -O3's format-truncation warning quiet */
    int cmd_len = snprintf(cmd, sizeof cmd, "'%s' %s < '%s' 2>&1", prom_promtool(), args,
                           in_path ? in_path : "/dev/null");
    cr_assert(cmd_len < (int)sizeof cmd, "promtool command too long: %s", cmd);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "could not run %s", cmd);
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(f);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* prom_check_metrics asserts that text passes `promtool check metrics` (parse and lint). */
static inline void prom_check_metrics(const char *text)
{
    char path[] = "/tmp/runner-metrics-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "could not create a temporary file");
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char *out;
    int rc = prom_run("check metrics", path, &out);
    unlink(path);
    cr_assert_eq(rc, 0, "promtool check metrics failed (exit %d):\n%s\non:\n%s", rc, out, text);
    free(out);
}

/* prom_sample finds the sample line "SERIES VALUE" (series with its labels, exactly as
 * rendered) and stores its value; false when there is no such line. */
static inline bool prom_sample(const char *text, const char *series, double *value)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, series, n) && p[n] == ' ') {
            *value = strtod(p + n + 1, NULL);
            return true;
        }
    }
    return false;
}

/* prom_value is prom_sample that fails the test when the series is missing. */
static inline double prom_value(const char *text, const char *series)
{
    double v = 0;
    cr_assert(prom_sample(text, series, &v), "no sample %s in:\n%s", series, text);
    return v;
}

#endif
