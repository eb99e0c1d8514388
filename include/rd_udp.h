/* UDP requests: each datagram is one whole request, answered at once on
 * the I/O thread with one datagram. Datagrams are taken and answered in
 * batches (recvmmsg, sendmmsg): two system calls for up to RD_UDP_BATCH. */
#ifndef RD_UDP_H
#define RD_UDP_H

#include <stddef.h>

#define RD_UDP_BATCH 32

struct rd_worker;
typedef struct rd_udp rd_udp_t;

/* Buffers for a batch of datagrams of up to CAP bytes each. */
rd_udp_t *rd_udp_create(size_t cap);
void rd_udp_destroy(rd_udp_t *u);

/* Reads and answers datagrams on FD until the socket is empty. */
void rd_udp_handle_readable(struct rd_worker *w, int fd);

#endif
