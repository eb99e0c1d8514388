#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "rd_limit.h"

#define PROBES 8   /* slots looked at per address: bounds the cost of any key */

/* IPv4 addresses are kept as IPv4-mapped IPv6 ones (::ffff:a.b.c.d). */
static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

typedef struct rd_limit_entry {
    uint8_t key[RD_LIMIT_KEY_SIZE];
    bool used;
    uint32_t connections;
    uint64_t millitokens;        /* 1000 per request */
    uint64_t refilled_ms;
} rd_limit_entry_t;

struct rd_limit {
    pthread_mutex_t lock;        /* process-shared and robust: a worker may die holding it */
    size_t mapped;               /* bytes of the mapping */
    uint64_t seed;               /* random: addresses cannot be chosen to collide */
    size_t mask;
    rd_limit_entry_t table[];
};

static int limit_init_lock(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    int rc;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    rc = pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

rd_limit_t *rd_limit_create(size_t capacity)
{
    size_t size = 64, bytes;
    rd_limit_t *l;

    while (size < capacity)
        size <<= 1;
    bytes = sizeof(*l) + size * sizeof(rd_limit_entry_t);
    /* A fresh anonymous mapping is zeroed: every entry starts unused. */
    l = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l == MAP_FAILED)
        return NULL;
    l->mapped = bytes;
    l->mask = size - 1;
    if (getrandom(&l->seed, sizeof(l->seed), 0) != sizeof(l->seed) || limit_init_lock(&l->lock) < 0) {
        munmap(l, bytes);
        return NULL;
    }
    return l;
}

void rd_limit_destroy(rd_limit_t *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->lock);
    munmap(l, l->mapped);
}

static void limit_lock(rd_limit_t *l)
{
    /* The table holds only counters: whatever the dead owner left half
     * done is still a usable table. */
    if (pthread_mutex_lock(&l->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&l->lock);
}

void rd_limit_reset_connections(rd_limit_t *l)
{
    limit_lock(l);
    for (size_t i = 0; i <= l->mask; i++)
        l->table[i].connections = 0;
    pthread_mutex_unlock(&l->lock);
}

void rd_limit_key(const struct sockaddr_storage *ss, uint8_t key[RD_LIMIT_KEY_SIZE])
{

    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, RD_LIMIT_KEY_SIZE);
        return;
    }
    memcpy(key, v4_mapped, sizeof(v4_mapped));
    memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

void rd_limit_key_text(const uint8_t key[RD_LIMIT_KEY_SIZE], char *out, size_t len)
{
    bool v4 = memcmp(key, v4_mapped, sizeof(v4_mapped)) == 0;

    if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? key + 12 : key, out, (socklen_t)len) == NULL)
        snprintf(out, len, "?");
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

static uint64_t bucket_size(const rd_limit_conf_t *conf)
{
    return (uint64_t)(conf->burst ? conf->burst : conf->rate) * 1000;
}

static void bucket_refill(const rd_limit_conf_t *conf, rd_limit_entry_t *e, uint64_t now_ms)
{
    uint64_t full = bucket_size(conf);

    /* rate per second is rate per 1000 ms: one millitoken per ms per unit. */
    if (now_ms > e->refilled_ms)
        e->millitokens += (now_ms - e->refilled_ms) * conf->rate;
    if (e->millitokens > full)
        e->millitokens = full;
    e->refilled_ms = now_ms;
}

/* An entry is idle, so reusable, when it holds no connection and its bucket
 * would be full again: forgetting it changes nothing. */
static bool limit_idle(const rd_limit_conf_t *conf, rd_limit_entry_t *e, uint64_t now_ms)
{
    if (!e->used)
        return true;
    if (e->connections > 0)
        return false;
    bucket_refill(conf, e, now_ms);
    return e->millitokens >= bucket_size(conf);
}

/* With the lock held. */
static rd_limit_entry_t *limit_find(rd_limit_t *l, const rd_limit_conf_t *conf,
                                    const uint8_t *key, bool create, uint64_t now_ms)
{
    size_t h = limit_hash(l, key);
    rd_limit_entry_t *room = NULL;

    for (size_t i = 0; i < PROBES; i++) {
        rd_limit_entry_t *e = &l->table[(h + i) & l->mask];

        if (e->used && memcmp(e->key, key, RD_LIMIT_KEY_SIZE) == 0)
            return e;
        if (room == NULL && create && limit_idle(conf, e, now_ms))
            room = e;
    }
    if (room != NULL) {
        memcpy(room->key, key, RD_LIMIT_KEY_SIZE);
        room->used = true;
        room->connections = 0;
        room->millitokens = bucket_size(conf);
        room->refilled_ms = now_ms;
    }
    return room;
}

int rd_limit_conn_open(rd_limit_t *l, const rd_limit_conf_t *conf,
                       const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms)
{
    rd_limit_entry_t *e;
    int rc = 0;

    if (conf->max_connections == 0)
        return 0;
    limit_lock(l);
    if ((e = limit_find(l, conf, key, true, now_ms)) == NULL) {
        rc = 0;
    } else if (e->connections >= conf->max_connections) {
        rc = -1;
    } else {
        /* A counted entry is never idle, so it stays until its last close. */
        e->connections++;
        rc = 1;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

void rd_limit_conn_close(rd_limit_t *l, const rd_limit_conf_t *conf,
                         const uint8_t key[RD_LIMIT_KEY_SIZE])
{
    rd_limit_entry_t *e;

    limit_lock(l);
    e = limit_find(l, conf, key, false, 0);
    if (e != NULL && e->connections > 0)
        e->connections--;
    pthread_mutex_unlock(&l->lock);
}

bool rd_limit_request(rd_limit_t *l, const rd_limit_conf_t *conf,
                      const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms)
{
    rd_limit_entry_t *e;
    bool ok = true;

    if (conf->rate == 0)
        return true;
    limit_lock(l);
    if ((e = limit_find(l, conf, key, true, now_ms)) != NULL) {
        bucket_refill(conf, e, now_ms);
        if (e->millitokens < 1000)
            ok = false;
        else
            e->millitokens -= 1000;
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}
