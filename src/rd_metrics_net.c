/* The network layer's observations (see include/rd_metrics_net.h). The
 * metrics cost a few relaxed atomic adds per request; the access log, when
 * on, a formatted line into a buffer. */
#include "config.h"

#include <netinet/in.h>

#include "rd_accesslog.h"
#include "rd_clock.h"
#include "rd_limit.h"
#include "rd_metrics_net.h"

static uint16_t peer_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
}

void rd_metrics_net_tcp_open(rd_metrics_net_tcp_t *o, const struct sockaddr_storage *ss)
{
    o->port = peer_port(ss);
    o->start_ns = 0;
    rd_metrics_accepted();
}

void rd_metrics_net_tcp_read(rd_metrics_net_tcp_t *o)
{
    o->start_ns = rd_clock_ns();
}

void rd_metrics_net_tcp_answer(const rd_metrics_net_tcp_t *o, const uint8_t *client,
                           const rd_request_t *req, const rd_response_t *resp, size_t in)
{
    unsigned status = resp->len > 2 ? resp->data[2] : 0;
    uint64_t ns = rd_metrics_request(RD_METRICS_TCP, req, resp, o->start_ns);

    if (status == RD_STATUS_RATE_EXCEEDED)
        rd_metrics_rate_limited(RD_METRICS_TCP);
    if (rd_accesslog_enabled())
        rd_accesslog_add(client, o->port, RD_METRICS_TCP, req, status, in, resp->len, ns);
}

void rd_metrics_net_udp(const rd_request_t *req, const struct sockaddr_storage *peer, size_t len,
                    const rd_response_t *resp, int outcome, uint64_t start_ns)
{
    uint8_t key[RD_LIMIT_KEY_SIZE];
    uint64_t ns;

    rd_metrics_udp(outcome);
    if (outcome == RD_UDP_DROPPED_RATE)
        rd_metrics_rate_limited(RD_METRICS_UDP);
    if (resp == NULL)
        return;
    ns = rd_metrics_request(RD_METRICS_UDP, req, resp, start_ns);
    if (!rd_accesslog_enabled())
        return;
    rd_limit_key(peer, key);
    rd_accesslog_add(key, peer_port(peer), RD_METRICS_UDP, req, resp->data[2], len, resp->len, ns);
}
