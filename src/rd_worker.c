/* A worker (see include/rd_worker.h): its loop, its signals and channel,
 * the graceful stop, and which listeners it serves; the connections and
 * datagrams are its TCP and UDP layers'. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rd_accesslog.h"
#include "rd_channel.h"
#include "rd_clock.h"
#include "rd_job.h"
#include "rd_log.h"
#include "rd_metrics.h"
#include "rd_module.h"
#include "rd_net.h"
#include "rd_reuseport.h"
#include "rd_sandbox.h"
#include "rd_tcp.h"
#include "rd_udp.h"
#include "rd_worker.h"

typedef struct rd_worker {
    const rd_cycle_t *cycle;
    const rd_config_t *cf;
    rd_protocol_t proto;
    rd_event_loop_t loop;
    rd_net_t net;                  /* lent to tcp and udp: the loop, the pool, the queue... */
    rd_tcp_t *tcp;
    rd_udp_t *udp;
    unsigned slot;                 /* this worker's place in its generation */
    unsigned workers;              /* the generation's size */
    uint64_t adopted;              /* slots whose sockets it serves too (bit N: slot N) */
    rd_event_t finished_ev;        /* the finished queue's eventfd */
    rd_event_t signal_ev;          /* signalfd: stop requests */
    rd_event_t channel_ev;         /* to the master: ready, heartbeat */
    bool finished_pending;         /* the finished queue's eventfd fired this batch */
    bool draining;                 /* SIGQUIT, a graceful stop: no new requests, finish the rest */
    uint64_t drain_deadline;       /* then stop all the same (shutdown_timeout_ms) */
    bool stopping;                 /* SIGTERM, SIGINT, or the master is gone: exit now */
} rd_worker_t;

/* Finished requests are collected after the event batch, not here: closing
 * a connection in the middle of a batch would let a later event of that
 * batch reach a recycled record. */
static void worker_on_finished(rd_event_t *ev, uint32_t events)
{
    rd_worker_t *w = ev->data;

    (void)events;
    w->finished_pending = true;
}

/* Graceful stop: take what the listeners it serves already hold (their
 * wake-up may have come to this worker alone), then leave them to the
 * other workers and finish the requests under way. */
static void worker_start_draining(rd_worker_t *w)
{
    if (w->draining)
        return;
    rd_tcp_close_listeners(w->tcp);
    rd_udp_close_listeners(w->udp);
    w->draining = true;
    w->drain_deadline = rd_clock_ms() + w->cf->shutdown_timeout_ms;
    if (w->channel_ev.fd >= 0)
        rd_channel_send(w->channel_ev.fd, RD_CHANNEL_QUIET, 0);
    rd_log(RD_LOG_INFO, "worker draining: %zu connections open", rd_tcp_active(w->tcp));
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

static int worker_listeners_update(rd_worker_t *w);

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
            rd_channel_send(ev->fd, RD_CHANNEL_PONG, (uint32_t)rd_tcp_active(w->tcp));
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

/* Hands each request the pool finished back to its owner, and the freed
 * slots to the requests waiting for one. */
static void worker_collect_finished(rd_worker_t *w)
{
    void *finished[256];
    size_t n;

    w->finished_pending = false;
    while ((n = rd_queue_pop_all(w->net.finished, finished, 256)) > 0)
        for (size_t i = 0; i < n; i++) {
            if (rd_job_kind(finished[i]) == RD_JOB_DATAGRAM)
                rd_udp_processed(w->udp, finished[i]);
            else
                rd_tcp_processed(w->tcp, finished[i]);
        }
    rd_tcp_submit_waiting(w->tcp);
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

/* Tells TCP and UDP which listeners it serves now: none once draining (TCP
 * leaves its own out of the loop while accepting is paused). -1 when one
 * it serves could not be put in the loop. */
static int worker_listeners_update(rd_worker_t *w)
{
    const rd_cycle_t *cy = w->cycle;
    int rc = 0;

    for (size_t i = 0; i < cy->listener_count; i++) {
        const rd_listener_t *l = &cy->listeners[i];
        bool on = !w->draining && worker_serves(w, l);
        int served = l->type == SOCK_STREAM ? rd_tcp_serve(w->tcp, i, on)
                                            : rd_udp_serve(w->udp, i, on);

        if (served < 0)
            rc = -1;
    }
    return rc;
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

/* The commit threads hand back connections and datagrams alike. */
static void worker_committed(void *record, bool durable)
{
    if (rd_job_kind(record) == RD_JOB_DATAGRAM)
        rd_udp_committed(record, durable);
    else
        rd_tcp_committed(record, durable);
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
    rd_net_t *net = &w->net;

    net->limit_conf = (rd_limit_conf_t){ .max_connections = cf->max_connections_per_ip,
                                         .rate = cf->rate_limit, .burst = cf->rate_limit_burst,
                                         .prefix_v4 = cf->limit_prefix_ipv4,
                                         .prefix_v6 = cf->limit_prefix_ipv6 };
    if (net->limit_conf.max_connections > 0 || net->limit_conf.rate > 0)
        net->limit = w->cycle->limits;
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
    if (rd_event_loop_init(&w->loop, (int)cf->events_per_wait) < 0)
        return -1;
    w->net.cf = cf;
    w->net.loop = &w->loop;
    w->net.proto = &w->proto;
    w->net.max_in_flight = cf->mod_queue_size;
    worker_set_limits(w);
    /* The pool's FIFO and the queue both hold every request in flight, so
     * neither can overflow. */
    w->net.finished = rd_queue_create(cf->mod_queue_size);
    w->net.pool = rd_threadpool_create(cf->worker_threads, cf->mod_queue_size);
    /* The commit threads also look for due checkpoints: at least once a second. */
    w->net.commit = rd_commit_create(&w->proto, cf->mod_queue_size, cf->commit_threads,
                                     worker_committed,
                                     cf->checkpoint_interval_ms < 1000 ? cf->checkpoint_interval_ms
                                                                       : 1000);
    if (w->net.finished == NULL || w->net.pool == NULL || w->net.commit == NULL)
        return -1;
    w->tcp = rd_tcp_create(&w->net, cycle->listeners, cycle->listener_count);
    w->udp = rd_udp_create(&w->net, cycle->listeners, cycle->listener_count);
    if (w->tcp == NULL || w->udp == NULL)
        return -1;
    if (worker_watch(w, &w->finished_ev, rd_queue_fd(w->net.finished), worker_on_finished,
                     EPOLLIN | EPOLLET) < 0)
        return -1;
    if (worker_watch(w, &w->signal_ev, worker_open_signalfd(), worker_on_signal,
                     EPOLLIN | EPOLLET) < 0)
        return -1;
    if (channel >= 0 && worker_watch(w, &w->channel_ev, channel, worker_on_channel,
                                    EPOLLIN | EPOLLET) < 0)
        return -1;
    return worker_listeners_update(w);
}

static void worker_free(rd_worker_t *w)
{
    /* Joining the pool first means every request it held is back on the
     * queue, its owner's again. */
    if (w->net.pool != NULL)
        rd_threadpool_destroy(w->net.pool);
    /* Then the answers waiting for the journal: synced, back on the queue. */
    rd_commit_destroy(w->net.commit);
    rd_tcp_destroy(w->tcp);
    rd_udp_destroy(w->udp);
    if (w->net.finished != NULL)
        rd_queue_destroy(w->net.finished);
    if (w->signal_ev.fd >= 0)
        close(w->signal_ev.fd);
    rd_event_loop_free(&w->loop);
    rd_coins_close(w->proto.coins);    /* the pool and the commit threads, its users, are gone */
    rd_accesslog_close();
}

/* Stopping, or draining with nothing left to finish (or out of time). */
static bool worker_should_exit(const rd_worker_t *w, uint64_t now)
{
    size_t active = rd_tcp_active(w->tcp);

    if (w->stopping)
        return true;
    if (!w->draining)
        return false;
    if (active == 0 && w->net.in_flight == 0)
        return true;
    if (now < w->drain_deadline)
        return false;
    rd_log(RD_LOG_WARN, "shutdown timeout: closing %zu connections", active);
    return true;
}

static void worker_loop(rd_worker_t *w)
{
    /* The clock as the last poll began: the timers judge late only what
     * was due before it (rd_tcp_timers). */
    uint64_t polled = rd_clock_ms();

    for (;;) {
        /* Read once a turn, before this turn's poll. */
        uint64_t now = rd_clock_ms();
        if (worker_should_exit(w, now))
            return;
        int next = rd_tcp_timers(w->tcp, polled, now);
        int timeout = (int)w->cf->epoll_timeout_ms;

        if (next >= 0 && next < timeout)
            timeout = next;
        timeout = rd_accesslog_flush_due(now, timeout);
        if (w->draining && timeout > 100)
            timeout = 100;
        polled = now;
        if (rd_event_loop_poll(&w->loop, timeout) < 0) {
            rd_log(RD_LOG_CRIT, "epoll_wait: %s", strerror(errno));
            return;
        }
        if (w->finished_pending)
            worker_collect_finished(w);
        rd_metrics_connections(rd_tcp_active(w->tcp));
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
    } else if (cycle->modules != NULL && rd_module_set_start(cycle->modules) < 0) {
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
        rd_module_set_stop(cycle->modules);
    return rc;
}
