/* cron.h - cron expressions and their next fire times in a named time zone. */
#ifndef RUNNER_CRON_H
#define RUNNER_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cron_expr {
    uint64_t minutes; /* bit 0..59 */
    uint32_t hours;   /* bit 0..23 */
    uint32_t days;    /* bit 1..31 (day of month) */
    uint16_t months;  /* bit 1..12 */
    uint8_t weekdays; /* bit 0..6, Sunday = 0 (7 is folded into 0) */
    bool days_star;   /* day-of-month field was "*" (for the OR rule) */
    bool weekdays_star;
    bool fixed_time;  /* minute and hour fields list explicit values (no '*', no step):
                         wall-clock DST handling, see the top of cron.c */
    int64_t every_ms; /* > 0 for "@every <duration>": interval schedule, fields unused */
} cron_expr;

/* cron_parse accepts five fields (lists, ranges, steps, names), @yearly @annually
 * @monthly @weekly @daily @midnight @hourly and @every <duration>. On error returns -1
 * with the reason in err (e.g. "day-of-month 32 out of range"). */
int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen);

/* cron_next computes the first fire time strictly after `after` (unix seconds, UTC)
 * for a field schedule evaluated in time zone tz (IANA name, e.g. "Europe/Berlin").
 * Not for @every schedules (their ticks are anchored by the caller). Returns 0, or -1
 * with err set (unknown zone, no fire time within 5 years). */
int cron_next(const cron_expr *c, const char *tz, int64_t after, int64_t *next, char *err,
              size_t errlen);

/* cron_tz_valid: 0 when tz names a zone this machine knows, else -1 with err. */
int cron_tz_valid(const char *tz, char *err, size_t errlen);

#endif
