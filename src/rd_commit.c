/* The commit thread of a worker (see include/rd_commit.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd_commit.h"
#include "rd_log.h"

typedef struct waiting {
    uint64_t lsn;
    void *item;
} waiting_t;

struct rd_commit {
    const rd_protocol_t *proto;
    rd_commit_done_fn *done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    waiting_t *items;           /* CAPACITY; the thread swaps it with spare */
    waiting_t *spare;
    size_t n, capacity;
    unsigned tick_ms;           /* checkpoints are looked at this often when idle */
    bool stop;
    pthread_t thread;
};

static void commit_wait(rd_commit_t *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += c->tick_ms / 1000;
    ts.tv_nsec += (long)(c->tick_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* One round: every item queued so far waits for the one sync that covers
 * the highest position among them. */
static void commit_round(rd_commit_t *c, waiting_t *batch, size_t n)
{
    uint64_t lsn = 0;
    for (size_t i = 0; i < n; i++)
        if (batch[i].lsn > lsn)
            lsn = batch[i].lsn;
    bool durable = rd_protocol_commit(c->proto, lsn) == 0;
    for (size_t i = 0; i < n; i++)
        c->done(batch[i].item, durable);
}

static void *commit_main(void *arg)
{
    rd_commit_t *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->n == 0 && !c->stop)
            commit_wait(c);
        waiting_t *batch = c->items;
        size_t n = c->n;
        bool stop = c->stop;
        c->items = c->spare;
        c->spare = batch;
        c->n = 0;
        pthread_mutex_unlock(&c->lock);
        if (n > 0)
            commit_round(c, batch, n);
        rd_protocol_checkpoint(c->proto, false);
        pthread_mutex_lock(&c->lock);
        if (stop && c->n == 0)
            break;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

rd_commit_t *rd_commit_create(const rd_protocol_t *p, size_t capacity, rd_commit_done_fn *done,
                              unsigned tick_ms)
{
    rd_commit_t *c = calloc(1, sizeof(*c));
    pthread_condattr_t attr;
    if (c == NULL)
        return NULL;
    *c = (rd_commit_t){ .proto = p, .done = done, .capacity = capacity,
                        .tick_ms = tick_ms > 0 ? tick_ms : 1000 };
    c->items = calloc(capacity, sizeof(*c->items));
    c->spare = calloc(capacity, sizeof(*c->spare));
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    bool ok = c->items != NULL && c->spare != NULL && pthread_mutex_init(&c->lock, NULL) == 0
        && pthread_cond_init(&c->cond, &attr) == 0
        && pthread_create(&c->thread, NULL, commit_main, c) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok) {
        free(c->items);
        free(c->spare);
        free(c);
        return NULL;
    }
    return c;
}

void rd_commit_add(rd_commit_t *c, uint64_t lsn, void *item)
{
    pthread_mutex_lock(&c->lock);
    if (c->n == c->capacity) {
        /* Cannot happen (the worker bounds what is in flight); should it,
         * answering late beats losing the answer. */
        pthread_mutex_unlock(&c->lock);
        bool durable = rd_protocol_commit(c->proto, lsn) == 0;
        c->done(item, durable);
        return;
    }
    c->items[c->n++] = (waiting_t){ .lsn = lsn, .item = item };
    bool first = c->n == 1;
    pthread_mutex_unlock(&c->lock);
    /* The thread waits only when it found nothing queued: only the first
     * item after that wakes it, and after the unlock, so that it does not
     * wake to block on the lock. The pool, the only caller, is joined
     * before the commit thread is destroyed. */
    if (first)
        pthread_cond_signal(&c->cond);
}

void rd_commit_destroy(rd_commit_t *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    /* An orderly stop leaves the journal empty for the next start. */
    rd_protocol_checkpoint(c->proto, true);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->items);
    free(c->spare);
    free(c);
}
