/* src/rd_reuseport.c: how sockets are dealt to workers, and, on the real
 * kernel, that a steered group gives CPU N's datagrams to socket N. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd_reuseport.h"

static void test_every_socket_has_a_worker(void **state)
{
    (void)state;
    for (unsigned sockets = 1; sockets <= RD_REUSEPORT_MAX; sockets++) {
        for (unsigned workers = 1; workers <= 70; workers++) {
            unsigned per_worker[70] = { 0 };

            for (unsigned s = 0; s < sockets; s++) {
                unsigned owners = 0;

                for (unsigned w = 0; w < workers; w++)
                    if (rd_reuseport_serves(w, workers, s, sockets)) {
                        owners++;
                        per_worker[w]++;
                    }
                /* Fewer workers than sockets: one owner each; more: shared. */
                if (workers <= sockets)
                    assert_int_equal(owners, 1);
                else
                    assert_true(owners >= 1);
            }
            for (unsigned w = 0; w < workers; w++) {
                /* Dealt evenly: no worker has two more than another. */
                if (workers <= sockets) {
                    assert_true(per_worker[w] >= sockets / workers);
                    assert_true(per_worker[w] <= (sockets + workers - 1) / workers);
                } else {
                    assert_int_equal(per_worker[w], 1);
                }
            }
        }
    }
}

static void test_own_slot_first(void **state)
{
    (void)state;
    /* Worker N's first socket is N's: the CPU affinity relies on it. */
    for (unsigned n = 0; n < 8; n++)
        assert_true(rd_reuseport_serves(n, 8, n, 8));
    assert_false(rd_reuseport_serves(0, 0, 0, 4));
    assert_false(rd_reuseport_serves(0, 4, 0, 0));
}

static void test_group_size_is_the_cpu_count(void **state)
{
    unsigned n = rd_reuseport_group_size();
    int cpus = get_nprocs_conf();

    (void)state;
    assert_true(n >= 1 && n <= RD_REUSEPORT_MAX);
    assert_int_equal(n, cpus > RD_REUSEPORT_MAX ? RD_REUSEPORT_MAX : (unsigned)cpus);
}

/* Binds N UDP sockets of one group on 127.0.0.1 (a port the kernel picks
 * for the first); returns the port. */
static uint16_t udp_group(int *fds, unsigned n)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);

    for (unsigned i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(rd_reuseport_enable(fds[i]), 0);
        assert_int_equal(bind(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
        if (i == 0)
            assert_int_equal(getsockname(fds[0], (struct sockaddr *)&a, &len), 0);
    }
    return ntohs(a.sin_port);
}

/* The index of the socket of FDS that received one datagram, or -1. */
static int which_received(const int *fds, unsigned n)
{
    char buf[16];

    for (int tries = 0; tries < 100; tries++) {
        for (unsigned i = 0; i < n; i++)
            if (recv(fds[i], buf, sizeof(buf), 0) > 0)
                return (int)i;
        usleep(10000);
    }
    return -1;
}

static void test_steered_group_follows_the_cpu(void **state)
{
    unsigned n = rd_reuseport_group_size();
    int fds[RD_REUSEPORT_MAX];
    cpu_set_t saved;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int out;

    (void)state;
    if (n < 2)
        skip();
    assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
    to.sin_port = htons(udp_group(fds, n));
    rd_reuseport_steer(fds[0]);
    out = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(out >= 0);
    /* Loopback delivers in the sender's context: sending from CPU c is
     * receiving on CPU c. */
    for (unsigned cpu = 0; cpu < n; cpu++) {
        if (!CPU_ISSET(cpu, &saved))
            continue;
        for (int round = 0; round < 5; round++) {
            /* pin picks among the CPUs allowed now: all of them again. */
            assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
            assert_int_equal(rd_reuseport_pin(cpu), 0);
            assert_int_equal(sched_getcpu(), (int)cpu);
            assert_int_equal(sendto(out, "x", 1, 0, (struct sockaddr *)&to, sizeof(to)), 1);
            assert_int_equal(which_received(fds, n), (int)cpu);
        }
    }
    assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
    close(out);
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

static void test_probe_sees_a_taken_port(void **state)
{
    int fds[2];
    rd_listen_addr_t a;
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.addr;

    (void)state;
    memset(&a, 0, sizeof(a));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = htons(udp_group(fds, 2));
    a.addr_len = sizeof(*sin);
    snprintf(a.text, sizeof(a.text), "127.0.0.1:%u", ntohs(sin->sin_port));
    /* Taken by a group: a plain bind fails, so a second raidad would. */
    assert_int_equal(rd_reuseport_probe(&a, SOCK_DGRAM), -1);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(rd_reuseport_probe(&a, SOCK_DGRAM), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_socket_has_a_worker),
        cmocka_unit_test(test_own_slot_first),
        cmocka_unit_test(test_group_size_is_the_cpu_count),
        cmocka_unit_test(test_steered_group_follows_the_cpu),
        cmocka_unit_test(test_probe_sees_a_taken_port),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
