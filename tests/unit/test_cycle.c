/* src/rd_cycle.c: a configuration generation built from a real file, with
 * real sockets on 127.0.0.1: what the first one creates, what the next one
 * takes over and shares, what a refused one leaves, and what each release
 * closes. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd_cycle.h"

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");

    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* N distinct TCP ports of 127.0.0.1 that nothing listened on a moment ago:
 * each held until all are picked, so that none comes twice. */
static void free_ports(unsigned *ports, size_t n)
{
    int fds[8];

    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(bind(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fds[i], (struct sockaddr *)&a, &len), 0);
        ports[i] = ntohs(a.sin_port);
    }
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* Writes a configuration listening on PORTS (0 ends the list) into PATH. */
static void write_conf(char *path, size_t len, const unsigned *ports)
{
    char text[512] = "listen = (";
    int fd;

    for (size_t i = 0; ports[i] != 0; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\"127.0.0.1:%u\"",
                 i > 0 ? ", " : "", ports[i]);
    snprintf(text + strlen(text), sizeof(text) - strlen(text), ");\nworker_processes = 1;\n");
    if (path[0] == '\0') {
        snprintf(path, len, "%s/test_cycle.XXXXXX", tmp_dir());
        fd = mkstemp(path);
    } else {
        fd = open(path, O_WRONLY | O_TRUNC);
    }
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static bool has_fd(const rd_cycle_t *c, int fd)
{
    for (size_t i = 0; i < c->listener_count; i++)
        if (c->listeners[i].fd == fd)
            return true;
    return false;
}

static unsigned port_of(const rd_listener_t *l)
{
    return ntohs(((const struct sockaddr_in *)&l->addr.addr)->sin_port);
}

static void test_first_cycle_binds_and_creates_the_shared_state(void **state)
{
    unsigned ports[2] = { 0 };
    char path[256] = "", err[RD_CYCLE_ERR_MAX];
    rd_cycle_t c;
    int fd;

    (void)state;
    free_ports(ports, 1);
    write_conf(path, sizeof(path), ports);
    assert_int_equal(rd_cycle_configure(&c, path, err, sizeof(err)), 0);
    /* Configured: the file read, its modules loaded, nothing opened. */
    assert_non_null(c.config);
    assert_non_null(c.modules);
    assert_int_equal(c.listener_count, 0);
    assert_null(c.stats);
    assert_int_equal(rd_cycle_open(&c, NULL, err, sizeof(err)), 0);
    assert_true(c.listener_count >= 2);         /* TCP and UDP, one per CPU each */
    assert_non_null(c.stats);
    assert_non_null(c.limits);
    assert_null(c.coins);                       /* no data_dir */
    for (size_t i = 0; i < c.listener_count; i++)
        assert_int_equal(port_of(&c.listeners[i]), ports[0]);
    fd = c.listeners[0].fd;
    rd_cycle_release(&c, NULL);
    assert_false(fd_open(fd));
    assert_null(c.config);
    assert_null(c.listeners);
    unlink(path);
}

static void test_next_cycle_takes_over_sockets_and_shares_state(void **state)
{
    unsigned p[3], kept, gone, added;
    char path[256] = "", err[RD_CYCLE_ERR_MAX];
    rd_cycle_t old, next;
    int kept_fd = -1, gone_fd = -1;

    (void)state;
    free_ports(p, 3);
    kept = p[0], gone = p[1], added = p[2];
    write_conf(path, sizeof(path), (unsigned[]){ kept, gone, 0 });
    assert_int_equal(rd_cycle_configure(&old, path, err, sizeof(err)), 0);
    assert_int_equal(rd_cycle_open(&old, NULL, err, sizeof(err)), 0);
    for (size_t i = 0; i < old.listener_count; i++) {
        if (port_of(&old.listeners[i]) == kept)
            kept_fd = old.listeners[i].fd;
        else
            gone_fd = old.listeners[i].fd;
    }
    assert_true(kept_fd >= 0 && gone_fd >= 0);

    write_conf(path, sizeof(path), (unsigned[]){ kept, added, 0 });
    assert_int_equal(rd_cycle_configure(&next, path, err, sizeof(err)), 0);
    assert_int_equal(rd_cycle_open(&next, &old, err, sizeof(err)), 0);
    assert_true(has_fd(&next, kept_fd));        /* the same socket: its queue lives on */
    assert_false(has_fd(&next, gone_fd));
    assert_ptr_equal(next.stats, old.stats);
    assert_ptr_equal(next.limits, old.limits);

    /* The reload commits: the old generation goes, keeping what the next holds. */
    rd_cycle_release(&old, &next);
    assert_true(fd_open(kept_fd));
    assert_false(fd_open(gone_fd));
    rd_stats_count(next.stats, 1, 0, 0, 250);   /* still mapped */
    rd_cycle_release(&next, NULL);
    assert_false(fd_open(kept_fd));
    unlink(path);
}

static void test_refused_next_cycle_leaves_the_serving_one_whole(void **state)
{
    unsigned p[2];
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char path[256] = "", err[RD_CYCLE_ERR_MAX];
    rd_cycle_t old, next;
    int squatter = socket(AF_INET, SOCK_STREAM, 0);
    unsigned port, taken;

    (void)state;
    free_ports(p, 2);
    port = p[0], taken = p[1];
    a.sin_port = htons(taken);
    /* Another program holds TAKEN (no SO_REUSEPORT: nobody may join it). */
    assert_true(squatter >= 0);
    assert_int_equal(bind(squatter, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(squatter, 1), 0);
    write_conf(path, sizeof(path), (unsigned[]){ port, 0 });
    assert_int_equal(rd_cycle_configure(&old, path, err, sizeof(err)), 0);
    assert_int_equal(rd_cycle_open(&old, NULL, err, sizeof(err)), 0);

    write_conf(path, sizeof(path), (unsigned[]){ port, taken, 0 });
    assert_int_equal(rd_cycle_configure(&next, path, err, sizeof(err)), 0);
    assert_int_equal(rd_cycle_open(&next, &old, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot open the new listening sockets");
    /* As configured again: nothing of it open, nothing shared yet. */
    assert_non_null(next.config);
    assert_int_equal(next.listener_count, 0);
    assert_null(next.stats);
    rd_cycle_release(&next, &old);
    for (size_t i = 0; i < old.listener_count; i++)
        assert_true(fd_open(old.listeners[i].fd));
    assert_non_null(old.stats);
    rd_cycle_release(&old, NULL);
    close(squatter);
    unlink(path);
}

static void test_bad_file_is_refused_with_file_and_line(void **state)
{
    char path[256], err[RD_CYCLE_ERR_MAX], want[320];
    rd_cycle_t c;
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "%s/test_cycle.XXXXXX", tmp_dir());
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "worker_processes = 1;\nno_such_setting = 2;\n", 43), 43);
    close(fd);
    assert_int_equal(rd_cycle_configure(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2:", path);
    assert_memory_equal(err, want, strlen(want));
    assert_null(c.config);
    assert_null(c.modules);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_cycle_binds_and_creates_the_shared_state),
        cmocka_unit_test(test_next_cycle_takes_over_sockets_and_shares_state),
        cmocka_unit_test(test_refused_next_cycle_leaves_the_serving_one_whole),
        cmocka_unit_test(test_bad_file_is_refused_with_file_and_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
