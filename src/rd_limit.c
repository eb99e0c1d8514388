/* Per-client-address limits in shared memory (see include/rd_limit.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "rd_limit.h"
#include "rd_siphash.h"

#define PROBES 8   /* slots looked at per address: bounds the cost of any key */

/* IPv4 addresses are kept as IPv4-mapped IPv6 ones (::ffff:a.b.c.d). */
static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

typedef struct rd_limit_bucket {
    uint64_t millitokens;        /* 1000 per request */
    uint64_t refilled_ms;
} rd_limit_bucket_t;

typedef struct rd_limit_entry {
    uint8_t key[RD_LIMIT_KEY_SIZE];   /* the address's prefix, the rest zero */
    bool used;
    uint32_t connections;
    rd_limit_bucket_t buckets[RD_LIMIT_TRANSPORTS];
} rd_limit_entry_t;

/* The shared memory: every worker writes it, so the master never reads it. */
typedef struct rd_limit_shared {
    pthread_mutex_t lock;        /* process-shared and robust: a worker may die holding it */
    _Atomic uint32_t reset_asked; /* written by the master alone */
    uint32_t reset_done;         /* the last reset done, under the lock */
    rd_limit_entry_t table[];
} rd_limit_shared_t;

/* Private to each process (the workers' copies come with fork()): nothing
 * here is taken from the shared memory. */
struct rd_limit {
    rd_limit_shared_t *shm;
    size_t mapped;               /* bytes of the mapping */
    size_t mask;                 /* table size - 1 */
    /* Random and never shown: under it, SipHash leaves no way to choose
     * addresses that share slots. */
    uint8_t hash_key[RD_SIPHASH_KEY_SIZE];
    uint32_t resets;             /* resets asked for so far (the master's count) */
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
    size_t size = 64;
    rd_limit_t *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    while (size < capacity)
        size <<= 1;
    l->mask = size - 1;
    l->mapped = sizeof(rd_limit_shared_t) + size * sizeof(rd_limit_entry_t);
    /* A fresh anonymous mapping is zeroed: every entry starts unused. */
    l->shm = mmap(NULL, l->mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l->shm == MAP_FAILED) {
        free(l);
        return NULL;
    }
    if (getrandom(l->hash_key, sizeof(l->hash_key), 0) != (ssize_t)sizeof(l->hash_key) ||
        limit_init_lock(&l->shm->lock) < 0) {
        munmap(l->shm, l->mapped);
        free(l);
        return NULL;
    }
    return l;
}

/* The lock is not destroyed: a worker may still hold it, and destroying
 * reads what a worker wrote. Unmapping needs neither. */
void rd_limit_destroy(rd_limit_t *l)
{
    if (l == NULL)
        return;
    munmap(l->shm, l->mapped);
    free(l);
}

/* The reset the master asked for is done here, by a worker, under the lock
 * and over the table size this process knows. */
static void limit_lock(rd_limit_t *l)
{
    rd_limit_shared_t *shm = l->shm;
    uint32_t asked;

    /* The table holds only counters: whatever the dead owner left half
     * done is still a usable table. */
    if (pthread_mutex_lock(&shm->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&shm->lock);
    asked = atomic_load_explicit(&shm->reset_asked, memory_order_acquire);
    if (asked != shm->reset_done) {
        for (size_t i = 0; i <= l->mask; i++)
            shm->table[i].connections = 0;
        shm->reset_done = asked;
    }
}

static void limit_unlock(rd_limit_t *l)
{
    pthread_mutex_unlock(&l->shm->lock);
}

void rd_limit_reset_connections(rd_limit_t *l)
{
    atomic_store_explicit(&l->shm->reset_asked, ++l->resets, memory_order_release);
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

/* KEY cut to the configured prefix: the bits past it are zero. */
static void limit_prefix(const rd_limit_conf_t *conf, const uint8_t *key, uint8_t *out)
{
    bool v4 = memcmp(key, v4_mapped, sizeof(v4_mapped)) == 0;
    unsigned bits = v4 ? 96 + (conf->prefix_v4 ? conf->prefix_v4 : 32)
                       : (conf->prefix_v6 ? conf->prefix_v6 : 128);

    memcpy(out, key, RD_LIMIT_KEY_SIZE);
    if (bits >= 128)
        return;
    out[bits / 8] &= (uint8_t)(0xff00u >> (bits % 8));
    memset(out + bits / 8 + 1, 0, RD_LIMIT_KEY_SIZE - bits / 8 - 1);
}

static size_t limit_hash(const rd_limit_t *l, const uint8_t *key)
{
    return (size_t)rd_siphash24(l->hash_key, key, RD_LIMIT_KEY_SIZE);
}

static uint64_t bucket_size(const rd_limit_conf_t *conf)
{
    return (uint64_t)(conf->burst ? conf->burst : conf->rate) * 1000;
}

static void bucket_refill(const rd_limit_conf_t *conf, rd_limit_bucket_t *b, uint64_t now_ms)
{
    uint64_t full = bucket_size(conf);

    /* rate per second is rate per 1000 ms: one millitoken per ms per unit. */
    if (now_ms > b->refilled_ms)
        b->millitokens += (now_ms - b->refilled_ms) * conf->rate;
    if (b->millitokens > full)
        b->millitokens = full;
    b->refilled_ms = now_ms;
}

/* An entry is idle, so reusable, when it holds no connection and its
 * buckets would be full again: forgetting it changes nothing. */
static bool limit_idle(const rd_limit_conf_t *conf, rd_limit_entry_t *e, uint64_t now_ms)
{
    if (!e->used)
        return true;
    if (e->connections > 0)
        return false;
    for (size_t t = 0; t < RD_LIMIT_TRANSPORTS; t++) {
        bucket_refill(conf, &e->buckets[t], now_ms);
        if (e->buckets[t].millitokens < bucket_size(conf))
            return false;
    }
    return true;
}

/* With the lock held. ADDRESS is the client's whole address. */
static rd_limit_entry_t *limit_find(rd_limit_t *l, const rd_limit_conf_t *conf,
                                    const uint8_t *address, bool create, uint64_t now_ms)
{
    uint8_t key[RD_LIMIT_KEY_SIZE];
    rd_limit_entry_t *room = NULL;
    size_t h;

    limit_prefix(conf, address, key);
    h = limit_hash(l, key);
    for (size_t i = 0; i < PROBES; i++) {
        rd_limit_entry_t *e = &l->shm->table[(h + i) & l->mask];

        if (e->used && memcmp(e->key, key, RD_LIMIT_KEY_SIZE) == 0)
            return e;
        if (room == NULL && create && limit_idle(conf, e, now_ms))
            room = e;
    }
    if (room != NULL) {
        memcpy(room->key, key, RD_LIMIT_KEY_SIZE);
        room->used = true;
        room->connections = 0;
        for (size_t t = 0; t < RD_LIMIT_TRANSPORTS; t++)
            room->buckets[t] = (rd_limit_bucket_t){ .millitokens = bucket_size(conf),
                                                    .refilled_ms = now_ms };
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
    limit_unlock(l);
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
    limit_unlock(l);
}

bool rd_limit_request(rd_limit_t *l, const rd_limit_conf_t *conf, rd_limit_transport_t transport,
                      const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms)
{
    rd_limit_entry_t *e;
    bool ok = true;

    if (conf->rate == 0 || transport >= RD_LIMIT_TRANSPORTS)
        return true;
    limit_lock(l);
    if ((e = limit_find(l, conf, key, true, now_ms)) != NULL) {
        rd_limit_bucket_t *b = &e->buckets[transport];

        bucket_refill(conf, b, now_ms);
        if (b->millitokens < 1000)
            ok = false;
        else
            b->millitokens -= 1000;
    }
    limit_unlock(l);
    return ok;
}
