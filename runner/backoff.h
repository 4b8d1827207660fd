/* backoff.h - retry delays: exponential, capped, with jitter. */
#ifndef RUNNER_BACKOFF_H
#define RUNNER_BACKOFF_H

#include <stdint.h>

/* A kind's retry backoff unless runner.yaml sets kinds.<name>.backoff. */
#define BACKOFF_DEFAULT_BASE_MS 1000
#define BACKOFF_DEFAULT_MAX_MS (3600 * 1000)

/* Reconnects and retried writes wait from BACKOFF_RETRY_MIN_MS, doubling to _MAX_MS. */
#define BACKOFF_RETRY_MIN_MS 100
#define BACKOFF_RETRY_MAX_MS 10000

/* backoff_delay_ms is the wait before retrying after failed attempt `attempt` (1-based):
 * base * 2^(attempt-1), capped at max, then jittered into [75%, 100%] of that by u, a
 * uniform random number in [0, 1). The jitter spreads a burst of failures apart; the cap
 * holds even with jitter. */
int64_t backoff_delay_ms(int attempt, int64_t base_ms, int64_t max_ms, double u);

/* backoff_next_delay doubles a reconnect or retry delay (0: the first), from
 * BACKOFF_RETRY_MIN_MS up to BACKOFF_RETRY_MAX_MS. */
int64_t backoff_next_delay(int64_t delay_ms);
/* backoff_jitter is delay_ms jittered into [75%, 100%], so that many instances that lost
 * the same server do not all come back at the same moment. */
int64_t backoff_jitter(int64_t delay_ms);

/* backoff_random is a thread-safe uniform random number in [0, 1). */
double backoff_random(void);

#endif
