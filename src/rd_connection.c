#include "config.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rd_connection.h"
#include "rd_listener.h"
#include "rd_log.h"
#include "rd_metrics_net.h"
#include "rd_worker.h"

/* What a read step tells its caller: keep reading, stop reading for now
 * (request complete or socket drained), or the connection is gone. */
enum { CONN_MORE = 1, CONN_PAUSE = 0, CONN_GONE = -1 };

uint64_t rd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void rd_conn_list_append(rd_conn_list_t *list, rd_conn_t *c)
{
    c->list = list;
    c->next = NULL;
    c->prev = list->tail;
    if (list->tail != NULL)
        list->tail->next = c;
    else
        list->head = c;
    list->tail = c;
}

void rd_conn_list_remove(rd_conn_t *c)
{
    rd_conn_list_t *list = c->list;

    if (list == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        list->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        list->tail = c->prev;
    c->list = NULL;
    c->prev = c->next = NULL;
}

/* Records are recycled through a free list: no allocation per connection
 * once the worker has seen its peak. */
static rd_conn_t *conn_get(rd_worker_t *w)
{
    rd_conn_t *c = w->free_conns;

    if (c != NULL)
        w->free_conns = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    rd_response_init(&c->resp);
    c->worker = w;
    return c;
}

static void conn_put(rd_worker_t *w, rd_conn_t *c)
{
    c->next = w->free_conns;
    w->free_conns = c;
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
    rd_conn_list_remove(c);
    c->deadline_ms = rd_now_ms() + timeout_ms;
    rd_conn_list_append(list, c);
}

static void conn_write_deadline(rd_conn_t *c)
{
    conn_set_deadline(c, &c->worker->write_timeouts, c->worker->cf->write_timeout_ms);
}

static void conn_close(rd_conn_t *c)
{
    rd_worker_t *w = c->worker;
    int fd = c->ev.fd;

    rd_conn_list_remove(c);
    rd_event_forget(&w->loop, &c->ev);
    /* No EPOLL_CTL_DEL: closing the only descriptor of the socket removes
     * it from epoll, for one system call less per connection. */
    close(fd);
    w->conns[fd] = NULL;
    w->active--;
    if (c->limit_counted)
        rd_limit_conn_close(w->limit, &w->limit_conf, c->client_key);
    free(c->body_heap);
    c->body_heap = NULL;
    rd_response_release(&c->resp);
    conn_put(w, c);
    /* A descriptor and a slot are free again. */
    rd_worker_accept_unblock(w, RD_ACCEPT_FULL | RD_ACCEPT_NOFD);
}

/* Reads and discards input until the peer closes, so that closing our end
 * does not send a reset that could destroy the answer in flight. A client
 * that never stops sending gets wakeup_budget reads per turn of the loop,
 * like everyone else, until write_timeout_ms cuts it. */
static int conn_drain(rd_conn_t *c)
{
    uint8_t sink[512];

    for (unsigned reads = 0; reads < c->worker->cf->wakeup_budget; reads++) {
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
    rd_event_post(&c->worker->loop, &c->ev);
    return CONN_PAUSE;
}

/* Closing with unread input sends a reset, which can destroy the answer
 * before the client reads it: a client that sent more than its request
 * gets a lingering close instead. A last read that did not fill its room
 * found the socket empty; otherwise one peek tells. */
static bool conn_input_pending(const rd_conn_t *c)
{
    uint8_t byte;

    if (c->drained)
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
    return conn_drain(c);
}

/* A connection is put in epoll only when it has to wait for the socket:
 * most requests are read, answered and closed without it. */
static int conn_watch(rd_conn_t *c)
{
    rd_worker_t *w = c->worker;
    uint32_t mask = EPOLLIN | EPOLLET | (c->out_armed ? EPOLLOUT : 0);
    int rc = c->watched ? rd_event_mod(&w->loop, &c->ev, mask)
                        : rd_event_add(&w->loop, &c->ev, mask);

    if (rc < 0)
        rd_log(RD_LOG_ERR, "epoll_ctl(%d): %s", c->ev.fd, strerror(errno));
    c->watched = rc == 0;
    return rc;
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
    rd_observe_tcp_answer(c);
    c->state = RD_CONN_WRITE;
    c->written = 0;
    return conn_write(c);
}

static int conn_fail(rd_conn_t *c, int status)
{
    rd_worker_t *w = c->worker;
    char ip[INET6_ADDRSTRLEN];

    rd_log_debug("%s: request refused with status %d", conn_ip(c, ip), status);
    c->input_left = c->input_left || !c->req.body_complete;
    rd_protocol_error_response(&w->proto, &c->req, status, &c->resp);
    return conn_start_write(c) == CONN_GONE ? CONN_GONE : CONN_PAUSE;
}

/* Runs on a pool thread: the pool owns the connection until it is back on
 * the modification queue. */
static void conn_process(void *arg)
{
    rd_conn_t *c = arg;
    rd_worker_t *w = c->worker;

    rd_protocol_run_command(&w->proto, &c->req, &c->resp);
    /* An answer that depends on a change not yet durable waits for the
     * commit thread; this thread goes on with the next request. */
    if (!rd_protocol_durable(&w->proto, &c->req))
        rd_commit_add(w->commit, c->req.commit_lsn, c);
    else
        rd_conn_committed(c, true);
}

/* The worker never has more requests in flight than the queue holds, so
 * the push cannot fail; should it ever, waiting beats losing the answer. */
void rd_conn_committed(void *item, bool durable)
{
    rd_conn_t *c = item;
    rd_worker_t *w = c->worker;

    if (!durable)
        rd_protocol_error_response(&w->proto, &c->req, RD_STATUS_INTERNAL_ERROR, &c->resp);
    while (rd_queue_push(w->done, c) < 0)
        sched_yield();
}

static void conn_submit(rd_conn_t *c)
{
    rd_worker_t *w = c->worker;

    c->state = RD_CONN_PROCESSING;
    w->in_flight++;
    if (rd_threadpool_submit(w->pool, conn_process, c) < 0) {
        w->in_flight--;
        rd_metrics_refused(RD_REFUSED_POOL_FULL);
        rd_log(RD_LOG_ERR, "thread pool full with %zu requests in flight", w->in_flight);
        conn_fail(c, RD_STATUS_INTERNAL_ERROR);
    }
}

static int conn_dispatch(rd_conn_t *c)
{
    rd_worker_t *w = c->worker;
    char ip[INET6_ADDRSTRLEN];

    rd_log_debug("%s: %s", conn_ip(c, ip),
                 rd_protocol_request_name(&c->req));
    /* The client has done its part; no timeout while we work. */
    rd_conn_list_remove(c);
    if (w->cf->quick_commands_inline && rd_protocol_is_quick(&c->req)) {
        rd_protocol_run_command(&w->proto, &c->req, &c->resp);
        return conn_start_write(c) == CONN_GONE ? CONN_GONE : CONN_PAUSE;
    }
    if (w->in_flight >= w->max_in_flight) {
        /* Every request slot is taken: this one waits its turn, and no new
         * connection is taken until the backlog is gone, so memory stays
         * bounded by the connections already open. */
        c->state = RD_CONN_WAITING;
        rd_conn_list_append(&w->waiting, c);
        rd_worker_accept_block(w, RD_ACCEPT_BUSY);
    } else {
        conn_submit(c);
    }
    return CONN_PAUSE;
}

/* The header is whole in inbuf: check it and find room for the body, in
 * inbuf itself when the request fits (no allocation for small requests). */
static int conn_take_header(rd_conn_t *c)
{
    rd_worker_t *w = c->worker;
    rd_request_t *req = &c->req;
    uint32_t total, extra;
    int status;

    memcpy(req->header, c->inbuf, req->header_size);
    req->header_have = req->header_size;
    /* Counted before any work, so that bad requests spend the budget too. */
    if (w->limit != NULL && !rd_limit_request(w->limit, &w->limit_conf, RD_LIMIT_TCP, c->client_key, rd_now_ms()))
        return conn_fail(c, RD_STATUS_RATE_EXCEEDED);
    status = rd_protocol_validate_header(&w->proto, req);
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
    rd_worker_t *w = c->worker;
    int status;

    c->req.body_complete = true;
    rd_observe_tcp_read(c);
    /* Bytes past the request were sent with it: closing over them would
     * reset the connection, so it lingers instead. */
    c->input_left = c->have > c->want;
    status = rd_protocol_validate_body(&w->proto, &c->req);
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
        c->drained = (size_t)n < room;
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
        return conn_drain(c);
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
static bool conn_admit(rd_worker_t *w, rd_conn_t *c)
{
    int rc;

    if (w->limit == NULL)
        return true;
    rc = rd_limit_conn_open(w->limit, &w->limit_conf, c->client_key, rd_now_ms());
    c->limit_counted = rc > 0;
    return rc >= 0;
}

static void conn_open(rd_worker_t *w, int fd, const struct sockaddr_storage *ss)
{
    rd_conn_t *c;

    if ((size_t)fd >= w->conns_size || (c = conn_get(w)) == NULL) {
        rd_log(RD_LOG_WARN, "no room for connection on descriptor %d: closing it", fd);
        close(fd);
        return;
    }
    rd_limit_key(ss, c->client_key);
    memcpy(c->req.client, c->client_key, sizeof(c->req.client));
    if (!conn_admit(w, c)) {
        rd_log_debug("connection refused: too many from this address");
        rd_stats_add(&w->proto.stats->refused_per_ip, 1);
        rd_metrics_refused(RD_REFUSED_PER_ADDRESS);
        close(fd);
        conn_put(w, c);
        return;
    }
    c->ev = (rd_event_t){ .fd = fd, .handler = conn_handle_event, .data = c };
    c->state = RD_CONN_READ_HEADER;
    w->conns[fd] = c;
    w->active++;
    conn_set_deadline(c, &w->timeouts, w->cf->socket_timeout_ms);
    rd_stats_add(&w->proto.stats->tcp_accepted, 1);
    rd_observe_tcp_open(c, ss);
    /* Clients send their request right after connecting: it is usually
     * there by now, and then the connection never needs epoll. An
     * edge-triggered add reports what arrives after this read. */
    if (conn_read_request(c) == CONN_GONE || c->watched || conn_watch(c) == 0)
        return;
    /* Unwatched, a complete request is still answered: the pool owns it
     * (and a record the pool owns is closed by no one else) or it waits
     * for a slot; its write needs epoll only if the socket buffer fills,
     * and closes it if the watch fails again then. */
    if (c->state != RD_CONN_PROCESSING && c->state != RD_CONN_WAITING)
        conn_close(c);
}

/* Accepts until EAGAIN: an edge-triggered listener reports a burst once.
 * At the connection cap, out of descriptors or with every request slot
 * busy it pauses the listeners instead (and stops at once), so that the
 * loop neither spins nor leaves them forgotten. */
bool rd_conn_accept_all(rd_worker_t *w, int listen_fd)
{
    for (unsigned taken = 0; taken < w->cf->wakeup_budget; taken++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd;

        if (w->active >= w->max_conns) {
            rd_metrics_refused(RD_REFUSED_WORKER_CONNECTIONS);
            rd_worker_accept_block(w, RD_ACCEPT_FULL);
        }
        if (w->accept_blocked != 0)
            return false;
        fd = accept4(listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(w, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            rd_metrics_refused(RD_REFUSED_DESCRIPTORS);
            rd_worker_accept_block(w, RD_ACCEPT_NOFD);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK)
            rd_log(RD_LOG_ERR, "accept: %s", strerror(errno));
        return false;
    }
    return true;
}

void rd_conn_processed(rd_conn_t *c)
{
    c->worker->in_flight--;
    conn_start_write(c);
}

void rd_conn_submit_waiting(rd_worker_t *w)
{
    while (w->waiting.head != NULL && w->in_flight < w->max_in_flight) {
        rd_conn_t *c = w->waiting.head;

        rd_conn_list_remove(c);
        conn_submit(c);
    }
    if (w->waiting.head == NULL)
        rd_worker_accept_unblock(w, RD_ACCEPT_BUSY);
}

static int conn_expire_list(rd_conn_list_t *list, uint64_t now_ms)
{
    char ip[INET6_ADDRSTRLEN];
    rd_conn_t *c;

    while ((c = list->head) != NULL && c->deadline_ms <= now_ms) {
        rd_log_debug("%s: timed out %s", conn_ip(c, ip),
                     c->state == RD_CONN_READ_HEADER || c->state == RD_CONN_READ_BODY
                         ? "reading the request" : "writing the answer");
        rd_metrics_timeout(list == &c->worker->timeouts ? RD_TIMEOUT_READ : RD_TIMEOUT_WRITE);
        conn_close(c);
    }
    return c == NULL ? -1 : (int)(c->deadline_ms - now_ms);
}

int rd_conn_expire(rd_worker_t *w, uint64_t now_ms)
{
    int reading = conn_expire_list(&w->timeouts, now_ms);
    int writing = conn_expire_list(&w->write_timeouts, now_ms);

    if (reading < 0 || (writing >= 0 && writing < reading))
        return writing;
    return reading;
}

void rd_conn_close_all(rd_worker_t *w)
{
    void *done[64];
    size_t n;

    /* The pool has finished: what it handed back is ours again. */
    while ((n = rd_queue_pop_all(w->done, done, 64)) > 0)
        for (size_t i = 0; i < n; i++)
            if (rd_job_kind(done[i]) == RD_JOB_CONN)
                ((rd_conn_t *)done[i])->state = RD_CONN_WRITE;
    for (size_t fd = 0; fd < w->conns_size; fd++)
        if (w->conns[fd] != NULL)
            conn_close(w->conns[fd]);
    while (w->free_conns != NULL) {
        rd_conn_t *c = w->free_conns;

        w->free_conns = c->next;
        free(c);
    }
}
