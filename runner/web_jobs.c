/* web_jobs.c - the jobs list (filters, keyset pages, bulk actions), one job's page, and
 * the retry and cancel actions. */
#include "web_pages.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "web_query.h"

/* filter_fields appends the filter as hidden inputs, for the bulk forms. */
static void filter_fields(strbuf *sb, const job_filter *f)
{
    const char *pairs[][2] = {
        {"state", f->state}, {"queue", f->queue}, {"kind", f->kind}, {"q", f->q}};
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        if (!pairs[i][1])
            continue;
        sb_printf(sb, "<input type=\"hidden\" name=\"%s\" value=\"", pairs[i][0]);
        html_esc(sb, pairs[i][1]);
        sb_puts(sb, "\">");
    }
    if (f->id)
        sb_printf(sb, "<input type=\"hidden\" name=\"id\" value=\"%lld\">", (long long)f->id);
}

/* describe_filter appends the filter in words: state failed, kind "resize". */
static void describe_filter(strbuf *sb, const job_filter *f)
{
    const char *pairs[][2] = {
        {"state", f->state}, {"queue", f->queue}, {"kind", f->kind}, {"args containing", f->q}};
    bool any = false;
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        if (!pairs[i][1])
            continue;
        sb_printf(sb, "%s%s <code>", any ? ", " : "", pairs[i][0]);
        html_esc(sb, pairs[i][1]);
        sb_puts(sb, "</code>");
        any = true;
    }
    if (f->id) {
        sb_printf(sb, "%sid <code>%lld</code>", any ? ", " : "", (long long)f->id);
        any = true;
    }
    if (!any)
        sb_puts(sb, "no filter");
}

static void filter_form(web_req *rq, strbuf *sb, const job_filter *f)
{
    sb_puts(sb, "<form class=\"filters\" method=\"get\" action=\"/jobs\">"
                "<label>State <select name=\"state\"><option value=\"\">any</option>");
    for (int i = 0; web_job_states[i]; i++)
        sb_printf(sb, "<option%s>%s</option>",
                  f->state && strcmp(f->state, web_job_states[i]) == 0 ? " selected" : "",
                  web_job_states[i]);
    sb_puts(sb, "</select></label>");
    const char *inputs[][3] = {
        {"Queue", "queue", f->queue}, {"Kind", "kind", f->kind}, {"Args contain", "q", f->q}};
    for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
        if (rq->hide_args && strcmp(inputs[i][1], "q") == 0)
            continue;
        sb_printf(sb, "<label>%s <input name=\"%s\" value=\"", inputs[i][0], inputs[i][1]);
        html_esc(sb, inputs[i][2]);
        sb_puts(sb, "\"></label>");
    }
    sb_puts(sb, "<label>Id <input name=\"id\" inputmode=\"numeric\" size=\"10\" value=\"");
    if (f->id)
        sb_printf(sb, "%lld", (long long)f->id);
    sb_puts(sb, "\"></label><button type=\"submit\">Filter</button> "
                "<a href=\"/jobs\">clear</a></form>");
}

/* when appends the time that matters for the job's state, with its name. */
static void when(strbuf *sb, const PGresult *res, int r, int off, double now)
{
    const char *state = PQgetvalue(res, r, off + JC_STATE);
    int c = JC_FINISHED;
    const char *label = "finished";
    if (strcmp(state, "available") == 0) {
        c = JC_RUN_AT;
        label = "due";
    } else if (strcmp(state, "running") == 0) {
        c = JC_STARTED;
        label = "started";
    }
    sb_printf(sb, "<span class=\"lbl\">%s</span> ", label);
    html_time(sb, col(res, r, off + c), now, false);
}

static void job_row(web_req *rq, strbuf *sb, const PGresult *res, int r)
{
    const int o = 4; /* the leading window columns */
    const char *id = PQgetvalue(res, r, o + JC_ID);
    const char *state = PQgetvalue(res, r, o + JC_STATE);
    const char *run_at = col(res, r, o + JC_RUN_AT);
    bool scheduled = strcmp(state, "available") == 0 && run_at && strtod(run_at, NULL) > rq->now;
    sb_puts(sb, "<tr><td class=\"num\">");
    job_link(sb, id);
    sb_puts(sb, "</td><td>");
    state_badge(sb, state, scheduled);
    if (col(res, r, o + JC_CANCEL_REQUESTED))
        sb_puts(sb, " <span class=\"tag warn\">cancel requested</span>");
    sb_puts(sb, "</td><td>");
    html_esc(sb, col(res, r, o + JC_QUEUE));
    sb_puts(sb, "</td><td>");
    html_esc(sb, col(res, r, o + JC_KIND));
    sb_puts(sb, "</td><td class=\"num\">");
    html_esc(sb, col(res, r, o + JC_ATTEMPT));
    const char *max = col(res, r, o + JC_MAX_ATTEMPTS);
    if (max) {
        sb_puts(sb, "/");
        html_esc(sb, max);
    }
    sb_puts(sb, "</td>");
    if (!rq->hide_args) {
        sb_puts(sb, "<td class=\"mono clip\">");
        html_esc(sb, col(res, r, o + JC_ARGS));
        sb_puts(sb, "</td>");
    }
    sb_puts(sb, "<td class=\"err clip\">");
    html_esc(sb, col(res, r, o + JC_ERROR));
    sb_puts(sb, "</td><td>");
    when(sb, res, r, o, rq->now);
    sb_puts(sb, "</td><td>");
    if (col(res, r, o + JC_HOST)) {
        html_esc(sb, col(res, r, o + JC_HOST));
        sb_puts(sb, ":");
        html_esc(sb, col(res, r, o + JC_PID));
        sb_puts(sb, " <span class=\"lbl\">lease</span> ");
        html_time(sb, col(res, r, o + JC_LEASE_EXPIRES), rq->now, false);
    }
    sb_puts(sb, "</td></tr>");
}

/* page_link appends a link to /jobs with the filter and one cursor. */
static void page_link(strbuf *sb, const job_filter *f, const char *cursor, int64_t id,
                      const char *label)
{
    strbuf q;
    sb_init(&q);
    job_filter_query(f, &q);
    sb_puts(sb, "<a class=\"page\" href=\"/jobs?");
    html_esc(sb, q.data ? q.data : "");
    if (cursor)
        sb_printf(sb, "%s%s=%lld", q.len ? "&amp;" : "", cursor, (long long)id);
    sb_puts(sb, "\">");
    sb_puts(sb, label);
    sb_puts(sb, "</a>");
    sb_free(&q);
}

static void bulk_forms(web_req *rq, strbuf *sb, const job_filter *f)
{
    if (!f->state)
        return;
    bool retry = (strcmp(f->state, "failed") == 0 || strcmp(f->state, "cancelled") == 0) &&
                 rq->may.retry;
    bool cancel = (strcmp(f->state, "available") == 0 || strcmp(f->state, "running") == 0) &&
                  rq->may.cancel;
    if (!retry && !cancel)
        return;
    sb_printf(sb, "<form class=\"bulk\" method=\"post\" action=\"/jobs/%s\">",
              retry ? "retry" : "cancel");
    sb_puts(sb, "<input type=\"hidden\" name=\"csrf\" value=\"");
    html_esc(sb, rq->csrf);
    sb_puts(sb, "\">");
    filter_fields(sb, f);
    sb_printf(sb, "<button type=\"submit\" class=\"act%s\">%s all matching\xe2\x80\xa6</button>"
                  "</form>",
              retry ? "" : " warn", retry ? "Retry" : "Cancel");
}

void page_jobs(web_req *rq, web_resp *rs)
{
    job_filter f;
    char err[ERR_LEN];
    if (job_filter_parse(rq->query, &f, err, sizeof err) < 0) {
        page_error(rq, rs, 400, "Bad filter", err);
        return;
    }
    if (rq->hide_args)
        f.q = NULL;
    bool windowed = job_filter_windowed(&f);
    bool newer = f.after > 0 && !f.id;
    web_sql list, count;
    web_sql_init(&list);
    web_sql_init(&count);
    PGresult *res = NULL, *cnt = NULL;
    job_list_sql(&f, rq->hide_args, &list);
    res = page_query(rq, rs, "the jobs", list.sql.data, list.n, list.params);
    if (!res)
        goto out;
    if (!windowed && !f.id) {
        if (f.state) {
            job_count_sql(&f, &count);
            cnt = page_query(rq, rs, "the count", count.sql.data, count.n, count.params);
        } else {
            cnt = page_query(rq, rs, "the table size",
                             "SELECT reltuples::bigint FROM pg_class"
                             " WHERE oid = 'runner.jobs'::regclass",
                             0, NULL);
        }
        if (!cnt)
            goto out;
    }

    const char *title = "Jobs";
    if (f.state && strcmp(f.state, "running") == 0 && !f.queue && !f.kind && !f.q && !f.id)
        title = "Running jobs";
    page_begin(rq, rs, title, strcmp(title, "Jobs") == 0 ? "/jobs" : "/jobs?state=running");
    strbuf *sb = &rs->body;
    filter_form(rq, sb, &f);

    int rows = PQntuples(res);
    bool none = rows == 0 || PQgetisnull(res, 0, 4);
    int shown = none ? 0 : rows > WEB_PAGE_ROWS ? WEB_PAGE_ROWS : rows;
    bool more = rows > WEB_PAGE_ROWS; /* another page in the direction of travel */

    sb_puts(sb, "<p class=\"summary\">");
    if (windowed) {
        int64_t scanned = rows ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        int64_t matches = rows ? strtoll(PQgetvalue(res, 0, 3), NULL, 10) : 0;
        html_count(sb, matches);
        sb_puts(sb, matches == 1 ? " match" : " matches");
        sb_puts(sb, " among the ");
        html_count(sb, scanned);
        sb_printf(sb, " %s jobs searched", newer ? "next newer" : "most recent");
        if (scanned > 0) {
            sb_puts(sb, " (from job ");
            html_esc(sb, PQgetvalue(res, 0, 2));
            sb_puts(sb, " to job ");
            html_esc(sb, PQgetvalue(res, 0, 1));
            sb_puts(sb, ")");
        }
        sb_puts(sb, " for ");
        describe_filter(sb, &f);
        sb_puts(sb, ". A filter on queue, kind or args reads at most ");
        html_count(sb, WEB_SCAN_WINDOW);
        sb_puts(sb, " jobs per page.");
    } else if (f.id) {
        sb_puts(sb, none ? "No job with this id matches." : "The job with this id.");
    } else if (f.state) {
        int64_t n = strtoll(PQgetvalue(cnt, 0, 0), NULL, 10);
        html_count(sb, n > WEB_COUNT_CAP ? WEB_COUNT_CAP : n);
        sb_puts(sb, n > WEB_COUNT_CAP ? "+ jobs (counted up to " : " jobs");
        if (n > WEB_COUNT_CAP) {
            html_count(sb, WEB_COUNT_CAP);
            sb_puts(sb, ")");
        }
        sb_puts(sb, " for ");
        describe_filter(sb, &f);
        sb_puts(sb, strcmp(f.state, "completed") == 0 ? ", the last finished first."
                                                      : ", newest first.");
    } else {
        int64_t total = PQntuples(cnt) ? strtoll(PQgetvalue(cnt, 0, 0), NULL, 10) : -1;
        if (total < 0) {
            sb_puts(sb, "All jobs, newest first (not counted: the table was never analyzed).");
        } else {
            sb_puts(sb, "About ");
            html_count(sb, total);
            sb_puts(sb, " jobs in the table (the planner's estimate, not a count), newest first.");
        }
    }
    sb_puts(sb, "</p>");
    bulk_forms(rq, sb, &f);

    if (shown == 0) {
        sb_puts(sb, "<p class=\"empty\">No jobs here.</p>");
    } else {
        sb_puts(sb, "<table class=\"grid jobs\"><thead><tr><th class=\"num\">Job</th>"
                    "<th>State</th><th>Queue</th><th>Kind</th><th class=\"num\">Attempt</th>");
        if (!rq->hide_args)
            sb_puts(sb, "<th>Args</th>");
        sb_puts(sb, "<th>Last error</th><th>When</th><th>Where</th></tr></thead><tbody>");
        /* newer pages come in ascending order: show them newest first as well */
        for (int i = 0; i < shown; i++)
            job_row(rq, sb, res, newer ? shown - 1 - i : i);
        sb_puts(sb, "</tbody></table>");
    }

    /* keyset links: ids of the first and last rows shown */
    sb_puts(sb, "<nav class=\"pages\">");
    int64_t top = 0, bottom = 0;
    if (shown > 0) {
        top = strtoll(PQgetvalue(res, newer ? shown - 1 : 0, 4 + JC_ID), NULL, 10);
        bottom = strtoll(PQgetvalue(res, newer ? 0 : shown - 1, 4 + JC_ID), NULL, 10);
    }
    if (!f.id) {
        bool scanned_full =
            windowed && rows && strtoll(PQgetvalue(res, 0, 0), NULL, 10) >= WEB_SCAN_WINDOW;
        /* an empty page has no job to anchor the way back on: "Newest" is */
        bool has_newer = newer ? (more || scanned_full) : f.before > 0 && shown > 0;
        bool has_older = newer ? shown > 0 : (more || scanned_full);
        if (f.before || f.after)
            page_link(sb, &f, NULL, 0, "\xc2\xab Newest");
        if (has_newer) {
            int64_t c = top;
            if (newer && !more && scanned_full)
                c = strtoll(PQgetvalue(res, 0, 1), NULL, 10); /* past the window */
            page_link(sb, &f, "after", c, more || !windowed ? "\xe2\x80\xb9 Newer" : "Search newer");
        }
        if (has_older) {
            int64_t c = bottom;
            if (!newer && !more && scanned_full)
                c = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
            page_link(sb, &f, "before", c, more || !windowed ? "Older \xe2\x80\xba" : "Search older");
        }
    }
    sb_puts(sb, "</nav>");
    page_end(rq, rs);
out:
    PQclear(res);
    PQclear(cnt);
    web_sql_free(&list);
    web_sql_free(&count);
}

/* field appends one <dt>/<dd> pair with an escaped value. */
static void field(strbuf *sb, const char *name, const char *value)
{
    sb_printf(sb, "<dt>%s</dt><dd>", name);
    if (value)
        html_esc(sb, value);
    else
        sb_puts(sb, "\xe2\x80\x93");
    sb_puts(sb, "</dd>");
}

static void time_field(strbuf *sb, const char *name, const char *epoch, double now)
{
    sb_printf(sb, "<dt>%s</dt><dd>", name);
    html_time(sb, epoch, now, true);
    sb_puts(sb, "</dd>");
}

static void span_field(strbuf *sb, const char *name, const char *from, const char *to)
{
    if (!from || !to)
        return;
    sb_printf(sb, "<dt>%s</dt><dd>", name);
    html_span(sb, strtod(to, NULL) - strtod(from, NULL));
    sb_puts(sb, "</dd>");
}

enum {
    J_ID, J_QUEUE, J_KIND, J_STATE, J_PRIORITY, J_ATTEMPT, J_MAX, J_UNIQUE, J_ARGS, J_CREATED,
    J_RUN_AT, J_STARTED, J_FINISHED, J_LEASE_EXPIRES, J_CANCEL_REQ, J_OWNER, J_HOST, J_PID,
    J_INST_STATE, J_LAST_ERROR, J_RESULT
};

void page_job(web_req *rq, web_resp *rs)
{
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)rq->route->id);
    const char *params[] = {idbuf};
    PGresult *job = page_query(
        rq, rs, "the job",
        rq->hide_args
            ? "SELECT j.id, j.queue, j.kind, j.state, j.priority, j.attempt, j.max_attempts,"
              " j.unique_key, NULL::text,"
              " extract(epoch FROM j.created_at), extract(epoch FROM j.run_at),"
              " extract(epoch FROM j.started_at), extract(epoch FROM j.finished_at),"
              " extract(epoch FROM j.lease_expires_at), extract(epoch FROM j.cancel_requested_at),"
              " j.lease_owner, i.host, i.pid, i.state, j.last_error, NULL::text"
              " FROM runner.jobs j LEFT JOIN runner.instances i ON i.id = j.lease_owner"
              " WHERE j.id = $1"
            : "SELECT j.id, j.queue, j.kind, j.state, j.priority, j.attempt, j.max_attempts,"
              " j.unique_key, jsonb_pretty(j.args),"
              " extract(epoch FROM j.created_at), extract(epoch FROM j.run_at),"
              " extract(epoch FROM j.started_at), extract(epoch FROM j.finished_at),"
              " extract(epoch FROM j.lease_expires_at), extract(epoch FROM j.cancel_requested_at),"
              " j.lease_owner, i.host, i.pid, i.state, j.last_error, jsonb_pretty(j.result)"
              " FROM runner.jobs j LEFT JOIN runner.instances i ON i.id = j.lease_owner"
              " WHERE j.id = $1",
        1, params);
    if (!job)
        return;
    if (PQntuples(job) != 1) {
        PQclear(job);
        page_error(rq, rs, 404, "Job not found",
                   "no job has this id (finished jobs are pruned after the retention period)");
        return;
    }
    PGresult *hist = page_query(
        rq, rs, "the job's history",
        "SELECT e.n, e.v->>'attempt', e.v->>'outcome',"
        " CASE WHEN jsonb_typeof(e.v->'at') = 'string'"
        "       AND e.v->>'at' ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d'"
        "  THEN extract(epoch FROM (e.v->>'at')::timestamptz) END,"
        " e.v->>'instance', e.v->>'error'"
        " FROM runner.jobs j, jsonb_array_elements(CASE WHEN jsonb_typeof(j.errors) = 'array'"
        "   THEN j.errors ELSE '[]' END) WITH ORDINALITY AS e(v, n)"
        " WHERE j.id = $1 ORDER BY e.n",
        1, params);
    if (!hist) {
        PQclear(job);
        return;
    }
    const char *state = PQgetvalue(job, 0, J_STATE);
    char title[64];
    snprintf(title, sizeof title, "Job %s", idbuf);
    page_begin(rq, rs, title, "/jobs");
    strbuf *sb = &rs->body;
    sb_puts(sb, "<p class=\"jobhead\">");
    const char *run_at = col(job, 0, J_RUN_AT);
    state_badge(sb, state,
                strcmp(state, "available") == 0 && run_at && strtod(run_at, NULL) > rq->now);
    if (col(job, 0, J_CANCEL_REQ))
        sb_puts(sb, " <span class=\"tag warn\">cancel requested</span>");
    char path[64];
    if ((strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0) && rq->may.retry) {
        snprintf(path, sizeof path, "/jobs/%s/retry", idbuf);
        action_form(sb, rq, path, "Retry", "act");
    }
    if ((strcmp(state, "available") == 0 || strcmp(state, "running") == 0) && rq->may.cancel &&
        !col(job, 0, J_CANCEL_REQ)) {
        snprintf(path, sizeof path, "/jobs/%s/cancel", idbuf);
        action_form(sb, rq, path, "Cancel", "act warn");
    }
    sb_puts(sb, "</p><div class=\"cols\"><section><h2>Job</h2><dl>");
    field(sb, "Queue", col(job, 0, J_QUEUE));
    field(sb, "Kind", col(job, 0, J_KIND));
    field(sb, "Priority", col(job, 0, J_PRIORITY));
    sb_puts(sb, "<dt>Attempt</dt><dd>");
    html_esc(sb, col(job, 0, J_ATTEMPT));
    if (col(job, 0, J_MAX)) {
        sb_puts(sb, " of ");
        html_esc(sb, col(job, 0, J_MAX));
    }
    sb_puts(sb, "</dd>");
    field(sb, "Unique key", col(job, 0, J_UNIQUE));
    sb_puts(sb, "</dl></section><section><h2>Timings</h2><dl>");
    time_field(sb, "Created", col(job, 0, J_CREATED), rq->now);
    time_field(sb, "Run at", col(job, 0, J_RUN_AT), rq->now);
    time_field(sb, "Started", col(job, 0, J_STARTED), rq->now);
    time_field(sb, "Finished", col(job, 0, J_FINISHED), rq->now);
    span_field(sb, "Waited", col(job, 0, J_RUN_AT), col(job, 0, J_STARTED));
    span_field(sb, "Ran for", col(job, 0, J_STARTED), col(job, 0, J_FINISHED));
    if (col(job, 0, J_CANCEL_REQ))
        time_field(sb, "Cancel requested", col(job, 0, J_CANCEL_REQ), rq->now);
    sb_puts(sb, "</dl></section><section><h2>Instance and lease</h2><dl>");
    if (col(job, 0, J_OWNER)) {
        field(sb, "Instance", col(job, 0, J_OWNER));
        sb_puts(sb, "<dt>Host</dt><dd>");
        html_esc(sb, col(job, 0, J_HOST));
        sb_puts(sb, ":");
        html_esc(sb, col(job, 0, J_PID));
        sb_puts(sb, " (");
        html_esc(sb, col(job, 0, J_INST_STATE));
        sb_puts(sb, ")</dd>");
        time_field(sb, "Lease expires", col(job, 0, J_LEASE_EXPIRES), rq->now);
    } else {
        sb_puts(sb, "<dt>Lease</dt><dd>none: the job is not running</dd>");
    }
    sb_puts(sb, "</dl></section></div>");

    sb_puts(sb, "<section><h2>Args</h2>");
    if (rq->hide_args) {
        sb_puts(sb, "<p class=\"hint\">Hidden (<code>web.hide_args</code>).</p>");
    } else {
        sb_puts(sb, "<pre class=\"json\">");
        html_esc(sb, col(job, 0, J_ARGS));
        sb_puts(sb, "</pre>");
    }
    sb_puts(sb, "</section>");
    if (col(job, 0, J_RESULT)) {
        sb_puts(sb, "<section><h2>Result</h2><pre class=\"json\">");
        html_esc(sb, col(job, 0, J_RESULT));
        sb_puts(sb, "</pre></section>");
    }
    if (col(job, 0, J_LAST_ERROR)) {
        sb_puts(sb, "<section><h2>Last error</h2><pre class=\"err\">");
        html_esc(sb, col(job, 0, J_LAST_ERROR));
        sb_puts(sb, "</pre></section>");
    }
    sb_puts(sb, "<section><h2>History</h2>");
    int n = PQntuples(hist);
    if (n == 0) {
        sb_puts(sb, "<p class=\"empty\">No attempt has failed.</p>");
    } else {
        sb_puts(sb, "<table class=\"grid\"><thead><tr><th class=\"num\">#</th><th>When</th>"
                    "<th class=\"num\">Attempt</th><th>Outcome</th><th>Instance</th>"
                    "<th>Error</th></tr></thead><tbody>");
        for (int r = 0; r < n; r++) {
            sb_puts(sb, "<tr><td class=\"num\">");
            html_esc(sb, col(hist, r, 0));
            sb_puts(sb, "</td><td>");
            html_time(sb, col(hist, r, 3), rq->now, true);
            sb_puts(sb, "</td><td class=\"num\">");
            html_esc(sb, col(hist, r, 1));
            sb_puts(sb, "</td><td>");
            html_esc(sb, col(hist, r, 2));
            sb_puts(sb, "</td><td class=\"mono\">");
            html_escn(sb, col(hist, r, 4), col(hist, r, 4) ? 8 : 0);
            sb_puts(sb, "</td><td><pre class=\"err\">");
            html_esc(sb, col(hist, r, 5));
            sb_puts(sb, "</pre></td></tr>");
        }
        sb_puts(sb, "</tbody></table>");
    }
    sb_puts(sb, "</section>");
    page_end(rq, rs);
    PQclear(job);
    PQclear(hist);
}

void act_job(web_req *rq, web_resp *rs)
{
    bool retry = strcmp(rq->route->action, "retry") == 0;
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)rq->route->id);
    const char *params[] = {idbuf};
    char err[ERR_LEN];
    PGresult *res = web_exec_text(rq->conn,
                                  retry ? "SELECT runner.retry_job($1)"
                                        : "SELECT runner.cancel_job($1)",
                                  1, params, &rq->broken, err, sizeof err);
    if (!res) {
        page_action_error(rq, rs, retry ? "retry the job" : "cancel the job", err);
        return;
    }
    bool changed = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    char location[96];
    snprintf(location, sizeof location, "/jobs/%s?done=%s%s", idbuf, changed ? "" : "not-",
             retry ? "retried" : "cancelled");
    page_redirect(rs, location);
}

void act_bulk(web_req *rq, web_resp *rs)
{
    bool retry = strcmp(rq->route->action, "retry") == 0;
    job_filter f;
    char err[ERR_LEN];
    if (job_filter_parse(rq->form, &f, err, sizeof err) < 0) {
        page_error(rq, rs, 400, "Bad filter", err);
        return;
    }
    if (rq->hide_args)
        f.q = NULL;
    f.before = f.after = 0;
    bool fits = f.state && (retry ? strcmp(f.state, "failed") == 0 ||
                                        strcmp(f.state, "cancelled") == 0
                                  : strcmp(f.state, "available") == 0 ||
                                        strcmp(f.state, "running") == 0);
    if (!fits) {
        page_error(rq, rs, 400, "Bad filter",
                   retry ? "bulk retry needs the filter state failed or cancelled"
                         : "bulk cancel needs the filter state available or running");
        return;
    }
    const char *confirm = web_param_get(rq->form, "confirm");
    int64_t up_to = 0;
    if (confirm && strcmp(confirm, "yes") == 0 &&
        web_parse_id(web_param_get(rq->form, "up_to"), &up_to) < 0) {
        page_error(rq, rs, 400, "Bad form", "missing or invalid \"up_to\"");
        return;
    }
    web_sql q;
    web_sql_init(&q);
    job_bulk_sql(&f, rq->route->action, up_to > 0, up_to, &q);
    strbuf back;
    sb_init(&back);
    sb_puts(&back, "/jobs?");
    job_filter_query(&f, &back);
    PGresult *res;
    if (up_to == 0) {
        res = page_query(rq, rs, "the matching jobs", q.sql.data, q.n, q.params);
        if (!res)
            goto out;
        int64_t n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        page_begin(rq, rs, retry ? "Retry jobs" : "Cancel jobs", "/jobs");
        strbuf *sb = &rs->body;
        if (n == 0) {
            sb_puts(sb, "<p class=\"empty\">No job matches ");
            describe_filter(sb, &f);
            sb_puts(sb, ".</p>");
        } else {
            sb_printf(sb, "<p class=\"confirm\">%s ", retry ? "Retry" : "Cancel");
            html_count(sb, n > WEB_BULK_MAX ? WEB_BULK_MAX : n);
            sb_puts(sb, n > WEB_BULK_MAX ? " of more than " : "");
            if (n > WEB_BULK_MAX)
                html_count(sb, WEB_BULK_MAX);
            sb_puts(sb, " jobs matching ");
            describe_filter(sb, &f);
            sb_puts(sb, n > WEB_BULK_MAX ? " (the oldest first; repeat for the rest)?" : "?");
            sb_printf(sb, "</p><form method=\"post\" action=\"/jobs/%s\">",
                      retry ? "retry" : "cancel");
            sb_puts(sb, "<input type=\"hidden\" name=\"csrf\" value=\"");
            html_esc(sb, rq->csrf);
            sb_puts(sb, "\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">"
                        "<input type=\"hidden\" name=\"up_to\" value=\"");
            html_esc(sb, PQgetvalue(res, 0, 1));
            sb_puts(sb, "\">");
            filter_fields(sb, &f);
            sb_printf(sb, "<button type=\"submit\" class=\"act%s\" id=\"confirm\">Yes, %s them"
                          "</button> ",
                      retry ? "" : " warn", retry ? "retry" : "cancel");
            sb_puts(sb, "<a href=\"");
            html_esc(sb, back.data);
            sb_puts(sb, "\">No, back to the jobs</a></form>");
            sb_puts(sb, "<p class=\"hint\">Jobs that arrive after this page are left alone.</p>");
        }
        page_end(rq, rs);
    } else {
        char e2[ERR_LEN];
        int64_t t0 = now_us();
        res = web_exec(rq->conn, &q, &rq->broken, e2, sizeof e2);
        rq->db_ms += (double)(now_us() - t0) / 1000.0;
        if (!res) {
            page_action_error(rq, rs, retry ? "retry the jobs" : "cancel the jobs", e2);
            goto out;
        }
        page_begin(rq, rs, retry ? "Jobs retried" : "Jobs cancelled", "/jobs");
        strbuf *sb = &rs->body;
        sb_printf(sb, "<p class=\"notice\" role=\"status\">%s ", retry ? "Retried" : "Cancelled");
        html_count(sb, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
        sb_puts(sb, " of ");
        html_count(sb, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
        sb_puts(sb, " matching jobs.</p><p><a href=\"");
        html_esc(sb, back.data);
        sb_puts(sb, "\">Back to the jobs</a></p>");
        page_end(rq, rs);
    }
    PQclear(res);
out:
    sb_free(&back);
    web_sql_free(&q);
}
