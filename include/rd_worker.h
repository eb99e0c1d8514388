/* A worker: one epoll loop (the I/O thread) serving the listening sockets it
 * is given, with a thread pool for requests and the modification queue that
 * brings finished ones back. */
#ifndef RD_WORKER_H
#define RD_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "rd_commit.h"
#include "rd_connection.h"
#include "rd_cycle.h"
#include "rd_event.h"
#include "rd_protocol.h"
#include "rd_queue.h"
#include "rd_threadpool.h"
#include "rd_udp.h"

typedef struct rd_worker {
    const rd_cycle_t *cycle;
    const rd_config_t *cf;
    rd_protocol_t proto;
    rd_event_loop_t loop;
    rd_event_t *listener_events;   /* one per listener */
    bool *listening;               /* one per listener: in the loop now */
    unsigned slot;                 /* this worker's place in its generation */
    unsigned workers;              /* the generation's size */
    uint64_t adopted;              /* slots whose sockets it serves too (bit N: slot N) */
    rd_event_t done_ev;            /* the modification queue's eventfd */
    rd_event_t signal_ev;          /* signalfd: stop requests */
    rd_event_t channel_ev;         /* to the master: ready, heartbeat */
    rd_threadpool_t *pool;
    rd_queue_t *done;
    rd_commit_t *commit;           /* answers waiting for the coin store's journal */
    rd_conn_t **conns;             /* indexed by descriptor */
    size_t conns_size;
    rd_conn_t *free_conns;         /* records kept for reuse */
    size_t active;                 /* open client connections */
    size_t in_flight;              /* requests in the pool or the queue */
    size_t max_in_flight;          /* the queue's capacity */
    size_t max_conns;              /* worker_connections */
    rd_limit_t *limit;             /* per-address limits; NULL when none is set */
    rd_limit_conf_t limit_conf;
    unsigned accept_blocked;       /* RD_ACCEPT_* reasons the listeners are paused */
    uint64_t accept_retry_ms;      /* when to try again after running out of descriptors */
    uint64_t accept_warned_ms;     /* last log line about it: at most one a second */
    rd_conn_list_t timeouts;       /* reading a request: socket_timeout_ms */
    rd_conn_list_t write_timeouts; /* writing or lingering: write_timeout_ms */
    rd_conn_list_t waiting;
    rd_udp_t *udp;                 /* datagram batch buffers */
    bool done_pending;             /* the queue's eventfd fired this batch */
    bool draining;                 /* SIGQUIT: no new requests, finish the rest */
    uint64_t drain_deadline;
    bool stopping;
} rd_worker_t;

/* Why the TCP listeners are paused; they resume when no reason is left. */
enum {
    RD_ACCEPT_FULL = 1,            /* worker_connections reached */
    RD_ACCEPT_NOFD = 2,            /* the process ran out of descriptors */
    RD_ACCEPT_BUSY = 4,            /* the pool is saturated: requests wait */
};

/* Pauses or resumes accepting for REASON; the connection code calls these. */
void rd_worker_accept_block(rd_worker_t *w, unsigned reason);
void rd_worker_accept_unblock(rd_worker_t *w, unsigned reason);

/* Serves CYCLE's listeners until SIGTERM or SIGINT (at once) or SIGQUIT
 * (once the requests under way are answered, within shutdown_timeout_ms):
 * the sockets of each group that SLOT of a generation of WORKERS serves
 * (rd_reuseport_serves), and those of the slots the master asks it to
 * adopt. CHANNEL (or -1) leads to the master: READY once serving,
 * heartbeats, adoptions. Returns 0 on a clean stop, -1 when it could not
 * start. */
int rd_worker_run(const rd_cycle_t *cycle, int channel, unsigned slot, unsigned workers);

#endif
