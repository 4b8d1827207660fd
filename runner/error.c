/* error.c - runner_strerror: the description of each runner_error code, taken from the
 * same RUNNER_ERROR_MAP in include/runner.h that defines the codes. */
#include "runner.h"

/* One case per RUNNER_ERROR_MAP entry, so that a new code cannot lack its string. */
#define STRERROR_CASE(name, value, description)                                                    \
    case name:                                                                                     \
        return description;

const char *runner_strerror(int code)
{
    switch (code) {
        RUNNER_ERROR_MAP(STRERROR_CASE)
    }
    return "unrecognized error code";
}
