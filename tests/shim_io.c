/* Fault injection for the integration tests (tests/integration/
 * test_hardening_io.py): an LD_PRELOAD library that makes some system
 * calls of raidad fail, or behave like a client that never stops, where a
 * real client cannot provoke it. Each fault is on while a file of its name
 * exists in the folder $RD_SHIM_DIR, so that a test turns it on and off
 * while the daemon runs; with no such file every call goes to the C
 * library unchanged.
 *
 *   epoll_add_fail  epoll_ctl(EPOLL_CTL_ADD) of a connected TCP socket fails
 *                   with ENOSPC (fs.epoll.max_user_watches reached); accept4
 *                   waits 200 ms first, so that the client's request is
 *                   there when raidad reads the new connection at once
 *   accept_flood    accept4 never finds the backlog empty: when it is, it
 *                   returns a connection whose peer has already closed
 *                   (one end of a socketpair), from 127.0.0.3
 *   udp_flood       recvmmsg never finds the socket empty: what the kernel
 *                   does not fill is filled with 1-byte datagrams (too
 *                   short to answer) from 127.0.0.3:9
 *   linger_flood    recv on a TCP socket raidad has shut down for writing
 *                   (FIN_WAIT1/2: lingering after its answer) never finds it
 *                   empty: a client that sends without end, and faster
 *                   than raidad reads
 *   slow_page       open/openat/openat2 of a coin page file (a path ending in ".bin"
 *                   under a "Data/" folder: Data/DD/MM/PPPP.bin of the data
 *                   directory) waits until the switch file is removed (or
 *                   10 s have passed): a page read as slow as the test wants.
 *                   While a call waits, the file "slow_page.waiting" exists
 *                   in $RD_SHIM_DIR (the folder must be writable by the
 *                   workers): the test knows the open has begun. One waiting
 *                   call at a time (the store maps pages under one lock).
 *   worker_start    sched_setaffinity to a set with CPU 1 in it (raidad calls
 *                   it only as a worker starts, with worker_cpu_affinity =
 *                   "auto": the worker of slot 1) waits until the switch
 *                   file is removed (or 30 s have passed), with the file
 *                   "worker_start.waiting" holding its pid meanwhile; then,
 *                   when "worker_start.exit" exists, the worker exits with
 *                   status 1: a worker stuck, or failing, before it serves.
 */
#define _GNU_SOURCE
/* The shim defines open and open64 both: neither may be an alias (asm
 * name) of the other. */
#undef _FILE_OFFSET_BITS
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int shim_fault_on(const char *name)
{
    const char *dir = getenv("RD_SHIM_DIR");
    char path[PATH_MAX];
    int saved = errno, on;

    if (dir == NULL)
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    on = access(path, F_OK) == 0;
    errno = saved;          /* the caller's errno is what the daemon reads */
    return on;
}

static void *shim_next(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);

    if (fn == NULL) {
        fprintf(stderr, "shim_io: no %s after the shim\n", name);
        abort();
    }
    return fn;
}

/* A TCP socket with a peer, as opposed to a listener, an eventfd... */
static int shim_connected_tcp(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 1;
    socklen_t ilen = sizeof(int);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0 || type != SOCK_STREAM)
        return 0;
    ilen = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0 || listening)
        return 0;
    return getpeername(fd, (struct sockaddr *)&ss, &len) == 0
        && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    static int (*next)(int, int, int, struct epoll_event *);

    if (next == NULL)
        next = shim_next("epoll_ctl");
    if (op == EPOLL_CTL_ADD && shim_fault_on("epoll_add_fail") && shim_connected_tcp(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return next(epfd, op, fd, event);
}

static void shim_peer(struct sockaddr *addr, socklen_t *addrlen, in_port_t port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };

    if (addr == NULL || addrlen == NULL)
        return;
    inet_pton(AF_INET, "127.0.0.3", &sin.sin_addr);
    memcpy(addr, &sin, *addrlen < sizeof(sin) ? *addrlen : sizeof(sin));
    *addrlen = sizeof(sin);
}

/* A connection whose client has gone: the reader finds EOF at once. */
static int shim_dead_connection(struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0, sv) < 0)
        return -1;
    close(sv[1]);
    shim_peer(addr, addrlen, 1);
    return sv[0];
}

int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    static int (*next)(int, struct sockaddr *, socklen_t *, int);
    int rc;

    if (next == NULL)
        next = shim_next("accept4");
    if (shim_fault_on("epoll_add_fail")) {
        struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };

        nanosleep(&pause, NULL);
    }
    rc = next(fd, addr, addrlen, flags);
    if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && shim_fault_on("accept_flood"))
        return shim_dead_connection(addr, addrlen, flags);
    return rc;
}

int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags, struct timespec *timeout)
{
    static int (*next)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
    int rc;

    if (next == NULL)
        next = shim_next("recvmmsg");
    rc = next(fd, msgs, vlen, flags, timeout);
    if ((rc >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) && (unsigned)(rc < 0 ? 0 : rc) < vlen
        && shim_fault_on("udp_flood")) {
        for (unsigned i = rc < 0 ? 0 : (unsigned)rc; i < vlen; i++) {
            struct msghdr *h = &msgs[i].msg_hdr;

            if (h->msg_iovlen > 0 && h->msg_iov[0].iov_len > 0)
                ((unsigned char *)h->msg_iov[0].iov_base)[0] = 0;
            shim_peer(h->msg_name, &h->msg_namelen, 9);
            msgs[i].msg_len = 1;
        }
        rc = (int)vlen;
    }
    return rc;
}

/* raidad has sent its FIN on this TCP socket (shutdown(SHUT_WR)). */
static int shim_lingering(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return ti.tcpi_state == TCP_FIN_WAIT1 || ti.tcpi_state == TCP_FIN_WAIT2;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static ssize_t (*next)(int, void *, size_t, int);
    ssize_t rc;
    int saved;

    if (next == NULL)
        next = shim_next("recv");
    rc = next(fd, buf, len, flags);
    if (rc >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || len == 0)
        return rc;
    saved = errno;
    if (shim_fault_on("linger_flood") && shim_lingering(fd)) {
        memset(buf, 'x', len);
        return (ssize_t)len;
    }
    errno = saved;
    return rc;
}

/* ---- slow_page ----------------------------------------------------------- */

#define SHIM_POLL_NS   (5 * 1000 * 1000)   /* looks at the switch every 5 ms */
#define SLOW_PAGE_MAX_S     10                  /* and waits no longer than this */

static int shim_page_path(const char *path)
{
    size_t len = path == NULL ? 0 : strlen(path);

    return len > 4 && strcmp(path + len - 4, ".bin") == 0
        && (strncmp(path, "Data/", 5) == 0 || strstr(path, "/Data/") != NULL);
}

static double shim_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits while the switch NAME is on, MAX_S seconds at most, with the file
 * "NAME.waiting" (holding this process's pid) in $RD_SHIM_DIR meanwhile:
 * the test knows the call has begun, and in which process. WHAT names the
 * call in the message of a wait cut short. Leaves errno as it found it. */
static void shim_wait_while(const char *name, int max_s, const char *what)
{
    static int (*next_open)(const char *, int, ...);
    const char *dir = getenv("RD_SHIM_DIR");
    struct timespec pause = { .tv_sec = 0, .tv_nsec = SHIM_POLL_NS };
    char marker[PATH_MAX], pid[32];
    int saved = errno, fd, len;
    double deadline;

    if (next_open == NULL)
        next_open = shim_next("open");
    snprintf(marker, sizeof(marker), "%s/%s.waiting", dir, name);
    fd = next_open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (fd < 0 || write(fd, pid, (size_t)len) != len)
        fprintf(stderr, "shim_io: %s: cannot write %s: %s\n", name, marker, strerror(errno));
    if (fd >= 0)
        close(fd);
    deadline = shim_now() + max_s;
    while (shim_fault_on(name)) {
        if (shim_now() >= deadline) {
            fprintf(stderr, "shim_io: %s: still on after %d s: %s goes on now\n", name, max_s,
                    what);
            break;
        }
        nanosleep(&pause, NULL);
    }
    unlink(marker);
    errno = saved;
}

/* Called before every open of PATH: waits while slow_page is on and PATH
 * is a page file. */
static void shim_slow_page(const char *path)
{
    if (getenv("RD_SHIM_DIR") != NULL && shim_page_path(path) && shim_fault_on("slow_page"))
        shim_wait_while("slow_page", SLOW_PAGE_MAX_S, path);
}

/* Whether open(2) with FLAGS takes a mode argument. */
static int shim_has_mode(int flags)
{
    return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

/* The mode argument of open(2) is there only when FLAGS create a file. */
#define SHIM_MODE(flags, mode)                                                  \
    do {                                                                        \
        if (shim_has_mode(flags)) {                                             \
            va_list ap;                                                         \
            va_start(ap, flags);                                                \
            (mode) = (mode_t)va_arg(ap, int);                                   \
            va_end(ap);                                                         \
        }                                                                       \
    } while (0)

#define SHIM_OPEN(name)                                                         \
    int name(const char *path, int flags, ...)                                  \
    {                                                                           \
        static int (*next)(const char *, int, ...);                             \
        mode_t mode = 0;                                                        \
                                                                                \
        SHIM_MODE(flags, mode);                                                 \
        if (next == NULL)                                                       \
            next = shim_next(#name);                                            \
        shim_slow_page(path);                                                   \
        return next(path, flags, mode);                                         \
    }

#define SHIM_OPENAT(name)                                                       \
    int name(int dirfd, const char *path, int flags, ...)                       \
    {                                                                           \
        static int (*next)(int, const char *, int, ...);                        \
        mode_t mode = 0;                                                        \
                                                                                \
        SHIM_MODE(flags, mode);                                                 \
        if (next == NULL)                                                       \
            next = shim_next(#name);                                            \
        shim_slow_page(path);                                                   \
        return next(dirfd, path, flags, mode);                                  \
    }

/* _FORTIFY_SOURCE turns open(path, flags) with flags not known at compile
 * time into __open_2 (raidad's rd_coins_disk_page_open is such a call). */
#define SHIM_OPEN_2(name)                                                       \
    int name(const char *path, int flags)                                       \
    {                                                                           \
        static int (*next)(const char *, int);                                  \
                                                                                \
        if (next == NULL)                                                       \
            next = shim_next(#name);                                            \
        shim_slow_page(path);                                                   \
        return next(path, flags);                                               \
    }

#define SHIM_OPENAT_2(name)                                                     \
    int name(int dirfd, const char *path, int flags)                            \
    {                                                                           \
        static int (*next)(int, const char *, int);                             \
                                                                                \
        if (next == NULL)                                                       \
            next = shim_next(#name);                                            \
        shim_slow_page(path);                                                   \
        return next(dirfd, path, flags);                                        \
    }

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

#undef open
#undef open64
#undef openat
#undef openat64
SHIM_OPEN(open)
SHIM_OPEN(open64)
SHIM_OPENAT(openat)
SHIM_OPENAT(openat64)
SHIM_OPEN_2(__open_2)
SHIM_OPEN_2(__open64_2)
SHIM_OPENAT_2(__openat_2)
SHIM_OPENAT_2(__openat64_2)

/* The coin store opens its files with openat2, which glibc has no wrapper
 * for: through syscall(2), whose arguments are read here as the kernel
 * takes them, six longs. */
long syscall(long number, ...)
{
    static long (*next)(long, ...);
    long a[6];
    va_list ap;

    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (next == NULL)
        next = shim_next("syscall");
#ifdef SYS_openat2
    if (number == SYS_openat2)
        shim_slow_page((const char *)a[1]);
#endif
    return next(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- worker_start -------------------------------------------------------- */

#define WORKER_START_MAX_S 30

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *mask)
{
    static int (*next)(pid_t, size_t, const cpu_set_t *);

    if (next == NULL)
        next = shim_next("sched_setaffinity");
    if (CPU_ISSET_S(1, size, mask) && shim_fault_on("worker_start")) {
        shim_wait_while("worker_start", WORKER_START_MAX_S, "the worker's start");
        if (shim_fault_on("worker_start.exit"))
            _exit(1);
    }
    return next(pid, size, mask);
}
