/* test_web.c - unit tests of the dashboard's pure parts: HTML escaping, URL, form and
 * route parsing, the listen address, basic auth, CSRF tokens, cookies, the Origin check,
 * and the jobs page's SQL (values only ever as parameters). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "web_auth.h"
#include "web_html.h"
#include "web_query.h"
#include "web_url.h"

static char *esc(const char *s)
{
    strbuf sb;
    sb_init(&sb);
    html_esc(&sb, s);
    return sb.data ? sb.data : xstrdup("");
}

Test(escape, every_special_character)
{
    char *out = esc("<script>alert('x')</script> & \"q\"");
    cr_assert_str_eq(out, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    free(out);
}

Test(escape, leaves_text_and_utf8_alone)
{
    char *out = esc("plain text \xc3\xa9t\xc3\xa9 123");
    cr_assert_str_eq(out, "plain text \xc3\xa9t\xc3\xa9 123");
    free(out);
}

Test(escape, null_and_prefix)
{
    strbuf sb;
    sb_init(&sb);
    html_esc(&sb, NULL);
    cr_assert_eq(sb.len, 0);
    html_escn(&sb, "<<>>", 2);
    cr_assert_str_eq(sb.data, "&lt;&lt;");
    sb_free(&sb);
}

Test(escape, url_component)
{
    strbuf sb;
    sb_init(&sb);
    url_esc(&sb, "a b/c?d=e&f\"<");
    cr_assert_str_eq(sb.data, "a%20b%2Fc%3Fd%3De%26f%22%3C");
    sb_free(&sb);
}

Test(format, counts_and_spans)
{
    strbuf sb;
    sb_init(&sb);
    html_count(&sb, 10000000);
    sb_puts(&sb, " ");
    html_count(&sb, 999);
    sb_puts(&sb, " ");
    html_count(&sb, 1000);
    sb_puts(&sb, " | ");
    html_span(&sb, 42);
    sb_puts(&sb, " | ");
    html_span(&sb, 3725);
    cr_assert_str_eq(sb.data, "10,000,000 999 1,000 | 42 s | 1 h 2 min");
    sb_free(&sb);
}

Test(format, time_relative_and_absolute)
{
    strbuf sb;
    sb_init(&sb);
    html_time(&sb, "1767225600.5", 1767225600.5 + 240, true); /* 2026-01-01 00:00:00 */
    cr_assert(strstr(sb.data, "datetime=\"2026-01-01T00:00:00Z\""), "%s", sb.data);
    cr_assert(strstr(sb.data, ">4 min ago</time>"), "%s", sb.data);
    cr_assert(strstr(sb.data, "2026-01-01 00:00:00 UTC</span>"), "%s", sb.data);
    sb_reset(&sb);
    html_time(&sb, "1767225600", 1767225600 - 30, false);
    cr_assert(strstr(sb.data, ">in 30 s</time>"), "%s", sb.data);
    sb_reset(&sb);
    html_time(&sb, NULL, 0, false);
    cr_assert_str_eq(sb.data, "\xe2\x80\x93");
    sb_free(&sb);
}

Test(url, decode)
{
    char *s = web_url_decode("a%20b+c%2B%3c", 13, true);
    cr_assert_str_eq(s, "a b c+<");
    free(s);
    s = web_url_decode("a+b", 3, false);
    cr_assert_str_eq(s, "a+b");
    free(s);
    cr_assert_null(web_url_decode("%4", 2, true));
    cr_assert_null(web_url_decode("%zz", 3, true));
    cr_assert_null(web_url_decode("a%00b", 5, true), "an encoded NUL is refused");
}

Test(url, form)
{
    web_params p = {0};
    char err[ERR_LEN];
    const char body[] = "state=failed&kind=re%2Fsize&q=a+b&empty=&flag&&state=second";
    cr_assert_eq(web_form_parse(body, strlen(body), &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.n, 6);
    cr_assert_str_eq(web_param_get(&p, "state"), "failed", "the first of a name wins");
    cr_assert_str_eq(web_param_get(&p, "kind"), "re/size");
    cr_assert_str_eq(web_param_get(&p, "q"), "a b");
    cr_assert_str_eq(web_param_get(&p, "empty"), "");
    cr_assert_str_eq(web_param_get(&p, "flag"), "");
    cr_assert_null(web_param_get(&p, "missing"));
    web_params_free(&p);
    cr_assert_eq(web_form_parse("a=%G1", 5, &p, err, sizeof err), -1);
    cr_assert(strstr(err, "percent-encoding"), "%s", err);
    web_params_free(&p);
}

Test(url, ids)
{
    int64_t id = 0;
    cr_assert_eq(web_parse_id("42", &id), 0);
    cr_assert_eq(id, 42);
    cr_assert_eq(web_parse_id("999999999999999999", &id), 0);
    const char *bad[] = {"", "0", "-1", "+1", "1x", " 1", "1 ", "9999999999999999999", "0x10"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        cr_assert_eq(web_parse_id(bad[i], &id), -1, "\"%s\" accepted", bad[i]);
    cr_assert_eq(web_parse_id(NULL, &id), -1);
}

Test(url, routes)
{
    web_route r;
    web_route_parse("/", &r);
    cr_assert_eq(r.kind, ROUTE_OVERVIEW);
    web_route_parse("/jobs", &r);
    cr_assert_eq(r.kind, ROUTE_JOBS);
    web_route_parse("/jobs/123", &r);
    cr_assert_eq(r.kind, ROUTE_JOB);
    cr_assert_eq(r.id, 123);
    web_route_parse("/jobs/123/retry", &r);
    cr_assert_eq(r.kind, ROUTE_JOB_ACTION);
    cr_assert_str_eq(r.action, "retry");
    web_route_parse("/jobs/cancel", &r);
    cr_assert_eq(r.kind, ROUTE_JOBS_BULK);
    cr_assert_str_eq(r.action, "cancel");
    web_route_parse("/queues/mail%20out/pause", &r);
    cr_assert_eq(r.kind, ROUTE_QUEUE_ACTION);
    cr_assert_str_eq(r.name, "mail out");
    cr_assert_str_eq(r.action, "pause");
    web_route_free(&r);
    web_route_parse("/static/style.css", &r);
    cr_assert_eq(r.kind, ROUTE_STATIC);
    cr_assert_str_eq(r.name, "style.css");
    web_route_free(&r);
    for (const char *bad[] = {"/jobs/", "/jobs/0", "/jobs/abc", "/jobs/1/delete", "//jobs",
                              "/queues/a%2Fb/pause", "/queues/x/drop", "/static/..%2Fetc",
                              "/jobs/1/retry/x", "/nope", "jobs", "/queues/%zz/pause", NULL},
                    **b = bad;
         *b; b++) {
        web_route_parse(*b, &r);
        cr_assert_eq(r.kind, ROUTE_NONE, "\"%s\" routed to %d", *b, r.kind);
        web_route_free(&r);
    }
}

Test(url, listen_addresses)
{
    struct sockaddr_storage a;
    socklen_t len;
    bool lo;
    char err[ERR_LEN];
    cr_assert_eq(web_listen_parse("127.0.0.1:9641", &a, &len, &lo, err, sizeof err), 0, "%s", err);
    cr_assert(lo);
    cr_assert_eq(a.ss_family, AF_INET);
    cr_assert_eq(web_listen_parse("[::1]:0", &a, &len, &lo, err, sizeof err), 0, "%s", err);
    cr_assert(lo);
    cr_assert_eq(a.ss_family, AF_INET6);
    cr_assert_eq(web_listen_parse("127.8.9.10:80", &a, &len, &lo, err, sizeof err), 0);
    cr_assert(lo);
    cr_assert_eq(web_listen_parse("0.0.0.0:9641", &a, &len, &lo, err, sizeof err), 0);
    cr_assert_not(lo, "the wildcard address is not loopback");
    cr_assert_eq(web_listen_parse("[::]:9641", &a, &len, &lo, err, sizeof err), 0);
    cr_assert_not(lo);
    cr_assert_eq(web_listen_parse("192.0.2.1:9641", &a, &len, &lo, err, sizeof err), 0);
    cr_assert_not(lo);
    const char *bad[] = {"127.0.0.1", "127.0.0.1:", ":9641", "127.0.0.1:65536", "::1:80",
                         "[::1]9641", "127.0.0.1:http", "[]:80"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        cr_assert_eq(web_listen_parse(bad[i], &a, &len, &lo, err, sizeof err), -1,
                     "\"%s\" accepted", bad[i]);
    web_listen_parse("127.0.0.1:99999", &a, &len, &lo, err, sizeof err);
    cr_assert(strstr(err, "port must be 0 to 65535"), "%s", err);
}

Test(auth, constant_time_equal)
{
    cr_assert(web_ct_equal("abc", 3, "abc", 3));
    cr_assert_not(web_ct_equal("abc", 3, "abd", 3));
    cr_assert_not(web_ct_equal("abc", 3, "abcd", 4));
    cr_assert_not(web_ct_equal("", 0, "a", 1));
    cr_assert(web_ct_equal("", 0, "", 0));
}

Test(auth, base64)
{
    char out[64];
    cr_assert_eq(web_base64_decode("YWxhZGRpbjpvcGVuc2VzYW1l", out, sizeof out), 18);
    cr_assert_str_eq(out, "aladdin:opensesame");
    cr_assert_eq(web_base64_decode("YQ==", out, sizeof out), 1);
    cr_assert_str_eq(out, "a");
    cr_assert_eq(web_base64_decode("YWI=", out, sizeof out), 2);
    cr_assert_eq(web_base64_decode("", out, sizeof out), 0);
    const char *bad[] = {"YQ=", "Y===", "YQ==YQ==", "YW!j", "=YWJ"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        cr_assert_eq(web_base64_decode(bad[i], out, sizeof out), -1, "\"%s\" accepted", bad[i]);
    cr_assert_eq(web_base64_decode("YWxhZGRpbjpvcGVuc2VzYW1l", out, 10), -1, "too long");
}

Test(auth, basic_header)
{
    char user[64], pass[64];
    cr_assert_eq(web_basic_parse("Basic YWxhZGRpbjpvcGVuOnNlc2FtZQ==", user, sizeof user, pass,
                                 sizeof pass),
                 0);
    cr_assert_str_eq(user, "aladdin");
    cr_assert_str_eq(pass, "open:sesame", "only the first colon separates");
    cr_assert_eq(web_basic_parse("basic YTpi", user, sizeof user, pass, sizeof pass), 0);
    cr_assert_eq(web_basic_parse(NULL, user, sizeof user, pass, sizeof pass), -1);
    cr_assert_eq(web_basic_parse("Bearer abc", user, sizeof user, pass, sizeof pass), -1);
    cr_assert_eq(web_basic_parse("Basic bm9jb2xvbg==", user, sizeof user, pass, sizeof pass),
                 -1, "no colon");
    cr_assert_eq(web_basic_parse("Basic YQBiOmM=", user, sizeof user, pass, sizeof pass), -1,
                 "NUL inside");
}

Test(auth, credentials)
{
    /* openssl passwd -6 -salt testsalt 's3cret pass' */
    const char *h = "$6$testsalt$grUzJj6qt8WAnyqgh.MVvFJNyV8k88ZKKfbhqtmmmYERJiHXNih24QxG8kVuUt8ls4lCti8e7J0cDV5CU1MoM0";
    char *text = xasprintf("# users of the dashboard\n\nalice:%s\r\nbob:%s\n", h, h);
    web_creds c = {0};
    char err[ERR_LEN];
    cr_assert_eq(web_creds_parse(&c, text, "auth.txt", err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.n, 2);
    cr_assert(web_creds_check(&c, "alice", "s3cret pass"));
    cr_assert(web_creds_check(&c, "bob", "s3cret pass"));
    cr_assert_not(web_creds_check(&c, "alice", "s3cret pas"));
    cr_assert_not(web_creds_check(&c, "alice", ""));
    cr_assert_not(web_creds_check(&c, "carol", "s3cret pass"));
    cr_assert_not(web_creds_check(&c, "alic", "s3cret pass"));
    web_creds_free(&c);
    free(text);

    cr_assert_eq(web_creds_parse(&c, "alice:plaintext\n", "auth.txt", err, sizeof err), -1);
    cr_assert(strstr(err, "auth.txt:1") && strstr(err, "crypt(3) hash"), "%s", err);
    cr_assert_eq(web_creds_parse(&c, "ok:$6$x$y\nnocolon\n", "env", err, sizeof err), -1);
    cr_assert(strstr(err, "env:2"), "%s", err);
    web_creds_free(&c);
}

Test(csrf, token_bound_to_session_and_user)
{
    unsigned char secret[WEB_SECRET_LEN], other[WEB_SECRET_LEN];
    char err[ERR_LEN];
    cr_assert_eq(web_random(secret, sizeof secret, err, sizeof err), 0);
    memcpy(other, secret, sizeof other);
    other[0] ^= 1;
    char s1[WEB_SESSION_LEN + 1], s2[WEB_SESSION_LEN + 1];
    cr_assert_eq(web_session_new(s1, err, sizeof err), 0);
    cr_assert_eq(web_session_new(s2, err, sizeof err), 0);
    cr_assert(web_session_valid(s1));
    cr_assert_str_neq(s1, s2);
    char t[WEB_TOKEN_LEN + 1];
    web_csrf_token(secret, s1, "alice", t);
    cr_assert_eq(strlen(t), WEB_TOKEN_LEN);
    cr_assert(web_csrf_check(secret, s1, "alice", t));
    cr_assert_not(web_csrf_check(secret, s2, "alice", t), "another session");
    cr_assert_not(web_csrf_check(secret, s1, "bob", t), "another user");
    cr_assert_not(web_csrf_check(other, s1, "alice", t), "another process");
    cr_assert_not(web_csrf_check(secret, s1, "alice", ""));
    cr_assert_not(web_csrf_check(secret, s1, "alice", NULL));
    t[10] = t[10] == 'a' ? 'b' : 'a';
    cr_assert_not(web_csrf_check(secret, s1, "alice", t), "a changed token");
    cr_assert_not(web_csrf_check(secret, "not-a-session", "alice", t));
}

Test(csrf, session_ids)
{
    cr_assert(web_session_valid("0123456789abcdef0123456789abcdef"));
    cr_assert_not(web_session_valid("0123456789ABCDEF0123456789abcdef"));
    cr_assert_not(web_session_valid("0123456789abcdef0123456789abcde"));
    cr_assert_not(web_session_valid("0123456789abcdef0123456789abcdeg"));
    cr_assert_not(web_session_valid(NULL));
}

Test(csrf, cookies)
{
    char v[40];
    cr_assert_eq(web_cookie_get("a=1; runner_session=abc; b=2", "runner_session", v, sizeof v), 0);
    cr_assert_str_eq(v, "abc");
    cr_assert_eq(web_cookie_get("runner_session=x", "runner_session", v, sizeof v), 0);
    cr_assert_str_eq(v, "x");
    cr_assert_eq(web_cookie_get("xrunner_session=1", "runner_session", v, sizeof v), -1);
    cr_assert_eq(web_cookie_get("runner_sessionx=1", "runner_session", v, sizeof v), -1);
    cr_assert_eq(web_cookie_get(NULL, "runner_session", v, sizeof v), -1);
    cr_assert_eq(web_cookie_get("runner_session=0123456789012345678901234567890123456789012",
                                "runner_session", v, sizeof v),
                 -1, "too long");
}

Test(csrf, origin)
{
    cr_assert(web_origin_ok("http://127.0.0.1:9641", NULL, "127.0.0.1:9641"));
    cr_assert(web_origin_ok("https://runner.example", NULL, "runner.example"));
    cr_assert(web_origin_ok(NULL, "http://127.0.0.1:9641/jobs/1", "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok("http://evil.example", NULL, "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok("http://127.0.0.1:9641.evil.example", NULL, "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok("http://127.0.0.1:9642", NULL, "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok("null", NULL, "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok("http://evil.example", "http://127.0.0.1:9641/", "127.0.0.1:9641"),
                  "a wrong Origin is not saved by a right Referer");
    cr_assert_not(web_origin_ok(NULL, "http://127.0.0.1:96410/", "127.0.0.1:9641"));
    cr_assert_not(web_origin_ok(NULL, NULL, "127.0.0.1:9641"), "neither header");
    cr_assert_not(web_origin_ok("http://127.0.0.1:9641", NULL, NULL), "no Host");
}

static web_params params(const char *query)
{
    web_params p = {0};
    char err[ERR_LEN];
    cr_assert_eq(web_form_parse(query, strlen(query), &p, err, sizeof err), 0);
    return p;
}

Test(filter, parse_and_validate)
{
    web_params p = params("state=failed&queue=mail&kind=&q=%3Cscript%3E&before=100");
    job_filter f;
    char err[ERR_LEN];
    cr_assert_eq(job_filter_parse(&p, &f, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(f.state, "failed");
    cr_assert_str_eq(f.queue, "mail");
    cr_assert_null(f.kind, "empty means absent");
    cr_assert_str_eq(f.q, "<script>");
    cr_assert_eq(f.before, 100);
    cr_assert(job_filter_windowed(&f));
    strbuf sb;
    sb_init(&sb);
    job_filter_query(&f, &sb);
    cr_assert_str_eq(sb.data, "state=failed&queue=mail&q=%3Cscript%3E", "no cursor in it");
    sb_free(&sb);
    web_params_free(&p);

    const char *bad[][2] = {{"state=done", "unrecognized job state"},
                            {"id=abc", "invalid job id"},
                            {"before=-1", "invalid \"before\""},
                            {"before=5&after=3", "exclude each other"}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        p = params(bad[i][0]);
        cr_assert_eq(job_filter_parse(&p, &f, err, sizeof err), -1, "%s accepted", bad[i][0]);
        cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
        web_params_free(&p);
    }
    char *longq = xasprintf("q=%0*d", 201, 0);
    p = params(longq);
    cr_assert_eq(job_filter_parse(&p, &f, err, sizeof err), -1);
    web_params_free(&p);
    free(longq);
}

Test(filter, sql_takes_values_only_as_parameters)
{
    web_params p = params("state=failed&queue=x%27%3B+DROP+TABLE+runner.jobs%3B--&kind=k&q=zz"
                          "&before=77");
    job_filter f;
    char err[ERR_LEN];
    cr_assert_eq(job_filter_parse(&p, &f, err, sizeof err), 0);
    web_sql q;
    web_sql_init(&q);
    job_list_sql(&f, false, &q);
    cr_assert_null(strstr(q.sql.data, "DROP"), "a value inside the SQL text: %s", q.sql.data);
    cr_assert_null(strstr(q.sql.data, "failed"), "%s", q.sql.data);
    cr_assert(strstr(q.sql.data, "LIMIT 10000"), "a queue filter scans a window: %s", q.sql.data);
    cr_assert_eq(q.n, 5);
    cr_assert_str_eq(q.params[0], "failed");
    cr_assert_str_eq(q.params[1], "x'; DROP TABLE runner.jobs;--");
    cr_assert_str_eq(q.params[4], "77");
    cr_assert_null(strstr(q.sql.data, "OFFSET"));
    web_sql_free(&q);

    web_sql_init(&q);
    job_bulk_sql(&f, "retry", true, 1234, &q);
    cr_assert(strstr(q.sql.data, "runner.retry_job(s.id)"), "%s", q.sql.data);
    cr_assert_str_eq(q.params[q.n - 1], "1234");
    cr_assert_null(strstr(q.sql.data, "1234"));
    web_sql_free(&q);
    web_params_free(&p);
}

Test(filter, keyset_directions)
{
    web_params p = params("state=completed&after=500");
    job_filter f;
    char err[ERR_LEN];
    cr_assert_eq(job_filter_parse(&p, &f, err, sizeof err), 0);
    cr_assert_not(job_filter_windowed(&f));
    web_sql q;
    web_sql_init(&q);
    job_list_sql(&f, true, &q);
    cr_assert(strstr(q.sql.data, "(j.finished_at, j.id) > (SELECT x.finished_at, x.id"
                                 " FROM runner.jobs x WHERE x.id = $2)"
                                 " ORDER BY j.finished_at ASC, j.id ASC LIMIT 51"),
              "completed jobs go by finished_at: %s", q.sql.data);
    cr_assert(strstr(q.sql.data, "NULL::text"), "args hidden: %s", q.sql.data);
    cr_assert_null(strstr(q.sql.data, "j.args"), "%s", q.sql.data);
    web_sql_free(&q);
    web_params_free(&p);
}
