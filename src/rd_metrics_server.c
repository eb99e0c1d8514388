/* The metrics process and its supervision by the master (see
 * include/rd_metrics_server.h). The master's side is a few descriptors and
 * a PID: binding, forking, reaping, restarting with a delay that doubles
 * while the process keeps dying young. The child's side serves
 * libmicrohttpd daemons (their own threads) on the inherited sockets, with
 * a cap on connections, a cap per client address, a timeout for slow
 * clients and the metrics_allow list, and waits for a stop signal or for
 * the master to go. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "rd_channel.h"
#include "rd_clock.h"
#include "rd_limit.h"
#include "rd_listener.h"
#include "rd_log.h"
#include "rd_metrics.h"
#include "rd_metrics_server.h"
#include "rd_proctitle.h"
#include "rd_sandbox.h"

#define RESPAWN_MAX_DELAY_MS 30000
#define YOUNG_MS 2000
#define STOP_WAIT_MS 2000
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The master's view of the endpoint. */
static struct {
    int fds[RD_CONFIG_MAX_LISTEN];
    rd_listen_addr_t addrs[RD_CONFIG_MAX_LISTEN];
    size_t count;
    pid_t pid;
    int channel;                /* to the process; -1 when none */
    uint64_t started_ms;
    uint64_t respawn_at;        /* 0: now */
    unsigned young_deaths;
    bool restart;               /* stopped on purpose: start again at once */
    bool stopping;
} srv = { .channel = -1 };

/* ---- sockets (master) ---- */

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static int bind_all(const rd_config_t *cf, int *fds)
{
    for (size_t i = 0; i < cf->metrics_listen_count; i++) {
        if ((fds[i] = rd_listener_bind(&cf->metrics_listen[i], SOCK_STREAM)) < 0) {
            close_fds(fds, i);
            return -1;
        }
        rd_log(RD_LOG_NOTICE, "metrics on http://%s/metrics", cf->metrics_listen[i].text);
    }
    return 0;
}

static void adopt(const rd_config_t *cf, const int *fds)
{
    close_fds(srv.fds, srv.count);
    srv.count = cf->metrics_listen_count;
    memcpy(srv.fds, fds, srv.count * sizeof(int));
    memcpy(srv.addrs, cf->metrics_listen, srv.count * sizeof(rd_listen_addr_t));
}

int rd_metrics_server_open(const rd_config_t *cf)
{
    int fds[RD_CONFIG_MAX_LISTEN];

    if (bind_all(cf, fds) < 0)
        return -1;
    adopt(cf, fds);
    return 0;
}

static bool same_addresses(const rd_config_t *cf)
{
    if (cf->metrics_listen_count != srv.count)
        return false;
    for (size_t i = 0; i < srv.count; i++)
        if (strcmp(cf->metrics_listen[i].text, srv.addrs[i].text) != 0)
            return false;
    return true;
}

void rd_metrics_server_reload(const rd_config_t *cf)
{
    int fds[RD_CONFIG_MAX_LISTEN];

    if (!same_addresses(cf)) {
        if (bind_all(cf, fds) < 0)
            rd_log(RD_LOG_ERR, "metrics: the new metrics_listen cannot be bound: "
                   "keeping the old addresses");
        else
            adopt(cf, fds);
    }
    srv.young_deaths = 0;
    srv.respawn_at = 0;
    if (srv.pid > 0) {
        srv.restart = true;
        kill(srv.pid, SIGTERM);
    }
}

/* ---- the child ---- */

static enum MHD_Result allow_client(void *cls, const struct sockaddr *addr, socklen_t len)
{
    const rd_config_t *cf = cls;
    struct sockaddr_storage ss = { 0 };
    uint8_t key[RD_LIMIT_KEY_SIZE];

    if (cf->metrics_allow_count == 0)
        return MHD_YES;
    if (len > sizeof(ss))
        return MHD_NO;
    memcpy(&ss, addr, len);
    rd_limit_key(&ss, key);
    return rd_cidr_match(cf->metrics_allow, cf->metrics_allow_count, key) ? MHD_YES : MHD_NO;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *text,
                             const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    rc = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return rc;
}

/* Answered on the first call, headers read: a body, if any, is not read
 * (the connection closes after the answer). */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    struct MHD_Response *r;
    enum MHD_Result rc;
    size_t len;
    char *text;

    (void)cls, (void)version, (void)upload, (void)upload_size, (void)state;
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n", NULL);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "GET, HEAD");
    if ((text = rd_metrics_render(rd_metrics_get(), &len)) == NULL)
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static struct MHD_Daemon *child_start_http(const rd_config_t *cf, int fd, size_t i)
{
    /* ITC: stopping is then signalled to MHD's thread by a pipe of its own,
     * never by shutting the listening socket down, which the master shares
     * and keeps for the next metrics process (see child_stop_http). */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC;

    if (srv.addrs[i].addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    return MHD_start_daemon(flags, 0, allow_client, (void *)cf, handle, NULL,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, cf->metrics_max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, cf->metrics_connections_per_ip,
                            MHD_OPTION_CONNECTION_TIMEOUT, cf->metrics_timeout,
                            MHD_OPTION_END);
}

/* MHD shuts down the listening socket it stops on: the socket is taken
 * back from it first (quiesce), so that only this process's copy closes. */
static void child_stop_http(struct MHD_Daemon *d)
{
    MHD_socket fd = MHD_quiesce_daemon(d);

    MHD_stop_daemon(d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Everything the master held (epoll, signalfd, channels, RAIDA listeners)
 * goes: only the standard streams, the log, the channel and the metrics
 * sockets stay. */
static void child_close_inherited(int channel)
{
    int keep[RD_CONFIG_MAX_LISTEN + 3];
    size_t n = 0;
    int from = 3;

    keep[n++] = channel;
    keep[n++] = rd_log_fd();
    for (size_t i = 0; i < srv.count; i++)
        keep[n++] = srv.fds[i];
    qsort(keep, n, sizeof(int), cmp_int);
    for (size_t i = 0; i < n; i++) {
        if (keep[i] > from)
            close_range((unsigned)from, (unsigned)keep[i] - 1, 0);
        if (keep[i] + 1 > from)
            from = keep[i] + 1;
    }
    close_range((unsigned)from, ~0U, 0);
}

static int child_signalfd(void)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    return signalfd(-1, &mask, SFD_CLOEXEC);
}

/* Until a stop signal, or the master closes the channel. */
static void child_wait(int sfd, int channel)
{
    struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN }, { .fd = channel, .events = POLLIN } };

    for (;;) {
        struct signalfd_siginfo si;
        rd_channel_msg_t msg;
        int passed, rc;

        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            return;
        if ((pfd[0].revents & POLLIN) && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)
            && si.ssi_signo != SIGHUP && si.ssi_signo != SIGUSR1)
            return;
        if (pfd[1].revents == 0)
            continue;
        while ((rc = rd_channel_recv(channel, &msg, &passed)) == 1)
            if (passed >= 0 && (msg.type != RD_CHANNEL_LOG || rd_log_adopt(passed) < 0))
                close(passed);
        if (rc < 0)
            return;
    }
}

static void child_run(const rd_config_t *cf, int channel, pid_t master)
{
    struct MHD_Daemon *httpd[RD_CONFIG_MAX_LISTEN] = { NULL };
    int sfd, rc = 0;

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        exit(1);
    child_close_inherited(channel);
    rd_proctitle_set("raidad: metrics process");
    if ((sfd = child_signalfd()) < 0 || rd_sandbox_drop_privileges(cf, "metrics") < 0)
        exit(1);
    for (size_t i = 0; i < srv.count && rc == 0; i++)
        if ((httpd[i] = child_start_http(cf, srv.fds[i], i)) == NULL) {
            rd_log(RD_LOG_CRIT, "metrics: cannot serve %s", srv.addrs[i].text);
            rc = 1;
        }
    if (rc == 0)
        child_wait(sfd, channel);
    for (size_t i = 0; i < srv.count; i++)
        if (httpd[i] != NULL)
            child_stop_http(httpd[i]);
    exit(rc);
}

/* ---- supervision (master) ---- */

static void spawn(const rd_config_t *cf, uint64_t now)
{
    pid_t master = getpid();
    int fds[2];
    pid_t pid;

    if (rd_channel_open(fds) < 0) {
        rd_log(RD_LOG_ERR, "metrics: socketpair: %s", strerror(errno));
        srv.respawn_at = now + 1000;
        return;
    }
    if ((pid = fork()) == 0) {
        close(fds[0]);
        child_run(cf, fds[1], master);
    }
    close(fds[1]);
    if (pid < 0) {
        rd_log(RD_LOG_ERR, "metrics: fork: %s", strerror(errno));
        close(fds[0]);
        srv.respawn_at = now + 1000;
        return;
    }
    srv.pid = pid;
    srv.channel = fds[0];
    srv.started_ms = now;
    rd_log(RD_LOG_INFO, "started the metrics process %ld", (long)pid);
}

void rd_metrics_server_tick(const rd_config_t *cf, uint64_t now_ms)
{
    if (srv.count == 0 || srv.pid > 0 || srv.stopping || now_ms < srv.respawn_at)
        return;
    spawn(cf, now_ms);
}

bool rd_metrics_server_reaped(pid_t pid, int status)
{
    uint64_t now = rd_clock_ms();
    uint64_t delay = 0;

    if (pid <= 0 || pid != srv.pid)
        return false;
    close(srv.channel);
    srv.channel = -1;
    srv.pid = 0;
    if (srv.stopping || srv.restart) {
        srv.restart = false;
        return true;
    }
    if (WIFSIGNALED(status))
        rd_log(RD_LOG_ERR, "the metrics process %ld exited on signal %d: restarting it",
               (long)pid, WTERMSIG(status));
    else
        rd_log(RD_LOG_ERR, "the metrics process %ld exited with status %d: restarting it",
               (long)pid, WEXITSTATUS(status));
    /* Doubling from 0.5 s up to the cap, and staying there while it keeps
     * dying young (the count stops growing before the shift overflows). */
    if (now - srv.started_ms >= YOUNG_MS)
        srv.young_deaths = 0;
    else if (srv.young_deaths < 16)
        delay = 500ULL << srv.young_deaths++;
    else
        delay = RESPAWN_MAX_DELAY_MS;
    srv.respawn_at = now + (delay > RESPAWN_MAX_DELAY_MS ? RESPAWN_MAX_DELAY_MS : delay);
    return true;
}

void rd_metrics_server_stop(void)
{
    srv.stopping = true;
    if (srv.pid > 0)
        kill(srv.pid, SIGTERM);
}

void rd_metrics_server_close(void)
{
    uint64_t deadline = rd_clock_ms() + STOP_WAIT_MS;
    int status;

    srv.stopping = true;
    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        while (waitpid(srv.pid, &status, WNOHANG) == 0) {
            if (rd_clock_ms() >= deadline) {
                rd_log(RD_LOG_WARN, "the metrics process did not stop: killing it");
                kill(srv.pid, SIGKILL);
                waitpid(srv.pid, &status, 0);
                break;
            }
            nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
        }
        srv.pid = 0;
    }
    if (srv.channel >= 0)
        close(srv.channel);
    srv.channel = -1;
    close_fds(srv.fds, srv.count);
    srv.count = 0;
}

void rd_metrics_server_send_log(int fd)
{
    if (srv.channel >= 0)
        rd_channel_send_fd(srv.channel, RD_CHANNEL_LOG, fd);
}

void rd_metrics_server_close_in_child(void)
{
    close_fds(srv.fds, srv.count);
    if (srv.channel >= 0)
        close(srv.channel);
}

pid_t rd_metrics_server_pid(void)
{
    return srv.pid;
}
