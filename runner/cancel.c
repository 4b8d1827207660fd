/* cancel.c - a per-worker cancellation token: an atomic reason plus an eventfd to poll. */
#include "cancel.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* cancel_init creates the token's eventfd; returns 0, or -1 with errno set. */
int cancel_init(cancel_token *c)
{
    atomic_store(&c->reason, CANCEL_NONE);
    atomic_store(&c->statement, NULL);
    c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return c->fd < 0 ? -1 : 0;
}

/* cancel_destroy closes the eventfd; the token must no longer be shared. */
void cancel_destroy(cancel_token *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* fire_statement cancels the armed statement, if any; whoever swaps it out owns it. */
static void fire_statement(cancel_token *c)
{
    PGcancel *pc = atomic_exchange(&c->statement, NULL);
    if (!pc)
        return;
    char buf[256];
    PQcancel(pc, buf, sizeof buf);
    PQfreeCancel(pc);
}

void cancel_arm_statement(cancel_token *c, PGcancel *pc)
{
    atomic_store(&c->statement, pc);
    if (cancel_get(c) != CANCEL_NONE)
        fire_statement(c);
}

void cancel_disarm_statement(cancel_token *c)
{
    PGcancel *pc = atomic_exchange(&c->statement, NULL);
    if (pc)
        PQfreeCancel(pc);
}

/* cancel_request records the reason (only the first one counts), makes the fd readable,
 * and cancels an armed statement. */
void cancel_request(cancel_token *c, enum cancel_reason reason)
{
    int expected = CANCEL_NONE;

    if (reason == CANCEL_NONE)
        return;
    if (!atomic_compare_exchange_strong(&c->reason, &expected, (int)reason))
        return;
    int saved = errno;
    uint64_t one = 1;
    /* Only fails if the counter would overflow, which one write per arming cannot do. */
    ssize_t n = write(c->fd, &one, sizeof(one));
    (void)n;
    errno = saved;
    fire_statement(c);
}

/* cancel_get returns the reason recorded so far, CANCEL_NONE if none. */
enum cancel_reason cancel_get(cancel_token *c)
{
    return (enum cancel_reason)atomic_load(&c->reason);
}

/* cancel_reset rearms the token between jobs: drain the eventfd, then clear the reason.
 * In this order a request racing with the reset (meant for the previous job) can at worst
 * be dropped or leave the fd readable with no reason set, a spurious wake-up that pollers
 * tolerate by trusting cancel_get(); it can never leave a reason set that no fd signals. */
void cancel_reset(cancel_token *c)
{
    uint64_t v;

    while (read(c->fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    atomic_store(&c->reason, CANCEL_NONE);
}

job_outcome cancel_outcome(enum cancel_reason reason)
{
    switch (reason) {
    case CANCEL_SHUTDOWN:
        return JOB_INTERRUPTED;
    case CANCEL_LEASE_LOST:
        return JOB_ABANDONED;
    case CANCEL_JOB:
        return JOB_CANCELLED;
    case CANCEL_NONE:
        break;
    }
    return JOB_RETRY;
}

/* cancel_reason_str names a reason for messages and logs. */
const char *cancel_reason_str(enum cancel_reason reason)
{
    switch (reason) {
    case CANCEL_NONE:
        return "none";
    case CANCEL_SHUTDOWN:
        return "shutdown";
    case CANCEL_LEASE_LOST:
        return "lease lost";
    case CANCEL_JOB:
        return "cancelled by admin";
    }
    return "unknown";
}
