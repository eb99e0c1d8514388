/* Per-worker listening sockets: every listen address gets, for TCP and for
 * UDP, a group of SO_REUSEPORT sockets, one per CPU, and the kernel hands
 * each connection and datagram to the socket of the CPU that received it.
 * A worker serves a fixed share of each group; the master holds every
 * socket for its whole life, so no queue is ever closed under a client. */
#ifndef RD_REUSEPORT_H
#define RD_REUSEPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "rd_config.h"

/* The most sockets a group has (and the most workers the master starts). */
#define RD_REUSEPORT_MAX 64

/* Sockets per group: the CPUs the kernel may run on (at most
 * RD_REUSEPORT_MAX). Fixed for the life of the process. */
unsigned rd_reuseport_group_size(void);

/* Checks that nothing else holds A for TYPE (SOCK_STREAM or SOCK_DGRAM):
 * SO_REUSEPORT would otherwise let a second raidad, or any program of the
 * same user, share the port silently. Logs "bind(...): why" and returns -1
 * when taken. */
int rd_reuseport_probe(const rd_listen_addr_t *a, int type);

/* Sets SO_REUSEPORT on FD, before its bind. */
int rd_reuseport_enable(int fd);

/* Steers the group FD belongs to (complete: every socket bound, and
 * listening for TCP) by CPU: the socket at index N of the group, in bind
 * (UDP) or listen (TCP) order, gets what CPU N received. Without the
 * kernel's support the group falls back to a hash of the addresses. */
void rd_reuseport_steer(int fd);

/* Whether the worker in SLOT of a generation of WORKERS serves socket
 * SOCKET of a group of SOCKETS: sockets are dealt round-robin to the
 * workers (socket % workers == slot); with more workers than sockets,
 * worker SLOT shares socket slot % sockets. Every socket has a worker. */
bool rd_reuseport_serves(unsigned slot, unsigned workers, unsigned socket, unsigned sockets);

/* Pins the calling process to CPU (slot % the CPUs it may run on), as
 * worker_cpu_affinity = "auto" asks. Returns -1 (errno set) on failure. */
int rd_reuseport_pin(unsigned slot);

/* Makes the calling thread, and the threads it starts afterwards,
 * SCHED_BATCH (worker_sched_batch): woken, it no longer preempts the task
 * running on its CPU, so one wake-up serves a batch of connections
 * (docs/performance.md). Returns -1 (errno set) on failure. */
int rd_reuseport_batch(void);

#endif
