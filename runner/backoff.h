/* backoff.h - retry delays: exponential, capped, with jitter. */
#ifndef RUNNER_BACKOFF_H
#define RUNNER_BACKOFF_H

#include <stdint.h>

/* backoff_delay_ms is the wait before retrying after failed attempt `attempt` (1-based):
 * base * 2^(attempt-1), capped at max, then jittered into [75%, 100%] of that by u, a
 * uniform random number in [0, 1). The jitter spreads a burst of failures apart; the cap
 * holds even with jitter. */
int64_t backoff_delay_ms(int attempt, int64_t base_ms, int64_t max_ms, double u);

/* backoff_random is a thread-safe uniform random number in [0, 1). */
double backoff_random(void);

#endif
