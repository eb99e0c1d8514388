/* UDP requests: each datagram is one whole request, answered with one
 * datagram. Quick ones (status commands in the clear) and errors are
 * answered at once on the I/O thread, in batches (recvmmsg, sendmmsg: two
 * system calls for up to RD_UDP_BATCH); the others (encrypted, coin work)
 * go through the thread pool, like TCP's, and their answer is sent when
 * the pool hands it back. */
#ifndef RD_UDP_H
#define RD_UDP_H

#include <stdbool.h>
#include <stddef.h>

#define RD_UDP_BATCH 32

struct rd_worker;
typedef struct rd_udp rd_udp_t;

/* Buffers for a batch of datagrams of up to CAP bytes each. */
rd_udp_t *rd_udp_create(size_t cap);
void rd_udp_destroy(rd_udp_t *u);

/* Reads and answers datagrams on FD until the socket is empty (false) or
 * wakeup_budget of them were taken (true: the caller comes back for the
 * rest on the loop's next turn). */
bool rd_udp_handle_readable(struct rd_worker *w, int fd);

/* On a pool or the commit thread: RECORD's answer is ready (DURABLE
 * false: the change it made could not be synced, so it says 252); puts
 * it on the worker's modification queue. */
void rd_udp_committed(void *record, bool durable);

/* On the I/O thread: the pool finished RECORD, a datagram's request taken
 * off the modification queue (rd_job_kind RD_JOB_DATAGRAM); sends its
 * answer and frees it. */
void rd_udp_processed(struct rd_worker *w, void *record);

#endif
