/* faultproxy.h - a loopback TCP proxy to a PostgreSQL unix socket that can black-hole its
 * traffic, for tests of a network path that stops delivering without closing anything.
 *
 * While black-holed the proxy neither reads nor writes nor accepts: bytes sent either way
 * stay in the kernel's buffers and new connections wait in the listen backlog, as if the
 * path dropped every packet and TCP kept retransmitting. Once healed, whatever was held
 * back flows on (like TCP retransmission after a route comes back); connections a peer
 * gave up on meanwhile then see their end closed. The kernel still acknowledges the
 * bytes, so this exercises the runner's own deadlines, not TCP keepalives. */
#ifndef RUNNER_TEST_FAULTPROXY_H
#define RUNNER_TEST_FAULTPROXY_H

#include <stdbool.h>

typedef struct faultproxy faultproxy;

/* faultproxy_start listens on 127.0.0.1 (a free port) and forwards every connection to
 * the unix socket at target (e.g. "/tmp/x/.s.PGSQL.5432"), on a thread of its own. */
faultproxy *faultproxy_start(const char *target);
int faultproxy_port(const faultproxy *p);
void faultproxy_blackhole(faultproxy *p, bool on);
void faultproxy_stop(faultproxy *p);

#endif
