/* What the network layer reports about each connection, request and
 * datagram: one call at each point of interest in rd_connection.c and
 * rd_udp.c, turned here into metrics (rd_metrics.h) and access log lines
 * (rd_accesslog.h). */
#ifndef RD_METRICS_NET_H
#define RD_METRICS_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rd_connection.h"
#include "rd_metrics.h"

/* A TCP connection was accepted and admitted. */
void rd_observe_tcp_open(rd_conn_t *c, const struct sockaddr_storage *ss);
/* Its whole request is read: the request's duration starts. */
void rd_observe_tcp_read(rd_conn_t *c);
/* Its answer (c->resp) is queued for writing. */
void rd_observe_tcp_answer(const rd_conn_t *c);

/* A datagram of LEN bytes from PEER, received at START_NS: answered with
 * RESP (NULL: not answered), OUTCOME one of rd_metrics_udp_outcome. REQ
 * is read only when RESP is given. */
void rd_observe_udp(const rd_request_t *req, const struct sockaddr_storage *peer, size_t len,
                    const rd_response_t *resp, int outcome, uint64_t start_ns);

#endif
