#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "rd_log.h"
#include "rd_udp.h"
#include "rd_worker.h"

static void udp_answer(rd_worker_t *w, int fd, size_t len,
                       const struct sockaddr_storage *peer, socklen_t peer_len)
{
    rd_response_t resp;

    rd_response_init(&resp);
    if (!rd_protocol_handle_frame(&w->proto, w->udp_buf, len, &resp)) {
        rd_stats_add(&w->proto.stats->udp_dropped, 1);
        rd_log_debug("udp: dropped a %zu-byte datagram", len);
        return;
    }
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
         * arrives cut, and the protocol then answers status 16. */
        ssize_t n = recvfrom(fd, w->udp_buf, cap, MSG_TRUNC,
                             (struct sockaddr *)&peer, &peer_len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rd_log(RD_LOG_WARN, "udp: recvfrom: %s", strerror(errno));
            return;
        }
        udp_answer(w, fd, (size_t)n < cap ? (size_t)n : cap, &peer, peer_len);
    }
}
