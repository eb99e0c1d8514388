/* bench/pown_rate.c - powns per second against a running raidad: C
 * concurrent TCP connections (one request each, as the protocol wants),
 * each slot powning its own coins over and over (AN := fresh PAN, the
 * answer must be 241), for S seconds. The coins come from a list file, one
 * per line: "DEN SN AN_HEX32" (what bench/pown_rate.py writes). Only
 * 127.0.0.1. A measuring tool for docs/coins.md, not a test.
 *
 *   cc -O2 -o pown_rate bench/pown_rate.c -lz
 *   pown_rate PORT COINS_FILE [CONNECTIONS=64] [SECONDS=5] */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FRAME_SIZE (32 + 16 + 37 + 2)

typedef struct coin {
    int8_t den;
    uint32_t sn;
    uint8_t an[16];
} coin_t;

typedef struct slot {
    int fd;
    coin_t *coins;
    size_t n, next;
    uint8_t pan[16];
    uint8_t frame[FRAME_SIZE];
    size_t sent, got;
    uint8_t answer[64];
} slot_t;

static struct sockaddr_in server;
static long done_ok, done_bad, errors;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void build(slot_t *s)
{
    coin_t *c = &s->coins[s->next];
    uint8_t *f = s->frame, *b = f + 32;
    memset(f, 0, 32);
    f[0] = 1;
    f[4] = 1;
    f[5] = 20;
    f[7] = 6;
    f[22] = (FRAME_SIZE - 32) >> 8;
    f[23] = (FRAME_SIZE - 32) & 0xFF;
    if (getrandom(b, 12, 0) != 12 || getrandom(s->pan, 16, 0) != 16)
        abort();
    uint32_t crc = (uint32_t)crc32(0L, b, 12);
    b[12] = (uint8_t)(crc >> 24), b[13] = (uint8_t)(crc >> 16), b[14] = (uint8_t)(crc >> 8),
    b[15] = (uint8_t)crc;
    uint8_t *p = b + 16;
    p[0] = (uint8_t)c->den;
    p[1] = (uint8_t)(c->sn >> 24), p[2] = (uint8_t)(c->sn >> 16), p[3] = (uint8_t)(c->sn >> 8),
    p[4] = (uint8_t)c->sn;
    memcpy(p + 5, c->an, 16);
    memcpy(p + 21, s->pan, 16);
    p[37] = 0x3E;
    p[38] = 0x3E;
}

static void start(int ep, slot_t *s)
{
    build(s);
    s->sent = s->got = 0;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0 || (connect(s->fd, (struct sockaddr *)&server, sizeof(server)) < 0
                      && errno != EINPROGRESS)) {
        perror("connect");
        exit(1);
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = s };
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void finish(int ep, slot_t *s)
{
    close(s->fd);
    if (s->got >= 32 && s->answer[2] == 241) {
        memcpy(s->coins[s->next].an, s->pan, 16);
        done_ok++;
    } else if (s->got >= 32) {
        done_bad++;
    } else {
        errors++;
    }
    s->next = (s->next + 1) % s->n;
    start(ep, s);
}

static void step(int ep, slot_t *s, uint32_t events)
{
    if (s->sent < FRAME_SIZE && (events & EPOLLOUT)) {
        ssize_t n = send(s->fd, s->frame + s->sent, FRAME_SIZE - s->sent, MSG_NOSIGNAL);
        if (n > 0)
            s->sent += (size_t)n;
        if (s->sent == FRAME_SIZE) {
            struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
            epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t n = recv(s->fd, s->answer + s->got, sizeof(s->answer) - s->got, 0);
            if (n > 0) {
                s->got += (size_t)n;
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                finish(ep, s);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pown_rate PORT COINS_FILE [CONNECTIONS] [SECONDS]\n");
        return 2;
    }
    int conns = argc > 3 ? atoi(argv[3]) : 64;
    double secs = argc > 4 ? atof(argv[4]) : 5;
    FILE *f = fopen(argv[2], "r");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    coin_t *coins = NULL;
    size_t n = 0, cap = 0;
    char line[256], hex[64];
    int den;
    unsigned sn;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || sscanf(line, "%d %u %32s", &den, &sn, hex) != 3)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            coins = realloc(coins, cap * sizeof(*coins));
        }
        coins[n].den = (int8_t)den;
        coins[n].sn = sn;
        for (int i = 0; i < 16; i++)
            sscanf(hex + 2 * i, "%2hhx", &coins[n].an[i]);
        n++;
    }
    fclose(f);
    if (n < (size_t)conns) {
        fprintf(stderr, "need at least one coin per connection\n");
        return 1;
    }
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(argv[1]));
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ep = epoll_create1(0);
    slot_t *slots = calloc((size_t)conns, sizeof(*slots));
    size_t per = n / (size_t)conns;
    for (int i = 0; i < conns; i++) {
        slots[i].coins = coins + (size_t)i * per;
        slots[i].n = per;
        start(ep, &slots[i]);
    }
    double t0 = now(), end = t0 + secs;
    struct epoll_event evs[256];
    while (now() < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++)
            step(ep, evs[i].data.ptr, evs[i].events);
    }
    double el = now() - t0;
    printf("%ld powns passed in %.2f s: %.0f/s; %ld failed, %ld without answer\n",
           done_ok, el, (double)done_ok / el, done_bad, errors);
    return done_bad == 0 ? 0 : 1;
}
