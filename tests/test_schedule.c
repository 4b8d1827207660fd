/* test_schedule.c - cron schedules against a real PostgreSQL: concurrent callers enqueue
 * each tick once, the catch_up modes, definitions that differ between instances, and
 * DST through the database path. schedule_tick is called directly, with the database
 * clock or a chosen time. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "harness.h"
#include "schedule.h"

#define MINUTE_MS 60000LL

static config *load_config(const char *yaml)
{
    static config cfg;
    char err[512];
    config_init(&cfg);
    th_assert(config_load_string(&cfg, yaml, strlen(yaml), "test.yaml", err, sizeof err) == 0,
              "config: %s", err);
    return &cfg;
}

static PGconn *connect_db(const th_db *db)
{
    char err[512];
    PGconn *conn = db_connect(db->url, "test_schedule", 10000, err, sizeof err);
    th_assert(conn != NULL, "connect: %s", err);
    return conn;
}

static int tick(PGconn *conn, const config *cfg, const char *instance, int64_t now_ms,
                int64_t *wait_ms)
{
    char err[512];
    bool broken;
    int n = schedule_tick(conn, cfg, instance, now_ms, wait_ms, &broken, err, sizeof err);
    th_assert(n >= 0, "schedule_tick: %s", err);
    return n;
}

static void sync_defs(PGconn *conn, const config *cfg, const char *instance)
{
    char err[512];
    bool broken;
    th_assert(schedule_sync(conn, cfg, instance, &broken, err, sizeof err) >= 0,
              "schedule_sync: %s", err);
}

static int64_t db_now_ms(th_db *db)
{
    return th_query_int64(db->conn, "SELECT floor(extract(epoch FROM now()) * 1000)::bigint", NULL);
}

static int64_t jobs_of(th_db *db, const char *schedule)
{
    return th_query_int64(db->conn,
                          "SELECT count(*) FROM runner.schedule_ticks t"
                          "  JOIN runner.jobs j ON j.id = t.job_id WHERE t.schedule = $1",
                          schedule, NULL);
}

/* set_last_fire puts a schedule's last tick (and its definition time, a day earlier) at
 * unix ms `at`, as if it had fired then and nothing since. */
static void set_last_fire(th_db *db, const char *schedule, int64_t at)
{
    th_exec(db->conn,
            "UPDATE runner.schedules SET"
            "  last_fire_at = timestamptz 'epoch' + $2::bigint * interval '1 ms',"
            "  defined_at = timestamptz 'epoch' + $2::bigint * interval '1 ms' - interval '1 day'"
            " WHERE name = $1",
            schedule, th_fmt("%lld", (long long)at), NULL);
}

/* ---- three callers, one @every 1s schedule ---- */

typedef struct caller {
    const char *url;
    const config *cfg;
    int64_t until_ms;
    int enqueued;
    int calls;
    char err[512];
} caller;

static void *caller_main(void *arg)
{
    caller *c = arg;
    PGconn *conn = db_connect(c->url, "test_schedule", 10000, c->err, sizeof c->err);
    if (!conn)
        return NULL;
    while (th_now_ms() < c->until_ms) {
        int64_t wait;
        bool broken;
        int n = schedule_tick(conn, c->cfg, NULL, 0, &wait, &broken, c->err, sizeof c->err);
        if (n < 0)
            break;
        c->enqueued += n;
        c->calls++;
        c->err[0] = '\0';
        /* every caller wakes when the tick is due: they all race for it */
        th_sleep_ms(wait < 1000 ? wait : 1000);
    }
    PQfinish(conn);
    return NULL;
}

Test(schedule, three_callers_every_second, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config("schedules:\n"
                                    "  beat:\n"
                                    "    cron: \"@every 1s\"\n"
                                    "    kind: beat\n"
                                    "    args: {n: 1}\n");
    PGconn *conn = connect_db(db);
    sync_defs(conn, cfg, NULL);
    PQfinish(conn);

    enum { N = 3 };
    caller callers[N];
    pthread_t threads[N];
    int64_t until = th_now_ms() + 10000;
    for (int i = 0; i < N; i++) {
        callers[i] = (caller){.url = db->url, .cfg = cfg, .until_ms = until};
        th_assert(pthread_create(&threads[i], NULL, caller_main, &callers[i]) == 0,
                  "pthread_create");
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        th_assert(callers[i].err[0] == '\0', "caller %d: %s", i, callers[i].err);
        th_assert(callers[i].calls >= 5, "caller %d called only %d times", i, callers[i].calls);
        total += callers[i].enqueued;
    }

    int64_t jobs = th_query_int64(db->conn, "SELECT count(*) FROM runner.jobs", NULL);
    th_assert_eq(jobs, total, "jobs in the table vs. jobs the callers reported");
    th_assert(jobs >= 9 && jobs <= 11, "expected ~10 jobs in 10 s, got %lld", (long long)jobs);
    th_assert_eq(
        th_query_int64(db->conn, "SELECT count(DISTINCT fire_at) FROM runner.schedule_ticks", NULL),
        jobs, "distinct ticks");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedule_ticks t JOIN runner.jobs j"
                                "  ON j.id = t.job_id AND j.run_at = t.fire_at AND j.kind = 'beat'"
                                "  AND j.args = '{\"n\": 1}'",
                                NULL),
                 jobs, "ticks with their job (kind, args, run_at = fire_at)");
    /* one tick per second, on whole seconds, none left out */
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedule_ticks"
                                " WHERE extract(microseconds FROM fire_at)::bigint % 1000000 <> 0",
                                NULL),
                 0, "ticks off the 1 s grid");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT extract(epoch FROM max(fire_at) - min(fire_at))::bigint"
                                "  FROM runner.schedule_ticks",
                                NULL),
                 jobs - 1, "seconds between the first and the last tick");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedules WHERE name = 'beat'"
                                "  AND last_fire_at = (SELECT max(fire_at) FROM"
                                "  runner.schedule_ticks) AND last_job_id = (SELECT max(id)"
                                "  FROM runner.jobs) AND next_fire_at > last_fire_at",
                                NULL),
                 1, "schedule row: last_fire_at, last_job_id, next_fire_at");
}

/* ---- catch_up ---- */

static const char *const CATCH_UP_YAML = "schedules:\n"
                                         "  s_latest:\n"
                                         "    cron: \"* * * * *\"\n"
                                         "    kind: k\n"
                                         "  s_all:\n"
                                         "    cron: \"* * * * *\"\n"
                                         "    kind: k\n"
                                         "    catch_up: all\n"
                                         "  s_none:\n"
                                         "    cron: \"* * * * *\"\n"
                                         "    kind: k\n"
                                         "    catch_up: none\n";

/* Ten missed minutes: latest enqueues the most recent, all every one, none nothing;
 * then the next minute's tick fires in every mode. */
Test(schedule, catch_up_modes, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config(CATCH_UP_YAML);
    PGconn *conn = connect_db(db);
    sync_defs(conn, cfg, NULL);

    int64_t m = db_now_ms(db) / MINUTE_MS * MINUTE_MS; /* this minute */
    set_last_fire(db, "s_latest", m - 10 * MINUTE_MS);
    set_last_fire(db, "s_all", m - 10 * MINUTE_MS);
    set_last_fire(db, "s_none", m - 10 * MINUTE_MS);

    int64_t wait;
    int n = tick(conn, cfg, NULL, m + 30000, &wait);
    th_assert_eq(jobs_of(db, "s_latest"), 1, "catch_up latest: jobs");
    th_assert_eq(jobs_of(db, "s_all"), 10, "catch_up all: jobs");
    th_assert_eq(jobs_of(db, "s_none"), 0, "catch_up none: jobs");
    th_assert_eq(n, 11, "schedule_tick's count");
    th_assert_eq(wait, 30000, "wait until the next minute");
    char *ms = th_fmt("%lld", (long long)m);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedule_ticks WHERE schedule ="
                                " 's_latest' AND fire_at = timestamptz 'epoch' + $1::bigint"
                                " * interval '1 ms'",
                                ms, NULL),
                 1, "latest enqueued the most recent tick");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedules WHERE last_fire_at ="
                                " timestamptz 'epoch' + $1::bigint * interval '1 ms'",
                                ms, NULL),
                 3, "every mode recorded the missed ticks as dealt with");

    th_assert_eq(tick(conn, cfg, NULL, m + 30000, NULL), 0, "the same pass again");

    th_assert_eq(tick(conn, cfg, NULL, m + MINUTE_MS + 1000, &wait), 3, "the next minute");
    th_assert_eq(jobs_of(db, "s_none"), 1, "catch_up none: the next tick fires");
    th_assert_eq(wait, MINUTE_MS - 1000, "wait until the minute after");
    PQfinish(conn);
}

/* More than SCHEDULE_MAX_TICKS missed with catch_up all: the rest follow in the next call,
 * which the wait asks for at once. */
Test(schedule, catch_up_all_is_bounded, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config("schedules:\n"
                                    "  s_all:\n"
                                    "    cron: \"* * * * *\"\n"
                                    "    kind: k\n"
                                    "    catch_up: all\n");
    PGconn *conn = connect_db(db);
    sync_defs(conn, cfg, NULL);
    int64_t m = db_now_ms(db) / MINUTE_MS * MINUTE_MS;
    set_last_fire(db, "s_all", m - 1500 * MINUTE_MS);
    int64_t wait;
    th_assert_eq(tick(conn, cfg, NULL, m + 1000, &wait), SCHEDULE_MAX_TICKS, "first pass");
    th_assert_eq(wait, 0, "wait after a capped pass");
    th_assert_eq(tick(conn, cfg, NULL, m + 1000, &wait), 500, "second pass");
    th_assert_eq(wait, MINUTE_MS - 1000, "wait after the last missed tick");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(DISTINCT run_at) FROM runner.jobs"
                                " WHERE run_at > now() - interval '1501 minutes'",
                                NULL),
                 1500, "one job per missed minute");
    PQfinish(conn);
}

/* none skips a single due tick that is more than a minute late; latest enqueues it. */
Test(schedule, catch_up_none_late_tick, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config("schedules:\n"
                                    "  h_latest:\n"
                                    "    cron: \"0 * * * *\"\n"
                                    "    kind: k\n"
                                    "  h_none:\n"
                                    "    cron: \"0 * * * *\"\n"
                                    "    kind: k\n"
                                    "    catch_up: none\n");
    PGconn *conn = connect_db(db);
    sync_defs(conn, cfg, NULL);
    int64_t h = db_now_ms(db) / (60 * MINUTE_MS) * (60 * MINUTE_MS);
    set_last_fire(db, "h_latest", h - 60 * MINUTE_MS);
    set_last_fire(db, "h_none", h - 60 * MINUTE_MS);
    th_assert_eq(tick(conn, cfg, NULL, h + 30000, NULL), 2, "ticks 30 s late fire in both modes");
    set_last_fire(db, "h_latest", h - 60 * MINUTE_MS);
    set_last_fire(db, "h_none", h - 60 * MINUTE_MS);
    th_exec(db->conn, "DELETE FROM runner.schedule_ticks", NULL);
    th_assert_eq(tick(conn, cfg, NULL, h + 5 * MINUTE_MS, NULL), 1, "ticks 5 min late");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedule_ticks WHERE schedule ="
                                " 'h_latest'",
                                NULL),
                 1, "latest enqueued the late tick");
    PQfinish(conn);
}

/* ---- definitions ---- */

static const char *const INSTANCE_A = "00000000-0000-0000-0000-00000000000a";
static const char *const INSTANCE_B = "00000000-0000-0000-0000-00000000000b";

static void add_instance(th_db *db, const char *id)
{
    th_exec(db->conn,
            "INSERT INTO runner.instances (id, host, pid, version, concurrency, queues, lease)"
            " VALUES ($1::uuid, 'test', 1, 'test', 1, '{default}', interval '30 s')",
            id, NULL);
}

/* Mid-deploy: an instance whose definition differs from the one a live peer wrote does not
 * fire; once that peer is gone it takes the schedule over; a starting instance takes it
 * back. */
Test(schedule, definitions_do_not_fight, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    add_instance(db, INSTANCE_A);
    add_instance(db, INSTANCE_B);
    static config cfg_a, cfg_b;
    char err[512];
    const char *yaml_a = "schedules:\n  s:\n    cron: \"* * * * *\"\n    kind: k\n"
                         "    args: {v: 1}\n";
    const char *yaml_b = "schedules:\n  s:\n    cron: \"* * * * *\"\n    kind: k\n"
                         "    args: {v: 2}\n";
    config_init(&cfg_a);
    config_init(&cfg_b);
    th_assert(config_load_string(&cfg_a, yaml_a, strlen(yaml_a), "a.yaml", err, sizeof err) == 0,
              "%s", err);
    th_assert(config_load_string(&cfg_b, yaml_b, strlen(yaml_b), "b.yaml", err, sizeof err) == 0,
              "%s", err);
    PGconn *conn = connect_db(db);
    sync_defs(conn, &cfg_a, INSTANCE_A);

    int64_t m = db_now_ms(db) / MINUTE_MS * MINUTE_MS;
    set_last_fire(db, "s", m - 5 * MINUTE_MS);
    th_assert_eq(tick(conn, &cfg_b, INSTANCE_B, m + 1000, NULL), 0,
                 "B's definition differs and A is alive: B fires nothing");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedules WHERE args = '{\"v\": 1}'"
                                " AND defined_by = $1::uuid",
                                INSTANCE_A, NULL),
                 1, "A's definition stays");
    th_assert_eq(tick(conn, &cfg_a, INSTANCE_A, m + 1000, NULL), 1, "A fires");

    th_exec(db->conn, "UPDATE runner.instances SET state = 'stopped' WHERE id = $1::uuid",
            INSTANCE_A, NULL);
    th_assert_eq(tick(conn, &cfg_b, INSTANCE_B, m + 2000, NULL), 0, "B takes over");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedules WHERE args = '{\"v\": 2}'"
                                " AND defined_by = $1::uuid AND defined_at >= now() - '1 min'"
                                "::interval",
                                INSTANCE_B, NULL),
                 1, "B's definition is in the row");
    int64_t later = db_now_ms(db) + 2 * MINUTE_MS;
    th_assert_eq(tick(conn, &cfg_a, INSTANCE_A, later, NULL), 0, "A's definition is stale now");
    th_assert_eq(tick(conn, &cfg_b, INSTANCE_B, later, NULL), 1, "B fires after its takeover");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.jobs WHERE args = '{\"v\": 2}'", NULL),
                 1, "B's job has B's args");

    /* a (re)starting instance always takes the definition over */
    th_exec(db->conn, "UPDATE runner.instances SET state = 'running' WHERE id = $1::uuid",
            INSTANCE_A, NULL);
    sync_defs(conn, &cfg_a, INSTANCE_A);
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedules WHERE args = '{\"v\": 1}'"
                                " AND defined_by = $1::uuid",
                                INSTANCE_A, NULL),
                 1, "A's definition after A's sync");
    later += 2 * MINUTE_MS;
    th_assert_eq(tick(conn, &cfg_b, INSTANCE_B, later, NULL), 0, "B stands down");
    th_assert_eq(tick(conn, &cfg_a, INSTANCE_A, later, NULL), 1, "A fires again");
    PQfinish(conn);
}

/* A schedule without a row (never synced, or deleted by hand) is registered by the tick
 * and fires from then on; a new schedule never fires ticks from before it existed. */
Test(schedule, tick_registers_missing, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config("schedules:\n  s:\n    cron: \"* * * * *\"\n    kind: k\n");
    PGconn *conn = connect_db(db);
    int64_t now = db_now_ms(db);
    int64_t wait;
    th_assert_eq(tick(conn, cfg, NULL, 0, &wait), 0, "first tick registers");
    th_assert(wait > 0 && wait <= MINUTE_MS, "wait %lld", (long long)wait);
    th_assert_eq(
        th_query_int64(db->conn,
                       "SELECT count(*) FROM runner.schedules WHERE name = 's'"
                       "  AND extract(second FROM next_fire_at) = 0 AND last_fire_at IS NULL",
                       NULL),
        1, "registered with its next tick");
    th_assert_eq(tick(conn, cfg, NULL, now + MINUTE_MS + 1000, NULL), 1, "the next minute fires");
    PQfinish(conn);
}

/* DST through the database path: "30 2 * * *" in Europe/Berlin on the spring-forward day
 * (02:00-02:59 does not exist) fires once, at 03:00 local (01:00Z). */
Test(schedule, dst_gap, .init = th_setup, .fini = th_teardown, .timeout = 60)
{
    th_db *db = th_fresh_db(true);
    const config *cfg = load_config("schedules:\n"
                                    "  nightly:\n"
                                    "    cron: \"30 2 * * *\"\n"
                                    "    timezone: Europe/Berlin\n"
                                    "    kind: k\n");
    PGconn *conn = connect_db(db);
    sync_defs(conn, cfg, NULL);
    th_exec(db->conn,
            "UPDATE runner.schedules SET defined_at = '2027-03-27 12:00Z', last_fire_at = NULL",
            NULL);
    int64_t now = th_query_int64(
        db->conn, "SELECT extract(epoch FROM timestamptz '2027-03-28 06:00Z')::bigint * 1000",
        NULL);
    th_assert_eq(tick(conn, cfg, NULL, now, NULL), 1, "one tick on the DST day");
    th_assert_eq(th_query_int64(db->conn,
                                "SELECT count(*) FROM runner.schedule_ticks"
                                " WHERE fire_at = '2027-03-28 01:00Z'",
                                NULL),
                 1, "fired at 03:00 CEST");
    PQfinish(conn);
}
