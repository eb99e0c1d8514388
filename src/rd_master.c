/* The master process: sockets, workers, signals, reload and systemd
 * (see include/rd_master.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rd_accesslog.h"
#include "rd_channel.h"
#include "rd_clock.h"
#include "rd_crashrec.h"
#include "rd_cycle.h"
#include "rd_event.h"
#include "rd_listener.h"
#include "rd_log.h"
#include "rd_master.h"
#include "rd_metrics.h"
#include "rd_metrics_server.h"
#include "rd_modload.h"
#include "rd_notify.h"
#include "rd_pidfile.h"
#include "rd_proctitle.h"
#include "rd_sandbox.h"
#include "rd_status.h"
#include "rd_worker.h"

#define MAX_WORKERS 64
#define MAX_PROCS 512
#define TICK_MS 1000
#define RELOAD_TIMEOUT_MS 10000
#define KILL_GRACE_MS 3000
#define SETTLE_TIMEOUT_MS 2000  /* old workers normally go quiet in a loop turn */
#define RESPAWN_MAX_DELAY_MS 30000
#define CRASH_LIFETIME_MS 2000   /* a worker that dies younger crashed on start */
#define RELOAD_WAITERS RD_STATUS_MAX_WAITERS

typedef struct rd_master rd_master_t;

typedef struct rd_proc {
    rd_master_t *master;
    pid_t pid;                  /* 0: free entry */
    unsigned generation;
    unsigned slot;
    rd_event_t ev;              /* the channel */
    bool ready;
    bool draining;
    bool quiet;                 /* draining and no longer accepting */
    bool pong;
    bool stalled;               /* missed a heartbeat: its slot is covered */
    uint32_t connections;
    uint64_t started_ms;
    uint64_t kill_at;           /* SIGKILL then, if still alive (rd_clock_ms); 0: never */
} rd_proc_t;

/* Who waits for a reload's verdict ("raidad -s reload"). */
/* A caller of "raidad -s reload" waiting for its verdict, held by a
 * pidfd: one that gave up and exited is then never signalled, nor is
 * whatever process got its pid since (SIGUSR1 would kill it). -1 where
 * the kernel has no pidfd_open: the pid alone. */
typedef struct rd_waiter {
    pid_t pid;
    int pidfd;
} rd_waiter_t;

typedef struct rd_waiters {
    rd_waiter_t w[RELOAD_WAITERS];
    unsigned count;
} rd_waiters_t;

typedef struct rd_slot {
    uint64_t respawn_at;        /* 0: nothing due */
    unsigned crashes;
    rd_proc_t *adopter;         /* serves this slot's sockets while its worker cannot */
} rd_slot_t;

struct rd_master {
    char conf_path[PATH_MAX];   /* a copy: the process title overwrites argv */
    rd_cycle_t cycle;           /* serving now */
    rd_cycle_t next;            /* being started by a reload; next.config NULL if none */
    unsigned generation;        /* the serving workers' generation */
    unsigned next_generation;   /* the reload's, while next.config is set */
    unsigned last_generation;
    rd_event_loop_t loop;
    rd_event_t signal_ev;
    rd_proc_t procs[MAX_PROCS];
    rd_slot_t slots[MAX_WORKERS];
    rd_waiters_t waiters;       /* of the reload under way */
    bool reload_queued;         /* asked for during a reload: one more after it */
    rd_waiters_t queued_waiters;
    uint64_t reload_deadline;
    bool settling;              /* reloaded; waiting for the old workers to go quiet */
    uint64_t settle_deadline;
    char last_error[512];
    char status[640];           /* the last STATUS= sent */
    int stop;                   /* 0, SIGQUIT (graceful) or SIGTERM (fast) */
    uint64_t kill_deadline;
    uint64_t next_tick;
    uint64_t watchdog_usec;
    bool ready;
    int pid_fd;                 /* the locked pid file; -1: none */
    char pid_path[PATH_MAX];    /* its path, as locked */
};

static unsigned worker_count(const rd_config_t *cf)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (cf->worker_processes > 0)
        return cf->worker_processes > MAX_WORKERS ? MAX_WORKERS : cf->worker_processes;
    return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

static void master_signal_generation(rd_master_t *m, unsigned generation, int sig)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].generation == generation)
            kill(m->procs[i].pid, sig);
}

static void master_signal_all(rd_master_t *m, int sig)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0)
            kill(m->procs[i].pid, sig);
}

/* The last resort (the event loop itself failed): every child killed and
 * reaped, so that none is left running, or writing the coin store's
 * journal while the master replays it (master_free). */
static void master_kill_all(rd_master_t *m)
{
    master_signal_all(m, SIGKILL);
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0) {
            while (waitpid(m->procs[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
            m->procs[i].pid = 0;
        }
}

static size_t master_live_procs(const rd_master_t *m)
{
    size_t n = 0;

    for (size_t i = 0; i < MAX_PROCS; i++)
        n += m->procs[i].pid > 0;
    return n;
}


/* ---- worker processes ---- */

static bool cycle_has_fd(const rd_cycle_t *c, int fd)
{
    for (size_t i = 0; i < c->listener_count; i++)
        if (c->listeners[i].fd == fd)
            return true;
    return false;
}

/* A listener left open here would keep its port accepting into a queue no
 * one serves, long after a reload removed it. */
static void child_close_other_listeners(const rd_cycle_t *other, const rd_cycle_t *mine)
{
    for (size_t i = 0; i < other->listener_count; i++)
        if (other != mine && !cycle_has_fd(mine, other->listeners[i].fd))
            close(other->listeners[i].fd);
}

/* The child keeps only its channel and its own generation's listeners. */
/* A worker made during a reload holds none of the master's waiters. */
static void waiters_close(rd_waiters_t *w)
{
    for (unsigned i = 0; i < w->count; i++)
        if (w->w[i].pidfd >= 0)
            close(w->w[i].pidfd);
    w->count = 0;
}

static void child_close_inherited(rd_master_t *m, const rd_cycle_t *mine, int channel)
{
    close(m->loop.epfd);
    close(m->signal_ev.fd);
    if (m->pid_fd >= 0)
        close(m->pid_fd);       /* the lock stays the master's */
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].ev.fd != channel)
            close(m->procs[i].ev.fd);
    child_close_other_listeners(&m->cycle, mine);
    child_close_other_listeners(&m->next, mine);
    rd_metrics_server_close_in_child();
    waiters_close(&m->waiters);
    waiters_close(&m->queued_waiters);
}

/* Never returns. exit(), not _exit(): the sanitizers' leak check and
 * coverage run at exit, and the master flushed nothing that could be
 * written twice. */
static void child_run(rd_master_t *m, const rd_cycle_t *cycle, int channel, pid_t master,
                      unsigned slot)
{
    int rc;

    child_close_inherited(m, cycle, channel);
    rd_proctitle_set("raidad: worker process");
    /* A reload may bring a new level or log file: the new workers apply
     * them, the file opened while still privileged. */
    rd_log_set_level(cycle->config->log_level);
    rd_log_open(cycle->config->error_log);
    rd_accesslog_open(cycle->config);
    if (rd_sandbox_drop_privileges(cycle->config, "worker") < 0)
        exit(1);
    /* Workers never outlive the master. Only now: changing the user clears
     * the parent-death signal. The master may have died before it was set. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        exit(1);
    rc = rd_worker_run(cycle, channel, slot, worker_count(cycle->config));
    close(channel);
    exit(rc < 0 ? 1 : 0);
}

static rd_proc_t *master_free_proc(rd_master_t *m)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid == 0)
            return &m->procs[i];
    return NULL;
}

static void master_on_channel(rd_event_t *ev, uint32_t events);

static int master_spawn(rd_master_t *m, const rd_cycle_t *cycle, unsigned generation, unsigned slot)
{
    rd_proc_t *p = master_free_proc(m);
    pid_t master = getpid();
    int fds[2];
    pid_t pid;

    if (p == NULL || rd_channel_open(fds) < 0) {
        rd_log(RD_LOG_ALERT, "cannot start a worker: %s",
               p ? strerror(errno) : "too many processes");
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        rd_metrics_attach(slot, (size_t)(p - m->procs));
        rd_crashrec_attach((size_t)(p - m->procs));
        child_run(m, cycle, fds[1], master, slot);
    }
    close(fds[1]);
    if (pid < 0) {
        rd_log(RD_LOG_ALERT, "fork: %s", strerror(errno));
        close(fds[0]);
        return -1;
    }
    *p = (rd_proc_t){ .master = m, .pid = pid, .generation = generation, .slot = slot,
                      .started_ms = rd_clock_ms() };
    p->ev = (rd_event_t){ .fd = fds[0], .handler = master_on_channel, .data = p };
    /* Unwatched, the channel still works both ways for the pings; only the
     * worker's own messages (ready, pong) go unread. */
    if (rd_event_add(&m->loop, &p->ev, EPOLLIN | EPOLLET) < 0)
        rd_log(RD_LOG_ALERT, "cannot watch the channel of worker %ld: %s", (long)pid,
               strerror(errno));
    rd_log(RD_LOG_INFO, "started worker %ld (generation %u)", (long)pid, generation);
    return 0;
}

static int master_spawn_generation(rd_master_t *m, const rd_cycle_t *cycle, unsigned generation)
{
    unsigned n = worker_count(cycle->config);

    for (unsigned slot = 0; slot < n; slot++)
        if (master_spawn(m, cycle, generation, slot) < 0)
            return -1;
    return 0;
}

static bool generation_ready(const rd_master_t *m, unsigned generation, unsigned want)
{
    unsigned ready = 0;

    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].generation == generation && m->procs[i].ready)
            ready++;
    return ready >= want;
}

/* ---- slots without a serving worker ---- */

static rd_proc_t *slot_worker(rd_master_t *m, unsigned slot)
{
    for (size_t i = 0; i < MAX_PROCS; i++) {
        rd_proc_t *p = &m->procs[i];

        if (p->pid > 0 && p->generation == m->generation && p->slot == slot && !p->draining)
            return p;
    }
    return NULL;
}

static bool proc_serving(const rd_proc_t *p)
{
    return p != NULL && p->pid > 0 && p->ready && !p->stalled && !p->draining;
}

/* Each worker alone reads its sockets (src/rd_reuseport.c). While a slot's
 * worker is dead (until its respawn serves) or misses a heartbeat, another
 * worker of the generation serves that slot's sockets too, so that what
 * queues there is not left waiting; it lets go once the slot is served
 * again. */
static void master_cover_slots(rd_master_t *m)
{
    unsigned n = worker_count(m->cycle.config);

    if (!m->ready || m->stop || n < 2)
        return;
    for (unsigned slot = 0; slot < n; slot++) {
        rd_slot_t *s = &m->slots[slot];
        bool orphan = !proc_serving(slot_worker(m, slot));

        if (!orphan || (s->adopter != NULL && !proc_serving(s->adopter))) {
            if (s->adopter != NULL && s->adopter->pid > 0)
                rd_channel_send(s->adopter->ev.fd, RD_CHANNEL_RELEASE, slot);
            s->adopter = NULL;
        }
        for (unsigned k = 1; orphan && s->adopter == NULL && k < n; k++) {
            rd_proc_t *p = slot_worker(m, (slot + k) % n);

            if (proc_serving(p) && rd_channel_send(p->ev.fd, RD_CHANNEL_ADOPT, slot) == 0) {
                s->adopter = p;
                rd_log(RD_LOG_NOTICE,
                       "worker slot %u is not serving: worker %ld serves its sockets",
                       slot, (long)p->pid);
            }
        }
    }
}

/* ---- systemd and operators ---- */

/* Sent only when it changes: sd_notify blocks when the manager reads
 * slowly, and the master must not be kept waiting by it. */
static void master_status(rd_master_t *m)
{
    unsigned workers = 0, connections = 0;
    char status[sizeof(m->status)];

    for (size_t i = 0; i < MAX_PROCS; i++) {
        if (m->procs[i].pid > 0 && m->procs[i].ready) {
            workers += !m->procs[i].draining;
            connections += m->procs[i].connections;
        }
    }
    snprintf(status, sizeof(status), "%u workers, %u connections%s%s", workers, connections,
             m->last_error[0] ? "; last reload refused: " : "", m->last_error);
    rd_metrics_workers(workers);
    if (strcmp(status, m->status) == 0)
        return;
    memcpy(m->status, status, sizeof(status));
    rd_notify("STATUS=%s", status);
}

static void waiter_signal(rd_waiter_t *x, int sig)
{
    if (x->pidfd < 0) {
        kill(x->pid, sig);
        return;
    }
    (void)syscall(SYS_pidfd_send_signal, x->pidfd, sig, NULL, 0);
    close(x->pidfd);
    x->pidfd = -1;
}

static void waiters_reply(rd_waiters_t *w, bool ok)
{
    for (unsigned i = 0; i < w->count; i++)
        waiter_signal(&w->w[i], ok ? SIGUSR1 : SIGUSR2);
    w->count = 0;
}

static void waiters_put(rd_waiters_t *w, rd_waiter_t x)
{
    if (w->count == RELOAD_WAITERS) {
        rd_log(RD_LOG_WARN, "reload: %d processes wait already: process %ld gets no verdict",
               RELOAD_WAITERS, (long)x.pid);
        waiter_signal(&x, SIGUSR2);
        return;
    }
    w->w[w->count++] = x;
}

/* PID asked, and waits: held from now on by a pidfd (rd_waiter_t). */
static void waiters_add(rd_waiters_t *w, pid_t pid)
{
    if (pid <= 0)
        return;
    waiters_put(w, (rd_waiter_t){ .pid = pid,
                                  .pidfd = (int)syscall(SYS_pidfd_open, pid, 0) });
}

static void master_publish_status(rd_master_t *m, bool mid_cycle);

/* The record says the verdict, and to whom, before they hear it. */
static void master_reload_reply(rd_master_t *m, bool ok)
{
    long pids[RELOAD_WAITERS];

    for (unsigned i = 0; i < m->waiters.count; i++)
        pids[i] = (long)m->waiters.w[i].pid;
    rd_status_verdict(ok, pids, m->waiters.count);
    master_publish_status(m, true);
    waiters_reply(&m->waiters, ok);
}

static void master_reload_refused(rd_master_t *m, const char *why)
{
    rd_log(RD_LOG_ERR, "reload refused, the old configuration keeps serving: %s", why);
    snprintf(m->last_error, sizeof(m->last_error), "%s", why);
    /* It goes into STATUS=, where a line break would start another field
     * of the notification (READY=1, WATCHDOG=trigger), and WHY may quote
     * the configuration file. */
    for (char *c = m->last_error; *c != '\0'; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    rd_metrics_reload(false);
    rd_status_reload(false, why);
    master_reload_reply(m, false);
    master_status(m);
}

static bool generation_alive(const rd_master_t *m, unsigned generation)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].generation == generation)
            return true;
    return false;
}

/* Generations are numbered in order: walking down from the newest old one,
 * those past the cap are stopped at once. */
static void master_cap_draining(rd_master_t *m)
{
    unsigned count = 0;

    for (unsigned g = m->generation; g-- > 0;) {
        if (!generation_alive(m, g) || ++count <= m->cycle.config->max_old_generations)
            continue;
        rd_log(RD_LOG_WARN, "too many generations draining: stopping generation %u now", g);
        master_signal_generation(m, g, SIGTERM);
    }
}

/* A reload is complete, for systemd and for "raidad -s reload", once no
 * old worker accepts any more: from then on every new request meets the
 * new configuration. */
static void master_check_settled(rd_master_t *m, uint64_t now)
{
    if (!m->settling)
        return;
    for (size_t i = 0; i < MAX_PROCS && now < m->settle_deadline; i++)
        if (m->procs[i].pid > 0 && m->procs[i].draining && !m->procs[i].quiet)
            return;
    m->settling = false;
    master_reload_reply(m, true);
    rd_notify("READY=1");
    /* Also when the start it completes was not ready yet: from now on the
     * watchdog is fed. */
    m->ready = true;
    master_status(m);
}

static void master_reload_commit(rd_master_t *m)
{
    for (size_t i = 0; i < MAX_PROCS; i++) {
        rd_proc_t *p = &m->procs[i];

        if (p->pid > 0 && p->generation == m->generation && !p->draining) {
            p->draining = true;
            kill(p->pid, SIGQUIT);
        }
    }
    rd_cycle_release(&m->cycle, &m->next);
    m->cycle = m->next;
    m->next = (rd_cycle_t){ 0 };
    m->generation = m->next_generation;
    memset(m->slots, 0, sizeof(m->slots));
    m->last_error[0] = '\0';
    rd_log_set_level(m->cycle.config->log_level);
    /* Else the log goes on where it went: said there. */
    if (rd_log_open(m->cycle.config->error_log) < 0)
        rd_log(RD_LOG_ERR, "cannot open the log %s: %s", m->cycle.config->error_log,
               strerror(errno));
    rd_log(RD_LOG_NOTICE, "reloaded %s: generation %u serving", m->conf_path, m->generation);
    rd_metrics_reload(true);
    rd_metrics_generation(m->generation);
    rd_status_reload(true, NULL);
    rd_metrics_server_reload(m->cycle.config);
    master_cap_draining(m);
    m->settling = true;
    m->settle_deadline = rd_clock_ms() + SETTLE_TIMEOUT_MS;
    master_check_settled(m, rd_clock_ms());
}

static void master_check_ready(rd_master_t *m);

/* An abandoned reload's workers: those already serving drain what they
 * hold (SIGQUIT), as an old generation does, for a failed reload must not
 * lose requests; those not yet serving hold none and stop (SIGTERM), and
 * are killed if still there a moment later: one stuck in its start never
 * reads SIGTERM, and holds the new listening sockets. */
static void master_abandon_generation(rd_master_t *m, unsigned generation)
{
    uint64_t now = rd_clock_ms();

    for (size_t i = 0; i < MAX_PROCS; i++) {
        rd_proc_t *p = &m->procs[i];

        if (p->pid <= 0 || p->generation != generation)
            continue;
        p->draining = true;
        kill(p->pid, p->ready ? SIGQUIT : SIGTERM);
        if (!p->ready)
            p->kill_at = now + KILL_GRACE_MS;
    }
}

static void master_kill_overdue(rd_master_t *m, uint64_t now)
{
    for (size_t i = 0; i < MAX_PROCS; i++) {
        rd_proc_t *p = &m->procs[i];

        if (p->pid > 0 && p->kill_at != 0 && now >= p->kill_at) {
            rd_log(RD_LOG_WARN, "worker %ld of an abandoned reload did not stop: killing it",
                   (long)p->pid);
            kill(p->pid, SIGKILL);
            p->kill_at = 0;
        }
    }
}

/* READY=1 ends the RELOADING=1 only when the start was ready: before that,
 * systemd waits for the first generation's READY=1 anyway. */
static void master_reload_abort(rd_master_t *m, const char *why)
{
    master_abandon_generation(m, m->next_generation);
    rd_cycle_release(&m->next, &m->cycle);
    if (m->ready)
        rd_notify("READY=1");
    master_reload_refused(m, why);
    if (!m->stop)
        master_check_ready(m);  /* the old generation may have become ready meanwhile */
}

static void master_check_ready(rd_master_t *m)
{
    if (m->next.config != NULL) {
        if (generation_ready(m, m->next_generation, worker_count(m->next.config)))
            master_reload_commit(m);
    } else if (!m->ready && generation_ready(m, m->generation, worker_count(m->cycle.config))) {
        m->ready = true;
        rd_log(RD_LOG_NOTICE, "ready: %u workers serving", worker_count(m->cycle.config));
        rd_notify("READY=1\nMAINPID=%ld", (long)getpid());
        master_status(m);
    }
}

/* True when a reload cannot start now: refused while stopping, queued
 * while another one is under way. */
static bool master_reload_deferred(rd_master_t *m, pid_t requester)
{
    if (m->stop) {
        rd_log(RD_LOG_NOTICE, "reload ignored: stopping");
        if (requester > 0)
            kill(requester, SIGUSR2);
        return true;
    }
    if (m->next.config != NULL || m->settling) {
        /* The file may have changed since this reload read it: one more
         * reload once this one is over, however many were asked for. */
        rd_log(RD_LOG_NOTICE, "reload queued: a reload is under way");
        m->reload_queued = true;
        waiters_add(&m->queued_waiters, requester);
        return true;
    }
    return false;
}

/* The next generation's cycle is opened beside the serving one
 * (src/rd_cycle.c), or the reload is refused with the reason; its
 * workers then start, and master_check_ready() hands over once they all
 * serve. */
static void master_reload(rd_master_t *m, pid_t requester)
{
    char err[RD_CYCLE_ERR_MAX];

    if (master_reload_deferred(m, requester))
        return;
    waiters_add(&m->waiters, requester);
    /* A file that does not read is refused before systemd hears of a reload. */
    if (rd_cycle_configure(&m->next, m->conf_path, err, sizeof(err)) < 0) {
        master_reload_refused(m, err);
        return;
    }
    rd_notify("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)rd_clock_us());
    rd_log(RD_LOG_NOTICE, "reloading %s", m->conf_path);
    if (rd_cycle_open(&m->next, &m->cycle, err, sizeof(err)) < 0) {
        rd_cycle_release(&m->next, &m->cycle);
        if (m->ready)
            rd_notify("READY=1");
        master_reload_refused(m, err);
        return;
    }
    m->next_generation = ++m->last_generation;
    m->reload_deadline = rd_clock_ms() + RELOAD_TIMEOUT_MS;
    if (master_spawn_generation(m, &m->next, m->next_generation) < 0)
        master_reload_abort(m, "cannot start the new workers");
}

/* ---- events ---- */

static void master_on_channel(rd_event_t *ev, uint32_t events)
{
    rd_proc_t *p = ev->data;
    rd_channel_msg_t msg;
    int rc;

    (void)events;
    while ((rc = rd_channel_recv(ev->fd, &msg, NULL)) == 1) {
        if (msg.type == RD_CHANNEL_READY) {
            p->ready = true;
            p->pong = true;
            master_check_ready(p->master);
            master_cover_slots(p->master);
        } else if (msg.type == RD_CHANNEL_PONG) {
            p->pong = true;
            p->connections = msg.value;
            if (p->stalled) {
                p->stalled = false;
                master_cover_slots(p->master);
            }
        } else if (msg.type == RD_CHANNEL_QUIET) {
            p->quiet = true;
            master_check_settled(p->master, rd_clock_ms());
        }
    }
    /* A closed channel means the worker is exiting: SIGCHLD tells the rest. */
    if (rc < 0)
        rd_event_del(&p->master->loop, ev);
}

static void log_exit(const rd_proc_t *p, int status)
{
    if (WIFSIGNALED(status))
        rd_log(p->draining || p->master->stop ? RD_LOG_NOTICE : RD_LOG_ERR,
               "worker %ld exited on signal %d (%s)", (long)p->pid,
               WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) != 0)
        rd_log(RD_LOG_ERR, "worker %ld exited with status %d%s", (long)p->pid, WEXITSTATUS(status),
               WEXITSTATUS(status) == RD_SANDBOX_KILLED_STATUS
                   ? " (killed by its system call filter)" : "");
    else
        rd_log(RD_LOG_INFO, "worker %ld exited", (long)p->pid);
}

/* A worker of the serving generation that dies is replaced at once; one
 * that keeps dying young is replaced after a delay that doubles each time. */
static void master_schedule_respawn(rd_master_t *m, const rd_proc_t *p)
{
    rd_slot_t *s = &m->slots[p->slot];
    uint64_t now = rd_clock_ms();
    uint64_t delay = 0;

    if (now - p->started_ms >= CRASH_LIFETIME_MS)
        s->crashes = 0;
    else if (++s->crashes > 1)
        delay = 100ULL << (s->crashes < 10 ? s->crashes - 2 : 8);
    if (delay > RESPAWN_MAX_DELAY_MS)
        delay = RESPAWN_MAX_DELAY_MS;
    if (delay > 0)
        rd_log(RD_LOG_ERR, "worker slot %u died young %u times in a row: respawning in %llu ms",
               p->slot, s->crashes, (unsigned long long)delay);
    s->respawn_at = now + delay;
}

/* What a worker that died was running, from its crash record; the names
 * of its commands from the master's own table of its generation, when
 * the master still has it. */
static void log_crash(const rd_proc_t *p, int status)
{
    const rd_master_t *m = p->master;
    const rd_module_set_t *names = p->generation == m->generation ? m->cycle.modules
        : m->next.config != NULL && p->generation == m->next_generation ? m->next.modules : NULL;
    char what[512];

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    /* Killed from outside (SIGKILL: an operator, the OOM killer) or while
     * stopping, the worker was not failed by the command it was running:
     * the record is then news, not an error. */
    if (rd_crashrec_read((size_t)(p - m->procs), names, what, sizeof(what)))
        rd_log(WIFSIGNALED(status) && (WTERMSIG(status) == SIGKILL || p->draining || m->stop)
               ? RD_LOG_NOTICE : RD_LOG_ERR,
               "worker %ld died while running %s", (long)p->pid, what);
}

static void master_proc_exited(rd_master_t *m, rd_proc_t *p, int status)
{
    log_exit(p, status);
    log_crash(p, status);
    /* A worker that did not exit cleanly never closed its connections. */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rd_limit_reset_connections(m->cycle.limits);
    rd_event_del(&m->loop, &p->ev);
    close(p->ev.fd);
    rd_metrics_proc_gone((size_t)(p - m->procs));
    for (unsigned slot = 0; slot < MAX_WORKERS; slot++)
        if (m->slots[slot].adopter == p)
            m->slots[slot].adopter = NULL;
    bool respawn = !m->stop && p->generation == m->generation && !p->draining;
    bool abandon = !respawn && m->next.config != NULL && p->generation == m->next_generation
        && !p->ready;
    if (respawn) {
        rd_metrics_worker_restart(status);
        master_schedule_respawn(m, p);
    }
    /* Reaped: never signalled again (its pid may be another process's). */
    p->pid = 0;
    p->kill_at = 0;
    if (abandon)
        master_reload_abort(m, "a new worker exited before serving");
    master_check_settled(m, rd_clock_ms());
    master_status(m);
}

static void master_reap(rd_master_t *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (rd_metrics_server_reaped(pid, status))
            continue;
        for (size_t i = 0; i < MAX_PROCS; i++) {
            if (m->procs[i].pid == pid) {
                master_proc_exited(m, &m->procs[i], status);
                break;
            }
        }
    }
    master_cover_slots(m);
}

static void master_stop(rd_master_t *m, int sig)
{
    uint64_t grace = sig == SIGQUIT ? m->cycle.config->shutdown_timeout_ms : 0;

    if (m->stop == SIGTERM || m->stop == sig)
        return;
    /* A reload that was settling is done, and one under way abandoned:
     * either's READY=1 goes before STOPPING=1. */
    m->settle_deadline = 0;
    master_check_settled(m, rd_clock_ms());
    m->stop = sig;
    if (m->next.config != NULL)
        master_reload_abort(m, "stopping");
    rd_log(RD_LOG_NOTICE, "%s shutdown", sig == SIGQUIT ? "graceful" : "fast");
    rd_notify("STOPPING=1");
    m->reload_queued = false;
    waiters_reply(&m->queued_waiters, false);
    m->kill_deadline = rd_clock_ms() + grace + KILL_GRACE_MS;
    master_signal_all(m, sig);
    rd_metrics_server_stop();
    /* The workers close their copies as they stop; once the master's are
     * closed too, new clients are refused at once instead of queueing for
     * a server that is leaving. */
    rd_listeners_close(m->cycle.listeners, m->cycle.listener_count);
    m->cycle.listeners = NULL;
    m->cycle.listener_count = 0;
}

/* Workers may have given up the right to open the file: the master opens
 * it and hands each of them the descriptor. */
static void master_reopen_logs(rd_master_t *m)
{
    const char *path = m->cycle.config->error_log;
    int access = rd_accesslog_open_file(m->cycle.config);

    rd_log(RD_LOG_NOTICE, "reopening the log");
    for (size_t i = 0; i < MAX_PROCS && access >= 0; i++)
        if (m->procs[i].pid > 0)
            rd_channel_send_fd(m->procs[i].ev.fd, RD_CHANNEL_ACCESS_LOG, access);
    if (access >= 0)
        close(access);
    if (path[0] == '\0')
        return;
    if (rd_log_open(path) < 0) {
        rd_log(RD_LOG_ERR, "cannot reopen %s: %s", path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0)
            rd_channel_send_fd(m->procs[i].ev.fd, RD_CHANNEL_LOG, rd_log_fd());
    rd_metrics_server_send_log(rd_log_fd());
}

static void master_on_signal(rd_event_t *ev, uint32_t events)
{
    rd_master_t *m = ev->data;
    struct signalfd_siginfo si;

    (void)events;
    while (read(ev->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD: master_reap(m); break;
        case SIGHUP:
            master_reload(m, si.ssi_code == SI_QUEUE && si.ssi_int == RD_RELOAD_MAGIC
                                 ? (pid_t)si.ssi_pid : 0);
            break;
        case SIGQUIT: master_stop(m, SIGQUIT); break;
        case SIGUSR1: master_reopen_logs(m); break;
        default: master_stop(m, SIGTERM); break;
        }
    }
}

/* ---- timers ---- */

/* What "raidad -s status" shows (rd_status.c), from the master's own
 * records: at each tick, before the pings reset the heartbeat flags; or
 * MID_CYCLE, between ticks, where a worker that has not yet answered the
 * ping under way serves if it answered the last one. */
static void master_publish_status(rd_master_t *m, bool mid_cycle)
{
    static rd_status_t st;      /* 10 kB: off the stack */
    unsigned serving = 0;

    st = (rd_status_t){ .master_pid = getpid(), .generation = m->generation,
                        .expected = worker_count(m->cycle.config),
                        .metrics_pid = rd_metrics_server_pid() };
    for (size_t i = 0; i < MAX_PROCS && st.count < RD_STATUS_MAX_WORKERS; i++) {
        const rd_proc_t *p = &m->procs[i];

        if (p->pid <= 0)
            continue;
        bool answered = p->pong || (mid_cycle && !p->stalled);
        st.workers[st.count++] = (rd_status_worker_t){
            .pid = p->pid, .generation = p->generation, .connections = p->connections,
            .state = p->draining ? "draining" : !p->ready ? "starting"
                   : answered ? "serving" : "silent",
            .requests = rd_metrics_proc_requests(i) };
        serving += p->generation == m->generation && !p->draining && p->ready && answered;
    }
    st.healthy = serving >= st.expected && !m->stop;
    /* Where the pid file is, which a reload does not move (master_free
     * removes both from there). */
    rd_status_publish(m->pid_path, &st);
}

/* Heartbeat: every worker is pinged; systemd's watchdog is fed only when
 * every serving worker answered the previous ping. */
static void master_tick(rd_master_t *m, uint64_t now)
{
    bool all_answered = true;

    master_publish_status(m, false);

    for (size_t i = 0; i < MAX_PROCS; i++) {
        rd_proc_t *p = &m->procs[i];

        if (p->pid <= 0 || !p->ready)
            continue;
        if (!p->draining && !p->pong)
            all_answered = false;
        p->stalled = !p->draining && !p->pong;
        p->pong = false;
        rd_channel_send(p->ev.fd, RD_CHANNEL_PING, 0);
    }
    master_cover_slots(m);
    if (m->watchdog_usec > 0 && m->ready && all_answered)
        rd_notify("WATCHDOG=1");
    else if (m->watchdog_usec > 0 && m->ready)
        rd_log(RD_LOG_WARN, "a worker missed its heartbeat: watchdog not fed");
    master_status(m);
    m->next_tick = now + (m->watchdog_usec > 0 && m->watchdog_usec / 3000 < TICK_MS
                              ? m->watchdog_usec / 3000 : TICK_MS);
}

static void master_respawn_due(rd_master_t *m, uint64_t now)
{
    for (unsigned slot = 0; slot < MAX_WORKERS; slot++) {
        rd_slot_t *s = &m->slots[slot];

        if (s->respawn_at == 0 || s->respawn_at > now || m->stop)
            continue;
        s->respawn_at = 0;
        if (master_spawn(m, &m->cycle, m->generation, slot) < 0)
            s->respawn_at = now + RESPAWN_MAX_DELAY_MS;
    }
}

/* A reload asked for during the last one starts once that one is over. */
static void master_reload_queued(rd_master_t *m)
{
    if (!m->reload_queued || m->next.config != NULL || m->settling || m->stop)
        return;
    m->reload_queued = false;
    for (unsigned i = 0; i < m->queued_waiters.count; i++)
        waiters_put(&m->waiters, m->queued_waiters.w[i]);
    m->queued_waiters.count = 0;
    master_reload(m, 0);
}

static void master_timers(rd_master_t *m, uint64_t now)
{
    if (now >= m->next_tick)
        master_tick(m, now);
    rd_metrics_server_tick(m->cycle.config, now);
    master_respawn_due(m, now);
    master_kill_overdue(m, now);
    if (m->next.config != NULL && now >= m->reload_deadline)
        master_reload_abort(m, "the new workers did not start in time");
    master_check_settled(m, now);
    master_reload_queued(m);
    if (m->stop && now >= m->kill_deadline) {
        rd_log(RD_LOG_WARN, "workers still running after the shutdown timeout: killing them");
        master_signal_all(m, SIGKILL);
        m->kill_deadline = now + KILL_GRACE_MS;
    }
}

static int master_timeout(const rd_master_t *m, uint64_t now)
{
    uint64_t next = m->next_tick;

    for (unsigned slot = 0; slot < MAX_WORKERS; slot++)
        if (m->slots[slot].respawn_at != 0 && m->slots[slot].respawn_at < next)
            next = m->slots[slot].respawn_at;
    if (m->next.config != NULL && m->reload_deadline < next)
        next = m->reload_deadline;
    if (m->settling && m->settle_deadline < next)
        next = m->settle_deadline;
    if (m->stop && m->kill_deadline < next)
        next = m->kill_deadline;
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (m->procs[i].pid > 0 && m->procs[i].kill_at != 0 && m->procs[i].kill_at < next)
            next = m->procs[i].kill_at;
    return next <= now ? 0 : (int)(next - now);
}

/* ---- the master's life ---- */

/* Locked before anything is bound, so that a second instance is refused
 * without disturbing the running one (src/rd_pidfile.c). */
static int master_lock_pid_file(rd_master_t *m, const rd_config_t *cf)
{
    pid_t holder;

    if (cf->pid_file[0] == '\0')
        return 0;
    if ((m->pid_fd = rd_pidfile_create(cf->pid_file, &holder)) >= 0) {
        snprintf(m->pid_path, sizeof(m->pid_path), "%s", cf->pid_file);
        return 0;
    }
    if (errno == EWOULDBLOCK && holder > 0)
        rd_log(RD_LOG_CRIT,
               "raidad is already running (pid %ld holds the pid file %s): not starting",
               (long)holder, cf->pid_file);
    else if (errno == EWOULDBLOCK)
        rd_log(RD_LOG_CRIT, "raidad is already running (the pid file %s is locked): not starting",
               cf->pid_file);
    else if (errno == ELOOP)
        rd_log(RD_LOG_CRIT, "the pid file %s is a symbolic link: refused", cf->pid_file);
    else if (errno == EINVAL)
        rd_log(RD_LOG_CRIT, "the pid file %s is not a regular file: refused", cf->pid_file);
    else
        rd_log(RD_LOG_CRIT, "cannot write the pid file %s: %s", cf->pid_file, strerror(errno));
    return -1;
}

static int master_open_signalfd(void)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGUSR1);
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int master_init(rd_master_t *m)
{
    const rd_config_t *cf = m->cycle.config;
    char err[RD_CYCLE_ERR_MAX];
    int sfd;

    if (master_lock_pid_file(m, cf) < 0)
        return -1;
    if (rd_event_loop_init(&m->loop, 64) < 0 || (sfd = master_open_signalfd()) < 0)
        return -1;
    m->signal_ev = (rd_event_t){ .fd = sfd, .handler = master_on_signal, .data = m };
    if (rd_event_add(&m->loop, &m->signal_ev, EPOLLIN | EPOLLET) < 0)
        return -1;
    if (rd_cycle_open(&m->cycle, NULL, err, sizeof(err)) < 0) {
        rd_log(RD_LOG_CRIT, "%s", err);
        return -1;
    }
    if (rd_metrics_init() < 0 || rd_metrics_server_open(cf) < 0)
        return -1;
    if (rd_crashrec_init(MAX_PROCS) < 0)
        return -1;
    for (size_t i = 0; i < cf->listen_count; i++)
        rd_log(RD_LOG_NOTICE, "listening on %s (%s)", cf->listen[i].text,
               cf->udp ? "tcp, udp" : "tcp");
    return 0;
}

static void master_loop(rd_master_t *m)
{
    while (!(m->stop && master_live_procs(m) == 0)) {
        uint64_t now = rd_clock_ms();

        master_timers(m, now);
        if (rd_event_loop_poll(&m->loop, master_timeout(m, now)) < 0) {
            rd_log(RD_LOG_ALERT, "epoll_wait: %s", strerror(errno));
            master_kill_all(m);
            return;
        }
    }
}

static void master_free(rd_master_t *m)
{
    rd_metrics_server_close();
    rd_metrics_fini();
    /* Only the files of this master: a reload may have named another pid
     * file, and a refused second instance owns none. */
    if (m->pid_fd >= 0)
        rd_status_remove(m->pid_path);
    rd_pidfile_remove(m->pid_path, m->pid_fd);
    /* Every worker is gone: the coin store's journal is replayed from the files. */
    rd_cycle_release(&m->cycle, NULL);
    rd_crashrec_fini();
    if (m->signal_ev.fd > 0)
        close(m->signal_ev.fd);
    rd_event_loop_free(&m->loop);
}

int rd_master_run(const char *conf_path, rd_cycle_t *first)
{
    rd_master_t master;
    rd_master_t *m = &master;
    int rc = 1;

    memset(m, 0, sizeof(*m));
    snprintf(m->conf_path, sizeof(m->conf_path), "%s", conf_path);
    m->cycle = *first;
    *first = (rd_cycle_t){ 0 };
    m->loop.epfd = -1;
    m->signal_ev.fd = -1;
    m->pid_fd = -1;
    rd_proctitle_set("raidad: master process -c %s", m->conf_path);
    m->watchdog_usec = rd_notify_watchdog_usec();
    if (master_init(m) == 0) {
        m->generation = m->last_generation = 1;
        rd_metrics_generation(1);
        if (master_spawn_generation(m, &m->cycle, m->generation) == 0)
            rc = 0;
        else
            master_stop(m, SIGTERM);
        master_loop(m);
    }
    master_free(m);
    rd_log(RD_LOG_NOTICE, "exiting");
    return rc;
}
