/* tz.c - TZif reader (RFC 8536 v1 and v2+, with the POSIX TZ footer) and local/UTC maps. */
#include "tz.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * DESIGN: zones are read once into an immutable struct and kept in a mutex-protected
 * list for the life of the process; the libc TZ machinery (setenv/tzset/localtime) is
 * never used, so any thread may convert times in any zone. Offsets come from the
 * transition table; after its last transition (and in files without transitions) the
 * footer's POSIX TZ string decides, with all three rule forms (Jn, n, Mm.w.d) and the
 * TZif v3 extension of rule times beyond 24h or below zero. Files with leap seconds
 * ("right/...") are refused: cron works in civil time. A tzdata upgrade while the
 * process runs takes effect at its next start.
 */

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_MAX_FILE (1 << 20)
#define TZ_MAX_NAME 255
#define TZ_MAX_OFFSET (26 * 3600)
#define TZ_MAX_TIMES 100000

/* One end of a POSIX TZ DST period: "Jn", "n" or "Mm.w.d", at `secs` local time. */
typedef struct tz_rule_date {
    char kind; /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
    int day;   /* J/D: the day; M: weekday 0..6 */
    int month; /* M only */
    int week;  /* M only: 1..5, 5 = last */
    int32_t secs;
} tz_rule_date;

typedef struct tz_rule {
    bool present;
    bool has_dst;
    int32_t std_off; /* east positive, unlike the POSIX string */
    int32_t dst_off;
    tz_rule_date start, end;
} tz_rule;

struct tz_zone {
    struct tz_zone *next;
    char *key; /* directory + "/" + name: the cache key */
    char *name;
    size_t ntrans;
    int64_t *trans;     /* ascending transition instants */
    int32_t *trans_off; /* offset in effect from trans[i] on */
    int32_t off0;       /* before the first transition: time type 0 */
    tz_rule rule;
    int32_t min_off, max_off;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static tz_zone *cache;
static tz_zone utc_zone = {.name = "UTC"};

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t tz_days_from_civil(int64_t year, int month, int day)
{
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = m;
    *year = yoe + era * 400 + (m <= 2);
}

int tz_weekday(int64_t days)
{
    return (int)(((days + 4) % 7 + 7) % 7);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tz_days_in_month(int64_t year, int month)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : mdays[month - 1];
}

/* rule_local gives the local wall-clock second (std time before the start, dst time
 * before the end) at which rule date d falls in year. */
static int64_t rule_local(const tz_rule_date *d, int64_t year)
{
    int64_t days = tz_days_from_civil(year, 1, 1);
    if (d->kind == 'J') {
        days += d->day - 1 + (is_leap(year) && d->day >= 60);
    } else if (d->kind == 'D') {
        days += d->day;
    } else {
        int64_t first = tz_days_from_civil(year, d->month, 1);
        int md = 1 + (d->day - tz_weekday(first) + 7) % 7 + (d->week - 1) * 7;
        while (md > tz_days_in_month(year, d->month))
            md -= 7;
        days = first + md - 1;
    }
    return days * 86400 + d->secs;
}

static int64_t rule_start(const tz_rule *r, int64_t year)
{
    return rule_local(&r->start, year) - r->std_off;
}

static int64_t rule_end(const tz_rule *r, int64_t year)
{
    return rule_local(&r->end, year) - r->dst_off;
}

static int64_t rule_year(const tz_rule *r, int64_t t)
{
    int64_t y;
    int m, d;
    tz_civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
    return y;
}

static int32_t rule_offset(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t y = rule_year(r, t);
    int64_t s = rule_start(r, y), e = rule_end(r, y);
    bool dst = s < e ? (t >= s && t < e) : !(t >= e && t < s);
    return dst ? r->dst_off : r->std_off;
}

static int64_t rule_next(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return INT64_MAX;
    int64_t best = INT64_MAX, y = rule_year(r, t);
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        int64_t s = rule_start(r, yy), e = rule_end(r, yy);
        if (s > t && s < best)
            best = s;
        if (e > t && e < best)
            best = e;
    }
    return best;
}

/* last_le is the index of the last transition at or before t, or -1. */
static ptrdiff_t last_le(const tz_zone *z, int64_t t)
{
    size_t lo = 0, hi = z->ntrans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (ptrdiff_t)lo - 1;
}

int32_t tz_offset(const tz_zone *z, int64_t t)
{
    if (z->ntrans == 0)
        return z->rule.present ? rule_offset(&z->rule, t) : z->off0;
    if (t > z->trans[z->ntrans - 1] && z->rule.present)
        return rule_offset(&z->rule, t);
    ptrdiff_t i = last_le(z, t);
    return i < 0 ? z->off0 : z->trans_off[i];
}

/* next_transition is the first instant after t at which the offset may change. */
static int64_t next_transition(const tz_zone *z, int64_t t)
{
    if (z->ntrans > 0 && t < z->trans[z->ntrans - 1])
        return z->trans[last_le(z, t) + 1];
    return z->rule.present ? rule_next(&z->rule, t) : INT64_MAX;
}

void tz_offset_range(const tz_zone *z, int32_t *min_off, int32_t *max_off)
{
    *min_off = z->min_off;
    *max_off = z->max_off;
}

const char *tz_name(const tz_zone *z)
{
    return z->name;
}

int tz_local_to_utc(const tz_zone *z, int64_t local, int64_t out[2])
{
    int64_t hi = local - z->min_off, s = local - z->max_off;
    int64_t gap_end = INT64_MIN;
    int32_t o = tz_offset(z, s);
    int n = 0;
    for (;;) {
        int64_t e = next_transition(z, s); /* [s, e) has offset o */
        int64_t c = local - o;
        if (c >= s && c < e && c <= hi && n < 2)
            out[n++] = c;
        if (e > hi)
            break;
        int32_t o2 = tz_offset(z, e);
        if (gap_end == INT64_MIN && o2 > o && local >= e + o && local < e + o2)
            gap_end = e;
        s = e;
        o = o2;
    }
    if (n == 0)
        out[0] = gap_end != INT64_MIN ? gap_end : local - o;
    return n;
}

/* ---- POSIX TZ strings (the TZif footer) ---- */

static const char *parse_abbr(const char *s)
{
    if (*s == '<') {
        const char *q = strchr(s, '>');
        return q && q - s >= 4 ? q + 1 : NULL;
    }
    const char *b = s;
    while (isalpha((unsigned char)*s))
        s++;
    return s - b >= 3 ? s : NULL;
}

/* parse_hms reads [+-]h[hh][:mm[:ss]] with hours up to max_h into *out seconds. */
static const char *parse_hms(const char *s, int max_h, int32_t *out)
{
    int sign = 1, part[3] = {0, 0, 0};
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    for (int i = 0; i < 3; i++) {
        if (!isdigit((unsigned char)*s))
            return NULL;
        int v = 0, nd = 0;
        while (isdigit((unsigned char)*s) && nd++ < 3)
            v = v * 10 + (*s++ - '0');
        if (isdigit((unsigned char)*s) || v > (i == 0 ? max_h : 59))
            return NULL;
        part[i] = v;
        if (*s != ':' || i == 2)
            break;
        s++;
    }
    *out = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
    return s;
}

static const char *parse_num(const char *s, int lo, int hi, int *out)
{
    int v = 0, nd = 0;
    while (isdigit((unsigned char)*s) && nd++ < 4)
        v = v * 10 + (*s++ - '0');
    if (nd == 0 || isdigit((unsigned char)*s) || v < lo || v > hi)
        return NULL;
    *out = v;
    return s;
}

static const char *parse_rule_date(const char *s, tz_rule_date *d)
{
    memset(d, 0, sizeof(*d));
    if (*s == 'J') {
        d->kind = 'J';
        s = parse_num(s + 1, 1, 365, &d->day);
    } else if (*s == 'M') {
        d->kind = 'M';
        s = parse_num(s + 1, 1, 12, &d->month);
        if (s && *s == '.')
            s = parse_num(s + 1, 1, 5, &d->week);
        else
            s = NULL;
        if (s && *s == '.')
            s = parse_num(s + 1, 0, 6, &d->day);
        else
            s = NULL;
    } else {
        d->kind = 'D';
        s = parse_num(s, 0, 365, &d->day);
    }
    d->secs = 2 * 3600;
    if (s && *s == '/')
        s = parse_hms(s + 1, 167, &d->secs);
    return s;
}

/* parse_posix_tz reads "STD offset [DST [offset] [,start[/time],end[/time]]]". */
static bool parse_posix_tz(const char *s, tz_rule *r)
{
    int32_t off;
    memset(r, 0, sizeof(*r));
    if (!(s = parse_abbr(s)) || !(s = parse_hms(s, 24, &off)))
        return false;
    r->present = true;
    r->std_off = r->dst_off = -off;
    if (*s == '\0')
        return true;
    if (!(s = parse_abbr(s)))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        if (!(s = parse_hms(s, 24, &off)))
            return false;
        r->dst_off = -off;
    }
    /* Without rules POSIX leaves the dates to the implementation; glibc uses the US. */
    const char *rules = *s == ',' ? s + 1 : "M3.2.0,M11.1.0";
    if (*s != ',' && *s != '\0')
        return false;
    if (!(rules = parse_rule_date(rules, &r->start)) || *rules++ != ',' ||
        !(rules = parse_rule_date(rules, &r->end)) || *rules != '\0')
        return false;
    return true;
}

/* ---- TZif files ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be_time(const unsigned char *p, size_t size)
{
    if (size == 4)
        return (int32_t)be32(p);
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static size_t body_size(const tzif_counts *k, size_t tsize)
{
    return (size_t)k->time * (tsize + 1) + (size_t)k->type * 6 + k->chars +
           (size_t)k->leap * (tsize + 4) + k->isstd + k->isut;
}

static bool read_counts(const unsigned char *p, size_t len, tzif_counts *k)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    k->isut = be32(p + 20);
    k->isstd = be32(p + 24);
    k->leap = be32(p + 28);
    k->time = be32(p + 32);
    k->type = be32(p + 36);
    k->chars = be32(p + 40);
    return k->type >= 1 && k->type <= 256 && k->time <= TZ_MAX_TIMES && k->chars <= 65536 &&
           k->leap <= 65536 && (k->isstd == 0 || k->isstd == k->type) &&
           (k->isut == 0 || k->isut == k->type);
}

static void note_offset(tz_zone *z, int32_t off)
{
    if (off < z->min_off)
        z->min_off = off;
    if (off > z->max_off)
        z->max_off = off;
}

/* parse_tzif fills z from a whole TZif file; returns a reason on failure, else NULL. */
static const char *parse_tzif(const unsigned char *buf, size_t len, tz_zone *z)
{
    tzif_counts k;
    size_t tsize = 4;
    if (!read_counts(buf, len, &k))
        return "not a TZif file";
    const unsigned char *p = buf + 44, *end = buf + len;
    if (buf[4] >= '2') {
        size_t skip = body_size(&k, 4);
        if ((size_t)(end - p) < skip || !read_counts(p + skip, (size_t)(end - p) - skip, &k))
            return "truncated";
        p += skip + 44;
        tsize = 8;
    }
    if ((size_t)(end - p) < body_size(&k, tsize))
        return "truncated";
    if (k.leap > 0)
        return "leap seconds are not supported";
    const unsigned char *times = p, *idx = p + (size_t)k.time * tsize;
    const unsigned char *types = idx + k.time;
    int32_t offs[256] = {0};
    for (uint32_t i = 0; i < k.type; i++) {
        offs[i] = (int32_t)be32(types + 6 * i);
        if (offs[i] < -TZ_MAX_OFFSET || offs[i] > TZ_MAX_OFFSET)
            return "offset out of range";
    }
    z->ntrans = k.time;
    z->trans = xcalloc(k.time, sizeof(int64_t));
    z->trans_off = xcalloc(k.time, sizeof(int32_t));
    z->off0 = z->min_off = z->max_off = offs[0];
    for (uint32_t i = 0; i < k.time; i++) {
        z->trans[i] = be_time(times + (size_t)i * tsize, tsize);
        if (idx[i] >= k.type || (i > 0 && z->trans[i] <= z->trans[i - 1]))
            return "bad transition table";
        z->trans_off[i] = offs[idx[i]];
        note_offset(z, z->trans_off[i]);
    }
    if (tsize == 8) {
        const unsigned char *f = p + body_size(&k, 8);
        const unsigned char *nl = f < end ? memchr(f + 1, '\n', (size_t)(end - f - 1)) : NULL;
        if (!nl || *f != '\n')
            return "missing footer";
        char tzs[128];
        size_t n = (size_t)(nl - f - 1);
        if (n >= sizeof(tzs))
            return "TZ string too long";
        memcpy(tzs, f + 1, n);
        tzs[n] = '\0';
        if (n > 0 && !parse_posix_tz(tzs, &z->rule))
            return "unsupported TZ string in footer";
        if (z->rule.present) {
            note_offset(z, z->rule.std_off);
            note_offset(z, z->rule.dst_off);
        }
    }
    return NULL;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > TZ_MAX_NAME || name[0] == '/')
        return false;
    for (const char *c = name; *c; c++) {
        bool comp_start = c == name || c[-1] == '/';
        if (comp_start && (*c == '.' || *c == '/'))
            return false; /* ".", "..", hidden files, empty components */
        if (!isalnum((unsigned char)*c) && !strchr("/_-+.", *c))
            return false;
    }
    return name[n - 1] != '/';
}

static void zone_free(tz_zone *z)
{
    if (!z)
        return;
    free(z->key);
    free(z->name);
    free(z->trans);
    free(z->trans_off);
    free(z);
}

/* load_zone reads and parses the file for name from dir; NULL with err on failure. */
static tz_zone *load_zone(const char *dir, const char *name, const char *key, char *err,
                          size_t errlen)
{
    tz_zone *z = NULL;
    unsigned char *buf = NULL;
    char realdir[PATH_MAX], realfile[PATH_MAX];
    int fd = -1;
    struct stat st;

    if (!realpath(dir, realdir) || !realpath(key, realfile)) {
        if (strcmp(name, "Etc/UTC") == 0)
            return &utc_zone;
        errf(err, errlen, "unrecognized time zone \"%s\"", name);
        goto fail;
    }
    size_t dl = strlen(realdir);
    if (strncmp(realfile, realdir, dl) != 0 || (realfile[dl] != '/' && dl > 1)) {
        errf(err, errlen, "time zone \"%s\" is outside the zoneinfo directory", name);
        goto fail;
    }
    if ((fd = open(realfile, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        errf(err, errlen, "could not open time zone file \"%s\": %s", realfile, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > TZ_MAX_FILE) {
        errf(err, errlen, "unrecognized time zone \"%s\"", name);
        goto fail;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = xmalloc(len);
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            errf(err, errlen, "could not read time zone file \"%s\"", realfile);
            goto fail;
        }
        got += (size_t)r;
    }
    z = xcalloc(1, sizeof(*z));
    const char *why = parse_tzif(buf, len, z);
    if (why) {
        errf(err, errlen, "invalid time zone file \"%s\": %s", realfile, why);
        goto fail;
    }
    z->key = xstrdup(key);
    z->name = xstrdup(name);
    free(buf);
    close(fd);
    return z;
fail:
    zone_free(z);
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

const tz_zone *tz_get(const char *name, char *err, size_t errlen)
{
    if (!name || !name_ok(name)) {
        errf(err, errlen, "invalid time zone name \"%s\"", name ? name : "");
        return NULL;
    }
    if (strcmp(name, "UTC") == 0)
        return &utc_zone;
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir)
        dir = TZ_DEFAULT_DIR;
    char *key = xasprintf("%s/%s", dir, name);
    tz_zone *z;
    pthread_mutex_lock(&cache_lock);
    for (z = cache; z; z = z->next)
        if (strcmp(z->key, key) == 0)
            break;
    if (!z) {
        z = load_zone(dir, name, key, err, errlen);
        if (z && z != &utc_zone) {
            z->next = cache;
            cache = z;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    free(key);
    return z;
}
