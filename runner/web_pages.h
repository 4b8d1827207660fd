/* web_pages.h - the dashboard's pages and actions: a request in, a page or a redirect out.
 * web.c owns HTTP (sockets, authentication, CSRF); these functions only talk to the
 * database and render. */
#ifndef RUNNER_WEB_PAGES_H
#define RUNNER_WEB_PAGES_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "util.h"
#include "web_html.h"
#include "web_url.h"

/* What the connected role may do: has_function_privilege on each admin function. */
typedef struct web_rights {
    bool retry, cancel, pause, resume;
} web_rights;

typedef struct web_req {
    bool post;
    const web_route *route;
    const web_params *query; /* from the URL */
    const web_params *form;  /* from a POST body */
    const char *csrf;        /* the token forms on this page carry */
    bool hide_args;
    PGconn *conn;
    /* set by web_handle */
    char role[128];
    double now; /* the database's clock, epoch seconds */
    web_rights may;
    bool broken;  /* the connection failed: do not reuse it */
    double db_ms; /* time spent in the database */
} web_req;

typedef struct web_resp {
    int status;
    strbuf body;    /* text/html */
    char *location; /* set for a 303 redirect (malloc'd) */
} web_resp;

/* web_handle serves one request for a database route. */
void web_handle(web_req *rq, web_resp *rs);

/* Internal to the page modules (web_pages.c, web_jobs.c). */
PGresult *page_query(web_req *rq, web_resp *rs, const char *what, const char *sql, int n,
                     const char *const *params);
void page_error(web_req *rq, web_resp *rs, int status, const char *title, const char *msg);
void page_begin(web_req *rq, web_resp *rs, const char *title, const char *active);
void page_end(web_req *rq, web_resp *rs);
void page_redirect(web_resp *rs, const char *location);
/* page_action_error maps a failed admin call to a status by its SQLSTATE and renders it. */
void page_action_error(web_req *rq, web_resp *rs, const char *what, const char *err);
/* action_form appends a POST form with one button (and the CSRF token). */
void action_form(strbuf *sb, const web_req *rq, const char *action_path, const char *label,
                 const char *cls);
/* cell helpers: value or NULL */
const char *col(const PGresult *res, int row, int c);
void state_badge(strbuf *sb, const char *state, bool scheduled);
/* job_link appends <a href="/jobs/ID">ID</a> for an id read from the database. */
void job_link(strbuf *sb, const char *id);

void page_jobs(web_req *rq, web_resp *rs);
void page_job(web_req *rq, web_resp *rs);
void act_job(web_req *rq, web_resp *rs);
void act_bulk(web_req *rq, web_resp *rs);

#endif
