#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rd_listener.h"
#include "rd_log.h"
#include "rd_udp.h"
#include "rd_worker.h"

struct rd_udp {
    size_t cap;                                  /* bytes per datagram buffer */
    uint8_t *bufs;                               /* RD_UDP_BATCH buffers of cap bytes */
    struct sockaddr_storage peers[RD_UDP_BATCH];
    struct iovec in_iov[RD_UDP_BATCH];
    struct mmsghdr in[RD_UDP_BATCH];
    struct iovec out_iov[RD_UDP_BATCH];
    struct mmsghdr out[RD_UDP_BATCH];
    rd_response_t resp[RD_UDP_BATCH];
};

rd_udp_t *rd_udp_create(size_t cap)
{
    rd_udp_t *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->cap = cap;
    /* Pages of the buffers cost memory only once a datagram lands in them. */
    if ((u->bufs = malloc(cap * RD_UDP_BATCH)) == NULL) {
        free(u);
        return NULL;
    }
    for (size_t i = 0; i < RD_UDP_BATCH; i++)
        rd_response_init(&u->resp[i]);
    return u;
}

void rd_udp_destroy(rd_udp_t *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < RD_UDP_BATCH; i++)
        rd_response_release(&u->resp[i]);
    free(u->bufs);
    free(u);
}

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
static bool udp_refuse(rd_worker_t *w, const uint8_t *frame, size_t len, int status,
                       rd_request_t *req, rd_response_t *resp)
{
    if (len < RD_LEGACY_HEADER_SIZE)
        return false;
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, RD_LEGACY_HEADER_SIZE);
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

/* Builds the answer to one datagram of LEN bytes (its real length, which
 * can exceed the buffer) into RESP; false when it gets none. *LSN gets the
 * journal position the answer must wait for (0: none). */
static bool udp_answer(rd_worker_t *w, uint8_t *frame, size_t len,
                       const struct sockaddr_storage *peer, rd_response_t *resp, uint64_t *lsn)
{
    rd_request_t req;
    bool answered;

    if (udp_over_rate(w, peer))
        answered = udp_refuse(w, frame, len, RD_STATUS_RATE_EXCEEDED, &req, resp);
    else if (len > w->udp->cap)
        answered = udp_refuse(w, frame, len, RD_STATUS_INVALID_PACKET_LENGTH, &req, resp);
    else
        answered = rd_protocol_handle_frame(&w->proto, &req, frame, len, resp);
    *lsn = answered && !rd_protocol_durable(&w->proto, &req) ? req.commit_lsn : 0;
    if (rd_log_enabled(RD_LOG_DEBUG))
        udp_log(peer, &req, answered);
    if (!answered) {
        rd_stats_add(&w->proto.stats->udp_dropped, 1);
        return false;
    }
    /* A spoofed source must not be able to aim more bytes at a victim than
     * it sent: only a sender that proved a key gets a larger answer. */
    if (resp->len > len && !req.authenticated)
        udp_refuse(w, frame, len, RD_STATUS_INVALID_PACKET_LENGTH, &req, resp);
    return true;
}

static void udp_prepare_receive(rd_udp_t *u)
{
    for (size_t i = 0; i < RD_UDP_BATCH; i++) {
        u->in_iov[i] = (struct iovec){ .iov_base = u->bufs + i * u->cap, .iov_len = u->cap };
        u->in[i].msg_hdr = (struct msghdr){
            .msg_name = &u->peers[i], .msg_namelen = sizeof(u->peers[i]),
            .msg_iov = &u->in_iov[i], .msg_iovlen = 1,
        };
    }
}

/* The journal could not be synced: the answers that depended on it say
 * so (252) instead. */
static void udp_undurable(rd_worker_t *w, const uint64_t *lsn, const unsigned *from, unsigned out)
{
    rd_udp_t *u = w->udp;
    rd_request_t req;

    for (unsigned k = 0; k < out; k++) {
        if (lsn[k] == 0)
            continue;
        udp_refuse(w, u->in[from[k]].msg_hdr.msg_iov->iov_base, u->in[from[k]].msg_len,
                   RD_STATUS_INTERNAL_ERROR, &req, &u->resp[k]);
        u->out_iov[k] = (struct iovec){ .iov_base = u->resp[k].data, .iov_len = u->resp[k].len };
    }
}

/* Answers the N datagrams received, in one sendmmsg. A full send buffer
 * drops answers, as the network may: the clients retry. */
static void udp_answer_batch(rd_worker_t *w, int fd, unsigned n)
{
    rd_udp_t *u = w->udp;
    unsigned out = 0;
    uint64_t lsn[RD_UDP_BATCH], need = 0;
    unsigned from[RD_UDP_BATCH];

    for (unsigned i = 0; i < n; i++) {
        struct msghdr *in = &u->in[i].msg_hdr;
        rd_response_t *resp = &u->resp[out];

        if (!udp_answer(w, in->msg_iov->iov_base, u->in[i].msg_len, &u->peers[i], resp,
                        &lsn[out]))
            continue;
        from[out] = i;
        need = lsn[out] > need ? lsn[out] : need;
        u->out_iov[out] = (struct iovec){ .iov_base = resp->data, .iov_len = resp->len };
        u->out[out].msg_hdr = (struct msghdr){
            .msg_name = in->msg_name, .msg_namelen = in->msg_namelen,
            .msg_iov = &u->out_iov[out], .msg_iovlen = 1,
        };
        out++;
    }
    /* Answers that read or changed coins leave once that is durable: one
     * group commit for the whole batch (this thread waits for it). */
    if (need > 0 && rd_protocol_commit(&w->proto, need) < 0)
        udp_undurable(w, lsn, from, out);
    if (out > 0 && sendmmsg(fd, u->out, out, 0) < 0)
        rd_log_debug("udp: sendmmsg: %s", strerror(errno));
}

void rd_udp_handle_readable(rd_worker_t *w, int fd)
{
    for (;;) {
        int n;

        udp_prepare_receive(w->udp);
        /* MSG_TRUNC reports each datagram's real size: one over the
         * threshold arrives cut, and is answered with status 16. */
        n = recvmmsg(fd, w->udp->in, RD_UDP_BATCH, MSG_TRUNC, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rd_log(RD_LOG_WARN, "udp: recvmmsg: %s", strerror(errno));
            return;
        }
        udp_answer_batch(w, fd, (unsigned)n);
        /* A short batch emptied the socket: the next datagram is a new
         * edge, so no read is needed to find EAGAIN. */
        if (n < RD_UDP_BATCH)
            return;
    }
}
