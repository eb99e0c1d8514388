/* Metrics: the counters, histograms and gauges that the metrics endpoint
 * (rd_metrics_server.c) serves in the Prometheus text format.
 *
 * They live in one shared anonymous mapping made by the master before it
 * forks anything, so that they count from the daemon's start across every
 * worker, and survive worker restarts and reloads. The data path only ever
 * adds to atomics (relaxed) in its own slot; a scrape sums the slots and
 * takes no lock anyone waits on.
 *
 * Three kinds of memory in the mapping:
 *  - counter slots, one per worker slot number (modulo RD_METRICS_SLOTS):
 *    only ever increase; a respawned worker, or the next generation's
 *    worker of the same number, goes on adding to the same slot;
 *  - process slots, one per process entry of the master: gauges (open
 *    connections, pool, queue) that the master zeroes when the process
 *    is gone, so that a crashed worker leaves no stale value;
 *  - the master's record (reloads, restarts, generation, workers), written
 *    by the master only. The master never reads anything back from the
 *    mapping to decide anything: workers can write all of it.
 *
 * The state of a process (where the mapping is, which slots are its own)
 * is private to this file, like syslog(3)'s: the hooks in the data path are
 * then one call each, with no pointer to pass around. Without a mapping
 * (unit tests, raida-cli) every hook does nothing. */
#ifndef RD_METRICS_H
#define RD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_frame.h"

#define RD_METRICS_SLOTS 8          /* counter slots */
#define RD_METRICS_PROCS 512        /* process slots: the master's process table */
#define RD_METRICS_COMMANDS 32      /* commands counted one by one; the rest as "other" */
#define RD_METRICS_GROUPS 32        /* command groups with a histogram of their own */
#define RD_METRICS_BUCKETS 16       /* histogram bounds, +Inf not included */

enum rd_metrics_transport { RD_METRICS_TCP, RD_METRICS_UDP, RD_METRICS_TRANSPORTS };

enum rd_metrics_refused {
    RD_REFUSED_WORKER_CONNECTIONS,  /* accepting paused: worker_connections reached */
    RD_REFUSED_PER_ADDRESS,         /* over max_connections_per_ip: closed */
    RD_REFUSED_DESCRIPTORS,         /* accept() ran out of descriptors or memory */
    RD_REFUSED_POOL_FULL,           /* the thread pool refused the request */
    RD_REFUSED_REASONS
};

enum rd_metrics_timeout { RD_TIMEOUT_READ, RD_TIMEOUT_WRITE, RD_TIMEOUT_KINDS };

enum rd_metrics_udp_outcome {
    RD_UDP_ANSWERED,                /* the request was handled and answered */
    RD_UDP_DROPPED_SHORT,           /* too short to answer: nothing sent */
    RD_UDP_DROPPED_RATE,            /* over its address's rate: not run (160 or nothing) */
    RD_UDP_DROPPED_SIZE,            /* over udp_payload_threshold: not run (16) */
    RD_UDP_DROPPED_BUSY,            /* for the pool, every request slot taken: nothing sent */
    RD_UDP_OUTCOMES
};

enum rd_metrics_restart { RD_RESTART_CRASH, RD_RESTART_SIGNAL, RD_RESTART_HEARTBEAT,
                          RD_RESTART_CAUSES };

typedef struct rd_metrics_hist {
    _Atomic uint64_t bucket[RD_METRICS_BUCKETS + 1];   /* not cumulative; last: +Inf */
    _Atomic uint64_t sum_ns;
} rd_metrics_hist_t;

typedef struct rd_metrics_slot {
    /* [transport][command index, RD_METRICS_COMMANDS: none or other][status] */
    _Atomic uint64_t requests[RD_METRICS_TRANSPORTS][RD_METRICS_COMMANDS + 1][256];
    /* [transport][group, RD_METRICS_GROUPS: none] */
    rd_metrics_hist_t duration[RD_METRICS_TRANSPORTS][RD_METRICS_GROUPS + 1];
    rd_metrics_hist_t pool_wait;
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused[RD_REFUSED_REASONS];
    _Atomic uint64_t timeouts[RD_TIMEOUT_KINDS];
    _Atomic uint64_t udp[RD_UDP_OUTCOMES];
    _Atomic uint64_t rate_limited[RD_METRICS_TRANSPORTS];
    rd_metrics_hist_t store_sync;   /* each fdatasync of the coin store's journal */
    rd_metrics_hist_t commit_wait;  /* each answer's wait for the sync that covers it */
} __attribute__((aligned(64))) rd_metrics_slot_t;

typedef struct rd_metrics_proc {
    _Atomic uint64_t requests;      /* answered by this process (status view) */
    _Atomic uint64_t connections;   /* open TCP connections */
    _Atomic uint64_t pool_threads;
    _Atomic uint64_t pool_busy;
    _Atomic uint64_t pool_queue;
    _Atomic uint64_t mod_queue;
    _Atomic uint64_t store_pages;   /* coin page files this process has mapped */
} __attribute__((aligned(64))) rd_metrics_proc_t;

typedef struct rd_metrics_master {
    _Atomic uint64_t reloads[2];    /* [0] ok, [1] failed */
    _Atomic uint64_t restarts[RD_RESTART_CAUSES];
    _Atomic uint64_t generation;
    _Atomic uint64_t workers;       /* serving workers */
    uint64_t start_time;            /* unix time of the master's start */
} __attribute__((aligned(64))) rd_metrics_master_t;

typedef struct rd_metrics {
    rd_metrics_master_t master;
    rd_metrics_proc_t procs[RD_METRICS_PROCS];
    rd_metrics_slot_t slots[RD_METRICS_SLOTS];
} rd_metrics_t;

/* The histogram bounds, in nanoseconds, ascending. */
extern const uint64_t rd_metrics_bounds_ns[RD_METRICS_BUCKETS];

/* ---- set-up ---- */

/* The master, before it forks: makes the mapping (zeroed). */
int rd_metrics_init(void);
/* The master, at exit. */
void rd_metrics_fini(void);
/* The mapping, for the scrape and the status view; NULL when none. */
const rd_metrics_t *rd_metrics_get(void);

/* In a forked child: counts into counter slot WORKER_SLOT (modulo the slot
 * count) and keeps its gauges in process slot PROC. */
void rd_metrics_attach(unsigned worker_slot, size_t proc);

/* ---- the data path (a worker) ---- */

/* One answered request: RESP holds the whole answer (its byte 2 is the
 * status in both header families); START_NS is when the whole request was
 * read (rd_clock_ns()), 0 for now. Returns the duration in ns. */
uint64_t rd_metrics_request(int transport, const rd_request_t *req, const rd_response_t *resp,
                            uint64_t start_ns);
void rd_metrics_accepted(void);
void rd_metrics_refused(int reason);
void rd_metrics_timeout(int kind);
void rd_metrics_udp(int outcome);
void rd_metrics_rate_limited(int transport);
void rd_metrics_pool_wait(uint64_t waited_ns);
/* The coin store: one fdatasync of its journal that took NS; one answer
 * that waited WAITED_NS for the sync covering its change. */
void rd_metrics_store_sync(uint64_t ns);
void rd_metrics_commit_wait(uint64_t waited_ns);

/* Gauges of this process. */
void rd_metrics_connections(size_t open);
void rd_metrics_pool(size_t threads, size_t queued, size_t running);
void rd_metrics_mod_queue(size_t length);
void rd_metrics_store_pages(size_t mapped);

/* ---- the master ---- */

void rd_metrics_reload(bool ok);
void rd_metrics_generation(unsigned generation);
void rd_metrics_workers(unsigned serving);
/* A serving worker died and will be replaced; STATUS as waitpid() gave it. */
void rd_metrics_worker_restart(int status);
/* Process slot PROC is free again: its gauges go to zero. */
void rd_metrics_proc_gone(size_t proc);
/* Requests answered by the process in slot PROC (a number to print only). */
uint64_t rd_metrics_proc_requests(size_t proc);

/* ---- the scrape ---- */

/* The whole exposition (text format 0.0.4) in a malloc'ed string; its
 * length in *LEN. NULL when memory is short. */
char *rd_metrics_render(const rd_metrics_t *m, size_t *len);

#endif
