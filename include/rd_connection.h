/* A TCP client connection and its state machine: read header, read body,
 * processing (in the pool), write; then close (or linger when input was
 * left unread, so that the answer is not destroyed by a reset). */
#ifndef RD_CONNECTION_H
#define RD_CONNECTION_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include "rd_event.h"
#include "rd_job.h"
#include "rd_limit.h"
#include "rd_protocol.h"

struct rd_worker;

typedef enum rd_conn_state {
    RD_CONN_READ_HEADER,
    RD_CONN_READ_BODY,
    RD_CONN_WAITING,            /* request complete, waiting for a pool slot */
    RD_CONN_PROCESSING,         /* owned by a pool thread */
    RD_CONN_WRITE,
    RD_CONN_LINGER,             /* answer sent, draining input before close */
} rd_conn_state_t;

typedef struct rd_conn rd_conn_t;

/* Every status command, plain or encrypted, fits: one read, no allocation. */
#define RD_CONN_INBUF 128

/* A list threaded through the connections: the timeout list (oldest
 * deadline first, as every entry has the same timeout) or the wait list. */
typedef struct rd_conn_list {
    rd_conn_t *head;
    rd_conn_t *tail;
} rd_conn_list_t;

struct rd_conn {
    rd_job_kind_t kind;         /* RD_JOB_CONN, first: see rd_job.h */
    rd_event_t ev;              /* ev.fd is the socket */
    struct rd_worker *worker;
    rd_conn_state_t state;
    bool input_left;            /* we answer before reading the whole request */
    bool out_armed;             /* EPOLLOUT requested: the socket buffer filled */
    bool watched;               /* registered with epoll */
    bool limit_counted;         /* counted in the per-address connection limit */
    bool drained;               /* the last read found the socket empty */
    rd_conn_list_t *list;       /* the list it is on, if any */
    rd_conn_t *prev, *next;
    uint64_t deadline_ms;
    uint32_t have;              /* bytes read into inbuf, or into body_heap */
    uint32_t want;              /* where the request ends, in the same buffer */
    uint32_t written;
    rd_request_t req;
    rd_response_t resp;
    uint8_t *body_heap;         /* a body too large for inbuf */
    uint8_t inbuf[RD_CONN_INBUF];
    uint8_t client_key[RD_LIMIT_KEY_SIZE];   /* the client's address */
    uint16_t obs_port;          /* the client's port (rd_metrics_net.c) */
    uint64_t obs_start_ns;      /* when the whole request was read (rd_metrics_net.c) */
};

void rd_conn_list_append(rd_conn_list_t *list, rd_conn_t *c);
void rd_conn_list_remove(rd_conn_t *c);

/* Accepts the pending connections on LISTEN_FD, until EAGAIN, a pause of
 * the listeners, or wakeup_budget of them: then returns true, and the
 * caller posts the listener's event to come back for the rest. */
bool rd_conn_accept_all(struct rd_worker *w, int listen_fd);

/* Called on the I/O thread when the pool has finished C's request. */
void rd_conn_processed(rd_conn_t *c);

/* The answer of ITEM (a connection) may be sent: hands it back to its
 * worker's loop; DURABLE false turns it into status 252 (rd_commit.h). */
void rd_conn_committed(void *item, bool durable);

/* Submits complete requests that waited for a pool slot. */
void rd_conn_submit_waiting(struct rd_worker *w);

/* Closes connections whose deadline passed; returns ms until the next one
 * is due, or -1 when none is pending. */
int rd_conn_expire(struct rd_worker *w, uint64_t now_ms);

/* Frees every connection (fast shutdown). */
void rd_conn_close_all(struct rd_worker *w);

uint64_t rd_now_ms(void);

#endif
