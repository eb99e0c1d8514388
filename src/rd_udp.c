/* UDP requests and listeners (see include/rd_udp.h). */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rd_clock.h"
#include "rd_job.h"
#include "rd_log.h"
#include "rd_metrics_net.h"
#include "rd_sockaddr.h"
#include "rd_stats.h"
#include "rd_udp.h"

/* A request handed to the pool: its own copy of the datagram (the batch
 * buffers are read into again at once), its sender and its answer. */
typedef struct udp_job {
    rd_job_kind_t kind;                          /* RD_JOB_DATAGRAM, first: see rd_job.h */
    LIST_ENTRY(udp_job) link;                    /* on rd_udp's list of jobs out */
    rd_udp_t *udp;
    int fd;                                      /* the socket it came on */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    size_t len;
    uint64_t start_ns;                           /* when it was read, for the metrics */
    rd_request_t req;
    rd_response_t resp;
    uint8_t frame[];                             /* len bytes */
} udp_job_t;

/* A listener given to rd_udp_create; the TCP ones stay unused. */
typedef struct udp_listener {
    rd_event_t ev;
    bool dgram;                                  /* a UDP listener: ours */
    bool in_loop;                                /* served, and its event in the loop */
} udp_listener_t;

struct rd_udp {
    rd_net_t *net;
    const rd_config_t *cf;
    const rd_protocol_t *proto;
    udp_listener_t *listeners;
    size_t listener_count;
    bool closed;                                 /* the listeners are closed: a graceful stop */
    size_t cap;                                  /* bytes per datagram buffer */
    uint8_t *bufs;                               /* RD_UDP_BATCH buffers of cap bytes */
    struct sockaddr_storage peers[RD_UDP_BATCH];
    struct iovec in_iov[RD_UDP_BATCH];
    struct mmsghdr in[RD_UDP_BATCH];
    struct iovec out_iov[RD_UDP_BATCH];
    struct mmsghdr out[RD_UDP_BATCH];
    rd_response_t resp[RD_UDP_BATCH];
    LIST_HEAD(, udp_job) jobs;                   /* in the pool or on the queue */
};

static void udp_job_free(udp_job_t *job)
{
    LIST_REMOVE(job, link);
    rd_response_release(&job->resp);
    free(job);
}

void rd_udp_destroy(rd_udp_t *u)
{
    if (u == NULL)
        return;
    /* The pool is joined by now: what it handed back was never sent. */
    while (!LIST_EMPTY(&u->jobs))
        udp_job_free(LIST_FIRST(&u->jobs));
    for (size_t i = 0; i < RD_UDP_BATCH; i++)
        rd_response_release(&u->resp[i]);
    free(u->bufs);
    free(u->listeners);
    free(u);
}

static void udp_log(const struct sockaddr_storage *peer, const rd_request_t *req, bool answered)
{
    char ip[INET6_ADDRSTRLEN];

    rd_sockaddr_ip_text((const struct sockaddr *)peer, ip, sizeof(ip));
    if (answered)
        rd_log(RD_LOG_DEBUG, "%s: udp %s", ip, rd_protocol_request_name(req));
    else
        rd_log(RD_LOG_DEBUG, "%s: udp: datagram dropped (too short, or no request slot)", ip);
}

/* Refused before the protocol runs (over its rate, or too long): the
 * answer carries the request's own header fields, and no command runs. */
static bool udp_refuse(rd_udp_t *u, const uint8_t *frame, size_t len, int status,
                       rd_request_t *req, rd_response_t *resp)
{
    if (len < RD_LEGACY_HEADER_SIZE)
        return false;
    /* In the family the request's type names; a datagram shorter than
     * that header gets no answer (docs/protocol.md), refused or not. */
    size_t header_size = rd_protocol_header_size(frame);
    if (len < header_size || u->cap < header_size)
        return false;
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, header_size);
    req->header_have = (uint16_t)header_size;
    req->header_size = (uint16_t)header_size;
    req->enc_type = frame[RD_REQ_ENC_TYPE];
    rd_protocol_error_response(u->proto, req, status, resp);
    return true;
}

static bool udp_over_rate(rd_udp_t *u, const struct sockaddr_storage *peer)
{
    uint8_t key[RD_LIMIT_KEY_SIZE];

    if (u->net->limit == NULL)
        return false;
    rd_limit_key(peer, key);
    return !rd_limit_request(u->net->limit, &u->net->limit_conf, RD_LIMIT_UDP, key, rd_clock_ms());
}

/* A spoofed source must not be able to aim more bytes at a victim than it
 * sent: only a sender that proved a key gets a larger answer. */
static void udp_limit_size(rd_udp_t *u, const uint8_t *frame, size_t len,
                           rd_request_t *req, rd_response_t *resp)
{
    if (resp->len > len && !req->authenticated)
        udp_refuse(u, frame, len, RD_STATUS_INVALID_PACKET_LENGTH, req, resp);
}

/* Runs on a pool thread: the pool owns the job until it is on the queue.
 * An answer that depends on a change not yet durable waits for the commit
 * thread (as over TCP); this thread goes on with the next request. */
static void udp_process(void *arg)
{
    udp_job_t *job = arg;
    rd_udp_t *u = job->udp;

    rd_protocol_run_command(u->proto, &job->req, &job->resp);
    if (!rd_protocol_durable(u->proto, &job->req))
        rd_commit_add(u->net->commit, job->req.commit_lsn, job);
    else
        rd_udp_committed(job, true);
}

void rd_udp_committed(void *record, bool durable)
{
    udp_job_t *job = record;

    if (!durable)
        rd_protocol_error_response(job->udp->proto, &job->req, RD_STATUS_INTERNAL_ERROR,
                                   &job->resp);
    /* The job holds a request slot, so the queue has room for it. */
    while (rd_queue_push(job->udp->net->finished, job) < 0)
        sched_yield();
}

/* Finding a key may read a file and decrypting costs more than a hand-off:
 * such a request goes to the pool, as over TCP, so that the I/O thread
 * serves the others meanwhile. It takes a request slot; when none is free,
 * or TCP requests already wait for one, the datagram is dropped (as a full
 * receive buffer would drop it: the client retries). False: dropped. */
static bool udp_submit(rd_udp_t *u, int fd, const struct msghdr *in, size_t len,
                       uint64_t start_ns)
{
    udp_job_t *job;

    if (rd_net_full(u->net) || u->net->waiting > 0) {
        rd_log_debug("udp: every request slot busy: datagram dropped");
        return false;
    }
    if ((job = malloc(sizeof(*job) + len)) == NULL)
        return false;
    memcpy(job->frame, in->msg_iov->iov_base, len);
    job->kind = RD_JOB_DATAGRAM;
    job->udp = u;
    job->fd = fd;
    job->len = len;
    job->start_ns = start_ns;
    job->peer_len = in->msg_namelen;
    memcpy(&job->peer, in->msg_name, in->msg_namelen);
    rd_response_init(&job->resp);
    LIST_INSERT_HEAD(&u->jobs, job, link);
    /* Read again from the copy, so that the request points into it; the
     * checks passed on the original and pass again. */
    int status = rd_protocol_read_frame(u->proto, &job->req, job->frame, len);
    rd_limit_key(&job->peer, job->req.client);
    if (status != RD_STATUS_NO_ERROR || rd_threadpool_submit(u->net->pool, udp_process, job) < 0) {
        udp_job_free(job);
        return false;
    }
    u->net->in_flight++;
    return true;
}

static bool udp_inline(const rd_udp_t *u, const rd_request_t *req)
{
    return u->cf->quick_commands_inline && rd_protocol_is_quick(req);
}

/* What becomes of a datagram. */
enum { UDP_ANSWER, UDP_DROP, UDP_POOL };

/* Builds the answer to the datagram IN of LEN bytes (its real length, which
 * can exceed the buffer) into RESP, or hands it to the pool, or drops it. */
static int udp_handle(rd_udp_t *u, int fd, const struct msghdr *in, size_t len,
                      uint64_t start_ns, rd_request_t *req, rd_response_t *resp, int *outcome)
{
    uint8_t *frame = in->msg_iov->iov_base;
    int status;

    if (udp_over_rate(u, in->msg_name)) {
        *outcome = RD_UDP_DROPPED_RATE;
        return udp_refuse(u, frame, len, RD_STATUS_RATE_EXCEEDED, req, resp)
            ? UDP_ANSWER : UDP_DROP;
    }
    if (len > u->cap) {
        *outcome = RD_UDP_DROPPED_SIZE;
        return udp_refuse(u, frame, len, RD_STATUS_INVALID_PACKET_LENGTH, req, resp)
            ? UDP_ANSWER : UDP_DROP;
    }
    status = rd_protocol_read_frame(u->proto, req, frame, len);
    if (status < 0)
        return UDP_DROP;
    rd_limit_key(in->msg_name, req->client);
    if (status != RD_STATUS_NO_ERROR)
        rd_protocol_error_response(u->proto, req, status, resp);
    else if (udp_inline(u, req))
        rd_protocol_run_command(u->proto, req, resp);
    else if (udp_submit(u, fd, in, len, start_ns))
        return UDP_POOL;
    else {
        *outcome = RD_UDP_DROPPED_BUSY;
        return UDP_DROP;
    }
    return UDP_ANSWER;
}

/* True when RESP holds an answer to send now for the datagram IN. */
static bool udp_answer(rd_udp_t *u, int fd, const struct msghdr *in, size_t len,
                       rd_response_t *resp)
{
    const struct sockaddr_storage *peer = in->msg_name;
    uint64_t start_ns = rd_clock_ns();
    int outcome = RD_UDP_ANSWERED;
    rd_request_t req;
    int fate = udp_handle(u, fd, in, len, start_ns, &req, resp, &outcome);

    if (rd_log_enabled(RD_LOG_DEBUG))
        udp_log(peer, &req, fate != UDP_DROP);
    if (fate == UDP_DROP) {
        rd_stats_add(&u->proto->stats->udp_dropped, 1);
        rd_metrics_net_udp(NULL, peer, len, NULL,
                       outcome == RD_UDP_ANSWERED ? RD_UDP_DROPPED_SHORT : outcome, start_ns);
    }
    if (fate != UDP_ANSWER)
        return false;
    udp_limit_size(u, in->msg_iov->iov_base, len, &req, resp);
    rd_protocol_count(u->proto, &req, resp);
    rd_metrics_net_udp(&req, peer, len, resp, outcome, start_ns);
    return true;
}

void rd_udp_processed(rd_udp_t *u, void *record)
{
    udp_job_t *job = record;

    u->net->in_flight--;
    /* Once the listeners are closed, this socket among them, no answer goes out. */
    if (!u->closed) {
        udp_limit_size(u, job->frame, job->len, &job->req, &job->resp);
        rd_protocol_count(u->proto, &job->req, &job->resp);
        rd_metrics_net_udp(&job->req, &job->peer, job->len, &job->resp, RD_UDP_ANSWERED,
                           job->start_ns);
        if (sendto(job->fd, job->resp.data, job->resp.len, 0,
                   (const struct sockaddr *)&job->peer, job->peer_len) < 0)
            rd_log_debug("udp: sendto: %s", strerror(errno));
    }
    udp_job_free(job);
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

/* Sends the N answers of a batch. sendmmsg stops at the first that fails:
 * one undeliverable answer (source port 0: EINVAL; a firewall: EPERM; no
 * route) is skipped and the rest sent. A full send buffer drops what is
 * left, as the network may: the clients retry. */
static void udp_send_batch(int fd, struct mmsghdr *out, unsigned n)
{
    unsigned sent = 0;

    while (sent < n) {
        int k = sendmmsg(fd, out + sent, n - sent, 0);

        if (k > 0) {
            sent += (unsigned)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rd_log_debug("udp: send buffer full: %u answers dropped", n - sent);
            return;
        }
        rd_log_debug("udp: sendmmsg: %s: one answer dropped", strerror(errno));
        sent++;
    }
}

/* Answers the N datagrams received, in as few sendmmsg as can be. */
static void udp_answer_batch(rd_udp_t *u, int fd, unsigned n)
{
    unsigned out = 0;

    for (unsigned i = 0; i < n; i++) {
        struct msghdr *in = &u->in[i].msg_hdr;
        rd_response_t *resp = &u->resp[out];

        if (!udp_answer(u, fd, in, u->in[i].msg_len, resp))
            continue;
        u->out_iov[out] = (struct iovec){ .iov_base = resp->data, .iov_len = resp->len };
        u->out[out].msg_hdr = (struct msghdr){
            .msg_name = in->msg_name, .msg_namelen = in->msg_namelen,
            .msg_iov = &u->out_iov[out], .msg_iovlen = 1,
        };
        out++;
    }
    udp_send_batch(fd, u->out, out);
}

/* Reads and answers datagrams on FD until the socket is empty (false) or
 * wakeup_budget of them were taken (true: the caller comes back for the
 * rest on the loop's next turn). */
static bool udp_read_all(rd_udp_t *u, int fd)
{
    unsigned left = u->cf->wakeup_budget;

    while (left > 0) {
        unsigned want = left < RD_UDP_BATCH ? left : RD_UDP_BATCH;
        int n;

        udp_prepare_receive(u);
        /* MSG_TRUNC reports each datagram's real size: one over the
         * threshold arrives cut, and is answered with status 16. */
        n = recvmmsg(fd, u->in, want, MSG_TRUNC, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rd_log(RD_LOG_WARN, "udp: recvmmsg: %s", strerror(errno));
            return false;
        }
        udp_answer_batch(u, fd, (unsigned)n);
        /* A short batch emptied the socket: the next datagram is a new
         * edge, so no read is needed to find EAGAIN. */
        if ((unsigned)n < want)
            return false;
        left -= (unsigned)n;
    }
    return true;
}

/* A listener's event. Once the listeners are closed, an event of theirs
 * still in the current batch is stale and must not reach the closed
 * descriptor. */
static void udp_on_readable(rd_event_t *ev, uint32_t events)
{
    rd_udp_t *u = ev->data;

    (void)events;
    if (!u->closed && udp_read_all(u, ev->fd))
        rd_event_post(u->net->loop, ev);
}

rd_udp_t *rd_udp_create(rd_net_t *net, const rd_listener_t *listeners, size_t count)
{
    rd_udp_t *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->net = net;
    u->cf = net->cf;
    u->proto = net->proto;
    u->cap = net->cf->udp_payload_threshold;
    LIST_INIT(&u->jobs);
    for (size_t i = 0; i < RD_UDP_BATCH; i++)
        rd_response_init(&u->resp[i]);
    /* Pages of the buffers cost memory only once a datagram lands in them. */
    u->bufs = malloc(u->cap * RD_UDP_BATCH);
    u->listeners = calloc(count, sizeof(*u->listeners));
    if (u->bufs == NULL || (count > 0 && u->listeners == NULL)) {
        rd_udp_destroy(u);
        return NULL;
    }
    u->listener_count = count;
    for (size_t i = 0; i < count; i++) {
        u->listeners[i].ev = (rd_event_t){ .fd = listeners[i].fd, .handler = udp_on_readable,
                                           .data = u };
        u->listeners[i].dgram = listeners[i].type == SOCK_DGRAM;
    }
    return u;
}

int rd_udp_serve(rd_udp_t *u, size_t i, bool on)
{
    udp_listener_t *l = &u->listeners[i];

    if (!l->dgram)
        return 0;
    return rd_listener_watch(u->net->loop, &l->ev, &l->in_loop, on && !u->closed);
}

void rd_udp_close_listeners(rd_udp_t *u)
{
    for (size_t i = 0; i < u->listener_count; i++) {
        udp_listener_t *l = &u->listeners[i];

        if (!l->dgram)
            continue;
        if (l->in_loop) {
            udp_read_all(u, l->ev.fd);
            rd_event_del(u->net->loop, &l->ev);
            l->in_loop = false;
        }
        close(l->ev.fd);
    }
    u->closed = true;
}
