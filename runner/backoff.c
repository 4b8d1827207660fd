/* backoff.c - capped exponential backoff with jitter for retries and reconnects. */
#include "backoff.h"

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

int64_t backoff_delay_ms(int attempt, int64_t base_ms, int64_t max_ms, double u)
{
    if (attempt < 1)
        attempt = 1;
    if (base_ms < 1)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    if (u < 0)
        u = 0;
    if (u >= 1)
        u = 0.999999;
    int64_t jittered = d - (int64_t)((double)d * 0.25 * u);
    return jittered < 1 ? 1 : jittered;
}

int64_t backoff_next_delay(int64_t delay_ms)
{
    delay_ms = delay_ms > 0 ? delay_ms * 2 : BACKOFF_RETRY_MIN_MS;
    return delay_ms > BACKOFF_RETRY_MAX_MS ? BACKOFF_RETRY_MAX_MS : delay_ms;
}

int64_t backoff_jitter(int64_t delay_ms)
{
    return backoff_delay_ms(1, delay_ms, delay_ms, backoff_random());
}

double backoff_random(void)
{
    static _Thread_local uint64_t state;
    static atomic_uint_fast64_t salt;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid() ^
                (atomic_fetch_add(&salt, 0x9e3779b97f4a7c15u) + 0x9e3779b97f4a7c15u);
        if (state == 0)
            state = 1;
    }
    /* xorshift64*: fine for jitter, not for secrets */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0;
}
