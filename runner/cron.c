/* cron.c - cron expressions: parsing and next fire times in local time of a named zone. */
#include "cron.h"
#include "duration.h"
#include "tz.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// DESIGN: cron fields are matched against the LOCAL wall clock of the schedule's time
// zone, at minute resolution (second 0). Day-of-month and day-of-week follow Vixie
// cron: when both are restricted (neither is "*"), a day matches if EITHER matches;
// otherwise both must. "*" means exactly "*": "*/2" in a day field is a restriction.
//
// Daylight saving time. A schedule is *fixed-time* when its minute and hour fields
// contain no "*" and no step ("30 2 * * *", "0 9,17 * * 1-5", "0 1-3 * * *", @daily,
// @weekly, @monthly, @yearly); otherwise it is an *interval* schedule ("*/15 * * * *",
// "30 * * * *", "0 */2 * * *", "*/10 2 * * *", @hourly). This is cronie's split
// between fixed-time and wildcard jobs, with steps counted as wildcards.
//
//  - Spring-forward gap (local times that do not exist, e.g. 02:00-02:59 on
//    2026-03-29 in Europe/Berlin): a fixed-time schedule fires ONCE at the first
//    instant after the gap (03:00 local), however many of its times fell in the gap,
//    and that one firing also stands for a time the schedule has at the gap's end
//    (so "0 2,3 * * *" fires once at 03:00 that day). An interval schedule skips the
//    missing times: they did not happen.
//  - Fall-back overlap (local times that occur twice, e.g. 02:00-02:59 on 2026-10-25
//    in Europe/Berlin): a fixed-time schedule fires ONCE, at the first occurrence. An
//    interval schedule fires at BOTH occurrences; they are distinct real instants
//    ("*/30 * * * *" keeps firing every 30 real minutes, "30 * * * *" every real hour).
//
// So a daily fixed-time job runs exactly once for every day, DST days included. (Where
// a gap ends at midnight, e.g. America/Nuuk springs from 23:00 to 00:00, "59 23 * * *"
// runs that day's firing at 00:00 of the next day, like cronie would.)
//
// Fire times are searched day by day, skipping months and days that cannot match, for
// up to five years; an expression that never matches ("0 0 30 2 *") is an error then.

#define HORIZON_YEARS 5
#define MIN_TIME (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_TIME 253402300799LL   /* 9999-12-31T23:59:59Z */

typedef struct field_spec {
    const char *name;
    int min, max;
    const char *const *names; /* indexed by value; NULL entries unused */
    int nnames;
} field_spec;

static const char *const month_names[] = {NULL,  "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, NFIELDS };

static const field_spec fields[NFIELDS] = {
    {"minute", 0, 59, NULL, 0},          {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},    {"month", 1, 12, month_names, 13},
    {"day-of-week", 0, 7, day_names, 7},
};

static const struct {
    const char *name, *fields;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* parse_value reads one number or name of field f from s[0..len). */
static int parse_value(const field_spec *f, const char *s, size_t len, int *v, bool *named,
                       char *err, size_t errlen)
{
    *named = false;
    if (len > 0 && isdigit((unsigned char)s[0])) {
        long n = 0;
        for (size_t i = 0; i < len; i++) {
            if (!isdigit((unsigned char)s[i]))
                goto invalid;
            if (n < 1000000)
                n = n * 10 + (s[i] - '0');
        }
        if (n < f->min || n > f->max)
            return errf(err, errlen, "%s %.*s out of range (%d-%d)", f->name, (int)len, s, f->min,
                        f->max);
        *v = (int)n;
        return 0;
    }
    for (int i = 0; f->names && i < f->nnames; i++) {
        if (f->names[i] && len == 3 && strncasecmp(s, f->names[i], 3) == 0) {
            *v = i;
            *named = true;
            return 0;
        }
    }
invalid:
    return errf(err, errlen, "invalid value \"%.*s\" in %s field", (int)len, s, f->name);
}

/* parse_item adds one list element ("*", "a", "a-b", with an optional "/step") of field
 * f to *bits. */
static int parse_item(const field_spec *f, const char *s, size_t len, uint64_t *bits, char *err,
                      size_t errlen)
{
    const char *slash = memchr(s, '/', len);
    size_t blen = slash ? (size_t)(slash - s) : len;
    int lo, hi, step = 1;
    bool named;

    if (slash) {
        const char *st = slash + 1;
        size_t slen = len - blen - 1;
        long n = 0;
        bool ok = slen > 0 && slen <= 3;
        for (size_t i = 0; ok && i < slen; i++) {
            ok = isdigit((unsigned char)st[i]);
            n = n * 10 + (st[i] - '0');
        }
        if (!ok || n < 1 || n > f->max - f->min + 1)
            return errf(err, errlen, "invalid step \"%.*s\" in %s field", (int)slen, st, f->name);
        step = (int)n;
    }
    int top = f == &fields[F_DOW] ? 6 : f->max; /* "*" and "a/n" stop at Saturday */
    if (blen == 1 && s[0] == '*') {
        lo = f->min;
        hi = top;
    } else {
        const char *dash = memchr(s, '-', blen);
        size_t alen = dash ? (size_t)(dash - s) : blen;
        if (parse_value(f, s, alen, &lo, &named, err, errlen) < 0)
            return -1;
        /* "7/2" starts at Sunday-as-7, as in cronie: never an empty set */
        hi = slash ? (lo > top ? lo : top) : lo;
        if (dash) {
            if (parse_value(f, dash + 1, blen - alen - 1, &hi, &named, err, errlen) < 0)
                return -1;
            if (f == &fields[F_DOW] && named && hi == 0 && lo > 0)
                hi = 7; /* "FRI-SUN" */
            if (lo > hi)
                return errf(err, errlen, "range %.*s is backwards in %s field", (int)blen, s,
                            f->name);
        }
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= (uint64_t)1 << (f == &fields[F_DOW] && v == 7 ? 0 : v);
    return 0;
}

/* parse_field parses a comma-separated list; *star is set when it is exactly "*" and
 * *wild when any element uses "*" or a step. */
static int parse_field(const field_spec *f, const char *s, size_t len, uint64_t *bits, bool *star,
                       bool *wild, char *err, size_t errlen)
{
    *bits = 0;
    *star = len == 1 && s[0] == '*';
    *wild = memchr(s, '*', len) || memchr(s, '/', len);
    size_t i = 0;
    for (;;) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t e = comma ? (size_t)(comma - s) : len;
        if (e == i)
            return errf(err, errlen, "empty list element in %s field", f->name);
        if (parse_item(f, s + i, e - i, bits, err, errlen) < 0)
            return -1;
        if (e == len)
            return 0;
        i = e + 1;
    }
}

/* parse_every reads the duration of "@every" (duration.h's syntax); the total must be
 * positive. */
static int parse_every(const char *s, size_t len, int64_t *ms, char *err, size_t errlen)
{
    if (len == 0)
        return errf(err, errlen, "@every needs a duration, e.g. \"@every 5m\"");
    char *text = xstrndup(s, len);
    char reason[ERR_LEN];
    int64_t total = 0;
    int rc = duration_parse(text, &total, reason, sizeof reason);
    free(text);
    if (rc == DURATION_RANGE)
        return errf(err, errlen, "duration \"%.*s\" in @every is too long", (int)len, s);
    if (rc < 0)
        return errf(err, errlen, "invalid duration \"%.*s\" in @every (units: ms s m h d)",
                    (int)len, s);
    if (total <= 0)
        return errf(err, errlen, "@every duration must be positive");
    *ms = total;
    return 0;
}

static int parse_fields(const char *text, cron_expr *out, char *err, size_t errlen)
{
    const char *tok[NFIELDS];
    size_t len[NFIELDS];
    int n = 0;
    const char *p = text;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *b = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (n < NFIELDS) {
            tok[n] = b;
            len[n] = (size_t)(p - b);
        }
        n++;
    }
    if (n != NFIELDS)
        return errf(err, errlen, "expected 5 fields, got %d", n);

    uint64_t bits[NFIELDS];
    bool star[NFIELDS], wild[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        if (parse_field(&fields[i], tok[i], len[i], &bits[i], &star[i], &wild[i], err, errlen) < 0)
            return -1;
    out->minutes = bits[F_MINUTE];
    out->hours = (uint32_t)bits[F_HOUR];
    out->days = (uint32_t)bits[F_DOM];
    out->months = (uint16_t)bits[F_MONTH];
    out->weekdays = (uint8_t)bits[F_DOW];
    out->days_star = star[F_DOM];
    out->weekdays_star = star[F_DOW];
    out->fixed_time = !wild[F_MINUTE] && !wild[F_HOUR];
    return 0;
}

int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    while (isspace((unsigned char)*text))
        text++;
    if (!*text)
        return errf(err, errlen, "empty cron expression");
    if (*text != '@')
        return parse_fields(text, out, err, errlen);

    size_t wlen = strcspn(text, " \t\r\n\f\v");
    const char *rest = text + wlen;
    while (isspace((unsigned char)*rest))
        rest++;
    size_t rlen = strlen(rest);
    while (rlen > 0 && isspace((unsigned char)rest[rlen - 1]))
        rlen--;
    if (wlen == 6 && strncasecmp(text, "@every", 6) == 0)
        return parse_every(rest, rlen, &out->every_ms, err, errlen);
    for (size_t i = 0; i < ARRAY_LEN(macros); i++) {
        if (strlen(macros[i].name) == wlen && strncasecmp(text, macros[i].name, wlen) == 0) {
            if (rlen > 0)
                return errf(err, errlen, "unexpected \"%.*s\" after %s", (int)rlen, rest,
                            macros[i].name);
            return parse_fields(macros[i].fields, out, err, errlen);
        }
    }
    return errf(err, errlen, "unrecognized macro \"%.*s\"", (int)wlen, text);
}

static bool day_matches(const cron_expr *c, int mday, int wday)
{
    bool dom = (c->days >> mday) & 1, dow = (c->weekdays >> wday) & 1;
    if (c->days_star || c->weekdays_star)
        return dom && dow;
    return dom || dow;
}

/* scan_day lowers *best to the earliest fire instant after `after` among the local
 * times of one matching day, applying the DST rules above. Local times at or below
 * floor_l cannot map to an instant after `after`. */
static void scan_day(const cron_expr *c, const tz_zone *z, int64_t day, int64_t floor_l,
                     int64_t after, int32_t max_off, bool *found, int64_t *best)
{
    for (uint32_t hb = c->hours; hb; hb &= hb - 1) {
        int h = __builtin_ctz(hb);
        for (uint64_t mb = c->minutes; mb; mb &= mb - 1) {
            int64_t l = day * 86400 + h * 3600 + __builtin_ctzll(mb) * 60;
            if (l <= floor_l)
                continue;
            if (*found && l - max_off > *best)
                return; /* every later local time maps to a later instant */
            int64_t inst[2];
            int n = tz_local_to_utc(z, l, inst);
            if (n == 0 && !c->fixed_time)
                continue; /* interval schedule: the missing time is skipped */
            if (n == 0 || c->fixed_time)
                n = 1; /* gap end, or the first of two occurrences */
            for (int i = 0; i < n; i++) {
                if (inst[i] > after && (!*found || inst[i] < *best)) {
                    *best = inst[i];
                    *found = true;
                }
            }
        }
    }
}

int cron_next(const cron_expr *c, const char *tz, int64_t after, int64_t *next, char *err,
              size_t errlen)
{
    if (c->every_ms > 0)
        return errf(err, errlen, "@every schedules have no calendar fire times");
    if (!c->minutes || !c->hours || !c->days || !c->months || !c->weekdays)
        return errf(err, errlen, "empty cron schedule");
    if (after < MIN_TIME || after > MAX_TIME)
        return errf(err, errlen, "time %lld is out of range", (long long)after);
    const tz_zone *z = tz_get(tz, err, errlen);
    if (!z)
        return -1;

    int32_t min_off, max_off;
    tz_offset_range(z, &min_off, &max_off);
    /* An instant t > after shows local time t + off(t) > after + min_off, which is at
     * least local(after) - (max_off - min_off). */
    int64_t floor_l = after + tz_offset(z, after) - (max_off - min_off);
    int64_t day = floor_l / 86400 - (floor_l % 86400 < 0);
    int64_t last = day + HORIZON_YEARS * 366 + 2, best = 0;
    bool found = false;
    for (; day <= last; day++) {
        if (found && day * 86400 - max_off > best)
            break;
        int64_t y;
        int m, d;
        tz_civil_from_days(day, &y, &m, &d);
        if (!((c->months >> m) & 1)) {
            day += tz_days_in_month(y, m) - d; /* on to the 1st of the next month */
            continue;
        }
        if (day_matches(c, d, tz_weekday(day)))
            scan_day(c, z, day, floor_l, after, max_off, &found, &best);
    }
    if (!found)
        return errf(err, errlen, "schedule has no fire time within %d years", HORIZON_YEARS);
    *next = best;
    return 0;
}

int cron_tz_valid(const char *tz, char *err, size_t errlen)
{
    return tz_get(tz, err, errlen) ? 0 : -1;
}
