/* Per-worker listening sockets (see include/rd_reuseport.h).
 *
 * Why: with one socket per address shared by every worker, each connection
 * and datagram can wake any worker, away from the CPU whose softirq queued
 * it, and the workers contend for one UDP receive queue. With a group of
 * SO_REUSEPORT sockets, one per CPU, and a classic BPF program that returns
 * the receiving CPU as the socket's index, the work stays on that CPU and
 * every queue has one reader.
 *
 * The group's size never changes while the master runs: a socket in the
 * middle of a group cannot be closed without the kernel moving the last
 * one into its place (which would reorder the CPU mapping) and dropping
 * what was queued in it. Worker counts change instead how the sockets are
 * dealt out (rd_reuseport_serves). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "rd_log.h"
#include "rd_reuseport.h"

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

unsigned rd_reuseport_group_size(void)
{
    int n = get_nprocs_conf();

    return n < 1 ? 1 : n > RD_REUSEPORT_MAX ? RD_REUSEPORT_MAX : (unsigned)n;
}

/* The probe binds the way a lone listener did before groups existed: only
 * a port no one holds accepts it. It is closed at once; the group binds
 * right after. */
int rd_reuseport_probe(const rd_listen_addr_t *a, int type)
{
    const char *proto = type == SOCK_STREAM ? "tcp" : "udp";
    int one = 1;
    int fd = socket(a->addr.ss_family, type | SOCK_CLOEXEC, 0);
    int rc = 0;

    if (fd < 0) {
        rd_log(RD_LOG_ERR, "socket(%s %s): %s", proto, a->text, strerror(errno));
        return -1;
    }
    /* TCP: a port whose old connections sit in TIME_WAIT is free. */
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addr_len) < 0) {
        rd_log(RD_LOG_ERR, "bind(%s %s): %s", proto, a->text, strerror(errno));
        rc = -1;
    }
    close(fd);
    return rc;
}

int rd_reuseport_enable(int fd)
{
    int one = 1;

    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
}

void rd_reuseport_steer(int fd)
{
    /* A = the CPU this packet is processed on; return A. An index past the
     * group's end makes the kernel fall back to its hash. */
    struct sock_filter code[] = {
        { BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU) },
        { BPF_RET | BPF_A, 0, 0, 0 },
    };
    struct sock_fprog prog;

    /* Zeroed whole: the padding after len reaches the kernel too. */
    memset(&prog, 0, sizeof(prog));
    prog.len = sizeof(code) / sizeof(code[0]);
    prog.filter = code;

    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0)
        rd_log(RD_LOG_WARN, "cannot steer by CPU (SO_ATTACH_REUSEPORT_CBPF: %s): "
               "the kernel spreads by address instead", strerror(errno));
}

bool rd_reuseport_serves(unsigned slot, unsigned workers, unsigned socket, unsigned sockets)
{
    if (workers == 0 || sockets == 0)
        return false;
    if (workers <= sockets)
        return socket % workers == slot;
    return slot % sockets == socket;
}

int rd_reuseport_batch(void)
{
    struct sched_param sp = { .sched_priority = 0 };
    DIR *tasks;
    struct dirent *e;

    if (sched_setscheduler(0, SCHED_BATCH, &sp) < 0)
        return -1;
    /* Threads made later inherit it; one already running (a sanitizer's
     * runtime thread) is set here too, so the whole worker is batch. */
    if ((tasks = opendir("/proc/self/task")) == NULL)
        return 0;
    while ((e = readdir(tasks)) != NULL) {
        long tid = strtol(e->d_name, NULL, 10);

        if (tid > 0)
            sched_setscheduler((pid_t)tid, SCHED_BATCH, &sp);
    }
    closedir(tasks);
    return 0;
}

int rd_reuseport_pin(unsigned slot)
{
    cpu_set_t allowed, one;
    int count;

    if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        return -1;
    count = CPU_COUNT(&allowed);
    if (count < 1) {
        errno = EINVAL;
        return -1;
    }
    CPU_ZERO(&one);
    /* The socket a worker serves first is its slot's: the CPU of the same
     * number, when the process may run there. */
    if (slot < CPU_SETSIZE && CPU_ISSET(slot, &allowed)) {
        CPU_SET(slot, &one);
    } else {
        int nth = (int)(slot % (unsigned)count);

        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &allowed) && nth-- == 0) {
                CPU_SET(cpu, &one);
                break;
            }
    }
    return sched_setaffinity(0, sizeof(one), &one);
}
