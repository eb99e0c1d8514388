/* The bounded FIFO the pool and the queue keep (see include/rd_ring.h). */
#include "config.h"

#include <stdlib.h>

#include "rd_ring.h"

int rd_ring_init(rd_ring_t *r, size_t capacity, size_t item_size)
{
    *r = (rd_ring_t){ .item_size = item_size, .capacity = capacity };
    if (capacity == 0 || item_size == 0)
        return -1;
    r->slots = calloc(capacity, item_size);
    return r->slots != NULL ? 0 : -1;
}

void rd_ring_free(rd_ring_t *r)
{
    free(r->slots);
    r->slots = NULL;
}
