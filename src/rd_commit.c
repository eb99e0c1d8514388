/* The commit threads of a worker (see include/rd_commit.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd_commit.h"
#include "rd_clock.h"
#include "rd_log.h"
#include "rd_metrics.h"

typedef struct waiting {
    uint64_t lsn;
    uint64_t since_ns;          /* queued then (rd_clock_ns) */
    void *item;
} waiting_t;

/* One commit thread and the batch it holds while it waits for a sync. */
typedef struct committer {
    struct rd_commit *c;
    waiting_t *batch;           /* CAPACITY; swapped with the queue's array */
    pthread_t thread;
    bool started;
} committer_t;

struct rd_commit {
    const rd_protocol_t *proto;
    rd_commit_done_fn *done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    waiting_t *items;           /* CAPACITY: the queue */
    size_t n, capacity;
    unsigned tick_ms;           /* checkpoints are looked at this often when idle */
    bool stop;
    size_t nthreads;
    committer_t threads[];
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
    uint64_t now = rd_clock_ns();
    for (size_t i = 0; i < n; i++) {
        rd_metrics_commit_wait(now - batch[i].since_ns);
        c->done(batch[i].item, durable);
    }
}

/* Each thread takes the whole queue, swapping in its own empty array, and
 * waits for the sync that covers it; while one waits, the next thread
 * takes what arrives meanwhile and leads its own sync, which overlaps
 * (src/rd_coins.c): an answer waits for about one sync, not for the end of
 * the one under way and then its own. */
static void *commit_main(void *arg)
{
    committer_t *me = arg;
    rd_commit_t *c = me->c;
    /* Told apart from the pool's threads in ps -L and top -H. */
    pthread_setname_np(pthread_self(), "commit");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->n == 0 && !c->stop)
            commit_wait(c);
        waiting_t *batch = c->items;
        size_t n = c->n;
        bool stop = c->stop;
        c->items = me->batch;
        me->batch = batch;
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

static void commit_free(rd_commit_t *c)
{
    for (size_t i = 0; i < c->nthreads; i++)
        free(c->threads[i].batch);
    free(c->items);
    free(c);
}

static void commit_stop(rd_commit_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nthreads; i++)
        if (c->threads[i].started)
            pthread_join(c->threads[i].thread, NULL);
}

static int commit_start(rd_commit_t *c)
{
    for (size_t i = 0; i < c->nthreads; i++) {
        committer_t *t = &c->threads[i];
        t->c = c;
        t->batch = calloc(c->capacity, sizeof(*t->batch));
        if (t->batch == NULL)
            return -1;
    }
    /* Not SCHED_BATCH like the rest of the worker (worker_sched_batch): a
     * commit thread sleeps on the disk, and when its sync ends it must run
     * at once, not after the running thread's time slice, for the answers
     * it releases wait for it. Set here once the thread exists (before
     * the worker's own filter, which refuses the call), not by
     * pthread_create's attributes: where sched_setscheduler is refused
     * (the systemd unit's filter), those fail the thread and the worker
     * with it, while this only leaves the thread batch. */
    struct sched_param sp = { .sched_priority = 0 };
    for (size_t i = 0; i < c->nthreads; i++) {
        committer_t *t = &c->threads[i];
        if (pthread_create(&t->thread, NULL, commit_main, t) != 0)
            return -1;
        t->started = true;
        (void)pthread_setschedparam(t->thread, SCHED_OTHER, &sp);
    }
    return 0;
}

rd_commit_t *rd_commit_create(const rd_protocol_t *p, size_t capacity, size_t threads,
                              rd_commit_done_fn *done, unsigned tick_ms)
{
    size_t nthreads = threads > 0 ? threads : 1;
    rd_commit_t *c = calloc(1, sizeof(*c) + nthreads * sizeof(c->threads[0]));
    pthread_condattr_t attr;
    if (c == NULL)
        return NULL;
    c->proto = p;
    c->done = done;
    c->capacity = capacity;
    c->nthreads = nthreads;
    c->tick_ms = tick_ms > 0 ? tick_ms : 1000;
    c->items = calloc(capacity, sizeof(*c->items));
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    bool ok = c->items != NULL && pthread_mutex_init(&c->lock, NULL) == 0
        && pthread_cond_init(&c->cond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (ok && commit_start(c) < 0) {
        commit_stop(c);
        ok = false;
    }
    if (!ok) {
        commit_free(c);
        return NULL;
    }
    return c;
}

void rd_commit_add(rd_commit_t *c, uint64_t lsn, void *item)
{
    uint64_t now = rd_clock_ns();   /* before the lock, which the commit threads wait on */

    pthread_mutex_lock(&c->lock);
    if (c->n == c->capacity) {
        /* Cannot happen (the worker bounds what is in flight); should it,
         * answering late beats losing the answer. */
        pthread_mutex_unlock(&c->lock);
        bool durable = rd_protocol_commit(c->proto, lsn) == 0;
        c->done(item, durable);
        return;
    }
    c->items[c->n++] = (waiting_t){ .lsn = lsn, .since_ns = now, .item = item };
    bool first = c->n == 1;
    pthread_mutex_unlock(&c->lock);
    /* A thread waits only when it found nothing queued: only the first
     * item after that wakes one, and after the unlock, so that it does not
     * wake to block on the lock. The pool, the only caller, is joined
     * before the commit threads are destroyed. */
    if (first)
        pthread_cond_signal(&c->cond);
}

void rd_commit_destroy(rd_commit_t *c)
{
    if (c == NULL)
        return;
    commit_stop(c);
    /* An orderly stop leaves the journal empty for the next start. */
    rd_protocol_checkpoint(c->proto, true);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    commit_free(c);
}
