#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "rd_limit.h"

#define PROBES 8   /* slots looked at per address: bounds the cost of any key */

typedef struct rd_limit_entry {
    uint8_t key[RD_LIMIT_KEY_SIZE];
    bool used;
    uint32_t connections;
    uint64_t millitokens;        /* 1000 per request */
    uint64_t refilled_ms;
} rd_limit_entry_t;

struct rd_limit {
    rd_limit_conf_t conf;
    uint64_t seed;               /* random: addresses cannot be chosen to collide */
    size_t mask;
    rd_limit_entry_t *table;
};

rd_limit_t *rd_limit_create(const rd_limit_conf_t *conf, size_t capacity)
{
    rd_limit_t *l = calloc(1, sizeof(*l));
    size_t size = 64;

    if (l == NULL)
        return NULL;
    while (size < capacity)
        size <<= 1;
    l->conf = *conf;
    l->mask = size - 1;
    l->table = calloc(size, sizeof(*l->table));
    if (l->table == NULL || getrandom(&l->seed, sizeof(l->seed), 0) != sizeof(l->seed)) {
        rd_limit_destroy(l);
        return NULL;
    }
    return l;
}

void rd_limit_destroy(rd_limit_t *l)
{
    if (l == NULL)
        return;
    free(l->table);
    free(l);
}

void rd_limit_key(const struct sockaddr_storage *ss, uint8_t key[RD_LIMIT_KEY_SIZE])
{
    static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, RD_LIMIT_KEY_SIZE);
        return;
    }
    memcpy(key, v4_mapped, sizeof(v4_mapped));
    memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

static size_t limit_hash(const rd_limit_t *l, const uint8_t *key)
{
    uint64_t a, b, h;

    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    h = (a ^ l->seed) * 0x9e3779b97f4a7c15ULL;
    h = (h ^ b ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL;
    return (size_t)(h ^ (h >> 32));
}

static uint64_t limit_capacity(const rd_limit_t *l)
{
    return (uint64_t)(l->conf.burst ? l->conf.burst : l->conf.rate) * 1000;
}

static void limit_refill(const rd_limit_t *l, rd_limit_entry_t *e, uint64_t now_ms)
{
    uint64_t full = limit_capacity(l);

    /* rate per second is rate per 1000 ms: one millitoken per ms per unit. */
    e->millitokens += (now_ms - e->refilled_ms) * l->conf.rate;
    if (e->millitokens > full)
        e->millitokens = full;
    e->refilled_ms = now_ms;
}

/* An entry is idle, so reusable, when it holds no connection and its bucket
 * would be full again: forgetting it changes nothing. */
static bool limit_idle(const rd_limit_t *l, rd_limit_entry_t *e, uint64_t now_ms)
{
    if (!e->used)
        return true;
    if (e->connections > 0)
        return false;
    limit_refill(l, e, now_ms);
    return e->millitokens >= limit_capacity(l);
}

static rd_limit_entry_t *limit_find(rd_limit_t *l, const uint8_t *key, bool create, uint64_t now_ms)
{
    size_t h = limit_hash(l, key);
    rd_limit_entry_t *room = NULL;

    for (size_t i = 0; i < PROBES; i++) {
        rd_limit_entry_t *e = &l->table[(h + i) & l->mask];

        if (e->used && memcmp(e->key, key, RD_LIMIT_KEY_SIZE) == 0)
            return e;
        if (room == NULL && create && limit_idle(l, e, now_ms))
            room = e;
    }
    if (room != NULL) {
        memcpy(room->key, key, RD_LIMIT_KEY_SIZE);
        room->used = true;
        room->connections = 0;
        room->millitokens = limit_capacity(l);
        room->refilled_ms = now_ms;
    }
    return room;
}

int rd_limit_conn_open(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms)
{
    rd_limit_entry_t *e;

    if (l->conf.max_connections == 0)
        return 0;
    if ((e = limit_find(l, key, true, now_ms)) == NULL)
        return 0;
    if (e->connections >= l->conf.max_connections)
        return -1;
    /* A counted entry is never idle, so it stays until its last close. */
    e->connections++;
    return 1;
}

void rd_limit_conn_close(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE])
{
    rd_limit_entry_t *e;

    if (l->conf.max_connections == 0)
        return;
    e = limit_find(l, key, false, 0);
    if (e != NULL && e->connections > 0)
        e->connections--;
}

bool rd_limit_request(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms)
{
    rd_limit_entry_t *e;

    if (l->conf.rate == 0)
        return true;
    if ((e = limit_find(l, key, true, now_ms)) == NULL)
        return true;
    limit_refill(l, e, now_ms);
    if (e->millitokens < 1000)
        return false;
    e->millitokens -= 1000;
    return true;
}
