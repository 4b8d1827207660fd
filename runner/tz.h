/* tz.h - IANA time zones read from compiled TZif files, without touching TZ or tzset(). */
#ifndef RUNNER_TZ_H
#define RUNNER_TZ_H

#include <stddef.h>
#include <stdint.h>

/* A loaded zone. Zones are immutable and cached for the life of the process, so the
 * pointer tz_get returns may be shared between threads and is never freed. */
typedef struct tz_zone tz_zone;

/* tz_get returns the zone named `name` ("Europe/Berlin"), loading
 * $TZDIR/<name> (default /usr/share/zoneinfo) on first use. "UTC" and "Etc/UTC" work
 * without any file. Names that are absolute, contain "." or ".." components or resolve
 * outside the zoneinfo directory are rejected. Returns NULL with err set on failure. */
const tz_zone *tz_get(const char *name, char *err, size_t errlen);

/* tz_name is the name the zone was loaded under. */
const char *tz_name(const tz_zone *z);

/* tz_offset is the UTC offset in seconds (east positive) in effect at unix time t. */
int32_t tz_offset(const tz_zone *z, int64_t t);

/* tz_offset_range gives the smallest and largest offsets the zone ever uses. */
void tz_offset_range(const tz_zone *z, int32_t *min_off, int32_t *max_off);

/* tz_local_to_utc maps a local wall-clock time, given as seconds since 1970-01-01
 * 00:00:00 of the local calendar (tz_days_from_civil(...) * 86400 + seconds of day),
 * to the instants that show it: returns 1 (out[0]), 2 when the time occurs twice in a
 * backward transition (out[0] < out[1]), or 0 when it falls in a forward gap and never
 * occurs; then out[0] is the instant the gap ends (the first instant whose local time
 * is later than `local`). */
int tz_local_to_utc(const tz_zone *z, int64_t local, int64_t out[2]);

/* Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms): days since
 * 1970-01-01 and back; month 1..12, day 1..31; tz_weekday: 0 = Sunday. */
int64_t tz_days_from_civil(int64_t year, int month, int day);
void tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day);
int tz_weekday(int64_t days);
int tz_days_in_month(int64_t year, int month);

#endif
