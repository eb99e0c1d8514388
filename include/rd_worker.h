/* A worker: one epoll loop (the I/O thread) serving the listening sockets it
 * is given, with a thread pool for requests and the finished queue that
 * brings them back. It makes its TCP (rd_tcp.h) and UDP (rd_udp.h) layers,
 * lends them what they need (rd_net.h) and runs the loop; its state is its
 * own (src/rd_worker.c). */
#ifndef RD_WORKER_H
#define RD_WORKER_H

#include "rd_cycle.h"

/* Serves CYCLE's listeners until SIGTERM or SIGINT (at once) or SIGQUIT
 * (once the requests under way are answered, within shutdown_timeout_ms):
 * the sockets of each group that SLOT of a generation of WORKERS serves
 * (rd_reuseport_serves), and those of the slots the master asks it to
 * adopt. CHANNEL (or -1) leads to the master: READY once serving,
 * heartbeats, adoptions. Returns 0 on a clean stop, -1 when it could not
 * start. */
int rd_worker_run(const rd_cycle_t *cycle, int channel, unsigned slot, unsigned workers);

#endif
