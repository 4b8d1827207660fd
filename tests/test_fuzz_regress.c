/* test_fuzz_regress.c - every input the fuzzers crashed on, and their seeds, through the same
 * checks. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util.h"

/* Inputs live under tests/fuzz/{regress,corpus}/{config,cron}/, one file each. A broken
 * contract aborts the test process, and criterion reports the crash; the file being run
 * is printed first so that the report names it. */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* run_dir feeds every file in tests/fuzz/<dir> to one; returns how many it ran. */
static size_t run_dir(const char *dir, int (*one)(const uint8_t *, size_t))
{
    const char *root = getenv("RUNNER_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/%s", root && *root ? root : ".", dir);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "could not open %s", path);

    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, by_name);

    for (size_t i = 0; i < n; i++) {
        char file[8192];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        FILE *f = fopen(file, "rb");
        cr_assert_not_null(f, "could not open %s", file);
        strbuf sb;
        char buf[4096];
        size_t len;
        sb_init(&sb);
        while ((len = fread(buf, 1, sizeof buf, f)) > 0)
            sb_append(&sb, buf, len);
        fclose(f);
        fprintf(stderr, "fuzz input %s/%s\n", dir, names[i]);
        one((const uint8_t *)(sb.data ? sb.data : ""), sb.len);
        sb_free(&sb);
        free(names[i]);
    }
    free(names);
    return n;
}

Test(fuzz_regress, config)
{
    run_dir("regress/config", fuzz_config_one);
}

Test(fuzz_regress, cron)
{
    run_dir("regress/cron", fuzz_cron_one);
}

Test(fuzz_regress, config_seeds)
{
    cr_expect_gt(run_dir("corpus/config", fuzz_config_one), 10);
}

Test(fuzz_regress, cron_seeds)
{
    cr_expect_gt(run_dir("corpus/cron", fuzz_cron_one), 10);
}
