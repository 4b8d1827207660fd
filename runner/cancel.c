/* cancel.c - a per-worker cancellation token: an atomic reason plus an eventfd to poll. */
#include "cancel.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
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

/* ---- sending cancel requests ----
 * libpq 15's PQcancel opens a new connection to the server and waits until the server
 * closes it, with no timeout: against a frozen server or a black-holed route it blocks
 * for as long as TCP takes to give up. So each request runs on a detached thread of its
 * own that owns the PGcancel, and the caller (the control loop, a worker) goes on at
 * once. A cancel is best effort (statement deadlines and statement_timeout bound the
 * work anyway): while CANCEL_THREADS_MAX requests hang, further ones are dropped. */
#define CANCEL_THREADS_MAX 16
#define CANCEL_STACK_SIZE (256 * 1024)

static _Atomic int cancel_threads;

static void *cancel_main(void *arg)
{
    PGcancel *pc = arg;
    char buf[256];
    PQcancel(pc, buf, sizeof buf);
    PQfreeCancel(pc);
    atomic_fetch_sub(&cancel_threads, 1);
    return NULL;
}

void cancel_send(PGcancel *pc)
{
    if (!pc)
        return;
    if (atomic_fetch_add(&cancel_threads, 1) >= CANCEL_THREADS_MAX) {
        atomic_fetch_sub(&cancel_threads, 1);
        PQfreeCancel(pc);
        return;
    }
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, CANCEL_STACK_SIZE);
        /* signals belong to the main thread, whichever thread asks for the cancel */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&t, &attr, cancel_main, pc);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        atomic_fetch_sub(&cancel_threads, 1);
        PQfreeCancel(pc);
    }
}

/* fire_statement cancels the armed statement, if any; whoever swaps it out owns it. */
static void fire_statement(cancel_token *c)
{
    cancel_send(atomic_exchange(&c->statement, NULL));
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
