/* test_backoff.c - retry delays: growth, cap, jitter bounds. */
#include <criterion/criterion.h>

#include "backoff.h"

Test(backoff, doubles_from_base_without_jitter)
{
    cr_assert_eq(backoff_delay_ms(1, 1000, 3600000, 0), 1000);
    cr_assert_eq(backoff_delay_ms(2, 1000, 3600000, 0), 2000);
    cr_assert_eq(backoff_delay_ms(3, 1000, 3600000, 0), 4000);
    cr_assert_eq(backoff_delay_ms(11, 1000, 3600000, 0), 1024000);
}

Test(backoff, capped_at_max_even_for_huge_attempts)
{
    cr_assert_eq(backoff_delay_ms(13, 1000, 3600000, 0), 3600000);
    cr_assert_eq(backoff_delay_ms(1000000, 1000, 3600000, 0), 3600000);
    cr_assert_leq(backoff_delay_ms(64, 1000, 3600000, 0.999), 3600000);
}

Test(backoff, jitter_stays_within_75_to_100_percent)
{
    for (int i = 0; i < 1000; i++) {
        double u = backoff_random();
        cr_assert(u >= 0 && u < 1, "random %f out of [0,1)", u);
        int64_t d = backoff_delay_ms(4, 1000, 3600000, u);
        cr_assert(d >= 6000 && d <= 8000, "delay %lld out of bounds", (long long)d);
    }
}

Test(backoff, jitter_actually_varies)
{
    int64_t first = backoff_delay_ms(5, 1000, 3600000, backoff_random());
    int differs = 0;
    for (int i = 0; i < 50; i++)
        differs += backoff_delay_ms(5, 1000, 3600000, backoff_random()) != first;
    cr_assert_gt(differs, 0);
}

Test(backoff, degenerate_inputs_are_sane)
{
    cr_assert_eq(backoff_delay_ms(0, 1000, 5000, 0), 1000);
    cr_assert_eq(backoff_delay_ms(3, 0, 0, 0), 1);
    cr_assert_eq(backoff_delay_ms(3, 10, 50, 0), 40);
    cr_assert_eq(backoff_delay_ms(4, 10, 50, 0), 50);
}
