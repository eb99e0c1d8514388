/* TCP connections and listeners (see include/rd_tcp.h). */
#include "config.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rd_clock.h"
#include "rd_job.h"
#include "rd_log.h"
#include "rd_metrics_net.h"
#include "rd_stats.h"
#include "rd_tcp.h"

typedef enum rd_conn_state {
    RD_CONN_READ_HEADER,
    RD_CONN_READ_BODY,
    RD_CONN_WAITING,            /* request complete, waiting for a pool slot */
    RD_CONN_PROCESSING,         /* owned by a pool thread */
    RD_CONN_WRITE,
    RD_CONN_LINGER,             /* answer sent, reading and discarding input before close */
} rd_conn_state_t;

typedef struct rd_conn rd_conn_t;

/* Every status command, plain or encrypted, fits: one read, no allocation. */
#define RD_CONN_INBUF 128

/* A list threaded through the connections: a timeout list (oldest
 * deadline first, as every entry has the same timeout), the wait list or
 * the free records. */
TAILQ_HEAD(rd_conn_list, rd_conn);
typedef struct rd_conn_list rd_conn_list_t;

struct rd_conn {
    rd_job_kind_t kind;         /* RD_JOB_CONN, first: see rd_job.h */
    rd_event_t ev;              /* ev.fd is the socket */
    rd_tcp_t *tcp;
    rd_conn_state_t state;
    bool input_left;            /* we answer before reading the whole request */
    bool out_armed;             /* EPOLLOUT requested: the socket buffer filled */
    bool watched;               /* registered with epoll */
    bool limit_counted;         /* counted in the per-address connection limit */
    bool read_dry;              /* the last read found the socket empty */
    rd_conn_list_t *list;       /* the timeout or wait list it is on, if any */
    TAILQ_ENTRY(rd_conn) link;  /* on LIST, or on the free list */
    uint64_t deadline_ms;
    uint32_t have;              /* bytes read into inbuf, or into body_heap */
    uint32_t want;              /* where the request ends, in the same buffer */
    uint32_t written;
    rd_request_t req;
    rd_response_t resp;
    uint8_t *body_heap;         /* a body too large for inbuf */
    uint8_t inbuf[RD_CONN_INBUF];
    uint8_t client_key[RD_LIMIT_KEY_SIZE];   /* the client's address */
    rd_metrics_net_tcp_t obs;       /* the metrics' and access log's (rd_metrics_net.h) */
};

/* A listener given to rd_tcp_create; the UDP ones stay unused. */
typedef struct tcp_listener {
    rd_event_t ev;
    bool stream;                /* a TCP listener: ours */
    bool served;                /* the worker serves it (rd_tcp_serve) */
    bool in_loop;               /* its event is in the loop now */
} tcp_listener_t;

/* Why the listeners are paused; they resume when no reason is left. */
enum {
    TCP_PAUSE_FULL = 1,         /* worker_connections reached */
    TCP_PAUSE_NOFD = 2,         /* the process ran out of descriptors */
    TCP_PAUSE_BUSY = 4,         /* every request slot is taken: requests wait */
};

struct rd_tcp {
    rd_net_t *net;
    const rd_config_t *cf;
    const rd_protocol_t *proto;
    rd_conn_t **conns;             /* indexed by descriptor */
    size_t conns_size;
    rd_conn_list_t free_conns;     /* records kept for reuse */
    size_t active;                 /* open client connections */
    size_t max_conns;              /* worker_connections */
    rd_conn_list_t timeouts;       /* reading a request: socket_timeout_ms */
    rd_conn_list_t write_timeouts; /* writing or lingering: write_timeout_ms */
    rd_conn_list_t waiting;        /* complete requests waiting for a slot */
    tcp_listener_t *listeners;
    size_t listener_count;
    bool closed;                   /* the listeners are closed: a graceful stop */
    unsigned paused;               /* TCP_PAUSE_* reasons the listeners are out of the loop */
    uint64_t accept_retry_ms;      /* when to try again after running out of descriptors */
    uint64_t accept_warned_ms;     /* last log line about a pause: at most one a second */
};

/* What a read step tells its caller: keep reading, stop reading for now
 * (request complete or socket empty), or the connection is gone. */
enum { CONN_MORE = 1, CONN_PAUSE = 0, CONN_GONE = -1 };

static void conn_list_append(rd_conn_list_t *list, rd_conn_t *c)
{
    c->list = list;
    TAILQ_INSERT_TAIL(list, c, link);
}

static void conn_list_remove(rd_conn_t *c)
{
    rd_conn_list_t *list = c->list;

    if (list == NULL)
        return;
    /* UDP sees the wait list only through this count (rd_net.h). */
    if (list == &c->tcp->waiting)
        c->tcp->net->waiting--;
    TAILQ_REMOVE(list, c, link);
    c->list = NULL;
}

/* Records are recycled through a free list: no allocation per connection
 * once the worker has seen its peak. */
static rd_conn_t *conn_get(rd_tcp_t *t)
{
    rd_conn_t *c = TAILQ_FIRST(&t->free_conns);

    if (c != NULL)
        TAILQ_REMOVE(&t->free_conns, c, link);
    else if ((c = malloc(sizeof(*c))) == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    rd_response_init(&c->resp);
    c->tcp = t;
    return c;
}

static void conn_put(rd_tcp_t *t, rd_conn_t *c)
{
    TAILQ_INSERT_HEAD(&t->free_conns, c, link);
}

/* The client's address as text, made only when a log line needs it. */
static const char *conn_ip(const rd_conn_t *c, char ip[INET6_ADDRSTRLEN])
{
    rd_limit_key_text(c->client_key, ip, INET6_ADDRSTRLEN);
    return ip;
}

/* Every entry of a timeout list gets the same timeout, so appending keeps
 * it ordered by deadline and expiry only ever looks at its head. */
static void conn_set_deadline(rd_conn_t *c, rd_conn_list_t *list, unsigned timeout_ms)
{
    conn_list_remove(c);
    c->deadline_ms = rd_clock_ms() + timeout_ms;
    conn_list_append(list, c);
}

static void conn_write_deadline(rd_conn_t *c)
{
    conn_set_deadline(c, &c->tcp->write_timeouts, c->tcp->cf->write_timeout_ms);
}

/* Puts in the loop exactly the listeners it should wait on now: those
 * served, while accepting is not paused, none once closed. */
static void tcp_listeners_update(rd_tcp_t *t)
{
    for (size_t i = 0; i < t->listener_count; i++) {
        tcp_listener_t *l = &t->listeners[i];

        if (l->stream)
            rd_listener_watch(t->net->loop, &l->ev, &l->in_loop,
                              l->served && t->paused == 0 && !t->closed);
    }
}

static void tcp_warn_paused(rd_tcp_t *t, const char *why)
{
    uint64_t now = rd_clock_ms();

    if (now - t->accept_warned_ms < 1000)
        return;
    t->accept_warned_ms = now;
    rd_log(RD_LOG_WARN, "not accepting connections for now: %s (%zu open)", why, t->active);
}

/* Pauses accepting for REASON (one TCP_PAUSE_*). */
static void tcp_pause(rd_tcp_t *t, unsigned reason)
{
    static const char *const why[] = {
        [TCP_PAUSE_FULL] = "worker_connections reached",
        [TCP_PAUSE_NOFD] = "out of descriptors",
        [TCP_PAUSE_BUSY] = "all request slots busy",
    };

    if (reason == TCP_PAUSE_NOFD)
        t->accept_retry_ms = rd_clock_ms() + 100;
    if (reason != TCP_PAUSE_BUSY)
        tcp_warn_paused(t, why[reason]);
    t->paused |= reason;
    tcp_listeners_update(t);
}

/* Lifts the pause for REASONS (TCP_PAUSE_* bits). */
static void tcp_resume(rd_tcp_t *t, unsigned reasons)
{
    if ((t->paused & reasons) == 0)
        return;
    t->paused &= ~reasons;
    tcp_listeners_update(t);
}

static void conn_close(rd_conn_t *c)
{
    rd_tcp_t *t = c->tcp;
    rd_net_t *net = t->net;
    int fd = c->ev.fd;

    conn_list_remove(c);
    rd_event_forget(net->loop, &c->ev);
    /* No EPOLL_CTL_DEL: closing the only descriptor of the socket removes
     * it from epoll, for one system call less per connection. */
    close(fd);
    t->conns[fd] = NULL;
    t->active--;
    if (c->limit_counted)
        rd_limit_conn_close(net->limit, &net->limit_conf, c->client_key);
    free(c->body_heap);
    c->body_heap = NULL;
    rd_response_release(&c->resp);
    conn_put(t, c);
    /* A descriptor and a slot are free again. */
    tcp_resume(t, TCP_PAUSE_FULL | TCP_PAUSE_NOFD);
}

/* A connection is put in epoll only when it has to wait for the socket:
 * most requests are read, answered and closed without it. */
static int conn_watch(rd_conn_t *c)
{
    rd_event_loop_t *loop = c->tcp->net->loop;
    uint32_t mask = EPOLLIN | EPOLLET | (c->out_armed ? EPOLLOUT : 0);
    int rc = c->watched ? rd_event_mod(loop, &c->ev, mask) : rd_event_add(loop, &c->ev, mask);

    if (rc < 0)
        rd_log(RD_LOG_ERR, "epoll_ctl(%d): %s", c->ev.fd, strerror(errno));
    c->watched = rc == 0;
    return rc;
}

/* Reads and discards input until the peer closes, so that closing our end
 * does not send a reset that could destroy the answer in flight. A client
 * that never stops sending gets wakeup_budget reads per turn of the loop,
 * like everyone else, until write_timeout_ms cuts it. */
static int conn_linger(rd_conn_t *c)
{
    uint8_t sink[512];

    for (unsigned reads = 0; reads < c->tcp->cf->wakeup_budget; reads++) {
        ssize_t n = recv(c->ev.fd, sink, sizeof(sink), 0);

        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return CONN_PAUSE;
        conn_close(c);
        return CONN_GONE;
    }
    rd_event_post(c->tcp->net->loop, &c->ev);
    return CONN_PAUSE;
}

/* Closing with unread input sends a reset, which can destroy the answer
 * before the client reads it: a client that sent more than its request
 * gets a lingering close instead. A last read that did not fill its room
 * found the socket empty; otherwise one peek tells. */
static bool conn_input_pending(const rd_conn_t *c)
{
    uint8_t byte;

    if (c->read_dry)
        return false;
    return recv(c->ev.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

static int conn_finish(rd_conn_t *c)
{
    if (!c->input_left && !conn_input_pending(c)) {
        conn_close(c);
        return CONN_GONE;
    }
    shutdown(c->ev.fd, SHUT_WR);
    c->state = RD_CONN_LINGER;
    conn_write_deadline(c);
    /* The reads that drain it wait for epoll (conn_open leaves a request
     * the pool answered unwatched). */
    if (!c->watched && conn_watch(c) < 0) {
        conn_close(c);
        return CONN_GONE;
    }
    return conn_linger(c);
}

static int conn_write(rd_conn_t *c)
{
    while (c->written < c->resp.len) {
        ssize_t n = send(c->ev.fd, c->resp.data + c->written,
                         c->resp.len - c->written, MSG_NOSIGNAL);

        if (n >= 0) {
            c->written += (uint32_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(c);
            return CONN_GONE;
        }
        if (!c->out_armed) {
            c->out_armed = true;
            c->read_dry = false;    /* the client may send while the write waits */
            if (conn_watch(c) < 0) {
                conn_close(c);
                return CONN_GONE;
            }
            conn_write_deadline(c);
        }
        return CONN_PAUSE;
    }
    return conn_finish(c);
}

/* The spec arms EPOLLOUT and waits for it; writing at once saves a system
 * call and a loop turn, and EPOLLOUT is armed only when the socket buffer
 * is full. */
static int conn_start_write(rd_conn_t *c)
{
    /* With a body of its own, have counts the body alone. */
    size_t in = c->body_heap != NULL ? c->req.header_size + (size_t)c->have : c->have;

    rd_protocol_count(c->tcp->proto, &c->req, &c->resp);
    rd_metrics_net_tcp_answer(&c->obs, c->client_key, &c->req, &c->resp, in);
    c->state = RD_CONN_WRITE;
    c->written = 0;
    return conn_write(c);
}

static int conn_fail(rd_conn_t *c, int status)
{
    char ip[INET6_ADDRSTRLEN];

    rd_log_debug("%s: request refused with status %d", conn_ip(c, ip), status);
    c->input_left = c->input_left || !c->req.body_complete;
    rd_protocol_error_response(c->tcp->proto, &c->req, status, &c->resp);
    return conn_start_write(c) == CONN_GONE ? CONN_GONE : CONN_PAUSE;
}

/* Runs on a pool thread: the pool owns the connection until it is back on
 * the finished queue. */
static void conn_process(void *arg)
{
    rd_conn_t *c = arg;
    rd_net_t *net = c->tcp->net;

    rd_protocol_run_command(net->proto, &c->req, &c->resp);
    /* An answer that depends on a change not yet durable waits for the
     * commit threads; this thread goes on with the next request. */
    if (!rd_protocol_durable(net->proto, &c->req))
        rd_commit_add(net->commit, c->req.commit_lsn, c);
    else
        rd_tcp_committed(c, true);
}

/* The worker never has more requests in flight than the queue holds, so
 * the push cannot fail; should it ever, waiting beats losing the answer. */
void rd_tcp_committed(void *record, bool durable)
{
    rd_conn_t *c = record;
    rd_net_t *net = c->tcp->net;

    if (!durable)
        rd_protocol_error_response(net->proto, &c->req, RD_STATUS_INTERNAL_ERROR, &c->resp);
    while (rd_queue_push(net->finished, c) < 0)
        sched_yield();
}

static void conn_submit(rd_conn_t *c)
{
    rd_net_t *net = c->tcp->net;

    c->state = RD_CONN_PROCESSING;
    net->in_flight++;
    if (rd_threadpool_submit(net->pool, conn_process, c) < 0) {
        net->in_flight--;
        rd_metrics_refused(RD_REFUSED_POOL_FULL);
        rd_log(RD_LOG_ERR, "thread pool full with %zu requests in flight", net->in_flight);
        conn_fail(c, RD_STATUS_INTERNAL_ERROR);
    }
}

static int conn_dispatch(rd_conn_t *c)
{
    rd_tcp_t *t = c->tcp;
    char ip[INET6_ADDRSTRLEN];

    rd_log_debug("%s: %s", conn_ip(c, ip),
                 rd_protocol_request_name(&c->req));
    /* The client has done its part; no timeout while we work. */
    conn_list_remove(c);
    if (t->cf->quick_commands_inline && rd_protocol_is_quick(&c->req)) {
        rd_protocol_run_command(t->proto, &c->req, &c->resp);
        return conn_start_write(c) == CONN_GONE ? CONN_GONE : CONN_PAUSE;
    }
    /* The last read found the socket empty, but nothing reads it while the
     * pool has the request: what the client sends meanwhile must be
     * peeked at before the close (conn_input_pending), or it resets. */
    c->read_dry = false;
    if (rd_net_full(t->net)) {
        /* Every request slot is taken: this one waits its turn, and no new
         * connection is taken until the backlog is gone, so memory stays
         * bounded by the connections already open. */
        c->state = RD_CONN_WAITING;
        conn_list_append(&t->waiting, c);
        t->net->waiting++;
        tcp_pause(t, TCP_PAUSE_BUSY);
    } else {
        conn_submit(c);
    }
    return CONN_PAUSE;
}

/* The header is whole in inbuf: check it and find room for the body, in
 * inbuf itself when the request fits (no allocation for small requests). */
static int conn_take_header(rd_conn_t *c)
{
    rd_net_t *net = c->tcp->net;
    rd_request_t *req = &c->req;
    uint32_t total, extra;
    int status;

    memcpy(req->header, c->inbuf, req->header_size);
    req->header_have = req->header_size;
    /* Before any refusal: an answer of the 48-byte family gets its nonce
     * by the request's type (docs/protocol.md). */
    req->enc_type = req->header[RD_REQ_ENC_TYPE];
    /* Counted before any work, so that bad requests spend the budget too. */
    if (net->limit != NULL && !rd_limit_request(net->limit, &net->limit_conf, RD_LIMIT_TCP,
                                                c->client_key, rd_clock_ms()))
        return conn_fail(c, RD_STATUS_RATE_EXCEEDED);
    status = rd_protocol_validate_header(net->proto, req);
    if (status != RD_STATUS_NO_ERROR)
        return conn_fail(c, status);
    c->state = RD_CONN_READ_BODY;
    total = req->header_size + req->body_size;
    if (total <= sizeof(c->inbuf)) {
        req->body = c->inbuf + req->header_size;
        c->want = total;
        return CONN_MORE;
    }
    if ((c->body_heap = malloc(req->body_size)) == NULL)
        return conn_fail(c, RD_STATUS_MEMORY_ALLOC);
    /* What came with the header is the start of the body (inbuf is smaller
     * than any body that does not fit in it). */
    extra = c->have - req->header_size;
    memcpy(c->body_heap, c->inbuf + req->header_size, extra);
    req->body = c->body_heap;
    c->have = extra;
    c->want = req->body_size;
    return CONN_MORE;
}

static int conn_body_read(rd_conn_t *c)
{
    int status;

    c->req.body_complete = true;
    rd_metrics_net_tcp_read(&c->obs);
    /* Bytes past the request were sent with it: closing over them would
     * reset the connection, so it lingers instead. */
    c->input_left = c->have > c->want;
    status = rd_protocol_validate_body(c->tcp->proto, &c->req);
    if (status != RD_STATUS_NO_ERROR)
        return conn_fail(c, status);
    return conn_dispatch(c);
}

/* After a read: moves the request on as far as the bytes allow. */
static int conn_advance(rd_conn_t *c)
{
    rd_request_t *req = &c->req;

    if (c->state == RD_CONN_READ_HEADER) {
        if (c->have < RD_PEEK_SIZE)
            return CONN_MORE;
        if (req->header_size == 0)
            req->header_size = (uint16_t)rd_protocol_header_size(c->inbuf);
        if (c->have < req->header_size)
            return CONN_MORE;
        int next = conn_take_header(c);
        if (next != CONN_MORE)
            return next;
    }
    return c->have < c->want ? CONN_MORE : conn_body_read(c);
}

/* Where the next read goes: inbuf while the header is incomplete (as much
 * as it holds: often the whole request in one call), then the body. */
static uint8_t *conn_read_target(rd_conn_t *c, size_t *room)
{
    uint8_t *base = c->body_heap != NULL ? c->body_heap : c->inbuf;
    uint32_t end = c->state == RD_CONN_READ_HEADER ? (uint32_t)sizeof(c->inbuf) : c->want;

    *room = end - c->have;
    return base + c->have;
}

static int conn_read_request(rd_conn_t *c)
{
    for (;;) {
        size_t room;
        uint8_t *dst = conn_read_target(c, &room);
        ssize_t n = recv(c->ev.fd, dst, room, 0);
        int next;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return CONN_PAUSE;
        if (n <= 0) {
            conn_close(c);
            return CONN_GONE;
        }
        c->have += (uint32_t)n;
        c->read_dry = (size_t)n < room;
        next = conn_advance(c);
        if (next != CONN_MORE)
            return next;
    }
}

static int conn_on_readable(rd_conn_t *c)
{
    switch (c->state) {
    case RD_CONN_READ_HEADER:
    case RD_CONN_READ_BODY:
        return conn_read_request(c);
    case RD_CONN_LINGER:
        return conn_linger(c);
    default:
        /* One request per connection: input after it waits unread. */
        return CONN_PAUSE;
    }
}

static void conn_handle_event(rd_event_t *ev, uint32_t events)
{
    rd_conn_t *c = ev->data;

    if (events & (EPOLLERR | EPOLLHUP)) {
        /* A pool thread owns a processing request: the write that follows
         * its return finds the peer gone and closes then. */
        if (c->state != RD_CONN_PROCESSING)
            conn_close(c);
        return;
    }
    if ((events & EPOLLIN) && conn_on_readable(c) == CONN_GONE)
        return;
    if ((events & EPOLLOUT) && c->state == RD_CONN_WRITE)
        conn_write(c);
}

/* Applies the per-address connection limit; false when C must go. */
static bool conn_admit(rd_net_t *net, rd_conn_t *c)
{
    int rc;

    if (net->limit == NULL)
        return true;
    rc = rd_limit_conn_open(net->limit, &net->limit_conf, c->client_key, rd_clock_ms());
    c->limit_counted = rc > 0;
    return rc >= 0;
}

static void conn_open(rd_tcp_t *t, int fd, const struct sockaddr_storage *ss)
{
    rd_conn_t *c;

    if ((size_t)fd >= t->conns_size || (c = conn_get(t)) == NULL) {
        rd_log(RD_LOG_WARN, "no room for connection on descriptor %d: closing it", fd);
        close(fd);
        return;
    }
    rd_limit_key(ss, c->client_key);
    memcpy(c->req.client, c->client_key, sizeof(c->req.client));
    if (!conn_admit(t->net, c)) {
        rd_log_debug("connection refused: too many from this address");
        rd_stats_add(&t->proto->stats->refused_per_ip, 1);
        rd_metrics_refused(RD_REFUSED_PER_ADDRESS);
        close(fd);
        conn_put(t, c);
        return;
    }
    c->ev = (rd_event_t){ .fd = fd, .handler = conn_handle_event, .data = c };
    c->state = RD_CONN_READ_HEADER;
    t->conns[fd] = c;
    t->active++;
    conn_set_deadline(c, &t->timeouts, t->cf->socket_timeout_ms);
    rd_stats_add(&t->proto->stats->tcp_accepted, 1);
    rd_metrics_net_tcp_open(&c->obs, ss);
    /* Clients send their request right after connecting: it is usually
     * there by now, and then the connection never needs epoll. An
     * edge-triggered add reports what arrives after this read. */
    if (conn_read_request(c) == CONN_GONE || c->watched)
        return;
    /* A whole request needs no epoll while the pool has it or it waits
     * for a slot (the loop does nothing with its events then): its answer
     * is written at once, and the socket is watched only if that write
     * fills the buffer or the close lingers. One epoll_ctl less per
     * request, and a close with no epoll entry to remove. A record the
     * pool owns is closed by no one else. */
    if (c->state == RD_CONN_PROCESSING || c->state == RD_CONN_WAITING)
        return;
    if (conn_watch(c) < 0)
        conn_close(c);
}

/* Accepts until EAGAIN: an edge-triggered listener reports a burst once.
 * At the connection cap, out of descriptors or with every request slot
 * busy it pauses the listeners instead (and stops at once), so that the
 * loop neither spins nor leaves them forgotten. */
static bool tcp_accept_all(rd_tcp_t *t, int listen_fd)
{
    for (unsigned taken = 0; taken < t->cf->wakeup_budget; taken++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd;

        if (t->active >= t->max_conns) {
            rd_metrics_refused(RD_REFUSED_WORKER_CONNECTIONS);
            tcp_pause(t, TCP_PAUSE_FULL);
        }
        if (t->paused != 0)
            return false;
        fd = accept4(listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(t, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            rd_metrics_refused(RD_REFUSED_DESCRIPTORS);
            tcp_pause(t, TCP_PAUSE_NOFD);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK)
            rd_log(RD_LOG_ERR, "accept: %s", strerror(errno));
        return false;
    }
    return true;
}

/* A listener's event: accepts what is pending, and comes back on the
 * loop's next turn for the rest when the budget ran out. Once the
 * listeners are closed, an event of theirs still in the current batch is
 * stale and must not reach the closed descriptor. */
static void tcp_on_accept(rd_event_t *ev, uint32_t events)
{
    rd_tcp_t *t = ev->data;

    (void)events;
    if (!t->closed && tcp_accept_all(t, ev->fd))
        rd_event_post(t->net->loop, ev);
}

void rd_tcp_processed(rd_tcp_t *t, void *record)
{
    t->net->in_flight--;
    conn_start_write(record);
}

void rd_tcp_submit_waiting(rd_tcp_t *t)
{
    rd_conn_t *c;

    while ((c = TAILQ_FIRST(&t->waiting)) != NULL && !rd_net_full(t->net)) {
        conn_list_remove(c);
        conn_submit(c);
    }
    if (TAILQ_EMPTY(&t->waiting))
        tcp_resume(t, TCP_PAUSE_BUSY);
}

static int conn_expire_list(rd_conn_list_t *list, uint64_t polled_ms, uint64_t now_ms)
{
    char ip[INET6_ADDRSTRLEN];
    rd_conn_t *c;

    while ((c = TAILQ_FIRST(list)) != NULL && c->deadline_ms <= polled_ms) {
        rd_log_debug("%s: timed out %s", conn_ip(c, ip),
                     c->state == RD_CONN_READ_HEADER || c->state == RD_CONN_READ_BODY
                         ? "reading the request" : "writing the answer");
        rd_metrics_timeout(list == &c->tcp->timeouts ? RD_TIMEOUT_READ : RD_TIMEOUT_WRITE);
        conn_close(c);
    }
    if (c == NULL)
        return -1;
    return c->deadline_ms > now_ms ? (int)(c->deadline_ms - now_ms) : 0;
}

int rd_tcp_timers(rd_tcp_t *t, uint64_t polled_ms, uint64_t now_ms)
{
    int reading, writing, next;

    if ((t->paused & TCP_PAUSE_NOFD) && now_ms >= t->accept_retry_ms)
        tcp_resume(t, TCP_PAUSE_NOFD);
    reading = conn_expire_list(&t->timeouts, polled_ms, now_ms);
    writing = conn_expire_list(&t->write_timeouts, polled_ms, now_ms);
    next = reading < 0 || (writing >= 0 && writing < reading) ? writing : reading;
    /* Out of descriptors: try again soon, whatever else is due. */
    if ((t->paused & TCP_PAUSE_NOFD) && (next < 0 || next > 100))
        next = 100;
    return next;
}

size_t rd_tcp_active(const rd_tcp_t *t)
{
    return t->active;
}

/* "auto": what the descriptor limit allows, less a reserve for the loop,
 * the listeners, the channel and the logs. */
static size_t tcp_connection_cap(const rd_config_t *cf)
{
    struct rlimit rl;
    size_t limit = cf->max_descriptors;

    if (cf->worker_connections > 0)
        return cf->worker_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit)
        limit = rl.rlim_cur;
    return limit > 128 ? limit - 64 : limit / 2;
}

rd_tcp_t *rd_tcp_create(rd_net_t *net, const rd_listener_t *listeners, size_t count)
{
    rd_tcp_t *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    TAILQ_INIT(&t->free_conns);
    TAILQ_INIT(&t->timeouts);
    TAILQ_INIT(&t->write_timeouts);
    TAILQ_INIT(&t->waiting);
    t->net = net;
    t->cf = net->cf;
    t->proto = net->proto;
    t->conns_size = net->cf->max_descriptors;
    t->max_conns = tcp_connection_cap(net->cf);
    t->conns = calloc(t->conns_size, sizeof(*t->conns));
    t->listeners = calloc(count, sizeof(*t->listeners));
    if (t->conns == NULL || (count > 0 && t->listeners == NULL)) {
        free(t->conns);
        free(t->listeners);
        free(t);
        return NULL;
    }
    t->listener_count = count;
    for (size_t i = 0; i < count; i++) {
        t->listeners[i].ev = (rd_event_t){ .fd = listeners[i].fd, .handler = tcp_on_accept,
                                           .data = t };
        t->listeners[i].stream = listeners[i].type == SOCK_STREAM;
    }
    return t;
}

int rd_tcp_serve(rd_tcp_t *t, size_t i, bool on)
{
    tcp_listener_t *l = &t->listeners[i];

    if (!l->stream || l->served == on)
        return 0;
    l->served = on;
    tcp_listeners_update(t);
    return on && t->paused == 0 && !t->closed && !l->in_loop ? -1 : 0;
}

void rd_tcp_close_listeners(rd_tcp_t *t)
{
    for (size_t i = 0; i < t->listener_count; i++) {
        tcp_listener_t *l = &t->listeners[i];

        if (!l->stream)
            continue;
        if (l->in_loop) {
            tcp_accept_all(t, l->ev.fd);
            rd_event_del(t->net->loop, &l->ev);
            l->in_loop = false;
        }
        close(l->ev.fd);
    }
    t->closed = true;
}

void rd_tcp_destroy(rd_tcp_t *t)
{
    rd_conn_t *c;

    if (t == NULL)
        return;
    /* Closing a connection resumes accepting: not now. */
    t->closed = true;
    for (size_t fd = 0; fd < t->conns_size; fd++)
        if (t->conns[fd] != NULL)
            conn_close(t->conns[fd]);
    while ((c = TAILQ_FIRST(&t->free_conns)) != NULL) {
        TAILQ_REMOVE(&t->free_conns, c, link);
        free(c);
    }
    free(t->conns);
    free(t->listeners);
    free(t);
}
