/* Request counters, by command and by status. They live in a shared
 * anonymous mapping so that, once the master forks workers, every worker
 * counts into the same totals and they survive reloads. */
#ifndef RD_STATS_H
#define RD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define RD_STATS_GROUPS 32   /* command groups counted one by one */

typedef struct rd_stats {
    uint64_t started;                            /* unix time */
    _Atomic uint64_t requests;
    _Atomic uint64_t by_status[256];
    _Atomic uint64_t by_command[RD_STATS_GROUPS][256];
    _Atomic uint64_t udp_dropped;                /* datagrams too short to answer */
    _Atomic uint64_t tcp_accepted;
    _Atomic uint64_t refused_per_ip;             /* over max_connections_per_ip */
} rd_stats_t;

rd_stats_t *rd_stats_create(void);
void rd_stats_destroy(rd_stats_t *st);

/* One answered request. GROUP is ignored (only the status counts) when the
 * header was too broken to name a command: pass known = 0 then. */
void rd_stats_count(rd_stats_t *st, int known, uint8_t group, uint8_t command, uint8_t status);

static inline void rd_stats_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

#endif
