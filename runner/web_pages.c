/* web_pages.c - the overview, queues, schedules and instances pages, queue actions, and
 * what every page shares (frame, errors, forms). Each page reads the admin views of
 * sql/002_admin.sql, which read only rows that partial indexes select. */
#include "web_pages.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "web_query.h"

/* Notices a redirect may ask for (?done=NAME): fixed texts, nothing reflected. */
static const struct {
    const char *name;
    const char *text;
    bool error;
} notices[] = {
    {"retried", "Job retried: it is available again.", false},
    {"not-retried", "Nothing retried: only failed or cancelled jobs can be retried.", true},
    {"cancelled", "Job cancelled (a running job stops within about a second).", false},
    {"not-cancelled", "Nothing cancelled: the job had already finished.", true},
    {"paused", "Queue paused: no instance claims its jobs until it is resumed.", false},
    {"not-paused", "The queue was already paused.", true},
    {"resumed", "Queue resumed.", false},
    {"not-resumed", "The queue was not paused.", true},
};

const char *col(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

PGresult *page_query(web_req *rq, web_resp *rs, const char *what, const char *sql, int n,
                     const char *const *params)
{
    char err[ERR_LEN];
    int64_t t0 = now_us();
    PGresult *res = web_exec_text(rq->conn, sql, n, params, &rq->broken, err, sizeof err);
    rq->db_ms += (double)(now_us() - t0) / 1000.0;
    if (!res) {
        char msg[ERR_LEN + 64];
        snprintf(msg, sizeof msg, "could not read %s: %s", what, err);
        page_error(rq, rs, 500, "Database error", msg);
    }
    return res;
}

void page_begin(web_req *rq, web_resp *rs, const char *title, const char *active)
{
    web_chrome c = {.title = title, .active = active, .user = rq->role,
                    .read_only = !(rq->may.retry || rq->may.cancel || rq->may.pause ||
                                   rq->may.resume)};
    const char *done = rq->query ? web_param_get(rq->query, "done") : NULL;
    for (size_t i = 0; done && i < ARRAY_LEN(notices); i++) {
        if (strcmp(done, notices[i].name) == 0) {
            c.notice = notices[i].text;
            c.notice_error = notices[i].error;
        }
    }
    sb_reset(&rs->body);
    html_begin(&rs->body, &c);
}

void page_end(web_req *rq, web_resp *rs)
{
    html_end(&rs->body, rq->db_ms);
}

void page_error(web_req *rq, web_resp *rs, int status, const char *title, const char *msg)
{
    rs->status = status;
    page_begin(rq, rs, title, NULL);
    sb_puts(&rs->body, "<p class=\"notice error\">");
    html_esc(&rs->body, msg);
    sb_puts(&rs->body, "</p><p><a href=\"/\">Overview</a></p>");
    page_end(rq, rs);
}

void page_redirect(web_resp *rs, const char *location)
{
    rs->status = 303;
    free(rs->location);
    rs->location = xstrdup(location);
}

void page_action_error(web_req *rq, web_resp *rs, const char *what, const char *err)
{
    int status = 500;
    if (strstr(err, "SQLSTATE 42501"))
        status = 403; /* insufficient_privilege: the role may not run it */
    else if (strstr(err, "SQLSTATE P0002"))
        status = 404;
    else if (strstr(err, "SQLSTATE 23505"))
        status = 409;
    char msg[ERR_LEN + 64];
    snprintf(msg, sizeof msg, "could not %s: %s", what, err);
    page_error(rq, rs, status, status == 403 ? "Not allowed" : "Action failed", msg);
}

void action_form(strbuf *sb, const web_req *rq, const char *action_path, const char *label,
                 const char *cls)
{
    sb_puts(sb, "<form class=\"inline\" method=\"post\" action=\"");
    html_esc(sb, action_path);
    sb_puts(sb, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    html_esc(sb, rq->csrf);
    sb_printf(sb, "\"><button type=\"submit\" class=\"%s\">", cls);
    html_esc(sb, label);
    sb_puts(sb, "</button></form>");
}

void state_badge(strbuf *sb, const char *state, bool scheduled)
{
    sb_puts(sb, "<span class=\"state s-");
    html_esc(sb, state);
    sb_puts(sb, "\">");
    html_esc(sb, state);
    sb_puts(sb, "</span>");
    if (scheduled)
        sb_puts(sb, " <span class=\"tag\">scheduled</span>");
}

void job_link(strbuf *sb, const char *id)
{
    sb_puts(sb, "<a href=\"/jobs/");
    html_esc(sb, id);
    sb_puts(sb, "\">");
    html_esc(sb, id);
    sb_puts(sb, "</a>");
}

/* count_link appends a count that links to the jobs it counts. */
static void count_link(strbuf *sb, const char *queue, const char *state, const char *n)
{
    if (!n || strcmp(n, "0") == 0) {
        sb_puts(sb, "<td class=\"num zero\">0</td>");
        return;
    }
    sb_puts(sb, "<td class=\"num\"><a href=\"/jobs?queue=");
    strbuf u;
    sb_init(&u);
    url_esc(&u, queue);
    html_esc(sb, u.data);
    sb_free(&u);
    if (state)
        sb_printf(sb, "&amp;state=%s", state);
    sb_puts(sb, "\">");
    html_count(sb, strtoll(n, NULL, 10));
    sb_puts(sb, "</a></td>");
}

static const char queues_sql[] =
    "SELECT s.queue, s.available, s.scheduled, s.running, s.retrying, s.failed,"
    " s.completed_last_hour, extract(epoch FROM s.oldest_waiting_age), s.paused,"
    " extract(epoch FROM q.paused_at), extract(epoch FROM q.resumed_at)"
    " FROM runner.queue_summary s LEFT JOIN runner.queues q ON q.name = s.queue"
    " ORDER BY s.queue";

/* queue_table renders the queue summary; with actions, a pause or resume button each. */
static void queue_table(web_req *rq, strbuf *sb, const PGresult *res, bool actions)
{
    int rows = PQntuples(res);
    if (rows == 0) {
        sb_puts(sb, "<p class=\"empty\">No queues yet: a queue appears once it has jobs.</p>");
        return;
    }
    sb_puts(sb, "<table class=\"grid\"><thead><tr><th>Queue</th><th class=\"num\">Available</th>"
                "<th class=\"num\">Scheduled</th><th class=\"num\">Running</th>"
                "<th class=\"num\">Retrying</th><th class=\"num\">Failed</th>"
                "<th class=\"num\">Done (1 h)</th><th>Oldest waiting</th><th>Status</th>");
    if (actions)
        sb_puts(sb, "<th></th>");
    sb_puts(sb, "</tr></thead><tbody>");
    for (int r = 0; r < rows; r++) {
        const char *name = col(res, r, 0);
        bool paused = strcmp(PQgetvalue(res, r, 8), "t") == 0;
        sb_puts(sb, "<tr><td class=\"name\"><a href=\"/jobs?queue=");
        strbuf u;
        sb_init(&u);
        url_esc(&u, name);
        html_esc(sb, u.data);
        sb_puts(sb, "\">");
        html_esc(sb, name);
        sb_puts(sb, "</a></td>");
        count_link(sb, name, "available", col(res, r, 1));
        count_link(sb, name, "available", col(res, r, 2));
        count_link(sb, name, "running", col(res, r, 3));
        count_link(sb, name, "available", col(res, r, 4));
        count_link(sb, name, "failed", col(res, r, 5));
        count_link(sb, name, "completed", col(res, r, 6));
        sb_puts(sb, "<td>");
        const char *age = col(res, r, 7);
        if (age)
            html_span(sb, strtod(age, NULL));
        else
            sb_puts(sb, "\xe2\x80\x93");
        sb_puts(sb, "</td><td>");
        if (paused) {
            sb_puts(sb, "<span class=\"tag warn\">paused</span> ");
            html_time(sb, col(res, r, 9), rq->now, false);
        } else {
            sb_puts(sb, "active");
        }
        sb_puts(sb, "</td>");
        if (actions) {
            sb_puts(sb, "<td>");
            bool may = paused ? rq->may.resume : rq->may.pause;
            if (may) {
                strbuf path;
                sb_init(&path);
                sb_puts(&path, "/queues/");
                url_esc(&path, name);
                sb_puts(&path, paused ? "/resume" : "/pause");
                action_form(sb, rq, path.data, paused ? "Resume" : "Pause",
                            paused ? "act" : "act warn");
                sb_free(&path);
            }
            sb_puts(sb, "</td>");
        }
        sb_puts(sb, "</tr>");
        sb_free(&u);
    }
    sb_puts(sb, "</tbody></table>");
}

static void instance_table(web_req *rq, strbuf *sb, const PGresult *res)
{
    int rows = PQntuples(res);
    if (rows == 0) {
        sb_puts(sb, "<p class=\"empty\">No instance is registered.</p>");
        return;
    }
    sb_puts(sb, "<table class=\"grid\"><thead><tr><th>Instance</th><th>Host</th>"
                "<th class=\"num\">PID</th><th>Version</th><th>State</th><th>Heartbeat</th>"
                "<th>Started</th><th class=\"num\">Running</th><th class=\"num\">Workers</th>"
                "<th>Queues</th></tr></thead><tbody>");
    for (int r = 0; r < rows; r++) {
        bool alive = strcmp(PQgetvalue(res, r, 5), "t") == 0;
        const char *state = col(res, r, 4);
        sb_puts(sb, "<tr><td class=\"mono\" title=\"");
        html_esc(sb, col(res, r, 0));
        sb_puts(sb, "\">");
        html_escn(sb, col(res, r, 0), 8);
        sb_puts(sb, "</td><td>");
        html_esc(sb, col(res, r, 1));
        sb_puts(sb, "</td><td class=\"num\">");
        html_esc(sb, col(res, r, 2));
        sb_puts(sb, "</td><td>");
        html_esc(sb, col(res, r, 3));
        sb_puts(sb, "</td><td>");
        sb_puts(sb, "<span class=\"state i-");
        html_esc(sb, alive ? state : "dead");
        sb_puts(sb, "\">");
        html_esc(sb, state);
        sb_puts(sb, "</span>");
        if (!alive && (strcmp(state, "running") == 0 || strcmp(state, "draining") == 0))
            sb_puts(sb, " <span class=\"tag warn\">no heartbeat</span>");
        sb_puts(sb, "</td><td>");
        html_time(sb, col(res, r, 6), rq->now, false);
        sb_puts(sb, "</td><td>");
        html_time(sb, col(res, r, 7), rq->now, false);
        sb_puts(sb, "</td><td class=\"num\">");
        html_esc(sb, col(res, r, 8));
        sb_puts(sb, "</td><td class=\"num\">");
        html_esc(sb, col(res, r, 9));
        sb_puts(sb, "</td><td>");
        html_esc(sb, col(res, r, 10));
        sb_puts(sb, "</td></tr>");
    }
    sb_puts(sb, "</tbody></table>");
}

#define INSTANCE_COLUMNS                                                                           \
    "SELECT id, host, pid, version, state, alive, extract(epoch FROM heartbeat_at),"               \
    " extract(epoch FROM started_at), running_jobs, concurrency, array_to_string(queues, ', ')"    \
    " FROM runner.instance_status"

static void page_overview(web_req *rq, web_resp *rs)
{
    PGresult *q = page_query(rq, rs, "the queues", queues_sql, 0, NULL);
    if (!q)
        return;
    PGresult *inst = page_query(rq, rs, "the instances",
                                INSTANCE_COLUMNS " WHERE state IN ('running', 'draining')"
                                                 " ORDER BY started_at",
                                0, NULL);
    PGresult *fail = inst ? page_query(rq, rs, "the failures",
                                       "SELECT j.id, j.queue, j.kind, j.attempt,"
                                       " extract(epoch FROM j.finished_at), left(j.last_error, 200)"
                                       " FROM runner.jobs j WHERE j.state = 'failed'"
                                       " ORDER BY j.id DESC LIMIT 10",
                                       0, NULL)
                          : NULL;
    PGresult *est = fail ? page_query(rq, rs, "the table size",
                                      "SELECT reltuples::bigint FROM pg_class"
                                      " WHERE oid = 'runner.jobs'::regclass",
                                      0, NULL)
                         : NULL;
    if (!est)
        goto out;
    page_begin(rq, rs, "Overview", "/");
    strbuf *sb = &rs->body;
    sb_puts(sb, "<section><h2>Queues</h2>");
    queue_table(rq, sb, q, false);
    int64_t total = PQntuples(est) ? strtoll(PQgetvalue(est, 0, 0), NULL, 10) : -1;
    if (total < 0) {
        sb_puts(sb, "<p class=\"hint\">All jobs: not estimated yet (the table was never "
                    "analyzed). ");
    } else {
        sb_puts(sb, "<p class=\"hint\">All jobs: about ");
        html_count(sb, total);
        sb_puts(sb, " in the table (the planner's estimate, not a count). ");
    }
    sb_puts(sb, "<a href=\"/queues\">Queues and their controls</a></p></section>");
    sb_puts(sb, "<section><h2>Instances alive or draining</h2>");
    instance_table(rq, sb, inst);
    sb_puts(sb, "<p class=\"hint\"><a href=\"/instances\">All instances</a></p></section>");
    sb_puts(sb, "<section><h2>Recent failures</h2>");
    int rows = PQntuples(fail);
    if (rows == 0) {
        sb_puts(sb, "<p class=\"empty\">No failed jobs.</p>");
    } else {
        sb_puts(sb, "<table class=\"grid\"><thead><tr><th class=\"num\">Job</th><th>Queue</th>"
                    "<th>Kind</th><th class=\"num\">Attempts</th><th>Failed</th><th>Error</th>"
                    "</tr></thead><tbody>");
        for (int r = 0; r < rows; r++) {
            sb_puts(sb, "<tr><td class=\"num\">");
            job_link(sb, PQgetvalue(fail, r, 0));
            sb_puts(sb, "</td><td>");
            html_esc(sb, col(fail, r, 1));
            sb_puts(sb, "</td><td>");
            html_esc(sb, col(fail, r, 2));
            sb_puts(sb, "</td><td class=\"num\">");
            html_esc(sb, col(fail, r, 3));
            sb_puts(sb, "</td><td>");
            html_time(sb, col(fail, r, 4), rq->now, false);
            sb_puts(sb, "</td><td class=\"err\">");
            html_esc(sb, col(fail, r, 5));
            sb_puts(sb, "</td></tr>");
        }
        sb_puts(sb, "</tbody></table><p class=\"hint\"><a href=\"/jobs?state=failed\">"
                    "All failed jobs</a></p>");
    }
    sb_puts(sb, "</section>");
    page_end(rq, rs);
out:
    PQclear(q);
    PQclear(inst);
    PQclear(fail);
    PQclear(est);
}

static void page_queues(web_req *rq, web_resp *rs)
{
    PGresult *q = page_query(rq, rs, "the queues", queues_sql, 0, NULL);
    if (!q)
        return;
    page_begin(rq, rs, "Queues", "/queues");
    queue_table(rq, &rs->body, q, true);
    sb_puts(&rs->body,
            "<p class=\"hint\">Pausing stops every instance from claiming the queue's jobs; "
            "running jobs go on and enqueueing still works. Available counts due jobs, "
            "scheduled those whose run_at is ahead, retrying those that failed before.</p>");
    page_end(rq, rs);
    PQclear(q);
}

static void page_schedules(web_req *rq, web_resp *rs)
{
    PGresult *res = page_query(
        rq, rs, "the schedules",
        "SELECT schedule, cron, timezone, kind, queue, catch_up,"
        " extract(epoch FROM last_fire_at), extract(epoch FROM next_fire_at), last_job_id,"
        " last_job_state, definer_alive FROM runner.schedule_status ORDER BY schedule",
        0, NULL);
    if (!res)
        return;
    page_begin(rq, rs, "Schedules", "/schedules");
    strbuf *sb = &rs->body;
    int rows = PQntuples(res);
    if (rows == 0) {
        sb_puts(sb, "<p class=\"empty\">No schedules: they appear once an instance with "
                    "<code>schedules:</code> in its runner.yaml has started.</p>");
    } else {
        sb_puts(sb, "<table class=\"grid\"><thead><tr><th>Schedule</th><th>Cron</th>"
                    "<th>Time zone</th><th>Kind</th><th>Queue</th><th>Catch-up</th>"
                    "<th>Last fire</th><th>Next fire</th><th>Last job</th><th>Owner</th>"
                    "</tr></thead><tbody>");
        for (int r = 0; r < rows; r++) {
            sb_puts(sb, "<tr><td class=\"name\">");
            html_esc(sb, col(res, r, 0));
            sb_puts(sb, "</td><td class=\"mono\">");
            html_esc(sb, col(res, r, 1));
            for (int c = 2; c <= 5; c++) {
                sb_puts(sb, "</td><td>");
                html_esc(sb, col(res, r, c));
            }
            sb_puts(sb, "</td><td>");
            html_time(sb, col(res, r, 6), rq->now, false);
            sb_puts(sb, "</td><td>");
            html_time(sb, col(res, r, 7), rq->now, false);
            sb_puts(sb, "</td><td>");
            const char *job = col(res, r, 8);
            if (job) {
                job_link(sb, job);
                sb_puts(sb, " ");
                const char *st = col(res, r, 9);
                if (st)
                    state_badge(sb, st, false);
                else
                    sb_puts(sb, "<span class=\"tag\">pruned</span>");
            } else {
                sb_puts(sb, "\xe2\x80\x93");
            }
            sb_puts(sb, "</td><td>");
            sb_puts(sb, strcmp(PQgetvalue(res, r, 10), "t") == 0
                            ? "alive"
                            : "<span class=\"tag warn\">definer gone</span>");
            sb_puts(sb, "</td></tr>");
        }
        sb_puts(sb, "</tbody></table>");
    }
    page_end(rq, rs);
    PQclear(res);
}

static void page_instances(web_req *rq, web_resp *rs)
{
    PGresult *res = page_query(rq, rs, "the instances",
                               INSTANCE_COLUMNS " WHERE state IN ('running', 'draining')"
                                                "  OR coalesce(stopped_at, heartbeat_at) >"
                                                "     now() - interval '24 hours'"
                                                " ORDER BY alive DESC, started_at DESC LIMIT 500",
                               0, NULL);
    if (!res)
        return;
    page_begin(rq, rs, "Instances", "/instances");
    instance_table(rq, &rs->body, res);
    sb_puts(&rs->body, "<p class=\"hint\">Instances alive or draining, and those that stopped "
                       "within 24 hours (at most 500). An instance is alive while its heartbeat "
                       "is younger than its lease.</p>");
    page_end(rq, rs);
    PQclear(res);
}

static void act_queue(web_req *rq, web_resp *rs)
{
    bool pause = strcmp(rq->route->action, "pause") == 0;
    const char *params[] = {rq->route->name};
    char err[ERR_LEN];
    PGresult *res = web_exec_text(rq->conn,
                                  pause ? "SELECT runner.pause_queue($1)"
                                        : "SELECT runner.resume_queue($1)",
                                  1, params, &rq->broken, err, sizeof err);
    if (!res) {
        page_action_error(rq, rs, pause ? "pause the queue" : "resume the queue", err);
        return;
    }
    bool changed = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    page_redirect(rs, pause ? (changed ? "/queues?done=paused" : "/queues?done=not-paused")
                            : (changed ? "/queues?done=resumed" : "/queues?done=not-resumed"));
}

void web_handle(web_req *rq, web_resp *rs)
{
    const web_route *r = rq->route;
    bool action = r->kind == ROUTE_JOB_ACTION || r->kind == ROUTE_QUEUE_ACTION ||
                  r->kind == ROUTE_JOBS_BULK;
    if (action != rq->post) {
        page_error(rq, rs, 405, "Method not allowed",
                   action ? "actions take a POST from their form"
                          : "this page is read with GET");
        return;
    }
    switch (r->kind) {
    case ROUTE_OVERVIEW: page_overview(rq, rs); break;
    case ROUTE_JOBS: page_jobs(rq, rs); break;
    case ROUTE_JOB: page_job(rq, rs); break;
    case ROUTE_QUEUES: page_queues(rq, rs); break;
    case ROUTE_SCHEDULES: page_schedules(rq, rs); break;
    case ROUTE_INSTANCES: page_instances(rq, rs); break;
    case ROUTE_JOB_ACTION: act_job(rq, rs); break;
    case ROUTE_JOBS_BULK: act_bulk(rq, rs); break;
    case ROUTE_QUEUE_ACTION: act_queue(rq, rs); break;
    default: page_error(rq, rs, 404, "Not found", "no such page"); break;
    }
}
