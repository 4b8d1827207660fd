/* test_cron.c - cron parsing, next fire times (UTC and DST zones) and the TZif reader. */
#include "cron.h"
#include "tz.h"
#include "util.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Named-zone tests read the system zoneinfo (Debian/Ubuntu package tzdata). */

static int64_t utc(const char *iso)
{
    int y, mo, d, h = 0, mi = 0, s = 0;
    cr_assert(sscanf(iso, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &s) >= 3, "%s", iso);
    return tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

/* fmt_local renders t as local time in z: "2026-03-29T03:00+02:00". */
static const char *fmt_local(const tz_zone *z, int64_t t, char *buf, size_t len)
{
    int32_t off = tz_offset(z, t);
    int64_t l = t + off, days = l / 86400 - (l % 86400 < 0), y;
    int64_t sod = l - days * 86400;
    int m, d, a = off < 0 ? -off : off;
    tz_civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02d-%02dT%02d:%02d%c%02d:%02d", (long long)y, m, d,
             (int)(sod / 3600), (int)(sod / 60 % 60), off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
    return buf;
}

static cron_expr parse_ok(const char *text)
{
    cron_expr c;
    char err[ERR_LEN] = "";
    cr_assert_eq(cron_parse(text, &c, err, sizeof(err)), 0, "\"%s\": %s", text, err);
    return c;
}

static uint64_t bits(int lo, int hi, int step)
{
    uint64_t b = 0;
    for (int v = lo; v <= hi; v += step)
        b |= (uint64_t)1 << v;
    return b;
}

/* expect_fires checks the successive fire times of expr in zone after `after` (UTC). */
static void expect_fires(const char *expr, const char *zone, const char *after,
                         const char *const *want, size_t n)
{
    cron_expr c = parse_ok(expr);
    char err[ERR_LEN] = "", buf[40];
    const tz_zone *z = tz_get(zone, err, sizeof(err));
    cr_assert_not_null(z, "%s", err);
    int64_t t = utc(after);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(cron_next(&c, zone, t, &t, err, sizeof(err)), 0, "%s: %s", expr, err);
        cr_assert_str_eq(fmt_local(z, t, buf, sizeof(buf)), want[i], "\"%s\" in %s, fire %zu", expr,
                         zone, i + 1);
    }
}

#define FIRES(expr, zone, after, ...)                                                              \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_fires(expr, zone, after, want_, ARRAY_LEN(want_));                                  \
    } while (0)

/* ---- parsing ---- */

Test(cron, parse_valid_fields)
{
    const struct {
        const char *text;
        uint64_t minutes;
        uint32_t hours, days;
        uint16_t months;
        uint8_t weekdays;
        bool days_star, weekdays_star, fixed;
    } cases[] = {
        {"* * * * *", bits(0, 59, 1), 0xffffff, 0xfffffffe, 0x1ffe, 0x7f, true, true, false},
        {"*/15 * * * *", bits(0, 45, 15), 0xffffff, 0xfffffffe, 0x1ffe, 0x7f, 1, 1, 0},
        {"10-40/5 0 * * *", bits(10, 40, 5), 1, 0xfffffffe, 0x1ffe, 0x7f, 1, 1, 0},
        {"5/10 0 * * *", bits(5, 55, 10), 1, 0xfffffffe, 0x1ffe, 0x7f, 1, 1, 0},
        {"1,2,5 3 * * *", 0x26, 8, 0xfffffffe, 0x1ffe, 0x7f, 1, 1, 1},
        {"0 3 * * *", 1, 8, 0xfffffffe, 0x1ffe, 0x7f, true, true, true},
        {"0 1-3 1,15 * *", 1, 0xe, (1u << 1) | (1u << 15), 0x1ffe, 0x7f, false, true, true},
        {" 0\t0  * JAN-MAR,dec mon-FRI ", 1, 1, 0xfffffffe, 0x100e, 0x3e, true, false, true},
        {"0 0 * * 7", 1, 1, 0xfffffffe, 0x1ffe, 0x01, true, false, true},
        {"0 0 * * 0", 1, 1, 0xfffffffe, 0x1ffe, 0x01, true, false, true},
        {"0 0 * * 5-7", 1, 1, 0xfffffffe, 0x1ffe, 0x61, true, false, true},
        {"0 0 * * FRI-SUN", 1, 1, 0xfffffffe, 0x1ffe, 0x61, true, false, true},
        {"0 0 * * 0-7", 1, 1, 0xfffffffe, 0x1ffe, 0x7f, true, false, true},
        {"0 0 * * */2", 1, 1, 0xfffffffe, 0x1ffe, 0x55, true, false, true},
        {"0 */6 */10 */3 *", 1, 0x041041, 0x80200802, 0x492, 0x7f, false, true, false},
        {"59 23 31 12 6", bits(59, 59, 1), 1u << 23, 1u << 31, 1u << 12, 0x40, 0, 0, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        cron_expr c = parse_ok(cases[i].text);
        const char *t = cases[i].text;
        cr_expect_eq(c.minutes, cases[i].minutes, "%s: minutes %llx", t,
                     (unsigned long long)c.minutes);
        cr_expect_eq(c.hours, cases[i].hours, "%s: hours %x", t, c.hours);
        cr_expect_eq(c.days, cases[i].days, "%s: days %x", t, c.days);
        cr_expect_eq(c.months, cases[i].months, "%s: months %x", t, c.months);
        cr_expect_eq(c.weekdays, cases[i].weekdays, "%s: weekdays %x", t, c.weekdays);
        cr_expect_eq(c.days_star, cases[i].days_star, "%s: days_star", t);
        cr_expect_eq(c.weekdays_star, cases[i].weekdays_star, "%s: weekdays_star", t);
        cr_expect_eq(c.fixed_time, cases[i].fixed, "%s: fixed_time", t);
        cr_expect_eq(c.every_ms, 0, "%s", t);
    }
}

Test(cron, parse_macros)
{
    static const char *const pairs[][2] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}, {" @DAILY ", "0 0 * * *"},
    };
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        cron_expr a = parse_ok(pairs[i][0]), b = parse_ok(pairs[i][1]);
        cr_expect(memcmp(&a, &b, sizeof(a)) == 0, "%s != %s", pairs[i][0], pairs[i][1]);
    }
    cr_expect(parse_ok("@daily").fixed_time);
    cr_expect_not(parse_ok("@hourly").fixed_time);
}

Test(cron, parse_every)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"@every 1h30m", 5400000},        {"@every 500ms", 500},  {"@every 2d", 172800000},
        {"@every 1m30s", 90000},          {"@every 10s ", 10000}, {"@EVERY 1s", 1000},
        {"@every 1d2h3m4s5ms", 93784005},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        cron_expr c = parse_ok(cases[i].text);
        cr_expect_eq(c.every_ms, cases[i].ms, "%s: %lld", cases[i].text, (long long)c.every_ms);
        cr_expect_eq(c.minutes, 0);
    }
}

Test(cron, parse_errors)
{
    static const char *const cases[][2] = {
        {"0 0 32 * *", "day-of-month 32 out of range (1-31)"},
        {"0 0 0 * *", "day-of-month 0 out of range (1-31)"},
        {"* * * *", "expected 5 fields, got 4"},
        {"* * * * * *", "expected 5 fields, got 6"},
        {"0 0 1 1 * 2026", "expected 5 fields, got 6"},
        {"", "empty cron expression"},
        {"   ", "empty cron expression"},
        {"*/0 * * * *", "invalid step \"0\" in minute field"},
        {"*/x * * * *", "invalid step \"x\" in minute field"},
        {"*/ * * * *", "invalid step \"\" in minute field"},
        {"0 */25 * * *", "invalid step \"25\" in hour field"},
        {"@sometimes", "unrecognized macro \"@sometimes\""},
        {"@reboot", "unrecognized macro \"@reboot\""},
        {"@daily extra", "unexpected \"extra\" after @daily"},
        {"0 5-2 * * *", "range 5-2 is backwards in hour field"},
        {"0 0 * * FRI-MON", "range FRI-MON is backwards in day-of-week field"},
        {"0 0 1 DEC-JAN *", "range DEC-JAN is backwards in month field"},
        {"60 * * * *", "minute 60 out of range (0-59)"},
        {"0 24 * * *", "hour 24 out of range (0-23)"},
        {"0 0 1 13 *", "month 13 out of range (1-12)"},
        {"0 0 1 0 *", "month 0 out of range (1-12)"},
        {"0 0 * * 8", "day-of-week 8 out of range (0-7)"},
        {"99999999999 * * * *", "minute 99999999999 out of range (0-59)"},
        {"0 0 L * *", "invalid value \"L\" in day-of-month field"},
        {"0 0 ? * *", "invalid value \"?\" in day-of-month field"},
        {"0 0 15W * *", "invalid value \"15W\" in day-of-month field"},
        {"0 0 * * 5L", "invalid value \"5L\" in day-of-week field"},
        {"0 0 * * MON#2", "invalid value \"MON#2\" in day-of-week field"},
        {"0 0 * * MONDAY", "invalid value \"MONDAY\" in day-of-week field"},
        {"JAN * * * *", "invalid value \"JAN\" in minute field"},
        {"0 0 * * JAN", "invalid value \"JAN\" in day-of-week field"},
        {"-5 * * * *", "invalid value \"\" in minute field"},
        {"1,,2 * * * *", "empty list element in minute field"},
        {"1, * * * *", "empty list element in minute field"},
        {"@every", "@every needs a duration, e.g. \"@every 5m\""},
        {"@every 0s", "@every duration must be positive"},
        {"@every 0h0m", "@every duration must be positive"},
        {"@every 5", "invalid duration \"5\" in @every (units: ms s m h d)"},
        {"@every 5x", "invalid duration \"5x\" in @every (units: ms s m h d)"},
        {"@every -5m", "invalid duration \"-5m\" in @every (units: ms s m h d)"},
        {"@every 1.5h", "invalid duration \"1.5h\" in @every (units: ms s m h d)"},
        {"@every 5m 10s", "invalid duration \"5m 10s\" in @every (units: ms s m h d)"},
        {"@every 99999999999999999999ms", "duration \"99999999999999999999ms\" in @every is "
                                          "too long"},
        {"@every 1H", "invalid duration \"1H\" in @every (units: ms s m h d)"},
        {"@every 99999999999999999999d", "duration \"99999999999999999999d\" in @every is "
                                         "too long"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        cron_expr c;
        char err[ERR_LEN] = "";
        cr_expect_eq(cron_parse(cases[i][0], &c, err, sizeof(err)), -1, "\"%s\" parsed",
                     cases[i][0]);
        cr_expect_str_eq(err, cases[i][1], "\"%s\"", cases[i][0]);
    }
}

/* ---- next fire times in UTC ---- */

Test(cron, next_utc_table)
{
    FIRES("* * * * *", "UTC", "2026-01-01T00:00:00", "2026-01-01T00:01+00:00",
          "2026-01-01T00:02+00:00");
    FIRES("* * * * *", "UTC", "2026-01-01T00:00:30", "2026-01-01T00:01+00:00");
    FIRES("*/15 * * * *", "UTC", "2026-01-01T23:14:59", "2026-01-01T23:15+00:00",
          "2026-01-01T23:30+00:00", "2026-01-01T23:45+00:00", "2026-01-02T00:00+00:00");
    FIRES("0 3 * * *", "UTC", "2026-01-01T02:59:59", "2026-01-01T03:00+00:00",
          "2026-01-02T03:00+00:00");
    FIRES("0 3 * * *", "UTC", "2026-01-01T03:00:00", "2026-01-02T03:00+00:00");
    /* 2026-01-02 is a Friday. */
    FIRES("0 9 * * 1-5", "UTC", "2026-01-02T10:00:00", "2026-01-05T09:00+00:00",
          "2026-01-06T09:00+00:00");
    FIRES("0 9 * * MON-FRI", "UTC", "2026-01-02T10:00:00", "2026-01-05T09:00+00:00");
    FIRES("0 9 * * sat,sun", "UTC", "2026-01-02T10:00:00", "2026-01-03T09:00+00:00",
          "2026-01-04T09:00+00:00", "2026-01-10T09:00+00:00");
    FIRES("0 0 29 2 *", "UTC", "2026-03-01T00:00:00", "2028-02-29T00:00+00:00",
          "2032-02-29T00:00+00:00");
    /* Both day fields restricted: the 13th OR any Friday. */
    FIRES("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00", "2026-01-02T00:00+00:00",
          "2026-01-09T00:00+00:00", "2026-01-13T00:00+00:00", "2026-01-16T00:00+00:00");
    FIRES("0 0 13 * *", "UTC", "2026-01-01T00:00:00", "2026-01-13T00:00+00:00",
          "2026-02-13T00:00+00:00");
    FIRES("0 0 * * FRI", "UTC", "2026-01-10T00:00:00", "2026-01-16T00:00+00:00");
    FIRES("0 0 */2 * FRI", "UTC", "2026-01-01T00:00:00", "2026-01-02T00:00+00:00",
          "2026-01-03T00:00+00:00", "2026-01-05T00:00+00:00");
    /* 7 and 0 are both Sunday; 2026-01-11 is one. */
    FIRES("0 12 * * 7", "UTC", "2026-01-05T00:00:00", "2026-01-11T12:00+00:00");
    FIRES("0 12 * * 0", "UTC", "2026-01-05T00:00:00", "2026-01-11T12:00+00:00");
    FIRES("0 12 * * SUN", "UTC", "2026-01-05T00:00:00", "2026-01-11T12:00+00:00");
    FIRES("0 0 31 * *", "UTC", "2026-01-31T00:00:00", "2026-03-31T00:00+00:00",
          "2026-05-31T00:00+00:00");
    FIRES("59 23 31 12 *", "UTC", "2026-12-31T23:59:00", "2027-12-31T23:59+00:00");
    FIRES("@yearly", "UTC", "2026-06-01T00:00:00", "2027-01-01T00:00+00:00");
    FIRES("@monthly", "UTC", "2026-12-15T00:00:00", "2027-01-01T00:00+00:00");
    FIRES("@weekly", "UTC", "2026-01-01T00:00:00", "2026-01-04T00:00+00:00");
    FIRES("@hourly", "UTC", "2026-01-01T10:59:59", "2026-01-01T11:00+00:00");
    FIRES("0 0 1 1 *", "UTC", "1969-12-31T23:59:59", "1970-01-01T00:00+00:00",
          "1971-01-01T00:00+00:00");
}

Test(cron, next_errors)
{
    cron_expr c = parse_ok("0 0 30 2 *");
    char err[ERR_LEN] = "";
    int64_t next;
    cr_assert_eq(cron_next(&c, "UTC", utc("2026-01-01"), &next, err, sizeof(err)), -1);
    cr_expect_str_eq(err, "schedule has no fire time within 5 years");

    c = parse_ok("0 0 31 4,6,9,11 *");
    cr_expect_eq(cron_next(&c, "UTC", utc("2026-01-01"), &next, err, sizeof(err)), -1);

    c = parse_ok("@every 5m");
    cr_assert_eq(cron_next(&c, "UTC", 0, &next, err, sizeof(err)), -1);
    cr_expect_str_eq(err, "@every schedules have no calendar fire times");

    c = parse_ok("0 3 * * *");
    cr_assert_eq(cron_next(&c, "Mars/Olympus_Mons", 0, &next, err, sizeof(err)), -1);
    cr_expect_str_eq(err, "unrecognized time zone \"Mars/Olympus_Mons\"");
    cr_assert_eq(cron_next(&c, "UTC", INT64_MAX, &next, err, sizeof(err)), -1);
    cr_expect_str_eq(err, "time 9223372036854775807 is out of range");
}

/* ---- named zones across the 2026 DST transitions ---- */

Test(cron, berlin_fixed_time_once_per_day)
{
    /* 2026-03-29: 02:00 CET -> 03:00 CEST, so 02:30 does not exist: fire at 03:00. */
    FIRES("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00", "2026-03-28T02:30+01:00",
          "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00");
    /* 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens twice: fire at the first. */
    FIRES("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00", "2026-10-24T02:30+02:00",
          "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00");
    /* Started between the two 02:30s, the first already happened: not again. */
    FIRES("30 2 * * *", "Europe/Berlin", "2026-10-25T00:45:00", "2026-10-26T02:30+01:00");
    /* Several fixed times inside the gap still fire once, at its end. */
    FIRES("0,30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T03:00+02:00",
          "2026-03-30T02:00+02:00");
    FIRES("0 2,3 * * *", "Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T03:00+02:00",
          "2026-03-30T02:00+02:00");
    FIRES("0 3 * * *", "Europe/Berlin", "2026-10-24T12:00:00", "2026-10-25T03:00+01:00",
          "2026-10-26T03:00+01:00");
}

Test(cron, berlin_interval)
{
    FIRES("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00", "2026-03-29T01:30+01:00",
          "2026-03-29T03:00+02:00", "2026-03-29T03:30+02:00");
    FIRES("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:45:00", "2026-10-25T02:00+02:00",
          "2026-10-25T02:30+02:00", "2026-10-25T02:00+01:00", "2026-10-25T02:30+01:00",
          "2026-10-25T03:00+01:00");
    /* A stepped minute in a fixed hour: nothing on the gap day, both passes on fall-back. */
    FIRES("*/20 2 * * *", "Europe/Berlin", "2026-03-28T01:30:00", "2026-03-28T02:40+01:00",
          "2026-03-30T02:00+02:00");
    FIRES("*/20 2 * * *", "Europe/Berlin", "2026-10-24T23:00:00", "2026-10-25T02:00+02:00",
          "2026-10-25T02:20+02:00", "2026-10-25T02:40+02:00", "2026-10-25T02:00+01:00",
          "2026-10-25T02:20+01:00", "2026-10-25T02:40+01:00", "2026-10-26T02:00+01:00");
    FIRES("30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00", "2026-10-25T01:30+02:00",
          "2026-10-25T02:30+02:00", "2026-10-25T02:30+01:00", "2026-10-25T03:30+01:00");
}

Test(cron, new_york)
{
    /* 2026-03-08: 02:00 EST -> 03:00 EDT; 2026-11-01: 02:00 EDT -> 01:00 EST. */
    FIRES("30 2 * * *", "America/New_York", "2026-03-06T12:00:00", "2026-03-07T02:30-05:00",
          "2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00");
    FIRES("30 2 * * *", "America/New_York", "2026-10-31T12:00:00", "2026-11-01T02:30-05:00",
          "2026-11-02T02:30-05:00");
    FIRES("30 1 * * *", "America/New_York", "2026-10-31T12:00:00", "2026-11-01T01:30-04:00",
          "2026-11-02T01:30-05:00");
    FIRES("*/30 * * * *", "America/New_York", "2026-11-01T04:45:00", "2026-11-01T01:00-04:00",
          "2026-11-01T01:30-04:00", "2026-11-01T01:00-05:00", "2026-11-01T01:30-05:00",
          "2026-11-01T02:00-05:00");
    FIRES("*/30 * * * *", "America/New_York", "2026-03-08T06:15:00", "2026-03-08T01:30-05:00",
          "2026-03-08T03:00-04:00");
}

Test(cron, beyond_last_transition_uses_footer)
{
    /* Debian's "fat" files list transitions up to 2037; later years come from the
     * footer rule CET-1CEST,M3.5.0,M10.5.0/3 (2040: March 25, October 28). */
    FIRES("30 2 * * *", "Europe/Berlin", "2040-03-24T12:00:00", "2040-03-25T03:00+02:00",
          "2040-03-26T02:30+02:00");
    FIRES("30 2 * * *", "Europe/Berlin", "2040-10-27T12:00:00", "2040-10-28T02:30+02:00",
          "2040-10-29T02:30+01:00");
}

/* A fixed-time daily schedule fires exactly once on every local date of a year, and an
 * interval schedule keeps a constant real-time period, in zones with unusual rules. */
Test(cron, dst_guarantees_over_a_year)
{
    static const char *const zones[] = {
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "America/Santiago",
        "America/Havana",
        "Europe/Dublin",
        "Asia/Tehran",
        "Pacific/Chatham",
        "America/St_Johns",
        "UTC",
    };
    static const char *const daily[] = {"0 0 * * *", "30 0 * * *", "0 1 * * *", "30 1 * * *",
                                        "0 2 * * *", "30 2 * * *", "0 3 * * *", "45 23 * * *"};
    char err[ERR_LEN] = "";
    for (size_t zi = 0; zi < ARRAY_LEN(zones); zi++) {
        const tz_zone *z = tz_get(zones[zi], err, sizeof(err));
        cr_assert_not_null(z, "%s", err);
        for (int year = 2026; year <= 2045; year += 19) {
            int64_t start = utc("2026-01-01") + (year - 2026) * 365LL * 86400;
            int64_t first = tz_days_from_civil(year, 1, 2);
            for (size_t di = 0; di < ARRAY_LEN(daily); di++) {
                cron_expr c = parse_ok(daily[di]);
                int64_t t = start, prev_day = first - 1;
                while (prev_day < first + 360) {
                    cr_assert_eq(cron_next(&c, zones[zi], t, &t, err, sizeof(err)), 0, "%s", err);
                    int64_t l = t + tz_offset(z, t), day = l / 86400;
                    if (day < first)
                        continue;
                    cr_assert_eq(day, prev_day + 1, "\"%s\" in %s: day %lld after %lld", daily[di],
                                 zones[zi], (long long)day, (long long)prev_day);
                    prev_day = day;
                }
            }
            cron_expr c = parse_ok("*/15 * * * *");
            int64_t t = start, prev = -1;
            for (int i = 0; i < 366 * 96; i++) {
                cr_assert_eq(cron_next(&c, zones[zi], t, &t, err, sizeof(err)), 0, "%s", err);
                int32_t off = tz_offset(z, t);
                if (prev >= 0 && off % 900 == 0 && tz_offset(z, prev) % 900 == 0)
                    cr_assert_eq(t - prev, 900, "*/15 in %s at %lld", zones[zi], (long long)t);
                prev = t;
            }
        }
    }
}

/* ---- the TZif reader ---- */

Test(cron, tz_local_to_utc_berlin)
{
    char err[ERR_LEN] = "";
    const tz_zone *z = tz_get("Europe/Berlin", err, sizeof(err));
    cr_assert_not_null(z, "%s", err);
    int64_t out[2];
    cr_expect_eq(tz_local_to_utc(z, utc("2026-03-29T02:30"), out), 0);
    cr_expect_eq(out[0], utc("2026-03-29T01:00"));
    cr_expect_eq(tz_local_to_utc(z, utc("2026-10-25T02:30"), out), 2);
    cr_expect_eq(out[0], utc("2026-10-25T00:30"));
    cr_expect_eq(out[1], utc("2026-10-25T01:30"));
    cr_expect_eq(tz_local_to_utc(z, utc("2026-07-01T12:00"), out), 1);
    cr_expect_eq(out[0], utc("2026-07-01T10:00"));
    cr_expect_eq(tz_local_to_utc(z, utc("2026-03-29T03:00"), out), 1);
    cr_expect_eq(out[0], utc("2026-03-29T01:00"));
    int32_t lo, hi;
    tz_offset_range(z, &lo, &hi);
    cr_expect(lo <= 3600 && hi >= 7200);
    cr_expect_str_eq(tz_name(z), "Europe/Berlin");
}

/* compare_with_libc checks tz_offset against glibc's localtime_r for TZ=tzval, which
 * this process may set: criterion runs every test in its own process. */
static void compare_with_libc(const tz_zone *z, const char *tzval, int64_t from, int64_t to)
{
    setenv("TZ", tzval, 1);
    tzset();
    for (int64_t t = from; t < to; t += 86400 * 3 + 3541) {
        time_t tt = (time_t)t;
        struct tm tm;
        cr_assert_not_null(localtime_r(&tt, &tm));
        cr_assert_eq(tz_offset(z, t), tm.tm_gmtoff, "%s at %lld: %d != %ld", tzval, (long long)t,
                     tz_offset(z, t), tm.tm_gmtoff);
    }
}

Test(cron, tz_offsets_match_libc)
{
    static const char *const zones[] = {
        "Europe/Berlin",     "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
        "America/Santiago",  "Asia/Kolkata",     "Pacific/Apia",     "Africa/Casablanca",
        "America/Sao_Paulo", "Europe/Dublin"};
    char err[ERR_LEN] = "";
    for (size_t i = 0; i < ARRAY_LEN(zones); i++) {
        const tz_zone *z = tz_get(zones[i], err, sizeof(err));
        cr_assert_not_null(z, "%s", err);
        compare_with_libc(z, zones[i], utc("1950-01-01"), utc("2100-01-01"));
    }
}

/* A temporary TZDIR holding generated files. */
static char tzdir[64];

static void make_tzdir(void)
{
    strcpy(tzdir, "/tmp/test_cron_tzXXXXXX");
    cr_assert_not_null(mkdtemp(tzdir));
    setenv("TZDIR", tzdir, 1);
}

static void remove_tzdir(void)
{
    char *cmd = xasprintf("rm -rf '%s'", tzdir);
    cr_expect_eq(system(cmd), 0);
    free(cmd);
}

static void put32(unsigned char **p, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

/* write_tzif writes a TZif file with one time type of offset `off`, no transitions (or
 * one at 0 for version 1) and the footer `posix` (version 2 only). */
static void write_tzif(const char *name, char version, int32_t off, const char *posix)
{
    unsigned char buf[512], *p = buf;
    int sections = version == 0 ? 1 : 2;
    for (int s = 0; s < sections; s++) {
        uint32_t ntime = version == 0 ? 1 : 0;
        memcpy(p, "TZif", 4);
        p[4] = (unsigned char)version;
        memset(p + 5, 0, 15);
        p += 20;
        const uint32_t counts[] = {0, 0, 0, ntime, 1, 4}; /* isut isstd leap time type char */
        for (size_t i = 0; i < ARRAY_LEN(counts); i++)
            put32(&p, counts[i]);
        if (ntime) {
            put32(&p, 0);
            *p++ = 0;
        }
        put32(&p, (uint32_t)off);
        *p++ = 0, *p++ = 0;
        memcpy(p, "ABC", 4);
        p += 4;
    }
    if (version != 0)
        p += sprintf((char *)p, "\n%s\n", posix);
    char *path = xasprintf("%s/%s", tzdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(buf, 1, (size_t)(p - buf), f), (size_t)(p - buf));
    fclose(f);
    free(path);
}

Test(cron, tz_footer_rules_match_libc, .init = make_tzdir, .fini = remove_tzdir)
{
    static const char *const rules[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "XXX3YYY,J60/1,J300/1:30",
        "XXX-5YYY-6,59/0,300/23:59:59",
        "<+0330>-3:30",
        "ABC-14",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
    };
    char err[ERR_LEN] = "";
    for (size_t i = 0; i < ARRAY_LEN(rules); i++) {
        char name[32];
        snprintf(name, sizeof(name), "Rule%zu", i);
        write_tzif(name, '2', 0, rules[i]);
        const tz_zone *z = tz_get(name, err, sizeof(err));
        cr_assert_not_null(z, "%s: %s", rules[i], err);
        compare_with_libc(z, rules[i], utc("1990-01-01"), utc("2060-01-01"));
    }
    /* Permanent DST as RFC 8536 writes it (glibc shows EST for 5 hours at new year). */
    write_tzif("AllYear", '2', 0, "EST5EDT,0/0,J365/25");
    const tz_zone *z = tz_get("AllYear", err, sizeof(err));
    cr_assert_not_null(z, "%s", err);
    for (int64_t t = utc("2025-12-31T12:00"); t < utc("2028-01-02"); t += 1800)
        cr_assert_eq(tz_offset(z, t), -4 * 3600, "at %lld", (long long)t);

    /* TZDIR is honoured: the system zones are not in it. */
    const tz_zone *real = tz_get("Europe/Berlin", err, sizeof(err));
    cr_assert_null(real, "TZDIR must be honoured");
    cr_expect_str_eq(err, "unrecognized time zone \"Europe/Berlin\"");
}

Test(cron, tz_v1_file_and_tzdir, .init = make_tzdir, .fini = remove_tzdir)
{
    char err[ERR_LEN] = "";
    char *sub = xasprintf("%s/Test", tzdir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    free(sub);
    write_tzif("Test/Plus5", 0, 5 * 3600, NULL);
    const tz_zone *z = tz_get("Test/Plus5", err, sizeof(err));
    cr_assert_not_null(z, "%s", err);
    cr_expect_eq(tz_offset(z, utc("2026-06-01")), 5 * 3600);
    FIRES("0 0 * * *", "Test/Plus5", "2026-06-01T00:00:00", "2026-06-02T00:00+05:00");

    /* "UTC" works with no file at all; other names do not. */
    cr_expect_not_null(tz_get("UTC", err, sizeof(err)), "%s", err);
    cr_expect_not_null(tz_get("Etc/UTC", err, sizeof(err)), "%s", err);
    FIRES("0 3 * * *", "UTC", "2026-01-01T00:00:00", "2026-01-01T03:00+00:00");

    /* Broken files are reported, not trusted. */
    char *broken = xasprintf("%s/Broken", tzdir);
    FILE *f = fopen(broken, "wb");
    free(broken);
    cr_assert_not_null(f);
    fputs("TZif2 not really", f);
    fclose(f);
    cr_expect_null(tz_get("Broken", err, sizeof(err)));
    cr_expect(strstr(err, "invalid time zone file") && strstr(err, "not a TZif file"), "%s", err);
    cr_expect_null(tz_get("Test", err, sizeof(err)));
    cr_expect_str_eq(err, "unrecognized time zone \"Test\"");
}

Test(cron, tz_names_rejected, .init = make_tzdir, .fini = remove_tzdir)
{
    static const char *const bad[] = {
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/../../etc/passwd",
        "./UTC",
        "Europe//Berlin",
        "Europe/Berlin/",
        ".hidden",
        "",
        "Europe/Ber lin",
        "Europe\\Berlin",
        "..",
    };
    char err[ERR_LEN] = "";
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        cr_expect_null(tz_get(bad[i], err, sizeof(err)), "%s accepted", bad[i]);
        char *want = xasprintf("invalid time zone name \"%s\"", bad[i]);
        cr_expect_str_eq(err, want);
        free(want);
        cr_expect_eq(cron_tz_valid(bad[i], err, sizeof(err)), -1);
    }
    /* A symlink inside TZDIR that leads out of it is refused too. */
    write_tzif("Inside", '2', 0, "UTC0");
    char *target = xasprintf("%s.outside", tzdir);
    char *link = xasprintf("%s/Escape", tzdir);
    char *inside = xasprintf("%s/Inside", tzdir);
    cr_assert_eq(rename(inside, target), 0);
    cr_assert_eq(symlink(target, link), 0);
    cr_expect_null(tz_get("Escape", err, sizeof(err)));
    cr_expect_str_eq(err, "time zone \"Escape\" is outside the zoneinfo directory");
    unlink(target);
    free(target);
    free(link);
    free(inside);
}

Test(cron, tz_valid)
{
    char err[ERR_LEN] = "";
    cr_expect_eq(cron_tz_valid("Europe/Berlin", err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(cron_tz_valid("UTC", err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(cron_tz_valid("Nowhere/Special", err, sizeof(err)), -1);
    cr_expect_str_eq(err, "unrecognized time zone \"Nowhere/Special\"");
    /* "right/" zones count leap seconds, which civil-time cron must not. */
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0) {
        cr_expect_eq(cron_tz_valid("right/UTC", err, sizeof(err)), -1);
        cr_expect(strstr(err, "leap seconds are not supported"), "%s", err);
    }
}

static void *zone_worker(void *arg)
{
    static const char *const zones[] = {"Europe/Berlin", "America/New_York", "Asia/Tokyo",
                                        "Australia/Sydney", "UTC"};
    cron_expr c;
    char err[ERR_LEN];
    cron_parse("30 2 * * *", &c, err, sizeof(err));
    int64_t t = 1767225600 + (intptr_t)arg * 86400, sum = 0;
    for (int i = 0; i < 200; i++) {
        if (cron_next(&c, zones[i % ARRAY_LEN(zones)], t, &t, err, sizeof(err)) < 0)
            return (void *)1;
        sum += t;
    }
    return (void *)(intptr_t)(sum != 0 ? 0 : 1);
}

Test(cron, threads_share_zones)
{
    pthread_t th[8];
    for (intptr_t i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, zone_worker, (void *)i), 0);
    for (int i = 0; i < 8; i++) {
        void *res;
        pthread_join(th[i], &res);
        cr_expect_null(res);
    }
}
