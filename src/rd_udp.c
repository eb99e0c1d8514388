#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "rd_listener.h"
#include "rd_log.h"
#include "rd_udp.h"
#include "rd_worker.h"

static void udp_log(const struct sockaddr_storage *peer, const rd_request_t *req, bool answered)
{
    char ip[INET6_ADDRSTRLEN];

    rd_socket_ip_text(peer, ip, sizeof(ip));
    if (answered)
        rd_log(RD_LOG_DEBUG, "%s: udp %s", ip, rd_protocol_command_name(req->group, req->command));
    else
        rd_log(RD_LOG_DEBUG, "%s: udp: dropped a datagram too short to answer", ip);
}

/* Refused before the protocol runs (over its rate, or too long): the
 * answer carries the request's own header fields, and no command runs. */
static bool udp_refuse(rd_worker_t *w, rd_request_t *req, size_t len, int status,
                       rd_response_t *resp)
{
    if (len < RD_LEGACY_HEADER_SIZE)
        return false;
    memset(req, 0, sizeof(*req));
    memcpy(req->header, w->udp_buf, RD_LEGACY_HEADER_SIZE);
    req->header_have = RD_LEGACY_HEADER_SIZE;
    req->header_size = RD_LEGACY_HEADER_SIZE;
    rd_protocol_error_response(&w->proto, req, status, resp);
    return true;
}

static bool udp_over_rate(rd_worker_t *w, const struct sockaddr_storage *peer)
{
    uint8_t key[RD_LIMIT_KEY_SIZE];

    if (w->limit == NULL)
        return false;
    rd_limit_key(peer, key);
    return !rd_limit_request(w->limit, &w->limit_conf, key, rd_now_ms());
}

/* LEN is the datagram's real length, which can exceed the buffer. */
static void udp_answer(rd_worker_t *w, int fd, size_t len,
                       const struct sockaddr_storage *peer, socklen_t peer_len)
{
    size_t cap = w->cf->udp_payload_threshold;
    rd_response_t resp;
    rd_request_t req;
    bool answered;

    rd_response_init(&resp);
    if (udp_over_rate(w, peer))
        answered = udp_refuse(w, &req, len, RD_STATUS_RATE_EXCEEDED, &resp);
    else if (len > cap)
        answered = udp_refuse(w, &req, len, RD_STATUS_INVALID_PACKET_LENGTH, &resp);
    else
        answered = rd_protocol_handle_frame(&w->proto, &req, w->udp_buf, len, &resp);
    if (rd_log_enabled(RD_LOG_DEBUG))
        udp_log(peer, &req, answered);
    if (!answered) {
        rd_stats_add(&w->proto.stats->udp_dropped, 1);
        return;
    }
    /* A spoofed source must not be able to aim more bytes at a victim than
     * it sent: only a sender that proved a key gets a larger answer. */
    if (resp.len > len && !req.authenticated)
        udp_refuse(w, &req, len, RD_STATUS_INVALID_PACKET_LENGTH, &resp);
    /* A full send buffer drops the answer, as the network may: the client
     * retries. */
    if (sendto(fd, resp.data, resp.len, 0, (const struct sockaddr *)peer, peer_len) < 0)
        rd_log_debug("udp: sendto: %s", strerror(errno));
    rd_response_release(&resp);
}

void rd_udp_handle_readable(rd_worker_t *w, int fd)
{
    size_t cap = w->cf->udp_payload_threshold;

    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        /* MSG_TRUNC reports the real size: a datagram over the threshold
         * arrives cut, and is answered with status 16. */
        ssize_t n = recvfrom(fd, w->udp_buf, cap, MSG_TRUNC,
                             (struct sockaddr *)&peer, &peer_len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rd_log(RD_LOG_WARN, "udp: recvfrom: %s", strerror(errno));
            return;
        }
        udp_answer(w, fd, (size_t)n, &peer, peer_len);
    }
}
