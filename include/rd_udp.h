/* UDP requests: each datagram is one whole request, answered with one
 * datagram. Quick ones (status commands in the clear) and errors are
 * answered at once on the I/O thread, in batches (recvmmsg, sendmmsg: two
 * system calls for up to RD_UDP_BATCH); the others (encrypted, coin work)
 * go through the thread pool, like TCP's, and their answer is sent when
 * the pool hands it back. An rd_udp_t owns the batch buffers, the requests
 * out in the pool and the UDP listeners' events; what it needs of its
 * worker comes in an rd_net_t (rd_net.h). */
#ifndef RD_UDP_H
#define RD_UDP_H

#include <stdbool.h>
#include <stddef.h>

#include "rd_listener.h"
#include "rd_net.h"

#define RD_UDP_BATCH 32

typedef struct rd_udp rd_udp_t;

/* Serves the UDP listeners among LISTENERS (COUNT of them; the TCP ones
 * are left alone) with NET, which must outlive it; its buffers hold
 * datagrams of up to udp_payload_threshold bytes. None is in the loop
 * before rd_udp_serve. NULL when out of memory. */
rd_udp_t *rd_udp_create(rd_net_t *net, const rd_listener_t *listeners, size_t count);

/* Frees U and the requests it still has out (the pool and the commit
 * thread are stopped by then). */
void rd_udp_destroy(rd_udp_t *u);

/* Whether the worker serves listener I (an index into the listeners given
 * to rd_udp_create; a TCP one is ignored): a served listener is in the
 * loop. -1 (logged) when it could not be put there. */
int rd_udp_serve(rd_udp_t *u, size_t i, bool on);

/* Graceful stop: answers what the listeners in the loop already hold, then
 * closes every UDP listener's descriptor; answers of requests still in the
 * pool are not sent after. */
void rd_udp_close_listeners(rd_udp_t *u);

/* On a pool or a commit thread: RECORD's answer is ready (DURABLE
 * false: the change it made could not be synced, so it says 252); puts
 * it on the finished queue. */
void rd_udp_committed(void *record, bool durable);

/* On the I/O thread: the pool finished RECORD, a datagram's request taken
 * off the finished queue (rd_job_kind RD_JOB_DATAGRAM); sends its answer
 * and frees it. */
void rd_udp_processed(rd_udp_t *u, void *record);

#endif
