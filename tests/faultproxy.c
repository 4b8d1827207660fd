/* faultproxy.c - a loopback TCP proxy that can black-hole its traffic (see faultproxy.h). */
#include "faultproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAIRS 64

struct faultproxy {
    int lfd, port;
    char target[108];
    atomic_bool blackhole, stop;
    pthread_t thread;
    int fds[MAX_PAIRS][2]; /* client, server; -1: free */
};

static int connect_target(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static void close_pair(faultproxy *p, int i)
{
    close(p->fds[i][0]);
    close(p->fds[i][1]);
    p->fds[i][0] = p->fds[i][1] = -1;
}

/* forward copies what is readable on from to to; false when the pair is done. */
static bool forward(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    for (ssize_t off = 0; off < n;) {
        ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *proxy_main(void *arg)
{
    faultproxy *p = arg;
    while (!atomic_load(&p->stop)) {
        if (atomic_load(&p->blackhole)) {
            usleep(10000);
            continue;
        }
        struct pollfd pfd[1 + 2 * MAX_PAIRS];
        int map[1 + 2 * MAX_PAIRS];
        int n = 0;
        pfd[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        map[n++] = -1;
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (p->fds[i][0] < 0)
                continue;
            for (int side = 0; side < 2; side++) {
                pfd[n] = (struct pollfd){.fd = p->fds[i][side], .events = POLLIN};
                map[n++] = i * 2 + side;
            }
        }
        if (poll(pfd, (nfds_t)n, 10) <= 0 || atomic_load(&p->blackhole))
            continue;
        for (int k = 1; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            int i = map[k] / 2, side = map[k] % 2;
            if (p->fds[i][0] >= 0 && !forward(p->fds[i][side], p->fds[i][!side]))
                close_pair(p, i);
        }
        if (pfd[0].revents & POLLIN) {
            int c = accept(p->lfd, NULL, NULL);
            if (c < 0)
                continue;
            int s = connect_target(p->target);
            int slot = -1;
            for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
                if (p->fds[i][0] < 0)
                    slot = i;
            if (s < 0 || slot < 0) {
                close(c);
                if (s >= 0)
                    close(s);
                continue;
            }
            p->fds[slot][0] = c;
            p->fds[slot][1] = s;
        }
    }
    return NULL;
}

faultproxy *faultproxy_start(const char *target)
{
    faultproxy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->target, sizeof p->target, "%s", target);
    for (int i = 0; i < MAX_PAIRS; i++)
        p->fds[i][0] = p->fds[i][1] = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &len) != 0)
        goto fail;
    p->port = ntohs(sa.sin_port);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0)
        goto fail;
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    free(p);
    return NULL;
}

int faultproxy_port(const faultproxy *p)
{
    return p->port;
}

void faultproxy_blackhole(faultproxy *p, bool on)
{
    atomic_store(&p->blackhole, on);
}

void faultproxy_stop(faultproxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < MAX_PAIRS; i++)
        if (p->fds[i][0] >= 0)
            close_pair(p, i);
    close(p->lfd);
    free(p);
}
