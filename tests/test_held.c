/* test_held.c - the set of held leases: an id held at two attempts (the older one's lease
 * lost, its handler not returned yet), interning, and the lease guard's times. */
#include <criterion/criterion.h>

#include "held.h"
#include "job.h"

static job *make_job(int64_t id, int attempt, const char *kind)
{
    job *j = job_new("default", kind, "{}", "me");
    j->id = id;
    j->attempt = attempt;
    return j;
}

static void add(held_set *s, int64_t id, int attempt, int64_t sent_ms)
{
    job *j = make_job(id, attempt, "k");
    held_add(s, j, sent_ms);
    job_free(j);
}

Test(held, add_find_drop)
{
    held_set s = {0};
    for (int64_t id = 1; id <= 100; id++)
        add(&s, id, 1, 0);
    cr_assert_eq(s.n, 100);
    for (int64_t id = 1; id <= 100; id += 2)
        held_drop(&s, id, 1);
    cr_assert_eq(s.n, 50);
    for (int64_t id = 1; id <= 100; id++) {
        held_job *h = held_find(&s, id, 1);
        if (id % 2)
            cr_assert_null(h, "id %lld should be gone", (long long)id);
        else
            cr_assert(h && h->id == id && h->attempt == 1, "id %lld lost", (long long)id);
    }
    cr_assert_null(held_find(&s, 2, 2), "wrong attempt found");
    held_drop(&s, 2, 7); /* not held at that attempt: no-op */
    cr_assert_eq(s.n, 50);
    held_free(&s);
}

/* A job claimed again while the handler of its older attempt still runs: both attempts
 * are found, the newest is the default, and either may go first. */
Test(held, two_attempts_of_one_id)
{
    held_set s = {0};
    add(&s, 9, 1, 0);
    add(&s, 5, 1, 0);
    held_find(&s, 9, 1)->lost = true;
    add(&s, 9, 2, 0);
    cr_assert_eq(s.superseded, 1);
    cr_assert_eq(held_find(&s, 9, -1)->attempt, 2, "newest attempt by default");
    cr_assert(held_find(&s, 9, 1)->lost, "older attempt still found");

    held_drop(&s, 9, 2); /* the newest goes first: the older becomes the mapped one */
    cr_assert_eq(s.superseded, 0);
    cr_assert_eq(held_find(&s, 9, -1)->attempt, 1);
    held_drop(&s, 9, 1);
    cr_assert_null(held_find(&s, 9, -1));

    add(&s, 9, 1, 0);
    add(&s, 9, 2, 0);
    held_drop(&s, 9, 1); /* the older goes first */
    cr_assert_eq(s.superseded, 0);
    cr_assert_eq(held_find(&s, 9, -1)->attempt, 2);
    cr_assert_eq(held_find(&s, 5, -1)->id, 5, "the other job survived every move");
    held_free(&s);
}

Test(held, intern_returns_one_copy_per_name)
{
    held_set s = {0};
    const char *a = held_intern(&s, "mail");
    const char *b = held_intern(&s, "reports");
    cr_assert_str_eq(a, "mail");
    cr_assert_eq(held_intern(&s, "mail"), a, "same name, same copy");
    cr_assert_neq(a, b);
    job *j = make_job(1, 1, "mail");
    held_add(&s, j, 0);
    job_free(j);
    cr_assert_eq(held_find(&s, 1, 1)->kind, a, "held jobs point at the interned name");
    cr_assert_eq(s.nnames, 2);
    held_free(&s);
}

Test(held, guard_times)
{
    /* the margin covers a renewal interval and killing the job, at most half the lease */
    cr_assert_eq(held_lease_margin(30000, 10000, 5000), 10000);
    cr_assert_eq(held_lease_margin(30000, 1000, 5000), 6000);
    cr_assert_eq(held_lease_margin(4000, 1000, 5000), 2000);

    held_set s = {0};
    cr_assert_eq(held_guard_due(&s, 30000, 10000), INT64_MAX, "nothing held, nothing due");
    add(&s, 1, 1, 5000);
    add(&s, 2, 1, 1000);
    cr_assert_eq(held_guard_due(&s, 30000, 10000), 21000, "the oldest renewal decides");
    held_find(&s, 2, 1)->lost = true;
    cr_assert_eq(held_guard_due(&s, 30000, 10000), 25000, "lost leases are not guarded");
    held_free(&s);
}
