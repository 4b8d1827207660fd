/* test_metrics.c - the metrics registry: counts, histograms, escaping, caps, thread safety,
 * and that what it renders passes `promtool check metrics`. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "prom.h"
#include "util.h"

static char *render(metrics *m, int64_t now)
{
    strbuf sb;
    sb_init(&sb);
    metrics_render(m, &sb, now);
    return sb.data;
}

Test(metrics, empty_registry_is_valid)
{
    metrics *m = metrics_create();
    char *text = render(m, now_ms());
    prom_check_metrics(text);
    /* every family is declared even before its first sample */
    cr_expect(strstr(text, "# TYPE runner_jobs_completed_total counter\n"));
    cr_expect(strstr(text, "# TYPE runner_job_duration_seconds histogram\n"));
    cr_expect(strstr(text, "# TYPE runner_job_wait_seconds histogram\n"));
    cr_expect_eq(prom_value(text, "runner_phase"), 0);
    cr_expect_eq(prom_value(text, "runner_database_up"), 0);
    cr_expect_eq(prom_value(text, "runner_build_info{version=\"" RUNNER_VERSION "\"}"), 1);
    free(text);
    metrics_destroy(m);
}

Test(metrics, counters_by_queue_and_kind)
{
    metrics *m = metrics_create();
    metrics_series *a = metrics_series_for(m, "default", "resize");
    metrics_series *b = metrics_series_for(m, "mail", "send");
    cr_assert_eq(metrics_series_for(m, "default", "resize"), a, "handles are stable");
    for (int i = 0; i < 3; i++)
        metrics_job_outcome(m, a, METRICS_COMPLETED, 0.2);
    metrics_job_outcome(m, a, METRICS_FAILED, 0.1);
    metrics_job_outcome(m, a, METRICS_DISCARDED, 0.1);
    metrics_job_outcome(m, b, METRICS_RELEASED, -1);
    metrics_job_outcome(m, b, METRICS_CANCELLED, 2);
    metrics_jobs_rescued(m, "mail", "send", 4);
    metrics_jobs_rescued(m, NULL, NULL, 1);
    char *text = render(m, now_ms());
    prom_check_metrics(text);
    cr_expect_eq(prom_value(text, "runner_jobs_completed_total{queue=\"default\",kind=\"resize\"}"),
                 3);
    /* the discarded attempt failed too */
    cr_expect_eq(prom_value(text, "runner_jobs_failed_total{queue=\"default\",kind=\"resize\"}"),
                 2);
    cr_expect_eq(prom_value(text, "runner_jobs_discarded_total{queue=\"default\",kind=\"resize\"}"),
                 1);
    cr_expect_eq(prom_value(text, "runner_jobs_released_total{queue=\"mail\",kind=\"send\"}"), 1);
    cr_expect_eq(prom_value(text, "runner_jobs_cancelled_total{queue=\"mail\",kind=\"send\"}"), 1);
    cr_expect_eq(prom_value(text, "runner_jobs_rescued_total{queue=\"mail\",kind=\"send\"}"), 4);
    cr_expect_eq(prom_value(text, "runner_jobs_rescued_total{queue=\"unknown\",kind=\"unknown\"}"),
                 1);
    /* zero for the other outcomes of a series that exists */
    cr_expect_eq(prom_value(text, "runner_jobs_completed_total{queue=\"mail\",kind=\"send\"}"), 0);
    /* released without running: no duration observed; the others: 5 and 1 */
    cr_expect_eq(
        prom_value(text, "runner_job_duration_seconds_count{queue=\"default\",kind=\"resize\"}"),
        5);
    cr_expect_eq(
        prom_value(text, "runner_job_duration_seconds_count{queue=\"mail\",kind=\"send\"}"), 1);
    free(text);
    metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    metrics *m = metrics_create();
    metrics_series *s = metrics_series_for(m, "q", "k");
    metrics_queue *q = metrics_queue_for(m, "q");
    const double d[] = {0.0005, 0.001, 0.003, 0.7, 4000, -1};
    for (size_t i = 0; i < ARRAY_LEN(d); i++)
        metrics_job_outcome(m, s, METRICS_COMPLETED, d[i]);
    metrics_job_started(m, q, 12);
    metrics_job_started(m, q, -0.5); /* clock skew: counted as 0 */
    char *text = render(m, now_ms());
    prom_check_metrics(text);
#define DUR(le)                                                                                    \
    prom_value(text, "runner_job_duration_seconds_bucket{queue=\"q\",kind=\"k\",le=\"" le "\"}")
    cr_expect_eq(DUR("0.001"), 2, "le is inclusive: 0.0005 and 0.001");
    cr_expect_eq(DUR("0.005"), 3);
    cr_expect_eq(DUR("0.5"), 3);
    cr_expect_eq(DUR("1"), 4);
    cr_expect_eq(DUR("3600"), 4);
    cr_expect_eq(DUR("+Inf"), 5);
#undef DUR
    cr_expect_eq(prom_value(text, "runner_job_duration_seconds_count{queue=\"q\",kind=\"k\"}"), 5,
                 "a negative duration is no observation");
    double sum = prom_value(text, "runner_job_duration_seconds_sum{queue=\"q\",kind=\"k\"}");
    cr_expect(sum > 4000.7 && sum < 4000.71, "sum %f", sum);
    cr_expect_eq(prom_value(text, "runner_job_wait_seconds_bucket{queue=\"q\",le=\"0.001\"}"), 1);
    cr_expect_eq(prom_value(text, "runner_job_wait_seconds_bucket{queue=\"q\",le=\"30\"}"), 2);
    cr_expect_eq(prom_value(text, "runner_job_wait_seconds_count{queue=\"q\"}"), 2);
    free(text);
    metrics_destroy(m);
}

Test(metrics, label_values_are_escaped)
{
    metrics *m = metrics_create();
    metrics_series *s = metrics_series_for(m, "a\"b\\c\nd", "k\\");
    metrics_job_outcome(m, s, METRICS_COMPLETED, 0);
    char *text = render(m, now_ms());
    prom_check_metrics(text);
    cr_expect_eq(
        prom_value(text, "runner_jobs_completed_total{queue=\"a\\\"b\\\\c\\nd\",kind=\"k\\\\\"}"),
        1, "%s", text);
    free(text);

    strbuf sb;
    sb_init(&sb);
    metrics_escape_label(&sb, "plain");
    metrics_escape_label(&sb, "");
    metrics_escape_label(&sb, "\"\\\n");
    cr_expect_str_eq(sb.data, "plain\\\"\\\\\\n");
    sb_free(&sb);
    metrics_destroy(m);
}

Test(metrics, series_are_capped)
{
    metrics *m = metrics_create();
    char kind[32];
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(kind, sizeof kind, "k%d", i);
        cr_assert_not_null(metrics_series_for(m, "q", kind));
    }
    cr_expect_null(metrics_series_for(m, "q", "one-too-many"));
    metrics_job_outcome(m, NULL, METRICS_COMPLETED, 1);
    for (int i = 0; i < METRICS_MAX_QUEUES; i++) {
        snprintf(kind, sizeof kind, "q%d", i);
        cr_assert_not_null(metrics_queue_for(m, kind));
    }
    cr_expect_null(metrics_queue_for(m, "one-too-many"));
    metrics_job_started(m, NULL, 1);
    char *text = render(m, now_ms());
    cr_expect_eq(prom_value(text, "runner_metrics_series_dropped_total"), 4);
    cr_expect_eq(prom_value(text, "runner_jobs_completed_total{queue=\"q\",kind=\"k511\"}"), 0);
    prom_check_metrics(text);
    free(text);
    metrics_destroy(m);
}

Test(metrics, gauges_and_ages)
{
    metrics *m = metrics_create();
    int64_t t0 = now_ms();
    metrics_publish(m,
                    &(metrics_gauges){
                        .workers = 20, .workers_busy = 7, .jobs_held = 9, .outcomes_unwritten = 3});
    metrics_set_db_up(m, true);
    metrics_set_phase(m, PHASE_CANCELLING);
    metrics_db_reconnected(m);
    metrics_db_reconnected(m);
    metrics_lease_renewed(m, t0);
    char *text = render(m, t0 + 2500);
    prom_check_metrics(text);
    cr_expect_eq(prom_value(text, "runner_workers"), 20);
    cr_expect_eq(prom_value(text, "runner_workers_busy"), 7);
    cr_expect_eq(prom_value(text, "runner_jobs_held"), 9);
    cr_expect_eq(prom_value(text, "runner_outcomes_unwritten"), 3);
    cr_expect_eq(prom_value(text, "runner_phase"), 2);
    cr_expect_eq(prom_value(text, "runner_database_up"), 1);
    cr_expect_eq(prom_value(text, "runner_database_reconnects_total"), 2);
    cr_expect_eq(prom_value(text, "runner_lease_renewal_age_seconds"), 2.5);
    free(text);
    metrics_destroy(m);
}

Test(metrics, liveness_and_readiness)
{
    metrics *m = metrics_create();
    int64_t t = now_ms();
    cr_expect(metrics_live(m, t, 10000), "a new registry counts as a tick");
    metrics_loop_tick(m, t + 5000);
    cr_expect(metrics_live(m, t + 15000, 10000));
    cr_expect_not(metrics_live(m, t + 15001, 10000));

    cr_expect_not(metrics_ready(m), "not ready before the database is up");
    metrics_set_db_up(m, true);
    cr_expect(metrics_ready(m));
    metrics_set_phase(m, PHASE_DRAINING);
    cr_expect_not(metrics_ready(m));
    metrics_set_phase(m, PHASE_RUNNING);
    metrics_set_db_up(m, false);
    cr_expect_not(metrics_ready(m));
    metrics_destroy(m);
}

/* Writers on several threads while a reader renders: no count is lost. */
#define WRITERS 4
#define PER_WRITER 200000

static metrics *shared;

static void *writer(void *arg)
{
    char kind[16];
    snprintf(kind, sizeof kind, "k%d", (int)(intptr_t)arg % 2);
    metrics_series *s = metrics_series_for(shared, "q", kind);
    metrics_queue *q = metrics_queue_for(shared, "q");
    for (int i = 0; i < PER_WRITER; i++) {
        metrics_job_outcome(shared, s, METRICS_COMPLETED, 0.001);
        metrics_job_started(shared, q, 0.01);
    }
    return NULL;
}

Test(metrics, concurrent_writers_and_reader)
{
    shared = metrics_create();
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < 20; i++)
        free(render(shared, now_ms()));
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    char *text = render(shared, now_ms());
    double total = prom_value(text, "runner_jobs_completed_total{queue=\"q\",kind=\"k0\"}") +
                   prom_value(text, "runner_jobs_completed_total{queue=\"q\",kind=\"k1\"}");
    cr_expect_eq(total, (double)WRITERS * PER_WRITER);
    int nseries = 0;
    for (const char *p = text; (p = strstr(p, "\nrunner_jobs_completed_total{")); p++)
        nseries++;
    cr_expect_eq(nseries, 2, "writers racing to create a series made %d of them", nseries);
    prom_check_metrics(text);
    cr_expect_eq(prom_value(text, "runner_job_wait_seconds_count{queue=\"q\"}"),
                 (double)WRITERS * PER_WRITER);
    free(text);
    metrics_destroy(shared);
}
