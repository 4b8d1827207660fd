/* web_query.c - connection pool and the statements of the jobs page.
 *
 * DESIGN: /jobs never counts or skips with OFFSET: pages are keyset pages on the primary
 * key (newest first), so page 1,000 costs what page 1 costs. A filter on the state alone
 * is served by an index (the primary key for completed jobs, which are most of the
 * table; partial indexes for the others). Queue, kind and args are not indexed on the
 * hot table (each index there costs every claim and every completion), so a filter on
 * them examines a bounded window of candidates, WEB_SCAN_WINDOW rows newest first in the
 * state's index, and says how far it got; "search older" moves the window. */
#include "web_query.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "job.h"

const char *const web_job_states[] = {JOB_STATE_NAMES, NULL};

bool web_state_waiting(const char *state)
{
    return strcmp(state, "available") == 0 || strcmp(state, "scheduled") == 0;
}

#define MAX_FILTER_LEN 200

static const char *nonempty(const web_params *p, const char *name)
{
    const char *v = web_param_get(p, name);
    return v && *v ? v : NULL;
}

static int parse_cursor(const web_params *p, const char *name, int64_t *v, char *err,
                        size_t errlen)
{
    const char *s = nonempty(p, name);
    *v = 0;
    if (s && web_parse_id(s, v) < 0)
        return errf(err, errlen, "invalid \"%s\": expected a job id", name);
    return 0;
}

int job_filter_parse(const web_params *p, job_filter *f, char *err, size_t errlen)
{
    *f = (job_filter){0};
    f->state = nonempty(p, "state");
    if (f->state) {
        bool known = false;
        for (int i = 0; web_job_states[i]; i++)
            if (strcmp(f->state, web_job_states[i]) == 0)
                known = true;
        if (!known)
            return errf(err, errlen, "unrecognized job state \"%s\"", f->state);
    }
    f->queue = nonempty(p, "queue");
    f->kind = nonempty(p, "kind");
    f->q = nonempty(p, "q");
    const char *checks[][2] = {{"queue", f->queue}, {"kind", f->kind}, {"q", f->q}};
    for (size_t i = 0; i < ARRAY_LEN(checks); i++)
        if (checks[i][1] && strlen(checks[i][1]) > MAX_FILTER_LEN)
            return errf(err, errlen, "\"%s\" is longer than %d bytes", checks[i][0],
                        MAX_FILTER_LEN);
    const char *id = nonempty(p, "id");
    if (id && web_parse_id(id, &f->id) < 0)
        return errf(err, errlen, "invalid job id \"%s\"", id);
    if (parse_cursor(p, "before", &f->before, err, errlen) < 0 ||
        parse_cursor(p, "after", &f->after, err, errlen) < 0)
        return -1;
    if (f->before && f->after)
        return errf(err, errlen, "\"before\" and \"after\" exclude each other");
    return 0;
}

bool job_filter_windowed(const job_filter *f)
{
    return !f->id && (f->queue || f->kind || f->q);
}

void job_filter_query(const job_filter *f, strbuf *sb)
{
    const char *pairs[][2] = {
        {"state", f->state}, {"queue", f->queue}, {"kind", f->kind}, {"q", f->q}};
    bool first = true;
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        if (!pairs[i][1])
            continue;
        sb_printf(sb, "%s%s=", first ? "" : "&", pairs[i][0]);
        /* same set as url_esc in web_html.c */
        for (const unsigned char *c = (const unsigned char *)pairs[i][1]; *c; c++) {
            if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~')
                sb_append(sb, (const char *)c, 1);
            else
                sb_printf(sb, "%%%02X", *c);
        }
        first = false;
    }
    if (f->id)
        sb_printf(sb, "%sid=%lld", first ? "" : "&", (long long)f->id);
}

void web_sql_init(web_sql *q)
{
    *q = (web_sql){0};
    sb_init(&q->sql);
}

void web_sql_free(web_sql *q)
{
    sb_free(&q->sql);
}

/* add registers a parameter and returns its number, without writing it. */
static int add(web_sql *q, const char *value)
{
    if (q->n >= (int)ARRAY_LEN(q->params))
        abort(); /* the statements here have a fixed, small number of parameters */
    q->params[q->n++] = value;
    return q->n;
}

static int add_int(web_sql *q, int64_t v)
{
    if (q->nnums >= (int)ARRAY_LEN(q->nums))
        abort();
    char *buf = q->nums[q->nnums++];
    snprintf(buf, sizeof q->nums[0], "%lld", (long long)v);
    return add(q, buf);
}

void web_sql_param(web_sql *q, const char *value)
{
    sb_printf(&q->sql, "$%d", add(q, value));
}

void web_sql_param_int(web_sql *q, int64_t value)
{
    sb_printf(&q->sql, "$%d", add_int(q, value));
}

/* Parameter numbers of a filter's values, 0 for absent ones. */
typedef struct filter_params {
    int state, queue, kind, q, id;
} filter_params;

static filter_params add_filter(web_sql *q, const job_filter *f)
{
    filter_params fp = {0};
    if (f->state)
        fp.state = add(q, f->state);
    if (f->queue)
        fp.queue = add(q, f->queue);
    if (f->kind)
        fp.kind = add(q, f->kind);
    if (f->q)
        fp.q = add(q, f->q);
    if (f->id)
        fp.id = add_int(q, f->id);
    return fp;
}

/* conds writes " AND ..." for the chosen filter parts on table alias a. */
static void conds(strbuf *sb, const char *a, const filter_params *fp, bool state, bool others)
{
    if (state && fp->state)
        sb_printf(sb, " AND %s.state = $%d", a, fp->state);
    if (others && fp->queue)
        sb_printf(sb, " AND %s.queue = $%d", a, fp->queue);
    if (others && fp->kind)
        sb_printf(sb, " AND %s.kind = $%d", a, fp->kind);
    if (others && fp->q)
        sb_printf(sb, " AND strpos(lower(%s.args::text), lower($%d)) > 0", a, fp->q);
    if (state && fp->id)
        sb_printf(sb, " AND %s.id = $%d", a, fp->id);
}

static void job_columns(strbuf *sb, bool hide_args)
{
    sb_printf(sb,
              "j.id, j.state, j.queue, j.kind, j.attempt, j.max_attempts, j.priority, %s,"
              " left(j.last_error, 160),"
              " extract(epoch FROM j.created_at), extract(epoch FROM j.run_at),"
              " extract(epoch FROM j.started_at), extract(epoch FROM j.finished_at),"
              " extract(epoch FROM j.lease_expires_at), i.host, i.pid,"
              " extract(epoch FROM j.cancel_requested_at)",
              hide_args ? "NULL::text" : "left(j.args::text, 120)");
}

/* Completed jobs are listed by finished_at (then id), the order of jobs_finished_idx: in
 * id order the newest completed jobs can sit behind every waiting job, which an index
 * scan would have to step over. Every other list is in id order. Cursors stay job ids. */
static bool by_finish(const job_filter *f)
{
    return f->state && strcmp(f->state, "completed") == 0 && !f->id;
}

/* order appends the list's sort key for alias a, newest first unless asc. */
static void order(strbuf *sb, const char *a, bool finish, bool asc)
{
    const char *dir = asc ? "ASC" : "DESC";
    if (finish)
        sb_printf(sb, "%s.finished_at %s, %s.id %s", a, dir, a, dir);
    else
        sb_printf(sb, "%s.id %s", a, dir);
}

/* after_cursor appends the keyset condition: rows past job $cur in the list's order. */
static void after_cursor(strbuf *sb, bool finish, const char *cmp, int cur)
{
    if (finish)
        sb_printf(sb, " AND (j.finished_at, j.id) %s (SELECT x.finished_at, x.id"
                      " FROM runner.jobs x WHERE x.id = $%d)",
                  cmp, cur);
    else
        sb_printf(sb, " AND j.id %s $%d", cmp, cur);
}

void job_list_sql(const job_filter *f, bool hide_args, web_sql *q)
{
    bool newer = f->after > 0 && !f->id;
    bool finish = by_finish(f);
    int64_t cursor = f->id ? 0 : newer ? f->after : f->before;
    const char *cmp = newer ? ">" : "<";
    filter_params fp = add_filter(q, f);
    int cur = cursor ? add_int(q, cursor) : 0;
    strbuf *sb = &q->sql;

    if (!job_filter_windowed(f)) {
        sb_puts(sb, "SELECT NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, ");
        job_columns(sb, hide_args);
        sb_puts(sb, " FROM runner.jobs j LEFT JOIN runner.instances i ON i.id = j.lease_owner"
                    " WHERE true");
        conds(sb, "j", &fp, true, true);
        if (cur)
            after_cursor(sb, finish, cmp, cur);
        sb_puts(sb, " ORDER BY ");
        order(sb, "j", finish, newer);
        sb_printf(sb, " LIMIT %d", WEB_PAGE_ROWS + 1);
        return;
    }
    sb_printf(sb, "WITH cand AS MATERIALIZED (SELECT j.id, j.finished_at, j.queue, j.kind%s"
                  " FROM runner.jobs j WHERE true",
              fp.q ? ", j.args" : "");
    conds(sb, "j", &fp, true, false);
    if (cur)
        after_cursor(sb, finish, cmp, cur);
    sb_puts(sb, " ORDER BY ");
    order(sb, "j", finish, newer);
    sb_printf(sb, " LIMIT %d),", WEB_SCAN_WINDOW);
    /* the last candidate in scan order is where the next window starts */
    sb_puts(sb, " s AS (SELECT count(*) AS n, (SELECT c.id FROM cand c ORDER BY ");
    order(sb, "c", finish, !newer);
    sb_puts(sb, " LIMIT 1) AS edge, (SELECT c.id FROM cand c ORDER BY ");
    order(sb, "c", finish, newer);
    sb_puts(sb, " LIMIT 1) AS first, count(*) FILTER (WHERE true");
    conds(sb, "c", &fp, false, true);
    sb_puts(sb, ") AS m FROM cand c), h AS (SELECT c.id, c.finished_at FROM cand c WHERE true");
    conds(sb, "c", &fp, false, true);
    sb_puts(sb, " ORDER BY ");
    order(sb, "c", finish, newer);
    sb_printf(sb, " LIMIT %d)", WEB_PAGE_ROWS + 1);
    sb_puts(sb, " SELECT s.n, s.edge, s.first, s.m, ");
    job_columns(sb, hide_args);
    sb_puts(sb, " FROM s LEFT JOIN (h JOIN runner.jobs j ON j.id = h.id"
                " LEFT JOIN runner.instances i ON i.id = j.lease_owner) ON true ORDER BY ");
    order(sb, "h", finish, newer);
}

void job_count_sql(const job_filter *f, web_sql *q)
{
    filter_params fp = add_filter(q, f);
    sb_puts(&q->sql, "SELECT count(*) FROM (SELECT 1 FROM runner.jobs j WHERE true");
    conds(&q->sql, "j", &fp, true, true);
    sb_printf(&q->sql, " LIMIT %d) s", WEB_COUNT_CAP + 1);
}

void job_bulk_sql(const job_filter *f, const char *action, bool run, int64_t up_to, web_sql *q)
{
    filter_params fp = add_filter(q, f);
    strbuf *sb = &q->sql;
    if (run)
        sb_printf(sb, "SELECT count(*) FILTER (WHERE runner.%s_job(s.id)), count(*)",
                  strcmp(action, "retry") == 0 ? "retry" : "cancel");
    else
        sb_puts(sb, "SELECT count(*), max(s.id)");
    sb_puts(sb, " FROM (SELECT j.id FROM runner.jobs j WHERE true");
    conds(sb, "j", &fp, true, true);
    if (run)
        sb_printf(sb, " AND j.id <= $%d", add_int(q, up_to));
    sb_printf(sb, " ORDER BY j.id LIMIT %d) s", run ? WEB_BULK_MAX : WEB_BULK_MAX + 1);
}

PGresult *web_exec_text(PGconn *conn, const char *sql, int n, const char *const *params,
                        bool *broken, char *err, size_t errlen)
{
    bool b = false;
    PGresult *res = db_exec(conn, sql, n, params, WEB_STATEMENT_TIMEOUT_MS, NULL, NULL, &b, err,
                            errlen);
    if (b)
        *broken = true;
    return res;
}

PGresult *web_exec(PGconn *conn, const web_sql *q, bool *broken, char *err, size_t errlen)
{
    return web_exec_text(conn, q->sql.data, q->n, q->params, broken, err, errlen);
}
