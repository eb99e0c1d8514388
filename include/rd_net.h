/* What a worker lends its network layers (rd_tcp.h, rd_udp.h): the event
 * loop, the protocol, the settings, the per-address limits, and the road
 * of a request that leaves the I/O thread: the thread pool runs it, the
 * commit threads hold its answer until the coin store's journal is
 * durable, and the finished queue brings it back to the loop. The worker
 * fills it in and owns it; TCP and UDP share it, for both count against
 * the same request slots. So the network layers never see the worker:
 * the data path reads worker -> {tcp, udp} -> protocol. */
#ifndef RD_NET_H
#define RD_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "rd_commit.h"
#include "rd_config.h"
#include "rd_event.h"
#include "rd_limit.h"
#include "rd_protocol.h"
#include "rd_queue.h"
#include "rd_threadpool.h"

typedef struct rd_net {
    const rd_config_t *cf;
    rd_event_loop_t *loop;
    const rd_protocol_t *proto;
    rd_limit_t *limit;             /* per-address limits; NULL when none is set */
    rd_limit_conf_t limit_conf;
    rd_threadpool_t *pool;
    rd_commit_t *commit;           /* answers waiting for the coin store's journal */
    rd_queue_t *finished;          /* requests the pool (or a commit thread) hands back:
                                    * the modification queue, mod_queue_size */
    size_t in_flight;              /* requests in the pool, the commit threads or the queue */
    size_t max_in_flight;          /* the finished queue's capacity */
    size_t waiting;                /* TCP requests waiting for a slot (UDP drops meanwhile) */
} rd_net_t;

/* True when every request slot is taken. */
static inline bool rd_net_full(const rd_net_t *net)
{
    return net->in_flight >= net->max_in_flight;
}

#endif
