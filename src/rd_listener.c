/* The listening sockets of every listen address (see include/rd_listener.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rd_listener.h"
#include "rd_log.h"
#include "rd_reuseport.h"

static int listener_bind(const rd_listen_addr_t *a, int type)
{
    const char *proto = type == SOCK_STREAM ? "tcp" : "udp";
    int one = 1;
    int fd = socket(a->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        rd_log(RD_LOG_ERR, "socket(%s %s): %s", proto, a->text, strerror(errno));
        return -1;
    }
    /* A restarted server must be able to bind while old connections sit in
     * TIME_WAIT. TCP only: UDP has no TIME_WAIT, and on a UDP socket the
     * option lets any local user's socket with it bind the same port (no
     * same-user check), and a more specific bind then takes the traffic. */
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket of its address's group (src/rd_reuseport.c). */
    if (rd_reuseport_enable(fd) < 0) {
        rd_log(RD_LOG_ERR, "SO_REUSEPORT(%s %s): %s", proto, a->text, strerror(errno));
        close(fd);
        return -1;
    }
    /* "[::]" should mean IPv6 only, so that it can sit beside "0.0.0.0". */
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addr_len) < 0) {
        rd_log(RD_LOG_ERR, "bind(%s %s): %s", proto, a->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0) {
        rd_log(RD_LOG_ERR, "listen(%s): %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int rd_listener_bind(const rd_listen_addr_t *a, int type)
{
    return listener_bind(a, type);
}

/* Accepted sockets inherit these from their listener: set once here, they
 * cost no system call per connection. */
static void listener_set_keepalive(int fd, const rd_listen_addr_t *a, const rd_config_t *cf)
{
    static const struct { int level, name; const char *text; } opt[] = {
        { SOL_SOCKET, SO_KEEPALIVE, "tcp_keepalive" },
        { IPPROTO_TCP, TCP_KEEPIDLE, "keepalive_idle" },
        { IPPROTO_TCP, TCP_KEEPINTVL, "keepalive_interval" },
        { IPPROTO_TCP, TCP_KEEPCNT, "keepalive_count" },
    };
    int value[] = { cf->tcp_keepalive, (int)cf->keepalive_idle, (int)cf->keepalive_interval,
                    (int)cf->keepalive_count };

    /* Without them the socket still serves: say so, and go on. */
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (setsockopt(fd, opt[i].level, opt[i].name, &value[i], sizeof(value[i])) < 0)
            rd_log(RD_LOG_WARN, "tcp %s: %s %d: %s", a->text, opt[i].text, value[i],
                   strerror(errno));
}

/* A deeper queue absorbs bursts of datagrams that would otherwise be
 * dropped by the kernel while a worker is busy. As root the system's cap
 * (net.core.rmem_max) does not apply. */
static void listener_set_rcvbuf(int fd, const rd_config_t *cf)
{
    int size = (int)cf->udp_receive_buffer;

    if (size == 0)
        return;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
        rd_log(RD_LOG_WARN, "udp_receive_buffer %d: %s", size, strerror(errno));
}

static int listener_find(const rd_listener_t *ls, size_t count,
                         const rd_listen_addr_t *a, int type, unsigned slot)
{
    for (size_t i = 0; i < count; i++)
        if (ls[i].type == type && ls[i].slot == slot && ls[i].addr.addr_len == a->addr_len &&
            memcmp(&ls[i].addr.addr, &a->addr, a->addr_len) == 0)
            return ls[i].fd;
    return -1;
}

/* One address and type: its group of sockets (include/rd_reuseport.h),
 * taken over whole from OLD or bound whole, in slot order (the order the
 * CPU steering indexes). Appends to LS at *N. */
static int listener_open_group(const rd_config_t *cf, const rd_listen_addr_t *a, int type,
                               const rd_listener_t *old, size_t old_count,
                               rd_listener_t *ls, size_t *n)
{
    unsigned slots = rd_reuseport_group_size();
    bool fresh = listener_find(old, old_count, a, type, 0) < 0;

    if (fresh && rd_reuseport_probe(a, type) < 0)
        return -1;
    for (unsigned slot = 0; slot < slots; slot++) {
        int fd = listener_find(old, old_count, a, type, slot);

        if (fd < 0 && (fd = listener_bind(a, type)) < 0)
            return -1;
        if (type == SOCK_STREAM)
            listener_set_keepalive(fd, a, cf);
        else
            listener_set_rcvbuf(fd, cf);
        ls[(*n)++] = (rd_listener_t){ .fd = fd, .type = type, .addr = *a,
                                      .slot = slot, .slots = slots };
    }
    if (fresh)
        rd_reuseport_steer(ls[*n - slots].fd);
    return 0;
}

int rd_listeners_open_reusing(const rd_config_t *cf, const rd_listener_t *old, size_t old_count,
                              rd_listener_t **out, size_t *count)
{
    static const int types[] = { SOCK_STREAM, SOCK_DGRAM };
    size_t n = 0;
    rd_listener_t *ls = calloc(cf->listen_count * 2 * rd_reuseport_group_size(), sizeof(*ls));

    if (ls == NULL)
        return -1;
    for (size_t i = 0; i < cf->listen_count; i++) {
        for (size_t t = 0; t < 2; t++) {
            if (types[t] == SOCK_DGRAM && !cf->udp)
                continue;
            if (listener_open_group(cf, &cf->listen[i], types[t], old, old_count, ls, &n) < 0) {
                rd_listeners_release(ls, n, old, old_count);
                return -1;
            }
        }
    }
    *out = ls;
    *count = n;
    return 0;
}

int rd_listeners_open(const rd_config_t *cf, rd_listener_t **out, size_t *count)
{
    return rd_listeners_open_reusing(cf, NULL, 0, out, count);
}

void rd_listeners_release(rd_listener_t *ls, size_t count,
                          const rd_listener_t *keep, size_t keep_count)
{
    for (size_t i = 0; i < count; i++) {
        bool kept = false;

        for (size_t k = 0; k < keep_count; k++)
            kept |= keep[k].fd == ls[i].fd;
        if (!kept && ls[i].fd >= 0)
            close(ls[i].fd);
    }
    free(ls);
}

void rd_listeners_close(rd_listener_t *ls, size_t count)
{
    rd_listeners_release(ls, count, NULL, 0);
}

/* Listeners are shared by every worker: EPOLLEXCLUSIVE wakes one of them
 * per event instead of all (no thundering herd). */
int rd_listener_watch(rd_event_loop_t *loop, rd_event_t *ev, bool *in_loop, bool want)
{
    if (want == *in_loop)
        return 0;
    /* EPOLLEXCLUSIVE forbids EPOLL_CTL_MOD: remove and add again. Adding
     * reports connections already waiting, so none is left behind. */
    if (want && rd_event_add(loop, ev, EPOLLIN | EPOLLET | EPOLLEXCLUSIVE) < 0) {
        rd_log(RD_LOG_ERR, "epoll_ctl(add %d): %s", ev->fd, strerror(errno));
        return -1;
    }
    if (!want)
        rd_event_del(loop, ev);
    *in_loop = want;
    return 0;
}
