/* UDP requests: each datagram is one whole request, answered at once on
 * the I/O thread with one datagram. */
#ifndef RD_UDP_H
#define RD_UDP_H

struct rd_worker;

/* Reads and answers datagrams on FD until EAGAIN. */
void rd_udp_handle_readable(struct rd_worker *w, int fd);

#endif
