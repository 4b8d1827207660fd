/* fuzz_cron.c - libFuzzer target: arbitrary text through cron_parse and cron_next. */
#include "fuzz.h"

#include "cron.h"
#include "tz.h"
#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// DESIGN: besides never crashing, cron_next is checked against a brute-force search.
// In UTC the search is exact: the first minute after `after` whose fields match must be
// the answer, and no answer means no match within five years. In named zones the DST
// rules (top of runner/cron.c) are checked locally: the answer is later than `after`,
// minute-aligned, shows matching local fields (or, for a fixed-time schedule, ends a
// spring-forward gap), is not the second occurrence of a fixed time, and no matching
// local time occurs between `after` and the answer within two days.

/* Zones with unusual transitions, all with minute-aligned offsets since 1970: a 30-minute
 * DST shift (Lord_Howe), a half-hour offset (Kolkata), a gap that ends at midnight
 * (Nuuk, see cron.c), a whole day skipped in 2011 (Apia), a day-of-week jump (Kiritimati,
 * 1994). Every input runs in Berlin and in one of these, picked by its hash. */
static const char *const zones[] = {"America/New_York", "Australia/Lord_Howe",
                                    "Asia/Kolkata",     "America/Nuuk",
                                    "Pacific/Apia",     "Pacific/Kiritimati"};
#define MIN_TIME (-62135596800LL) /* 0001-01-01T00:00:00Z, as cron.c */
#define MAX_TIME 253402300799LL   /* 9999-12-31T23:59:59Z */
#define YEAR (365LL * 86400)
#define STEPS 3 /* successive fire times followed from each start */

static const char *input; /* the expression, for messages */

#define NONE INT64_MIN /* no time to show */

/* fail reports a broken contract for the current input and aborts. */
static void fail(const char *what, const char *zone, int64_t after, int64_t got, int64_t want)
{
    fprintf(stderr, "fuzz_cron: %s: \"%s\"", what, input);
    if (zone)
        fprintf(stderr, " in %s", zone);
    if (after != NONE)
        fprintf(stderr, " after %lld", (long long)after);
    if (got != NONE)
        fprintf(stderr, ", got %lld", (long long)got);
    if (want != NONE)
        fprintf(stderr, ", expected %lld", (long long)want);
    fputs("\n", stderr);
    abort();
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* fields_match: do the calendar fields of local time l (seconds since 1970-01-01 on the
 * local calendar) match c, with Vixie cron's day-of-month / day-of-week rule? */
static bool fields_match(const cron_expr *c, int64_t l, bool *day_ok, bool *hour_ok)
{
    int64_t days = floor_div(l, 86400), sod = l - days * 86400, y;
    int m, d;
    tz_civil_from_days(days, &y, &m, &d);
    int wd = tz_weekday(days);
    bool dom = (c->days >> d) & 1, dow = (c->weekdays >> wd) & 1;
    bool day = (c->months >> m) & 1;
    day = day && ((c->days_star || c->weekdays_star) ? dom && dow : dom || dow);
    *day_ok = day;
    *hour_ok = day && ((c->hours >> (sod / 3600)) & 1);
    return *hour_ok && ((c->minutes >> (sod / 60 % 60)) & 1);
}

/* ref_next_utc: the first minute after `after`, up to `limit`, whose UTC fields match. */
static bool ref_next_utc(const cron_expr *c, int64_t after, int64_t limit, int64_t *out)
{
    int64_t t = floor_div(after, 60) * 60 + 60;
    while (t <= limit) {
        bool day_ok, hour_ok;
        if (fields_match(c, t, &day_ok, &hour_ok)) {
            *out = t;
            return true;
        }
        if (!day_ok)
            t = (floor_div(t, 86400) + 1) * 86400;
        else if (!hour_ok)
            t = (floor_div(t, 3600) + 1) * 3600;
        else
            t += 60;
    }
    return false;
}

static void check_utc(const cron_expr *c, int64_t after)
{
    char err[ERR_LEN];
    for (int step = 0; step < STEPS; step++) {
        int64_t next = 0, ref = NONE;
        if (cron_next(c, "UTC", after, &next, err, sizeof err) < 0) {
            /* Out of range, or no fire time within five years: then brute force finds none. */
            if (after >= MIN_TIME && after <= MAX_TIME &&
                ref_next_utc(c, after, after + 5 * YEAR, &ref))
                fail("cron_next failed but a fire time exists", "UTC", after, NONE, ref);
            return;
        }
        if (next <= after)
            fail("next is not after `after`", "UTC", after, next, NONE);
        if (next % 60 != 0)
            fail("next is not minute-aligned", "UTC", after, next, NONE);
        if (!ref_next_utc(c, after, next, &ref) || ref != next)
            fail("next differs from brute force", "UTC", after, next, ref);
        after = next;
    }
}

static void check_zone(const cron_expr *c, const char *zone, int64_t after)
{
    char err[ERR_LEN];
    const tz_zone *z = tz_get(zone, err, sizeof err);
    if (!z) {
        fprintf(stderr, "fuzz_cron: %s (install tzdata)\n", err);
        abort();
    }
    for (int step = 0; step < STEPS; step++) {
        int64_t next = 0, inst[2];
        bool day_ok, hour_ok;
        if (cron_next(c, zone, after, &next, err, sizeof err) < 0) {
            /* A fixed-time schedule fires on every matching local day, gap or not (an
             * interval one may match only times that never occur). Local and UTC
             * calendars are the same, so search UTC a day later to absorb the offset. */
            int64_t ref;
            if (c->fixed_time && after >= 0 && after <= MAX_TIME - 5 * YEAR &&
                ref_next_utc(c, after + 86400, after + 4 * YEAR, &ref))
                fail("cron_next failed but local fields match within 4 years", zone, after, NONE,
                     ref);
            return;
        }
        if (next <= after)
            fail("next is not after `after`", zone, after, next, NONE);
        if (next % 60 != 0)
            fail("next is not minute-aligned", zone, after, next, NONE);
        int64_t local = next + tz_offset(z, next);
        int n = tz_local_to_utc(z, local, inst);
        if (n < 1 || (inst[0] != next && (n < 2 || inst[1] != next)))
            fail("tz_local_to_utc does not map local(next) back to next", zone, after, next, NONE);
        if (fields_match(c, local, &day_ok, &hour_ok)) {
            if (c->fixed_time && n == 2 && inst[1] == next)
                fail("fixed-time schedule fired at the second occurrence", zone, after, next, NONE);
        } else if (!c->fixed_time || tz_offset(z, next - 1) >= tz_offset(z, next)) {
            fail("local fields of next do not match", zone, after, next, NONE);
        }
        /* Nothing that should fire lies between after and next (within two days). */
        int64_t end = next < after + 2 * 86400 ? next : after + 2 * 86400;
        for (int64_t t = floor_div(after, 60) * 60 + 60; t < end;) {
            int64_t l = t + tz_offset(z, t);
            if (fields_match(c, l, &day_ok, &hour_ok)) {
                n = tz_local_to_utc(z, l, inst);
                if (!c->fixed_time || (n >= 1 && inst[0] == t))
                    fail("an earlier fire time was skipped", zone, after, next, t);
                t += 60;
            } else if (!hour_ok) {
                t += 3600 - (l - floor_div(l, 3600) * 3600);
            } else {
                t += 60;
            }
        }
        after = next;
    }
}

/* check_fields: the bit sets stay inside their fields and are never empty. */
static void check_fields(const cron_expr *c)
{
    if (c->every_ms != 0)
        fail("field schedule with every_ms set", NULL, NONE, NONE, NONE);
    if (!c->minutes || c->minutes >> 60)
        fail("minutes out of range", NULL, NONE, NONE, NONE);
    if (!c->hours || c->hours >> 24)
        fail("hours out of range", NULL, NONE, NONE, NONE);
    if (!c->days || (c->days & 1))
        fail("days out of range", NULL, NONE, NONE, NONE);
    if (!c->months || (c->months & 1) || c->months >> 13)
        fail("months out of range", NULL, NONE, NONE, NONE);
    if (!c->weekdays || c->weekdays >> 7)
        fail("weekdays out of range", NULL, NONE, NONE, NONE);
    if (c->days_star && c->days != 0xfffffffeu)
        fail("day-of-month \"*\" without every day", NULL, NONE, NONE, NONE);
    if (c->weekdays_star && c->weekdays != 0x7f)
        fail("day-of-week \"*\" without every day", NULL, NONE, NONE, NONE);
}

int fuzz_cron_one(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1), err[ERR_LEN];
    cron_expr c;
    int64_t next;

    memcpy(text, data, size);
    text[size] = '\0';
    input = text;
    memset(err, 'x', sizeof err);
    if (cron_parse(text, &c, err, sizeof err) < 0) {
        if (!memchr(err, '\0', sizeof err) || !err[0])
            fail("error message not set", NULL, NONE, NONE, NONE);
        free(text);
        return 0;
    }
    if (c.every_ms != 0) {
        if (c.every_ms < 0)
            fail("negative @every interval", NULL, NONE, NONE, NONE);
        if (cron_next(&c, "UTC", 0, &next, err, sizeof err) == 0)
            fail("cron_next accepted an @every schedule", "UTC", 0, next, NONE);
        free(text);
        return 0;
    }
    check_fields(&c);

    /* Starts: fixed ones before unusual transitions, one derived from the input. */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ULL;
    const int64_t starts[] = {
        0,
        1774744200,                   /* 2026-03-29T00:30Z, before spring forward */
        1792882800,                   /* 2026-10-24T23:00Z, before fall back */
        1325160000,                   /* 2011-12-29T12:00Z, before Apia skips a day */
        (int64_t)(h % 4102444800ULL), /* 1970..2100 */
    };
    for (size_t i = 0; i < ARRAY_LEN(starts); i++)
        check_utc(&c, starts[i]);
    check_utc(&c, -1);
    check_utc(&c, MIN_TIME);
    check_utc(&c, MAX_TIME - 400 * 86400);
    if (cron_next(&c, "UTC", MAX_TIME + 1, &next, err, sizeof err) == 0)
        fail("time out of range accepted", "UTC", MAX_TIME + 1, next, NONE);

    for (size_t i = 0; i < ARRAY_LEN(starts); i++) {
        check_zone(&c, "Europe/Berlin", starts[i]);
        check_zone(&c, zones[h % ARRAY_LEN(zones)], starts[i]);
    }
    free(text);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_cron_one(data, size);
}
#endif
