/* web_html.c - escaping, formatting of numbers and times, and the page frame. */
#include "web_html.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void html_escn(strbuf *sb, const char *s, size_t n)
{
    if (!s)
        return;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        sb_append(sb, s + start, i - start);
        sb_puts(sb, rep);
        start = i + 1;
    }
    sb_append(sb, s + start, n - start);
}

void html_esc(strbuf *sb, const char *s)
{
    if (s)
        html_escn(sb, s, strlen(s));
}

void url_esc(strbuf *sb, const char *s)
{
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            sb_append(sb, (const char *)p, 1);
        } else {
            char e[3] = {'%', digits[c >> 4], digits[c & 15]};
            sb_append(sb, e, 3);
        }
    }
}

void html_count(strbuf *sb, int64_t n)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    if (n < 0)
        sb_puts(sb, "-");
    size_t len = strlen(digits);
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            sb_puts(sb, ",");
        sb_append(sb, digits + i, 1);
    }
}

void html_span(strbuf *sb, double seconds)
{
    double s = seconds < 0 ? -seconds : seconds;
    long long t = (long long)s;
    if (s < 1)
        sb_printf(sb, "%.0f ms", s * 1000);
    else if (t < 60)
        sb_printf(sb, "%lld s", t);
    else if (t < 3600)
        sb_printf(sb, "%lld min", t / 60);
    else if (t < 86400)
        sb_printf(sb, "%lld h %lld min", t / 3600, t % 3600 / 60);
    else
        sb_printf(sb, "%lld d %lld h", t / 86400, t % 86400 / 3600);
}

void html_time(strbuf *sb, const char *epoch, double now, bool full)
{
    if (!epoch || !*epoch) {
        sb_puts(sb, "\xe2\x80\x93");
        return;
    }
    double ts = strtod(epoch, NULL);
    time_t secs = (time_t)ts; /* after 1970: truncation is floor */
    struct tm tm;
    gmtime_r(&secs, &tm);
    char iso[40], human[40];
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    strftime(human, sizeof human, "%Y-%m-%d %H:%M:%S UTC", &tm);
    sb_printf(sb, "<time datetime=\"%s\" title=\"%s\">", iso, human);
    double d = now - ts;
    if (d > -1 && d < 1) {
        sb_puts(sb, "now");
    } else if (d > 0) {
        html_span(sb, d);
        sb_puts(sb, " ago");
    } else {
        sb_puts(sb, "in ");
        html_span(sb, -d);
    }
    sb_puts(sb, "</time>");
    if (full)
        sb_printf(sb, " <span class=\"abs\">%s</span>", human);
}

static const struct {
    const char *href;
    const char *label;
} nav[] = {
    {"/", "Overview"},        {"/jobs", "Jobs"},           {"/jobs?state=running", "Running"},
    {"/queues", "Queues"},    {"/schedules", "Schedules"}, {"/instances", "Instances"},
};

void html_begin(strbuf *sb, const web_chrome *c)
{
    sb_puts(sb, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<title>");
    html_esc(sb, c->title);
    sb_puts(sb, " \xc2\xb7 runner</title>"
                "<link rel=\"stylesheet\" href=\"/static/style.css\">"
                "<script src=\"/static/app.js\" defer></script></head>\n<body><header><nav>"
                "<a class=\"brand\" href=\"/\">runner</a>");
    for (size_t i = 0; i < ARRAY_LEN(nav); i++) {
        bool on = c->active && strcmp(c->active, nav[i].href) == 0;
        sb_printf(sb, "<a href=\"%s\"%s>%s</a>", nav[i].href, on ? " class=\"on\"" : "",
                  nav[i].label);
    }
    sb_puts(sb, "<span class=\"who\">as <b>");
    html_esc(sb, c->user);
    sb_puts(sb, "</b>");
    if (c->read_only)
        sb_puts(sb, " <span class=\"tag\">read-only</span>");
    sb_puts(sb, "</span><label class=\"refresh\" hidden><input type=\"checkbox\" "
                "id=\"autorefresh\"> auto-refresh</label></nav></header>\n<main>");
    if (c->notice) {
        sb_printf(sb, "<p class=\"notice%s\" role=\"status\">", c->notice_error ? " error" : "");
        html_esc(sb, c->notice);
        sb_puts(sb, "</p>");
    }
    sb_puts(sb, "<h1>");
    html_esc(sb, c->title);
    sb_puts(sb, "</h1>\n");
}

void html_end(strbuf *sb, double ms)
{
    sb_printf(sb, "</main>\n<footer>runner %s \xc2\xb7 database time %.1f ms</footer>"
                  "</body></html>\n",
              RUNNER_VERSION, ms);
}
