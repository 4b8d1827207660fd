/* test_alerts.c - the shipped Prometheus alert rules are valid and fire when they should. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>

#include "prom.h"

static const char *source_path(const char *rel)
{
    static char path[4096];
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : ".", rel);
    return path;
}

Test(alerts, rules_are_valid)
{
    char args[4200], *out;
    snprintf(args, sizeof args, "check rules '%s'",
             source_path("dist/prometheus/runner-alerts.yml"));
    int rc = prom_run(args, NULL, &out);
    cr_expect_eq(rc, 0, "promtool %s (exit %d):\n%s", args, rc, out);
    cr_expect(strstr(out, "SUCCESS: 3 rules found"), "%s", out);
    free(out);
}

/* tests/data/runner-alerts-test.yml: synthetic series for which each alert must (not) fire. */
Test(alerts, rules_fire_on_synthetic_series)
{
    char args[4200], *out;
    snprintf(args, sizeof args, "test rules '%s'",
             source_path("tests/data/runner-alerts-test.yml"));
    int rc = prom_run(args, NULL, &out);
    cr_expect_eq(rc, 0, "promtool %s (exit %d):\n%s", args, rc, out);
    free(out);
}
