/* web_html.h - the dashboard's HTML: escaping, URLs, numbers and times, and the frame
 * (head, navigation, footer) every page shares. Everything from the database goes
 * through html_esc before it reaches a page. */
#ifndef RUNNER_WEB_HTML_H
#define RUNNER_WEB_HTML_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

/* html_esc appends s with & < > " ' replaced by entities: safe in text and in
 * double-quoted attributes. NULL appends nothing. */
void html_esc(strbuf *sb, const char *s);
/* html_escn is html_esc for the first n bytes. */
void html_escn(strbuf *sb, const char *s, size_t n);
/* url_esc appends s percent-encoded (everything but A-Z a-z 0-9 - . _ ~), for a query
 * value or a path segment. The result still goes through html_esc in an attribute. */
void url_esc(strbuf *sb, const char *s);

/* html_count appends n with thousands separators: 10,000,000. */
void html_count(strbuf *sb, int64_t n);
/* html_ago appends a duration in seconds as "3 s", "4 min", "2 h 5 min", "3 d 4 h". */
void html_span(strbuf *sb, double seconds);
/* html_time appends a timestamp (epoch seconds as text, "" for none) relative to now and
 * absolute: <time datetime="ISO" title="UTC">4 min ago</time>, plus the UTC time in a
 * second line when full. "" renders as an en dash. */
void html_time(strbuf *sb, const char *epoch, double now, bool full);

/* The frame of a page. */
typedef struct web_chrome {
    const char *title;  /* in <title> and <h1> */
    const char *active; /* the nav entry to highlight: "/", "/jobs", ... */
    const char *user;   /* the database role the dashboard acts as */
    bool read_only;     /* the role may run no admin function */
    const char *notice; /* a message to show above the page, NULL for none */
    bool notice_error;
} web_chrome;

void html_begin(strbuf *sb, const web_chrome *c);
/* html_end closes the page; ms is how long the database took for it. */
void html_end(strbuf *sb, double ms);

#endif
