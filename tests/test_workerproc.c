/* test_workerproc.c - worker process pools: the protocol, failures, cancel, roll. */
#include <criterion/criterion.h>

#include "workerproc.h"

Test(workerproc, placeholder)
{
}
