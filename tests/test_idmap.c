/* test_idmap.c - the held-job map: against a plain array as the oracle, through growth
 * and many deletions (the backward shift must keep every remaining id reachable). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "idmap.h"

#define N 5000

Test(idmap, empty_map_finds_nothing)
{
    idmap m = {0};
    size_t v = 7;
    cr_assert(!idmap_get(&m, 1, &v));
    cr_assert_eq(v, 7);
    idmap_del(&m, 1);
    cr_assert_eq(m.n, 0);
    idmap_free(&m);
}

Test(idmap, put_overwrites_and_del_removes)
{
    idmap m = {0};
    size_t v;
    idmap_put(&m, 42, 1);
    idmap_put(&m, 42, 2);
    cr_assert_eq(m.n, 1);
    cr_assert(idmap_get(&m, 42, &v));
    cr_assert_eq(v, 2);
    idmap_del(&m, 42);
    cr_assert(!idmap_get(&m, 42, &v));
    cr_assert_eq(m.n, 0);
    idmap_free(&m);
}

/* random puts and deletes of ids from a small range (many collisions and long probe
 * runs), each step checked against the oracle for every id */
Test(idmap, matches_an_array_oracle_under_random_churn)
{
    static long long oracle[512]; /* value + 1, 0 = absent */
    idmap m = {0};
    srand(12345);
    for (int step = 0; step < N; step++) {
        int64_t id = rand() % 512;
        if (rand() % 3 == 0) {
            idmap_del(&m, id);
            oracle[id] = 0;
        } else {
            size_t v = (size_t)rand();
            idmap_put(&m, id, v);
            oracle[id] = (long long)v + 1;
        }
        if (step % 97 != 0)
            continue;
        size_t count = 0;
        for (int64_t k = 0; k < 512; k++) {
            size_t v;
            bool found = idmap_get(&m, k, &v);
            cr_assert_eq(found, oracle[k] != 0, "id %lld at step %d", (long long)k, step);
            if (found) {
                cr_assert_eq((long long)v + 1, oracle[k], "value of id %lld", (long long)k);
                count++;
            }
        }
        cr_assert_eq(m.n, count);
    }
    idmap_free(&m);
}

Test(idmap, consecutive_ids_as_claimed_in_batches)
{
    idmap m = {0};
    size_t v;
    for (int64_t id = 1000000; id < 1000000 + N; id++)
        idmap_put(&m, id, (size_t)(id - 1000000));
    for (int64_t id = 1000000; id < 1000000 + N; id += 2)
        idmap_del(&m, id);
    for (int64_t id = 1000000; id < 1000000 + N; id++) {
        bool found = idmap_get(&m, id, &v);
        cr_assert_eq(found, (id - 1000000) % 2 == 1, "id %lld", (long long)id);
        if (found)
            cr_assert_eq(v, (size_t)(id - 1000000));
    }
    cr_assert_eq(m.n, N / 2);
    idmap_free(&m);
}
