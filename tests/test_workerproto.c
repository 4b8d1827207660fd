/* test_workerproto.c - the worker process protocol's lines, without processes. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "util.h"
#include "workerproto.h"

static job a_job(const char *args)
{
    return (job){.id = 42, .queue = "mail", .kind = "resize", .args = (char *)args, .attempt = 3};
}

Test(workerproto, job_line_layout)
{
    char err[ERR_LEN];
    size_t len;
    job j = a_job("{\"b\": [1, 2.5, null], \"a\": \"x\\ny\"}");
    char *line = workerproto_job_line(&j, 600000, &len, err, sizeof err);
    cr_assert_not_null(line, "%s", err);
    cr_expect_str_eq(line,
                     "{\"id\":42,\"kind\":\"resize\",\"queue\":\"mail\",\"attempt\":3,"
                     "\"deadline_ms\":600000,\"args\":{\"b\":[1,2.5,null],\"a\":\"x\\ny\"}}\n");
    cr_expect_eq(len, strlen(line));
    free(line);

    j = a_job("\"just a string\"");
    line = workerproto_job_line(&j, 0, &len, err, sizeof err);
    cr_assert_not_null(line, "%s", err);
    cr_expect(strstr(line, ",\"deadline_ms\":null,\"args\":\"just a string\"}\n") != NULL, "%s",
              line);
    free(line);

    j = a_job("{not json");
    cr_expect_null(workerproto_job_line(&j, 0, &len, err, sizeof err));
    cr_expect(strstr(err, "could not parse the job's args") == err, "%s", err);
}

Test(workerproto, cancel_line)
{
    size_t len;
    char *line = workerproto_cancel_line(7, &len);
    cr_expect_str_eq(line, "{\"cancel\":7}\n");
    cr_expect_eq(len, 13);
    free(line);
}

static workerproto_answer parse_ok(const char *line)
{
    char err[ERR_LEN] = "";
    workerproto_answer a;
    cr_assert_eq(workerproto_parse(line, strlen(line), &a, err, sizeof err), 0, "%s: %s", line,
                 err);
    return a;
}

static void parse_bad(const char *line, const char *want)
{
    char err[ERR_LEN] = "";
    workerproto_answer a;
    cr_expect_eq(workerproto_parse(line, strlen(line), &a, err, sizeof err), -1, "%s", line);
    cr_expect_str_eq(err, want);
}

Test(workerproto, answers)
{
    workerproto_answer a = parse_ok("{\"id\": 42, \"ok\": true}");
    cr_expect(a.ok);
    cr_expect_eq(a.id, 42);
    cr_expect_null(a.error);

    a = parse_ok("{\"id\":42,\"error\":\"disk full\",\"retry_in_ms\":5000,\"extra\":[1]}\r");
    cr_expect_not(a.ok);
    cr_expect_str_eq(a.error, "disk full");
    cr_expect_eq(a.retry_in_ms, 5000);
    cr_expect_not(a.discard);
    free(a.error);

    a = parse_ok("{\"id\":42,\"ok\":false,\"error\":\"no such user\",\"discard\":true}");
    cr_expect(a.discard);
    cr_expect_eq(a.retry_in_ms, -1);
    free(a.error);
}

Test(workerproto, error_text_is_cut_and_stays_text)
{
    strbuf line;
    sb_init(&line);
    sb_puts(&line, "{\"id\":1,\"error\":\"");
    for (int i = 0; i < 3000; i++)
        sb_puts(&line, "\xc3\xa9"); /* é: a cut must not split it */
    sb_puts(&line, "\"}");
    workerproto_answer a = parse_ok(line.data);
    size_t n = strlen(a.error);
    cr_expect_leq(n, WORKERPROTO_ERROR_MAX);
    cr_expect_str_eq(a.error + n - 5, "\xc3\xa9...");
    free(a.error);
    sb_free(&line);

    strbuf out;
    sb_init(&out);
    cr_expect_not(sb_text(&out,
                          "a\xff"
                          "b\0c",
                          5, 100));
    cr_expect_str_eq(out.data, "a?b?c");
    sb_free(&out);
}

Test(workerproto, refused_lines)
{
    parse_bad("hello",
              "worker process wrote a line that is not JSON ('[' or '{' expected near 'hello'): "
              "\"hello\"");
    parse_bad("[1]", "worker process wrote a line that is not an answer with an integer \"id\": "
                     "\"[1]\"");
    parse_bad("{\"id\":\"42\",\"ok\":true}",
              "worker process wrote a line that is not an answer with an integer \"id\": "
              "\"{\"id\":\"42\",\"ok\":true}\"");
    parse_bad("{\"id\":1,\"id\":2,\"ok\":true}",
              "worker process wrote a line that is not JSON (duplicate object key near '\"id\"'): "
              "\"{\"id\":1,\"id\":2,\"ok\":true}\"");
    const char *invalid = "worker process wrote an invalid answer (it needs \"ok\": true, or an "
                          "\"error\" string with an optional boolean \"discard\" and a "
                          "non-negative integer \"retry_in_ms\"): ";
    char want[ERR_LEN];
    const char *lines[] = {
        "{\"id\":1}",
        "{\"id\":1,\"ok\":false}",
        "{\"id\":1,\"ok\":true,\"error\":\"both\"}",
        "{\"id\":1,\"error\":5}",
        "{\"id\":1,\"error\":\"x\",\"retry_in_ms\":-1}",
        "{\"id\":1,\"error\":\"x\",\"discard\":\"yes\"}",
    };
    for (size_t i = 0; i < ARRAY_LEN(lines); i++) {
        snprintf(want, sizeof want, "%s\"%s\"", invalid, lines[i]);
        parse_bad(lines[i], want);
    }
    /* A long refused line is quoted by its start only. */
    char longline[300];
    memset(longline, 'x', sizeof longline - 1);
    longline[sizeof longline - 1] = '\0';
    char err[ERR_LEN];
    workerproto_answer a;
    cr_expect_eq(workerproto_parse(longline, strlen(longline), &a, err, sizeof err), -1);
    cr_expect(strstr(err, "xxx...\"") != NULL && strlen(err) < 200, "%s", err);
}
