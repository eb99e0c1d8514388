/* The modification queue: pool threads push finished requests, an eventfd
 * wakes the I/O thread, which pops them all at once. Bounded: the worker
 * never has more requests in flight than the queue holds, so a push cannot
 * find it full. */
#ifndef RD_QUEUE_H
#define RD_QUEUE_H

#include <stddef.h>

typedef struct rd_queue rd_queue_t;

rd_queue_t *rd_queue_create(size_t capacity);
void rd_queue_destroy(rd_queue_t *q);

/* The eventfd to watch for readability. */
int rd_queue_fd(const rd_queue_t *q);
size_t rd_queue_capacity(const rd_queue_t *q);

/* Adds ITEM and wakes the reader. Returns -1 when the queue is full. */
int rd_queue_push(rd_queue_t *q, void *item);

/* Moves up to MAX items, oldest first, into ITEMS and clears the wake-up.
 * Returns how many. */
size_t rd_queue_pop_all(rd_queue_t *q, void **items, size_t max);

#endif
