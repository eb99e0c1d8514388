/* A bounded FIFO of fixed-size items in one circular array: the thread
 * pool's job queue and the modification queue both keep one. It takes no
 * lock: each owner guards its ring with the mutex it already holds for its
 * other state. Full is an answer, never an overwrite: a lost item would be
 * a request that never gets answered. */
#ifndef RD_RING_H
#define RD_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct rd_ring {
    unsigned char *slots;   /* CAPACITY items of ITEM_SIZE bytes */
    size_t item_size;
    size_t capacity;
    size_t head;            /* index of the oldest item */
    size_t count;
} rd_ring_t;

/* Returns -1 when CAPACITY is 0 or memory runs out. */
int rd_ring_init(rd_ring_t *r, size_t capacity, size_t item_size);
void rd_ring_free(rd_ring_t *r);

static inline size_t rd_ring_count(const rd_ring_t *r)
{
    return r->count;
}

/* Copies ITEM in at the tail; false when the ring is full. */
static inline bool rd_ring_push(rd_ring_t *r, const void *item)
{
    if (r->count == r->capacity)
        return false;
    memcpy(r->slots + (r->head + r->count) % r->capacity * r->item_size, item, r->item_size);
    r->count++;
    return true;
}

/* Copies the oldest item out to OUT; false when the ring is empty. */
static inline bool rd_ring_pop(rd_ring_t *r, void *out)
{
    if (r->count == 0)
        return false;
    memcpy(out, r->slots + r->head * r->item_size, r->item_size);
    r->head = (r->head + 1) % r->capacity;
    r->count--;
    return true;
}

#endif
