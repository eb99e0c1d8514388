/* What a worker gives its TCP and UDP layers (include/rd_net.h), made here
 * the way src/rd_worker.c makes it: default settings, a protocol with its
 * stats, a real epoll loop, thread pool, commit thread and finished queue,
 * and one TCP and one UDP listener on 127.0.0.1 (ports the kernel picks).
 * So test_tcp.c and test_udp.c drive the layers alone, with no worker,
 * over real sockets. */
#ifndef NET_FIXTURE_H
#define NET_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rd_client.h"
#include "rd_clock.h"
#include "rd_config.h"
#include "rd_job.h"
#include "rd_listener.h"
#include "rd_net.h"
#include "rd_stats.h"

#define NET_RAIDA_ID 7
#define NET_COIN_ID 6

typedef struct net_fixture {
    rd_config_t cf;
    rd_protocol_t proto;
    rd_event_loop_t loop;
    rd_net_t net;
    rd_listener_t listeners[2];         /* [0] TCP, [1] UDP */
    struct sockaddr_in tcp_addr, udp_addr;
} net_fixture_t;

static void net_fixture_noop_commit(void *record, bool durable)
{
    (void)record;
    (void)durable;
}

static int net_fixture_listener(net_fixture_t *f, int i, int type, struct sockaddr_in *addr)
{
    rd_listen_addr_t a;
    socklen_t len = sizeof(*addr);

    /* Port 0 is no valid setting: the kernel picks one here. */
    if (rd_config_parse_listen("127.0.0.1:1", &a) < 0)
        return -1;
    ((struct sockaddr_in *)&a.addr)->sin_port = 0;
    f->listeners[i] = (rd_listener_t){ .fd = rd_listener_bind(&a, type), .type = type,
                                       .addr = a, .slot = 0, .slots = 1 };
    if (f->listeners[i].fd < 0)
        return -1;
    return getsockname(f->listeners[i].fd, (struct sockaddr *)addr, &len);
}

/* SLOTS request slots; the commit thread is never handed anything (no
 * coin store: every answer is durable at once). */
static net_fixture_t *net_fixture_create(size_t slots, bool quick_inline)
{
    net_fixture_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    rd_config_defaults(&f->cf);
    f->cf.quick_commands_inline = quick_inline;
    f->cf.max_descriptors = 1024;
    f->cf.worker_connections = 64;
    f->proto = (rd_protocol_t){ .raida_id = NET_RAIDA_ID, .coin_id = NET_COIN_ID,
                                .max_body_size = 4096, .stats = rd_stats_create() };
    if (f->proto.stats == NULL || rd_event_loop_init(&f->loop, 64) < 0)
        return NULL;
    f->net = (rd_net_t){ .cf = &f->cf, .loop = &f->loop, .proto = &f->proto,
                         .max_in_flight = slots };
    f->net.finished = rd_queue_create(slots);
    f->net.pool = rd_threadpool_create(2, slots);
    f->net.commit = rd_commit_create(&f->proto, slots, 2, net_fixture_noop_commit, 1000);
    if (f->net.finished == NULL || f->net.pool == NULL || f->net.commit == NULL)
        return NULL;
    if (net_fixture_listener(f, 0, SOCK_STREAM, &f->tcp_addr) < 0
        || net_fixture_listener(f, 1, SOCK_DGRAM, &f->udp_addr) < 0)
        return NULL;
    return f;
}

/* The listeners are closed by the layer under test (or here when not). */
static void net_fixture_destroy(net_fixture_t *f, bool listeners_closed)
{
    rd_threadpool_destroy(f->net.pool);
    rd_commit_destroy(f->net.commit);
    rd_queue_destroy(f->net.finished);
    rd_event_loop_free(&f->loop);
    if (!listeners_closed) {
        close(f->listeners[0].fd);
        close(f->listeners[1].fd);
    }
    rd_stats_destroy(f->proto.stats);
    free(f);
}

/* Waits until the pool has handed back WANT requests in all, or 5 s. */
static size_t net_fixture_wait_finished(net_fixture_t *f, void **records, size_t want)
{
    uint64_t deadline = rd_clock_ms() + 5000;
    size_t n = 0;

    while (n < want && rd_clock_ms() < deadline) {
        n += rd_queue_pop_all(f->net.finished, records + n, want - n);
        if (n < want)
            usleep(1000);
    }
    return n;
}

/* An unencrypted echo (group 0, command 1) frame of RAIDA 7, coin 6. */
static size_t net_fixture_echo(uint8_t *out, size_t cap, uint16_t echo)
{
    rd_client_request_t r = { .raida_id = NET_RAIDA_ID, .coin_id = NET_COIN_ID,
                              .group = 0, .command = 1, .echo = echo };

    return rd_client_build(&r, out, cap, NULL);
}

/* A blocking client socket of TYPE connected to ADDR, reads bounded by 5 s. */
static int net_fixture_client(int type, const struct sockaddr_in *addr)
{
    struct timeval tv = { .tv_sec = 5 };
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

#endif
