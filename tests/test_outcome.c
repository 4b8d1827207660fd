/* test_outcome.c - turning handler results into outcomes (no database: what the writer
 * would send), and the bookkeeping the claim policy reads from unwritten outcomes. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "outcome.h"
#include "util.h"

static config cfg;
static held_set held;
static outcome_writer w;

static void setup(void)
{
    char err[ERR_LEN];
    config_init(&cfg);
    const char *yaml = "worker: {queues: [default, {name: mail, concurrency: 2}]}\n";
    cr_assert_eq(config_load_string(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof err), 0, "%s",
                 err);
    memset(&held, 0, sizeof held);
    outcome_writer_init(&w, &cfg, "", "inst-1", 1000, &held, NULL);
}

static void teardown(void)
{
    outcome_writer_free(&w);
    held_free(&held);
    config_free(&cfg);
}

/* finish runs job id of queue through outcome_of_result as if its handler returned r. */
static void finish(int64_t id, const char *queue, job_outcome o, const char *error,
                   int64_t delay_ms)
{
    job *j = job_new(queue, "k", "{}", "inst-1");
    j->id = id;
    j->attempt = 1;
    held_add(&held, j, 0);
    finished_job f = {.job = j,
                      .result = {.outcome = o, .error = error ? xstrdup(error) : NULL,
                                 .delay_ms = delay_ms},
                      .duration_us = 2500};
    outcome_of_result(&w, &f, 1000, 60000, "inst-1");
    job_free(j);
}

static const outcome *last(void)
{
    cr_assert(w.npending > 0, "no outcome queued");
    return &w.pending[w.npending - 1];
}

TestSuite(outcome, .init = setup, .fini = teardown);

Test(outcome, results_map_to_writes)
{
    finish(1, "default", JOB_COMPLETED, NULL, 0);
    cr_assert_eq(last()->item.outcome, FINISH_COMPLETED);
    cr_assert_eq(last()->duration_ms, 2);

    finish(2, "default", JOB_RETRY, NULL, -1);
    cr_assert_eq(last()->item.outcome, FINISH_RETRY);
    cr_assert_str_eq(last()->error, "failed", "a failure without a message gets one");
    cr_assert(last()->item.delay_ms >= 750 && last()->item.delay_ms <= 1000,
              "attempt 1 waits the kind's base backoff, jittered: %lld",
              (long long)last()->item.delay_ms);

    finish(3, "default", JOB_RETRY, "boom", 42);
    cr_assert_eq(last()->item.delay_ms, 42, "the handler's own delay wins");
    cr_assert_str_eq(last()->item.error, "boom");

    finish(4, "default", JOB_DISCARD, NULL, 0);
    cr_assert_eq(last()->item.outcome, FINISH_DISCARD);

    finish(5, "default", JOB_CANCELLED, "whatever", 0);
    cr_assert_str_eq(last()->error, "cancelled by admin");

    finish(6, "default", JOB_INTERRUPTED, NULL, 0);
    cr_assert_eq(last()->item.outcome, FINISH_RELEASED);
    cr_assert_str_eq(last()->error, "interrupted by shutdown of instance inst-1");
    cr_assert(outcome_release_unwritten(&w), "a release is unwritten");

    cr_assert_eq(w.npending, 6);
    cr_assert_eq(held.n, 6, "leases stay held until their outcome is written");
}

Test(outcome, committed_and_lost_write_nothing)
{
    finish(1, "default", JOB_COMMITTED, NULL, 0);
    cr_assert_eq(w.npending, 0, "the handler's transaction wrote the completion");
    cr_assert_eq(held.n, 0, "and the lease is done with");

    job *j = job_new("default", "k", "{}", "inst-1");
    j->id = 2;
    j->attempt = 1;
    held_add(&held, j, 0);
    held_find(&held, 2, 1)->lost = true; /* a renewal found it taken over */
    finished_job f = {.job = j, .result = {.outcome = JOB_COMPLETED}};
    outcome_of_result(&w, &f, 1000, 60000, "inst-1");
    job_free(j);
    cr_assert_eq(w.npending, 0, "a peer owns the job: nothing to write");
    cr_assert_eq(held.n, 0);
}

Test(outcome, abandoned_by_the_guard_is_released)
{
    job *j = job_new("default", "k", "{}", "inst-1");
    j->id = 7;
    j->attempt = 3;
    held_add(&held, j, 0);
    held_job *h = held_find(&held, 7, 3);
    h->lost = h->abandoning = true; /* stopped by the lease guard before the lease ran out */
    finished_job f = {.job = j, .result = {.outcome = JOB_ABANDONED}};
    outcome_of_result(&w, &f, 1000, 60000, "inst-1");
    job_free(j);
    cr_assert_eq(last()->item.outcome, FINISH_RELEASED);
    cr_assert_str_eq(last()->error, "released by instance inst-1: lease renewals failed");
}

Test(outcome, queue_counts_and_forget)
{
    finish(1, "mail", JOB_COMPLETED, NULL, 0);
    cr_assert(w.limited_room, "a job of a limited queue finished: its queue has room");
    finish(2, "mail", JOB_COMPLETED, NULL, 0);
    finish(3, "default", JOB_COMPLETED, NULL, 0);
    cr_assert_eq(outcome_unwritten_in_queue(&w, "mail"), 2);
    cr_assert_eq(outcome_unwritten_in_queue(&w, "default"), 1);
    cr_assert_eq(outcome_unwritten(&w), 3);
    cr_assert(outcome_unwritten_for(&w, 2));
    cr_assert(!outcome_release_unwritten(&w));

    cr_assert(outcome_forget(&w, 2), "lease lost before the write");
    cr_assert(!outcome_unwritten_for(&w, 2));
    cr_assert_null(held_find(&held, 2, -1), "and the lease is no longer held");
    cr_assert(!outcome_forget(&w, 2), "nothing left to forget");
    cr_assert_eq(outcome_unwritten_in_queue(&w, "mail"), 1);
    cr_assert_eq(outcome_due(&w), 0, "pending outcomes are due at once");
}
