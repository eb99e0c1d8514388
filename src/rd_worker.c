#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rd_accesslog.h"
#include "rd_channel.h"
#include "rd_log.h"
#include "rd_metrics.h"
#include "rd_module.h"
#include "rd_sandbox.h"
#include "rd_reuseport.h"
#include "rd_udp.h"
#include "rd_worker.h"

/* Once draining, the listeners are closed: an event of theirs still in
 * the current batch is stale and must not reach the closed descriptor. */
static void worker_on_accept(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;

    (void)events;
    if (!w->draining && rd_conn_accept_all(w, ev->fd))
        rd_event_post(&w->loop, ev);
}

static void worker_on_datagram(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;

    (void)events;
    if (!w->draining && rd_udp_handle_readable(w, ev->fd))
        rd_event_post(&w->loop, ev);
}

/* Finished requests are collected after the event batch, not here: closing
 * a connection in the middle of a batch would let a later event of that
 * batch reach a recycled record. */
static void worker_on_done(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;

    (void)events;
    w->done_pending = true;
}

/* Graceful stop: take what the listeners it serves already hold (their
 * wake-up may have come to this worker alone), then leave them to the
 * other workers and finish the requests under way. */
static void worker_start_draining(rd_worker_t *w)
{
    const rd_cycle_t *cy = w->cycle;

    if (w->draining)
        return;
    for (size_t i = 0; i < cy->listener_count; i++) {
        rd_event_t *ev = &w->listener_events[i];

        if (w->listening[i]) {
            ev->handler(ev, EPOLLIN);
            rd_event_del(&w->loop, ev);
            w->listening[i] = false;
        }
        close(ev->fd);
    }
    w->draining = true;
    w->drain_deadline = rd_now_ms() + w->cf->shutdown_timeout_ms;
    if (w->channel_ev.fd >= 0)
        rd_channel_send(w->channel_ev.fd, RD_CHANNEL_QUIET, 0);
    rd_log(RD_LOG_INFO, "worker draining: %zu connections open", w->active);
}

static void worker_on_signal(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;
    struct signalfd_siginfo si;

    (void)events;
    while (read(ev->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGQUIT) {
            worker_start_draining(w);
        } else if (si.ssi_signo == SIGUSR1) {
            rd_log_open(w->cf->error_log);
        } else {
            rd_log(RD_LOG_INFO, "worker stopping on %s", strsignal((int)si.ssi_signo));
            w->stopping = true;
        }
    }
}

static void worker_listeners_update(rd_worker_t *w);

/* A slot of its generation has no worker serving for now (dead, or not
 * answering): its sockets' queues would wait for the respawn. */
static void worker_adopt(rd_worker_t *w, uint32_t slot, bool on)
{
    if (slot >= 64 || slot == w->slot)
        return;
    if (on)
        w->adopted |= UINT64_C(1) << slot;
    else
        w->adopted &= ~(UINT64_C(1) << slot);
    rd_log(RD_LOG_INFO, "worker slot %u %s the sockets of slot %u", w->slot,
           on ? "serves" : "no longer serves", slot);
    worker_listeners_update(w);
}

static void worker_on_channel(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;
    rd_channel_msg_t msg;
    int rc, passed;

    (void)events;
    while ((rc = rd_channel_recv(ev->fd, &msg, &passed)) == 1) {
        if (msg.type == RD_CHANNEL_PING)
            rd_channel_send(ev->fd, RD_CHANNEL_PONG, (uint32_t)w->active);
        else if (msg.type == RD_CHANNEL_LOG && passed >= 0)
            rd_log_adopt(passed);
        else if (msg.type == RD_CHANNEL_ACCESS_LOG && passed >= 0)
            rd_accesslog_adopt(passed);
        else if (msg.type == RD_CHANNEL_ADOPT || msg.type == RD_CHANNEL_RELEASE)
            worker_adopt(w, msg.value, msg.type == RD_CHANNEL_ADOPT);
        else if (passed >= 0)
            close(passed);
    }
    if (rc < 0) {
        rd_log(RD_LOG_ERR, "worker: the master is gone: stopping");
        w->stopping = true;
    }
}

static void worker_drain_done(rd_worker_t *w)
{
    void *done[256];
    size_t n;

    w->done_pending = false;
    while ((n = rd_queue_pop_all(w->done, done, 256)) > 0)
        for (size_t i = 0; i < n; i++) {
            if (rd_job_kind(done[i]) == RD_JOB_DATAGRAM)
                rd_udp_processed(w, done[i]);
            else
                rd_conn_processed(done[i]);
        }
    rd_conn_submit_waiting(w);
}

static int worker_watch(rd_worker_t *w, rd_event_t *ev, int fd, rd_event_handler handler,
                        uint32_t mask)
{
    *ev = (rd_event_t){ .fd = fd, .handler = handler, .data = w };
    if (rd_event_add(&w->loop, ev, mask) < 0) {
        rd_log(RD_LOG_ERR, "epoll_ctl(add %d): %s", fd, strerror(errno));
        return -1;
    }
    return 0;
}

/* Listeners are shared by every worker: EPOLLEXCLUSIVE wakes one of them
 * per event instead of all (no thundering herd). */
static uint32_t listener_mask(void)
{
    return EPOLLIN | EPOLLET | EPOLLEXCLUSIVE;
}

/* Its own sockets of each group, and those of the slots it adopted. */
static bool worker_serves(const rd_worker_t *w, const rd_listener_t *l)
{
    if (rd_reuseport_serves(w->slot, w->workers, l->slot, l->slots))
        return true;
    for (unsigned k = 0; k < w->workers && k < 64; k++)
        if ((w->adopted >> k & 1) && rd_reuseport_serves(k, w->workers, l->slot, l->slots))
            return true;
    return false;
}

/* Puts in the loop exactly the listeners it should wait on now: those it
 * serves, TCP ones only while accepting is not paused, none once draining. */
static void worker_listeners_update(rd_worker_t *w)
{
    const rd_cycle_t *cy = w->cycle;

    for (size_t i = 0; i < cy->listener_count; i++) {
        const rd_listener_t *l = &cy->listeners[i];
        bool want = !w->draining && worker_serves(w, l) &&
                    (l->type != SOCK_STREAM || w->accept_blocked == 0);

        if (want == w->listening[i])
            continue;
        /* EPOLLEXCLUSIVE forbids EPOLL_CTL_MOD: remove and add again. Adding
         * reports connections already waiting, so none is left behind. */
        if (want && rd_event_add(&w->loop, &w->listener_events[i], listener_mask()) < 0) {
            rd_log(RD_LOG_ERR, "epoll_ctl(add %d): %s", l->fd, strerror(errno));
            continue;
        }
        if (!want)
            rd_event_del(&w->loop, &w->listener_events[i]);
        w->listening[i] = want;
    }
}

static void worker_warn_accept(rd_worker_t *w, const char *why)
{
    uint64_t now = rd_now_ms();

    if (now - w->accept_warned_ms < 1000)
        return;
    w->accept_warned_ms = now;
    rd_log(RD_LOG_WARN, "not accepting connections for now: %s (%zu open)", why, w->active);
}

void rd_worker_accept_block(rd_worker_t *w, unsigned reason)
{
    static const char *const why[] = {
        [RD_ACCEPT_FULL] = "worker_connections reached",
        [RD_ACCEPT_NOFD] = "out of descriptors",
        [RD_ACCEPT_BUSY] = "all request slots busy",
    };

    if (reason == RD_ACCEPT_NOFD)
        w->accept_retry_ms = rd_now_ms() + 100;
    if (reason != RD_ACCEPT_BUSY)
        worker_warn_accept(w, why[reason]);
    w->accept_blocked |= reason;
    worker_listeners_update(w);
}

void rd_worker_accept_unblock(rd_worker_t *w, unsigned reason)
{
    if ((w->accept_blocked & reason) == 0)
        return;
    w->accept_blocked &= ~reason;
    worker_listeners_update(w);
}

static int worker_watch_listeners(rd_worker_t *w)
{
    const rd_cycle_t *cy = w->cycle;

    w->listener_events = calloc(cy->listener_count, sizeof(rd_event_t));
    w->listening = calloc(cy->listener_count, sizeof(bool));
    if (w->listener_events == NULL || w->listening == NULL)
        return -1;
    for (size_t i = 0; i < cy->listener_count; i++) {
        const rd_listener_t *l = &cy->listeners[i];
        rd_event_handler h = l->type == SOCK_STREAM ? worker_on_accept : worker_on_datagram;

        w->listener_events[i] = (rd_event_t){ .fd = l->fd, .handler = h, .data = w };
    }
    worker_listeners_update(w);
    for (size_t i = 0; i < cy->listener_count; i++)
        if (worker_serves(w, &cy->listeners[i]) && !w->listening[i])
            return -1;
    return 0;
}

/* Stop requests arrive as events, not as handlers interrupting the loop
 * (the caller has blocked these signals in every thread). */
static int worker_open_signalfd(void)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGUSR1);
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* The commit thread hands back connections and datagrams alike. */
static void worker_committed(void *record, bool durable)
{
    if (rd_job_kind(record) == RD_JOB_DATAGRAM)
        rd_udp_committed(record, durable);
    else
        rd_conn_committed(record, durable);
}

static int worker_set_protocol(rd_worker_t *w)
{
    const rd_config_t *cf = w->cf;

    w->proto.raida_id = (uint8_t)cf->raida_id;
    w->proto.coin_id = (uint16_t)cf->coin_id;
    w->proto.max_body_size = cf->max_body_size;
    w->proto.admin_key_set = cf->admin_key_set;
    memcpy(w->proto.admin_key, cf->admin_key, sizeof(w->proto.admin_key));
    w->proto.admin_allow = cf->admin_allow;
    w->proto.admin_allow_count = cf->admin_allow_count;
    w->proto.stats = w->cycle->stats;
    w->proto.modules = w->cycle->modules;
    /* The store was made by the master before the first fork; each
     * worker maps the pages itself. */
    w->proto.coins = NULL;
    if (w->cycle->coins == NULL)
        return 0;
    rd_coins_conf_t conf;
    rd_config_coins(cf, &conf);
    w->proto.coins = rd_coins_open(w->cycle->coins, &conf);
    if (w->proto.coins == NULL) {
        rd_log(RD_LOG_CRIT, "coin store %s: %s", rd_coins_shared_dir(w->cycle->coins),
               strerror(errno));
        return -1;
    }
    return 0;
}

static void worker_set_limits(rd_worker_t *w)
{
    const rd_config_t *cf = w->cf;

    w->limit_conf = (rd_limit_conf_t){ .max_connections = cf->max_connections_per_ip,
                                       .rate = cf->rate_limit, .burst = cf->rate_limit_burst,
                                       .prefix_v4 = cf->limit_prefix_ipv4,
                                       .prefix_v6 = cf->limit_prefix_ipv6 };
    if (w->limit_conf.max_connections > 0 || w->limit_conf.rate > 0)
        w->limit = w->cycle->limits;
}

/* "auto": what the descriptor limit allows, less a reserve for the loop,
 * the listeners, the channel and the logs. */
static size_t worker_connection_cap(const rd_config_t *cf)
{
    struct rlimit rl;
    size_t limit = cf->max_descriptors;

    if (cf->worker_connections > 0)
        return cf->worker_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit)
        limit = rl.rlim_cur;
    return limit > 128 ? limit - 64 : limit / 2;
}

static int worker_init(rd_worker_t *w, const rd_cycle_t *cycle, int channel)
{
    const rd_config_t *cf = cycle->config;

    w->cycle = cycle;
    w->cf = cf;
    /* On the CPU whose traffic its first socket gets (src/rd_reuseport.c). */
    if (cf->worker_cpu_affinity && rd_reuseport_pin(w->slot) < 0)
        rd_log(RD_LOG_WARN, "worker_cpu_affinity: cannot pin worker slot %u: %s",
               w->slot, strerror(errno));
    /* Before the pool starts: its threads inherit the policy. */
    if (cf->worker_sched_batch && rd_reuseport_batch() < 0)
        rd_log(RD_LOG_WARN, "worker_sched_batch: %s", strerror(errno));
    w->loop.epfd = -1;
    w->signal_ev.fd = -1;
    w->channel_ev.fd = -1;
    if (worker_set_protocol(w) < 0)
        return -1;
    w->conns_size = cf->max_descriptors;
    w->max_in_flight = cf->mod_queue_size;
    w->max_conns = worker_connection_cap(cf);
    w->conns = calloc(w->conns_size, sizeof(*w->conns));
    w->udp = rd_udp_create(cf->udp_payload_threshold);
    if (w->conns == NULL || w->udp == NULL)
        return -1;
    if (rd_event_loop_init(&w->loop, (int)cf->events_per_wait) < 0)
        return -1;
    worker_set_limits(w);
    /* The pool's FIFO and the queue both hold every request in flight, so
     * neither can overflow. */
    w->done = rd_queue_create(cf->mod_queue_size);
    w->pool = rd_threadpool_create(cf->worker_threads, cf->mod_queue_size);
    /* The commit thread also looks for due checkpoints: at least once a second. */
    w->commit = rd_commit_create(&w->proto, cf->mod_queue_size, worker_committed,
                                 cf->checkpoint_interval_ms < 1000 ? cf->checkpoint_interval_ms
                                                                   : 1000);
    if (w->done == NULL || w->pool == NULL || w->commit == NULL)
        return -1;
    if (worker_watch(w, &w->done_ev, rd_queue_fd(w->done), worker_on_done, EPOLLIN | EPOLLET) < 0)
        return -1;
    if (worker_watch(w, &w->signal_ev, worker_open_signalfd(), worker_on_signal,
                     EPOLLIN | EPOLLET) < 0)
        return -1;
    if (channel >= 0 && worker_watch(w, &w->channel_ev, channel, worker_on_channel,
                                    EPOLLIN | EPOLLET) < 0)
        return -1;
    return worker_watch_listeners(w);
}

static void worker_free(rd_worker_t *w)
{
    /* Joining the pool first means every request it held is back on the
     * queue, where close_all finds it. */
    if (w->pool != NULL)
        rd_threadpool_destroy(w->pool);
    /* Then the answers waiting for the journal: synced, back on the queue. */
    rd_commit_destroy(w->commit);
    if (w->done != NULL && w->conns != NULL)
        rd_conn_close_all(w);
    if (w->done != NULL)
        rd_queue_destroy(w->done);
    if (w->signal_ev.fd >= 0)
        close(w->signal_ev.fd);
    rd_event_loop_free(&w->loop);
    free(w->listener_events);
    free(w->listening);
    rd_udp_destroy(w->udp);
    free(w->conns);
    rd_coins_close(w->proto.coins);    /* the pool and the commit thread, its users, are gone */
    rd_accesslog_close();
}

static bool worker_done(const rd_worker_t *w, uint64_t now)
{
    if (w->stopping)
        return true;
    if (!w->draining)
        return false;
    if (w->active == 0 && w->in_flight == 0)
        return true;
    if (now < w->drain_deadline)
        return false;
    rd_log(RD_LOG_WARN, "shutdown timeout: closing %zu connections", w->active);
    return true;
}

static void worker_loop(rd_worker_t *w)
{
    while (!worker_done(w, rd_now_ms())) {
        int next = rd_conn_expire(w, rd_now_ms());
        int timeout = (int)w->cf->epoll_timeout_ms;

        if (next >= 0 && next < timeout)
            timeout = next;
        timeout = rd_accesslog_flush_due(rd_now_ms(), timeout);
        if ((w->draining || (w->accept_blocked & RD_ACCEPT_NOFD)) && timeout > 100)
            timeout = 100;
        if (rd_event_loop_poll(&w->loop, timeout) < 0) {
            rd_log(RD_LOG_CRIT, "epoll_wait: %s", strerror(errno));
            return;
        }
        if (w->done_pending)
            worker_drain_done(w);
        rd_metrics_connections(w->active);
        if ((w->accept_blocked & RD_ACCEPT_NOFD) && rd_now_ms() >= w->accept_retry_ms)
            rd_worker_accept_unblock(w, RD_ACCEPT_NOFD);
    }
}

int rd_worker_run(const rd_cycle_t *cycle, int channel, unsigned slot, unsigned workers)
{
    rd_worker_t w;
    int rc = 0;

    memset(&w, 0, sizeof(w));
    w.slot = slot;
    w.workers = workers;
    if (worker_init(&w, cycle, channel) < 0) {
        rd_log(RD_LOG_CRIT, "worker: cannot start: %s", strerror(errno));
        rc = -1;
    } else if (cycle->modules != NULL && rd_modset_start(cycle->modules) < 0) {
        rc = -1;    /* the modules' process start: before the filter, as files open */
    } else if (rd_sandbox_enter(cycle->config) < 0) {
        rc = -1;
    } else {
        if (channel >= 0)
            rd_channel_send(channel, RD_CHANNEL_READY, 0);
        worker_loop(&w);
    }
    worker_free(&w);
    if (cycle->modules != NULL)
        rd_modset_stop(cycle->modules);
    return rc;
}
