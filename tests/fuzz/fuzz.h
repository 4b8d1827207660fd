/* fuzz.h - the fuzz targets' checks, shared by libFuzzer and tests/test_fuzz_regress.c. */
#ifndef RUNNER_FUZZ_H
#define RUNNER_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* fuzz_config_one loads data as runner.yaml and checks the loader's contracts;
 * fuzz_cron_one parses data as a cron expression and checks its fire times. Both
 * abort() with a message on stderr when a contract is broken, and return 0. */
int fuzz_config_one(const uint8_t *data, size_t size);
int fuzz_cron_one(const uint8_t *data, size_t size);

#endif
