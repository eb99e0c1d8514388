/* Request counters shared by every worker (see include/rd_stats.h). */
#include "config.h"

#include <stddef.h>
#include <time.h>
#include <sys/mman.h>

#include "rd_stats.h"

/* A shared anonymous mapping rather than malloc: workers forked after this
 * call inherit the very same pages, so every process counts into one set of
 * totals without any message passing. The mapping starts zeroed. */
rd_stats_t *rd_stats_create(void)
{
    void *mem = mmap(NULL, sizeof(rd_stats_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    rd_stats_t *st = mem;
    st->started = (uint64_t)time(NULL);
    return st;
}

void rd_stats_destroy(rd_stats_t *st)
{
    if (st != NULL)
        munmap(st, sizeof(*st));
}

void rd_stats_count(rd_stats_t *st, int known, uint8_t group, uint8_t command, uint8_t status)
{
    if (st == NULL)
        return;
    rd_stats_add(&st->requests, 1);
    rd_stats_add(&st->by_status[status], 1);
    if (known && group < RD_STATS_GROUPS)
        rd_stats_add(&st->by_command[group][command], 1);
}
