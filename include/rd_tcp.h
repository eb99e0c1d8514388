/* TCP: a worker's client connections and the listeners they come from.
 * Each connection is a state machine: read header, read body, processing
 * (in the pool), write; then close (or linger when input was left unread,
 * so that the answer is not destroyed by a reset). An rd_tcp_t owns the
 * connection table and its free records, the timeout and wait lists, and
 * the TCP listeners' events with their pausing: a listener leaves the loop
 * while accepting is paused (worker_connections reached, out of
 * descriptors, every request slot busy) and comes back when no reason is
 * left. What it needs of its worker comes in an rd_net_t (rd_net.h). */
#ifndef RD_TCP_H
#define RD_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_listener.h"
#include "rd_net.h"

typedef struct rd_tcp rd_tcp_t;

/* Serves the TCP listeners among LISTENERS (COUNT of them; the UDP ones
 * are left alone) with NET, which must outlive it. None is in the loop
 * before rd_tcp_serve. NULL when out of memory. */
rd_tcp_t *rd_tcp_create(rd_net_t *net, const rd_listener_t *listeners, size_t count);

/* Frees every connection (fast shutdown: the pool and the commit threads
 * are stopped, so every record is back) and T. */
void rd_tcp_destroy(rd_tcp_t *t);

/* Whether the worker serves listener I (an index into the listeners given
 * to rd_tcp_create; a UDP one is ignored): a served listener is in the
 * loop while accepting is not paused. -1 (logged) when it should be in the
 * loop and could not be put there. */
int rd_tcp_serve(rd_tcp_t *t, size_t i, bool on);

/* Graceful stop: accepts what the listeners in the loop already hold
 * (their wake-up may have come to this worker alone), then closes every
 * TCP listener's descriptor; no connection is accepted after. */
void rd_tcp_close_listeners(rd_tcp_t *t);

/* Open client connections. */
size_t rd_tcp_active(const rd_tcp_t *t);

/* On a pool or the commit thread: the answer of RECORD (a connection,
 * rd_job_kind RD_JOB_CONN) may be sent; puts it on the finished queue.
 * DURABLE false turns it into status 252 (rd_commit.h). */
void rd_tcp_committed(void *record, bool durable);

/* On the I/O thread: RECORD, a connection, came back from the pool off the
 * finished queue: sends its answer. */
void rd_tcp_processed(rd_tcp_t *t, void *record);

/* Submits complete requests that waited for a request slot. */
void rd_tcp_submit_waiting(rd_tcp_t *t);

/* Closes the connections whose deadline had passed by POLLED_MS, the
 * clock read before the loop's last poll began: a connection is timed out
 * only once a poll that started after its deadline found nothing to read
 * (so a process frozen for a while, by SIGSTOP or a paused machine, reads
 * what arrived meanwhile before it judges anyone late). Resumes accepting
 * after a pause for want of descriptors once due by NOW_MS. Returns ms
 * from NOW_MS until the next is due (0: poll once more, then it is), or
 * -1 when none is pending. */
int rd_tcp_timers(rd_tcp_t *t, uint64_t polled_ms, uint64_t now_ms);

#endif
