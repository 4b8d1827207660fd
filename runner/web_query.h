/* web_query.h - the dashboard's SQL: its connection pool, and the statements of the jobs
 * page, built from fixed fragments with every value a parameter. */
#ifndef RUNNER_WEB_QUERY_H
#define RUNNER_WEB_QUERY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "web_url.h"

/* Rows per page of /jobs. */
#define WEB_PAGE_ROWS 50
/* A filtered list scans at most this many candidate rows per page, newest first, so that
 * a filter no index serves costs the same on 10M rows as on 10k ("search older" goes on). */
#define WEB_SCAN_WINDOW 10000
/* Counts stop here ("10,000+") instead of reading every matching row. */
#define WEB_COUNT_CAP 10000
/* A bulk action handles at most this many jobs per confirmation, oldest first. */
#define WEB_BULK_MAX 10000
/* Every statement of a page must answer within this. */
#define WEB_STATEMENT_TIMEOUT_MS 10000

/* The job states the filter accepts. */
extern const char *const web_job_states[];
/* web_state_waiting: a job of this state has not started (available, scheduled): it may
 * be cancelled, and its due time is what the pages show. */
bool web_state_waiting(const char *state);

/* The filter of /jobs, from its query (or a bulk form's fields). Strings point into the
 * parameters they were parsed from. */
typedef struct job_filter {
    const char *state; /* NULL: every state */
    const char *queue;
    const char *kind;
    const char *q; /* substring of the args, case-insensitive */
    int64_t id;
    int64_t before; /* keyset cursor: ids below this (older) */
    int64_t after;  /* ids above this (newer) */
} job_filter;

/* job_filter_parse reads state, queue, kind, id, q, before and after, all optional; empty
 * values count as absent. Returns -1 with a message for a value it cannot accept. */
int job_filter_parse(const web_params *p, job_filter *f, char *err, size_t errlen);
/* job_filter_windowed: the filter has a condition no index serves (queue, kind, args), so
 * the list scans a bounded window of candidates. */
bool job_filter_windowed(const job_filter *f);
/* job_filter_query appends the filter (without cursors) as a query string, "state=x&kind=y". */
void job_filter_query(const job_filter *f, strbuf *sb);

/* A statement being built: SQL text from fixed fragments, and its text parameters. */
typedef struct web_sql {
    strbuf sql;
    const char *params[12];
    int n;
    char nums[4][24]; /* storage for formatted integer parameters */
    int nnums;
} web_sql;

void web_sql_init(web_sql *q);
void web_sql_free(web_sql *q);
/* web_sql_param appends "$N" for value to the text. */
void web_sql_param(web_sql *q, const char *value);
void web_sql_param_int(web_sql *q, int64_t value);

/* The columns of a job row in lists, in this order (job_list_sql and friends select them). */
enum {
    JC_ID, JC_STATE, JC_QUEUE, JC_KIND, JC_ATTEMPT, JC_MAX_ATTEMPTS, JC_PRIORITY, JC_ARGS,
    JC_ERROR, JC_CREATED, JC_RUN_AT, JC_STARTED, JC_FINISHED, JC_LEASE_EXPIRES, JC_HOST,
    JC_PID, JC_CANCEL_REQUESTED, JC_COUNT
};

/* job_list_sql builds the page query: WEB_PAGE_ROWS + 1 rows (the extra one says there is
 * another page) in the order the cursor asks for (newest first, or oldest first for
 * "after"), each row led by four columns, NULL unless windowed: the number of candidates
 * scanned, the last and the first candidate's id in scan order, and the number of
 * matches among them; then the job columns above. In a windowed query with no match the
 * single row has NULL job columns. Completed jobs are ordered by finished_at, the rest by
 * id. */
void job_list_sql(const job_filter *f, bool hide_args, web_sql *q);
/* job_count_sql counts the matching jobs up to WEB_COUNT_CAP + 1 (unwindowed filters). */
void job_count_sql(const job_filter *f, web_sql *q);
/* job_bulk_sql: with run false it counts the jobs a bulk action would touch (at most
 * WEB_BULK_MAX + 1) and returns their highest id; with run true it calls retry_job or
 * cancel_job on the oldest WEB_BULK_MAX of them with id <= up_to and returns
 * (changed, considered). */
void job_bulk_sql(const job_filter *f, const char *action, bool run, int64_t up_to, web_sql *q);


/* web_exec runs one statement of a page with the page's timeout. */
PGresult *web_exec(PGconn *conn, const web_sql *q, bool *broken, char *err, size_t errlen);
PGresult *web_exec_text(PGconn *conn, const char *sql, int n, const char *const *params,
                        bool *broken, char *err, size_t errlen);

#endif
