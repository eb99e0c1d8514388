/* The worker's thread pool (see include/rd_threadpool.h). */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rd_clock.h"
#include "rd_metrics.h"
#include "rd_ring.h"
#include "rd_threadpool.h"

struct rd_job {
    rd_job_fn fn;
    void *arg;
    uint64_t queued_ns;     /* for raidad_pool_wait_seconds */
};

struct rd_threadpool {
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* a job was queued, or the pool is stopping */
    rd_ring_t jobs;         /* struct rd_job: queued, not yet taken */
    size_t running;         /* jobs taken and not yet finished */
    bool stop;
    pthread_t *tids;
    unsigned threads;       /* threads actually started */
};

/* Waits for a job; the caller holds the lock. Returns false when the pool
 * is stopping and the FIFO is empty, so that queued jobs all run first. */
static bool pool_take(rd_threadpool_t *pool, struct rd_job *job)
{
    while (rd_ring_count(&pool->jobs) == 0 && !pool->stop)
        pthread_cond_wait(&pool->wake, &pool->lock);
    if (!rd_ring_pop(&pool->jobs, job))
        return false;
    pool->running++;
    rd_metrics_pool(pool->threads, rd_ring_count(&pool->jobs), pool->running);
    return true;
}

static void *pool_main(void *data)
{
    rd_threadpool_t *pool = data;
    struct rd_job job;

    pthread_mutex_lock(&pool->lock);
    while (pool_take(pool, &job)) {
        pthread_mutex_unlock(&pool->lock);
        rd_metrics_pool_wait(rd_clock_ns() - job.queued_ns);
        job.fn(job.arg);
        pthread_mutex_lock(&pool->lock);
        pool->running--;
        rd_metrics_pool(pool->threads, rd_ring_count(&pool->jobs), pool->running);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Tells the started threads to finish what is queued, and joins them. */
static void pool_stop(rd_threadpool_t *pool)
{
    unsigned i;

    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->threads; i++)
        pthread_join(pool->tids[i], NULL);
}

static void pool_free(rd_threadpool_t *pool)
{
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->tids);
    rd_ring_free(&pool->jobs);
    free(pool);
}

/* Threads inherit the creator's signal mask. Blocking everything while
 * creating them leaves the I/O thread the only one that can take SIGTERM,
 * SIGHUP and the like, so its handlers and signalfd see every signal and
 * no job is interrupted (EINTR) by a signal meant for the daemon. */
static int pool_start(rd_threadpool_t *pool, unsigned threads)
{
    sigset_t all, old;
    int rc = 0;

    sigfillset(&all);
    /* SIGSYS stays open: the seccomp filter's trap (rd_sandbox.c) must
     * reach its handler, which a blocked signal would not. */
    sigdelset(&all, SIGSYS);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (pool->threads < threads) {
        if (pthread_create(&pool->tids[pool->threads], NULL, pool_main,
                           pool) != 0) {
            rc = -1;
            break;
        }
        pool->threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static rd_threadpool_t *pool_alloc(unsigned threads, size_t capacity)
{
    rd_threadpool_t *pool = calloc(1, sizeof(*pool));

    if (pool == NULL)
        return NULL;
    pool->tids = calloc(threads, sizeof(*pool->tids));
    if (rd_ring_init(&pool->jobs, capacity, sizeof(struct rd_job)) < 0 || pool->tids == NULL)
        goto fail;
    if (pthread_mutex_init(&pool->lock, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->lock);
        goto fail;
    }
    return pool;

fail:
    free(pool->tids);
    rd_ring_free(&pool->jobs);
    free(pool);
    return NULL;
}

rd_threadpool_t *rd_threadpool_create(unsigned threads, size_t capacity)
{
    rd_threadpool_t *pool;

    if (threads == 0 || capacity == 0)
        return NULL;
    pool = pool_alloc(threads, capacity);
    if (pool == NULL)
        return NULL;
    if (pool_start(pool, threads) != 0) {
        pool_stop(pool);
        pool_free(pool);
        return NULL;
    }
    rd_metrics_pool(pool->threads, 0, 0);
    return pool;
}

int rd_threadpool_submit(rd_threadpool_t *pool, rd_job_fn fn, void *arg)
{
    struct rd_job job = { fn, arg, rd_clock_ns() };
    int rc = -1;

    pthread_mutex_lock(&pool->lock);
    /* Refuse rather than drop: the caller still owns the job and can
     * answer "busy" or retry. */
    if (!pool->stop && rd_ring_push(&pool->jobs, &job)) {
        rd_metrics_pool(pool->threads, rd_ring_count(&pool->jobs), pool->running);
        rc = 0;
    }
    pthread_mutex_unlock(&pool->lock);
    /* After the unlock: a thread woken with the lock still held would
     * only block on it again (a futex wait and a wake more per job). The
     * caller is the only one that destroys the pool, so it still exists. */
    if (rc == 0)
        pthread_cond_signal(&pool->wake);
    return rc;
}

size_t rd_threadpool_busy(rd_threadpool_t *pool)
{
    size_t busy;

    pthread_mutex_lock(&pool->lock);
    busy = rd_ring_count(&pool->jobs) + pool->running;
    pthread_mutex_unlock(&pool->lock);
    return busy;
}

unsigned rd_threadpool_threads(const rd_threadpool_t *pool)
{
    return pool->threads;
}

void rd_threadpool_destroy(rd_threadpool_t *pool)
{
    if (pool == NULL)
        return;
    pool_stop(pool);
    pool_free(pool);
}
