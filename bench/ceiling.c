/* ceiling: the least a server can do to answer RAIDA echo requests, the
 * yardstick of bench/run.sh. One thread, one epoll loop, no thread pool,
 * no validation, no timeouts, no logging: TCP (one request per connection,
 * closed after the answer) and UDP on one port of 127.0.0.1. What raidad
 * does beyond this is its cost.
 *
 *   cc -O2 -o ceiling ceiling.c && ./ceiling PORT [RAIDA_ID]
 *
 * SIGTERM ends it (default action). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADER    32
#define CHALLENGE 16
#define KEEP      (HEADER + CHALLENGE)  /* all the answer needs of a request */
#define SINK      2048
#define EVENTS    512

struct conn {
    uint32_t have;      /* bytes of the request read so far */
    uint32_t want;      /* its length, once the header is in; 0 before */
    uint8_t keep[KEEP];
};

static struct conn *conns;      /* indexed by descriptor */
static size_t nconns;
static int epfd, tcp_fd, udp_fd;
static uint8_t raida_id;

/* The echo answer: status 250, the request's group and echo bytes, and its
 * challenge as the challenge hash. */
static void answer(const uint8_t *req, uint8_t *out)
{
    memset(out, 0, HEADER);
    out[0] = raida_id;
    out[2] = 250;
    out[3] = req[4];
    out[5] = 1;
    out[6] = req[30];
    out[7] = req[31];
    memcpy(out + 16, req + HEADER, CHALLENGE);
}

static void conn_take(struct conn *c, const uint8_t *buf, size_t n)
{
    if (c->have < KEEP) {
        size_t copy = KEEP - c->have < n ? KEEP - c->have : n;

        memcpy(c->keep + c->have, buf, copy);
    }
    c->have += (uint32_t)n;
    if (c->want == 0 && c->have >= HEADER)
        c->want = HEADER + ((uint32_t)c->keep[22] << 8 | c->keep[23]);
}

/* Reads what is there; answers and closes once the whole request is in
 * (closing with input unread would reset the connection and could destroy
 * the answer). Returns 1 when the connection is finished. */
static int conn_read(int fd)
{
    struct conn *c = &conns[fd];
    uint8_t buf[SINK];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            break;
        conn_take(c, buf, (size_t)n);
        if (c->want != 0 && c->have >= c->want && c->have >= KEEP) {
            uint8_t out[HEADER];

            answer(c->keep, out);
            send(fd, out, sizeof(out), MSG_NOSIGNAL);
            break;
        }
    }
    close(fd);
    return 1;
}

/* The request usually arrives with the handshake, so it is read at once:
 * most connections never enter epoll at all. */
static void on_accept(void)
{
    for (;;) {
        int fd = accept4(tcp_fd, NULL, NULL, SOCK_NONBLOCK);

        if (fd < 0)
            return;
        if ((size_t)fd >= nconns) {
            close(fd);
            continue;
        }
        conns[fd] = (struct conn){ 0, 0, { 0 } };
        if (conn_read(fd) == 0) {
            struct epoll_event ee = { .events = EPOLLIN, .data.fd = fd };

            epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ee);
        }
    }
}

static void on_datagram(void)
{
    for (;;) {
        uint8_t buf[SINK], out[HEADER];
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        ssize_t n = recvfrom(udp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len);

        if (n < 0)
            return;
        if (n < KEEP)
            continue;
        answer(buf, out);
        sendto(udp_fd, out, sizeof(out), 0, (struct sockaddr *)&peer, len);
    }
}

static int open_socket(int type, int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int one = 1;
    int fd = socket(AF_INET, type | SOCK_NONBLOCK, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        return -1;
    if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
        return -1;
    return fd;
}

static int watch(int fd)
{
    struct epoll_event ee = { .events = EPOLLIN, .data.fd = fd };

    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ee);
}

static int setup(int port)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    nconns = rl.rlim_cur > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof(*conns));
    epfd = epoll_create1(0);
    tcp_fd = open_socket(SOCK_STREAM, port);
    udp_fd = open_socket(SOCK_DGRAM, port);
    if (conns == NULL || epfd < 0 || tcp_fd < 0 || udp_fd < 0)
        return -1;
    return watch(tcp_fd) < 0 || watch(udp_fd) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct epoll_event ev[EVENTS];
    int port = argc > 1 ? atoi(argv[1]) : 0;

    if (argc < 2 || argc > 3 || port <= 0 || port > 65535) {
        fprintf(stderr, "usage: ceiling PORT [RAIDA_ID]\n");
        return 2;
    }
    raida_id = argc > 2 ? (uint8_t)atoi(argv[2]) : 0;
    if (setup(port) < 0) {
        perror("ceiling");
        return 1;
    }
    for (;;) {
        int n = epoll_wait(epfd, ev, EVENTS, -1);

        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;

            if (fd == tcp_fd)
                on_accept();
            else if (fd == udp_fd)
                on_datagram();
            else
                conn_read(fd);
        }
    }
}
