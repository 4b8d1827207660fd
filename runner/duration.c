/* duration.c - durations as runner.yaml, the command line and messages write them. */
#include "duration.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

const char *duration_format(int64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", DURATION_DAY}, {"h", DURATION_HOUR}, {"m", DURATION_MINUTE}, {"s", DURATION_SECOND}};
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return buf;
        }
    }
    snprintf(buf, len, ms ? "%lldms" : "%lld", (long long)ms);
    return buf;
}

int duration_parse(const char *s, int64_t *ms, char *err, size_t errlen)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", DURATION_SECOND}, {"m", DURATION_MINUTE}, {"h", DURATION_HOUR}, {"d", DURATION_DAY}};
    const char *p = s;
    int64_t total = 0;

    if (!strcmp(s, "0")) {
        *ms = 0;
        return 0;
    }
    if (*s == '-')
        return errf(err, errlen, "invalid duration \"%s\": must not be negative", s);
    if (!*s)
        return errf(err, errlen,
                    "invalid duration \"\": expected a number and a unit, e.g. \"10s\"");
    while (*p) {
        int64_t n = 0;
        if (*p < '0' || *p > '9')
            return errf(err, errlen, "invalid duration \"%s\": expected a number at \"%s\"", s, p);
        for (; *p >= '0' && *p <= '9'; p++) {
            if (n > (INT64_MAX - (*p - '0')) / 10)
                return errf(err, errlen, "invalid duration \"%s\": out of range", s), DURATION_RANGE;
            n = n * 10 + (*p - '0');
        }
        const char *u = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            p++;
        if (u == p)
            return errf(err, errlen,
                        "invalid duration \"%s\": a duration needs a unit (ms, s, m, h, d)", s);
        size_t i = 0;
        while (i < ARRAY_LEN(units) && (strlen(units[i].unit) != (size_t)(p - u) ||
                                        strncmp(units[i].unit, u, (size_t)(p - u)) != 0))
            i++;
        if (i == ARRAY_LEN(units))
            return errf(err, errlen, "invalid duration \"%s\": unrecognized unit \"%.*s\"", s,
                        (int)(p - u), u);
        if (n > (INT64_MAX - total) / units[i].ms)
            return errf(err, errlen, "invalid duration \"%s\": out of range", s), DURATION_RANGE;
        total += n * units[i].ms;
    }
    *ms = total;
    return 0;
}
