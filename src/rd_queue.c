/* The modification queue and its eventfd (see include/rd_queue.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rd_metrics.h"
#include "rd_queue.h"
#include "rd_ring.h"

struct rd_queue {
    pthread_mutex_t lock;
    rd_ring_t items;  /* pointers */
    int efd;
};

rd_queue_t *rd_queue_create(size_t capacity)
{
    rd_queue_t *q;

    if (capacity == 0)
        return NULL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    if (rd_ring_init(&q->items, capacity, sizeof(void *)) < 0)
        goto fail_slots;
    if (pthread_mutex_init(&q->lock, NULL) != 0)
        goto fail_mutex;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0)
        goto fail_efd;
    return q;

fail_efd:
    pthread_mutex_destroy(&q->lock);
fail_mutex:
    rd_ring_free(&q->items);
fail_slots:
    free(q);
    return NULL;
}

void rd_queue_destroy(rd_queue_t *q)
{
    if (q == NULL)
        return;
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
    rd_ring_free(&q->items);
    free(q);
}

int rd_queue_fd(const rd_queue_t *q)
{
    return q->efd;
}

size_t rd_queue_capacity(const rd_queue_t *q)
{
    return q->items.capacity;
}

/* Stores ITEM at the tail; the caller holds the lock. */
static int queue_store(rd_queue_t *q, void *item)
{
    if (!rd_ring_push(&q->items, &item))
        return -1;
    rd_metrics_mod_queue(rd_ring_count(&q->items));
    return 0;
}

/* EAGAIN means the counter is saturated, which leaves it readable: the
 * reader is woken anyway, so there is nothing to retry. */
static void queue_signal(const rd_queue_t *q)
{
    uint64_t one = 1;

    while (write(q->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* Only the push that finds the queue empty writes the eventfd: every item
 * behind it is taken by the same drain (pop_all clears the eventfd before
 * it takes, and takes all there is, or signals again for what is left), so
 * a burst of answers costs one write and one wake-up, not one per answer. */
int rd_queue_push(rd_queue_t *q, void *item)
{
    int rc;
    bool first;

    pthread_mutex_lock(&q->lock);
    first = rd_ring_count(&q->items) == 0;
    rc = queue_store(q, item);
    pthread_mutex_unlock(&q->lock);
    if (rc == 0 && first)
        queue_signal(q);
    return rc;
}

/* EAGAIN means nobody pushed since the last clear: nothing to do. */
static void queue_clear(const rd_queue_t *q)
{
    uint64_t value;

    while (read(q->efd, &value, sizeof(value)) < 0 && errno == EINTR)
        ;
}

/* Moves up to MAX items, oldest first; the caller holds the lock. */
static size_t queue_take(rd_queue_t *q, void **items, size_t max)
{
    size_t n = 0;

    while (n < max && rd_ring_pop(&q->items, &items[n]))
        n++;
    return n;
}

size_t rd_queue_pop_all(rd_queue_t *q, void **items, size_t max)
{
    size_t n, left;

    /* Clear the wake-up before draining, never after: a push that lands
     * after the drain then writes to an already cleared eventfd, which stays
     * readable, so its item is picked up on the next wake-up. Clearing after
     * the drain could swallow that push's signal and strand its item. */
    queue_clear(q);
    pthread_mutex_lock(&q->lock);
    n = queue_take(q, items, max);
    left = rd_ring_count(&q->items);
    rd_metrics_mod_queue(left);
    pthread_mutex_unlock(&q->lock);
    /* MAX was too small: keep the eventfd readable for what is left, or
     * those items would wait for an unrelated push to be noticed. */
    if (left > 0)
        queue_signal(q);
    return n;
}
