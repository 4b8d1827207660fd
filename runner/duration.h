/* duration.h - durations as runner.yaml, the command line and messages write them. */
#ifndef RUNNER_DURATION_H
#define RUNNER_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_SECOND 1000LL
#define DURATION_MINUTE (60 * DURATION_SECOND)
#define DURATION_HOUR (60 * DURATION_MINUTE)
#define DURATION_DAY (24 * DURATION_HOUR)

/* duration_parse's failures. */
#define DURATION_INVALID (-1)
#define DURATION_RANGE (-2)

/* duration_parse reads "250ms", "10s", "5m", "1h", "2d", sums of them ("1h30m") or "0"
 * into milliseconds. Returns 0, DURATION_INVALID or DURATION_RANGE (too long for
 * int64 milliseconds), with "invalid duration ..." in err. */
int duration_parse(const char *s, int64_t *ms, char *err, size_t errlen);

/* duration_format writes ms in the largest unit that divides it ("90m", "1500ms", "0")
 * into buf and returns buf. */
const char *duration_format(int64_t ms, char *buf, size_t len);

#endif
