#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "rd_limit.h"

static void key_of(const char *ip, uint8_t key[RD_LIMIT_KEY_SIZE])
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        ss.ss_family = AF_INET6;
        inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr);
    } else {
        ss.ss_family = AF_INET;
        inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr);
    }
    rd_limit_key(&ss, key);
}

static void test_connection_cap(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 3 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16], b[16];

    (void)state;
    key_of("192.0.2.1", a);
    key_of("192.0.2.2", b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), -1);
    assert_int_equal(rd_limit_conn_open(l, &conf, b, 0), 1);   /* others unaffected */
    rd_limit_conn_close(l, &conf, a);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), -1);
    rd_limit_destroy(l);
}

static void test_no_limit_counts_nothing(void **state)
{
    rd_limit_conf_t conf = { 0 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16];

    (void)state;
    key_of("192.0.2.1", a);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 0);
        assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 0));
    }
    rd_limit_destroy(l);
}

static void test_rate_bucket(void **state)
{
    rd_limit_conf_t conf = { .rate = 10, .burst = 5 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16], b[16];

    (void)state;
    key_of("2001:db8::1", a);
    key_of("2001:db8::2", b);
    for (int i = 0; i < 5; i++)
        assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1000));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1000));      /* burst spent */
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, b, 1000));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1050));      /* half a token */
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1100));       /* 10/s: one per 100 ms */
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1100));
    for (int i = 0; i < 5; i++)                             /* refilled to the burst, no more */
        assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 60000));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 60000));
    rd_limit_destroy(l);
}

static void test_v4_and_mapped_v6_are_one_address(void **state)
{
    uint8_t a[16], b[16];

    (void)state;
    key_of("198.51.100.7", a);
    key_of("::ffff:198.51.100.7", b);
    assert_memory_equal(a, b, 16);
}

static void test_reset_connections(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16];

    (void)state;
    key_of("192.0.2.9", a);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), -1);
    rd_limit_reset_connections(l);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    rd_limit_destroy(l);
}

/* A full table of busy addresses lets a new one through uncounted. */
static void test_full_table_lets_through(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1 };
    rd_limit_t *l = rd_limit_create(64);
    char ip[32];
    uint8_t key[16];
    int uncounted = 0;

    (void)state;
    for (int i = 0; i < 200; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250);
        key_of(ip, key);
        int rc = rd_limit_conn_open(l, &conf, key, 0);
        assert_true(rc >= 0);
        uncounted += rc == 0;
    }
    assert_true(uncounted >= 200 - 64);
    rd_limit_destroy(l);
}

/* Workers are processes: what one counts, another sees. */
static void test_shared_across_fork(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 2 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16];
    int status;
    pid_t pid;

    (void)state;
    key_of("192.0.2.77", a);
    pid = fork();
    if (pid == 0)
        _exit(rd_limit_conn_open(l, &conf, a, 0) == 1 && rd_limit_conn_open(l, &conf, a, 0) == 1 ? 0 : 1);
    assert_true(waitpid(pid, &status, 0) == pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), -1);
    rd_limit_destroy(l);
}

/* Defect 4 (issue 10): the old hash looked only at the first octets of an
 * IPv4 address, so that a few addresses of one /16 filled the slots every
 * other address of it probes, and those went unlimited. With a keyed hash
 * over the whole address, 64 addresses of one /24 are each counted. */
static void test_defect4_addresses_of_one_subnet_are_each_limited(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1 };
    rd_limit_t *l = rd_limit_create(4096);
    char ip[32];
    uint8_t key[16];

    (void)state;
    for (int i = 1; i <= 64; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i);
        key_of(ip, key);
        assert_int_equal(rd_limit_conn_open(l, &conf, key, 0), 1);
    }
    for (int i = 1; i <= 64; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i);
        key_of(ip, key);
        assert_int_equal(rd_limit_conn_open(l, &conf, key, 0), -1);
    }
    rd_limit_destroy(l);
}

/* The shared mappings (rw-s, anonymous: "/dev/zero (deleted)") of this
 * process, as "start-end" lines, into OUT. */
static size_t shared_mappings(char out[][64], size_t max)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    size_t n = 0;

    assert_non_null(f);
    while (n < max && fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, " rw-s ") != NULL && strstr(line, "/dev/zero") != NULL)
            sscanf(line, "%63s", out[n++]);
    fclose(f);
    return n;
}

/* Defect 5 (issue 10): the root master must not trust what a worker can
 * write. A compromised worker fills the whole shared table with 0xff (the
 * lock looks held forever, every size is huge); the master then resets the
 * connection counts, as after a worker's death, and frees the table: it
 * must neither hang nor crash. Run in a child, so that a hang is seen. */
static void test_defect5_master_survives_a_worker_scribbling_on_the_table(void **state)
{
    char before[16][64], after[16][64];
    size_t nb = shared_mappings(before, 16), na;
    rd_limit_t *l = rd_limit_create(4096);
    unsigned long start = 0, end = 0;
    int status;
    pid_t pid;

    (void)state;
    assert_non_null(l);
    na = shared_mappings(after, 16);
    for (size_t i = 0; i < na && start == 0; i++) {
        bool old = false;

        for (size_t j = 0; j < nb; j++)
            old |= strcmp(after[i], before[j]) == 0;
        if (!old)
            assert_int_equal(sscanf(after[i], "%lx-%lx", &start, &end), 2);
    }
    assert_true(start != 0 && end > start);
    pid = fork();
    if (pid == 0) {
        /* The worker's write, then the master's part, with a deadline. */
        memset((void *)start, 0xff, end - start);
        alarm(5);
        rd_limit_reset_connections(l);
        rd_limit_destroy(l);
        _exit(0);
    }
    assert_true(pid > 0);
    assert_true(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status))
        fail_msg("the master's part died on signal %d (%s)", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? "hung" : "crashed");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rd_limit_destroy(l);
}

/* Defect 4 (issue 10): an IPv6 client picks its addresses from a /64 at
 * least, so with prefix_v6 64 a /64 is one client. */
static void test_defect4_ipv6_addresses_of_one_64_are_one_client(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1, .rate = 1, .burst = 2, .prefix_v6 = 64 };
    rd_limit_t *l = rd_limit_create(4096);
    uint8_t a[16], b[16], c[16];

    (void)state;
    key_of("2001:db8:1:2::1", a);
    key_of("2001:db8:1:2:ffff:ffff:ffff:9", b);
    key_of("2001:db8:1:3::1", c);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, b, 0), -1);
    assert_int_equal(rd_limit_conn_open(l, &conf, c, 0), 1);
    rd_limit_conn_close(l, &conf, b);       /* closes the /64's one connection */
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 0));
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, b, 0));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 0));
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, c, 0));
    rd_limit_destroy(l);
}

/* Both prefix lengths are settings, bit-exact (not only whole bytes). */
static void test_defect4_prefix_lengths_are_configurable(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1, .prefix_v4 = 20, .prefix_v6 = 128 };
    rd_limit_t *l = rd_limit_create(4096);
    uint8_t a[16], b[16], c[16], d[16], e[16];

    (void)state;
    key_of("10.0.0.1", a);
    key_of("10.0.15.254", b);       /* the same /20 */
    key_of("10.0.16.1", c);         /* the next /20 */
    key_of("2001:db8::1", d);
    key_of("2001:db8::2", e);       /* /128: another client */
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, b, 0), -1);
    assert_int_equal(rd_limit_conn_open(l, &conf, c, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, d, 0), 1);
    assert_int_equal(rd_limit_conn_open(l, &conf, e, 0), 1);
    rd_limit_destroy(l);
}

/* Defect 15 (issue 10): a UDP source can be forged; spending an address's
 * UDP budget leaves its TCP budget whole, and the other way round. */
static void test_defect15_tcp_and_udp_have_their_own_buckets(void **state)
{
    rd_limit_conf_t conf = { .rate = 10, .burst = 3 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16];

    (void)state;
    key_of("192.0.2.15", a);
    for (int i = 0; i < 3; i++)
        assert_true(rd_limit_request(l, &conf, RD_LIMIT_UDP, a, 1000));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_UDP, a, 1000));
    for (int i = 0; i < 3; i++)
        assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1000));
    assert_false(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1000));
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_UDP, a, 1100));  /* each refills */
    assert_true(rd_limit_request(l, &conf, RD_LIMIT_TCP, a, 1100));
    rd_limit_destroy(l);
}

/* The master only asks for a reset; a worker (another process) does it
 * before its next count. */
static void test_defect5_reset_asked_by_the_master_is_done_by_a_worker(void **state)
{
    rd_limit_conf_t conf = { .max_connections = 1 };
    rd_limit_t *l = rd_limit_create(64);
    uint8_t a[16];
    int status;
    pid_t pid;

    (void)state;
    key_of("192.0.2.99", a);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), 1);
    rd_limit_reset_connections(l);
    pid = fork();
    if (pid == 0)
        _exit(rd_limit_conn_open(l, &conf, a, 0) == 1 && rd_limit_conn_open(l, &conf, a, 0) == -1
                  ? 0 : 1);
    assert_true(waitpid(pid, &status, 0) == pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rd_limit_conn_open(l, &conf, a, 0), -1);  /* the worker's count holds */
    rd_limit_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_no_limit_counts_nothing),
        cmocka_unit_test(test_rate_bucket),
        cmocka_unit_test(test_v4_and_mapped_v6_are_one_address),
        cmocka_unit_test(test_reset_connections),
        cmocka_unit_test(test_full_table_lets_through),
        cmocka_unit_test(test_shared_across_fork),
        cmocka_unit_test(test_defect4_addresses_of_one_subnet_are_each_limited),
        cmocka_unit_test(test_defect5_master_survives_a_worker_scribbling_on_the_table),
        cmocka_unit_test(test_defect4_ipv6_addresses_of_one_64_are_one_client),
        cmocka_unit_test(test_defect4_prefix_lengths_are_configurable),
        cmocka_unit_test(test_defect15_tcp_and_udp_have_their_own_buckets),
        cmocka_unit_test(test_defect5_reset_asked_by_the_master_is_done_by_a_worker),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
