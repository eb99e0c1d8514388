/* What the network layer reports about each connection, request and
 * datagram: one call at each point of interest in rd_tcp.c and rd_udp.c,
 * turned here into metrics (rd_metrics.h) and access log lines
 * (rd_accesslog.h). It is told plain values, never handed a connection:
 * the network layer calls down into it, and it knows nothing of them. */
#ifndef RD_METRICS_NET_H
#define RD_METRICS_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rd_metrics.h"
#include "rd_protocol.h"

/* What the observations of one TCP connection keep between their calls
 * (a part of the connection's record). */
typedef struct rd_observe_tcp {
    uint16_t port;              /* the client's port */
    uint64_t start_ns;          /* when the whole request was read */
} rd_metrics_net_tcp_t;

/* A TCP connection from SS was accepted and admitted. */
void rd_metrics_net_tcp_open(rd_metrics_net_tcp_t *o, const struct sockaddr_storage *ss);
/* Its whole request is read: the request's duration starts. */
void rd_metrics_net_tcp_read(rd_metrics_net_tcp_t *o);
/* Its answer RESP to REQ is queued for writing; IN bytes of the request
 * were read from CLIENT (an rd_limit_key). */
void rd_metrics_net_tcp_answer(const rd_metrics_net_tcp_t *o, const uint8_t *client,
                           const rd_request_t *req, const rd_response_t *resp, size_t in);

/* A datagram of LEN bytes from PEER, received at START_NS: answered with
 * RESP (NULL: not answered), OUTCOME one of rd_metrics_udp_outcome. REQ
 * is read only when RESP is given. */
void rd_metrics_net_udp(const rd_request_t *req, const struct sockaddr_storage *peer, size_t len,
                    const rd_response_t *resp, int outcome, uint64_t start_ns);

#endif
