/* The master-worker channel: a SOCK_SEQPACKET socketpair, one small
 * message per packet. Workers say when they serve and answer heartbeats
 * with their connection count; the master never blocks on a worker. */
#ifndef RD_CHANNEL_H
#define RD_CHANNEL_H

#include <stdint.h>

enum rd_channel_type {
    RD_CHANNEL_READY = 'R',     /* worker -> master: serving */
    RD_CHANNEL_PING = 'P',      /* master -> worker: are you alive? */
    RD_CHANNEL_PONG = 'p',      /* worker -> master: yes; value = connections */
    RD_CHANNEL_LOG = 'L',       /* master -> worker: the reopened log file (a descriptor) */
    RD_CHANNEL_QUIET = 'Q',     /* worker -> master: draining, accepts no more */
    RD_CHANNEL_ACCESS_LOG = 'A', /* master -> worker: the reopened access log (a descriptor) */
    RD_CHANNEL_ADOPT = 'D',     /* master -> worker: serve slot VALUE's sockets too */
    RD_CHANNEL_RELEASE = 'd',   /* master -> worker: slot VALUE has its worker again */
};

typedef struct rd_channel_msg {
    uint8_t type;
    uint32_t value;
} rd_channel_msg_t;

/* Creates the pair: fds[0] for the master, fds[1] for the worker. */
int rd_channel_open(int fds[2]);

/* Non-blocking; returns -1 when the message could not be sent. */
int rd_channel_send(int fd, uint8_t type, uint32_t value);

/* The same, with descriptor PASS attached (SCM_RIGHTS). */
int rd_channel_send_fd(int fd, uint8_t type, int pass);

/* Returns 1 with a message, 0 when none is waiting, -1 when the peer is
 * gone or the channel failed. A descriptor that came with the message goes
 * to *PASSED (-1 if none); with PASSED NULL it is closed. */
int rd_channel_recv(int fd, rd_channel_msg_t *msg, int *passed);

#endif
