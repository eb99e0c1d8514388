/* The metrics' counting and rendering, the client networks of
 * metrics_allow, and the access log's lines, on the real code: a real
 * shared mapping (counted into from a forked child too), a real file. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "rd_accesslog.h"
#include "rd_cidr.h"
#include "rd_clock.h"
#include "rd_limit.h"
#include "rd_commands.h"
#include "rd_metrics.h"

static struct sockaddr_storage addr_of(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        inet_pton(AF_INET, ip, &s4->sin_addr);
    }
    return ss;
}

static bool in(const char *net, const char *ip)
{
    rd_cidr_t c;
    struct sockaddr_storage ss = addr_of(ip, 1);

    uint8_t key[RD_LIMIT_KEY_SIZE];

    assert_int_equal(rd_cidr_parse(net, &c), 0);
    rd_limit_key(&ss, key);
    return rd_cidr_match(&c, 1, key);
}

static void test_cidr(void **state)
{
    rd_cidr_t c;

    (void)state;
    assert_true(in("127.0.0.1", "127.0.0.1"));
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.4.0/22", "192.168.7.255"));
    assert_false(in("192.168.4.0/22", "192.168.8.0"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_false(in("0.0.0.0/0", "2001:db8::1"));
    assert_true(in("::ffff:10.0.0.0/104", "10.1.2.3"));   /* v4 seen through a v6 socket */
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("::1", "::1"));
    assert_true(in("::/0", "fe80::1"));
    assert_int_equal(rd_cidr_parse("10.0.0.0/33", &c), -1);
    assert_int_equal(rd_cidr_parse("::/129", &c), -1);
    assert_int_equal(rd_cidr_parse("10.0.0.0/", &c), -1);
    assert_int_equal(rd_cidr_parse("10.0.0.0/-1", &c), -1);
    assert_int_equal(rd_cidr_parse("localhost", &c), -1);
    assert_int_equal(rd_cidr_parse("", &c), -1);
    assert_int_equal(rd_cidr_parse("/8", &c), -1);
}

/* A bare answer with STATUS (the response points into itself: made in place). */
static void answer(rd_response_t *r, uint8_t status)
{
    rd_response_init(r);
    memset(r->data, 0, 32);
    r->data[2] = status;
    r->len = 32;
}

static bool has(const char *text, const char *line)
{
    char want[512];

    snprintf(want, sizeof(want), "\n%s\n", line);
    return strstr(text, want) != NULL;
}

/* Counts from this process and from a forked one (another slot, as a
 * worker would), then renders: the sums, the histogram's cumulative
 * buckets, and the gauges of a process slot given back. */
static void test_count_and_render(void **state)
{
    rd_request_t echo = { .header_valid = true, .group = 0, .command = 0,
                          .cmd = rd_command_lookup(0, 0) };
    rd_request_t bad = { .header_valid = false, .group = 9, .command = 9 };
    rd_response_t ok, refused;
    uint64_t start = rd_clock_ns() - 2000000;    /* 2 ms ago */
    size_t len;
    char *text;
    pid_t pid;
    int status;

    (void)state;
    answer(&ok, 250);
    answer(&refused, 6);
    assert_int_equal(rd_metrics_init(), 0);
    rd_metrics_attach(0, 1);
    for (int i = 0; i < 5; i++)
        rd_metrics_request(RD_METRICS_TCP, &echo, &ok, start);
    rd_metrics_request(RD_METRICS_TCP, &bad, &refused, 0);
    rd_metrics_pool(4, 2, 3);
    rd_metrics_connections(7);
    pid = fork();
    if (pid == 0) {
        rd_metrics_attach(1, 2);
        for (int i = 0; i < 3; i++)
            rd_metrics_request(RD_METRICS_TCP, &echo, &ok, start);
        rd_metrics_udp(RD_UDP_DROPPED_SHORT);
        rd_metrics_connections(5);
        _exit(0);
    }
    assert_true(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    rd_metrics_reload(true);
    rd_metrics_generation(2);
    rd_metrics_worker_restart(9);              /* killed by signal 9 */
    text = rd_metrics_render(rd_metrics_get(), &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_true(has(text, "raidad_requests_total{transport=\"tcp\",group=\"0\",command=\"echo\",status=\"250\"} 8"));
    assert_true(has(text, "raidad_requests_total{transport=\"tcp\",group=\"none\",command=\"none\",status=\"6\"} 1"));
    /* 2 ms or more (a busy machine adds): above the 1 ms bound, within
     * 5 s; the 0 ns one in the first bucket. */
    assert_true(has(text, "raidad_request_duration_seconds_bucket{transport=\"tcp\",group=\"0\",le=\"0.001\"} 0"));
    assert_true(has(text, "raidad_request_duration_seconds_bucket{transport=\"tcp\",group=\"0\",le=\"5\"} 8"));
    assert_true(has(text, "raidad_request_duration_seconds_bucket{transport=\"tcp\",group=\"0\",le=\"+Inf\"} 8"));
    assert_true(has(text, "raidad_request_duration_seconds_count{transport=\"tcp\",group=\"0\"} 8"));
    assert_true(has(text, "raidad_request_duration_seconds_bucket{transport=\"tcp\",group=\"none\",le=\"5e-05\"} 1"));
    assert_true(has(text, "raidad_udp_datagrams_total{outcome=\"dropped_short\"} 1"));
    assert_true(has(text, "raidad_connections_open 12"));
    assert_true(has(text, "raidad_pool_busy_threads 3"));
    assert_true(has(text, "raidad_reloads_total{result=\"ok\"} 1"));
    assert_true(has(text, "raidad_config_generation 2"));
    assert_true(has(text, "raidad_worker_restarts_total{cause=\"signal\"} 1"));
    assert_true(strstr(text, "# HELP raidad_pool_wait_seconds ") != NULL);
    assert_true(strstr(text, "# TYPE raidad_pool_wait_seconds histogram\n") != NULL);
    free(text);
    /* The child's process slot goes back to zero; its counters stay. */
    assert_int_equal(rd_metrics_proc_requests(2), 3);
    rd_metrics_proc_gone(2);
    assert_int_equal(rd_metrics_proc_requests(2), 0);
    text = rd_metrics_render(rd_metrics_get(), &len);
    assert_true(has(text, "raidad_connections_open 7"));
    assert_true(has(text, "raidad_requests_total{transport=\"tcp\",group=\"0\",command=\"echo\",status=\"250\"} 8"));
    free(text);
    rd_metrics_fini();
}

/* Without a mapping every hook does nothing (raida-cli, unit tests). */
static void test_hooks_without_mapping(void **state)
{
    rd_request_t echo = { .header_valid = true, .cmd = rd_command_lookup(0, 0) };
    rd_response_t ok;

    (void)state;
    answer(&ok, 250);
    assert_null(rd_metrics_get());
    rd_metrics_attach(0, 0);
    rd_metrics_request(RD_METRICS_UDP, &echo, &ok, 0);
    rd_metrics_accepted();
    rd_metrics_pool(1, 1, 1);
    rd_metrics_reload(false);
    assert_int_equal(rd_metrics_proc_requests(0), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);

    assert_non_null(f);
    assert_non_null(buf);
    assert_true(fread(buf, 1, 65535, f) < 65535);
    fclose(f);
    return buf;
}

static void log_two(void)
{
    rd_request_t echo = { .header_valid = true, .group = 0, .command = 0,
                          .cmd = rd_command_lookup(0, 0) };
    uint8_t k4[16], k6[16];
    struct sockaddr_storage a = addr_of("192.0.2.7", 4242), b = addr_of("2001:db8::5", 53);

    rd_limit_key(&a, k4);
    rd_limit_key(&b, k6);
    rd_accesslog_add(k4, 4242, RD_METRICS_TCP, &echo, 250, 50, 32, 54321);
    rd_accesslog_add(k6, 53, RD_METRICS_UDP, NULL, 6, 50, 32, 999);
}

static void test_access_log_lines(void **state)
{
    char path[] = "/tmp/raidad-test-accesslog-XXXXXX";
    rd_config_t cf;
    char *text;
    int timeout, fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    rd_config_defaults(&cf);
    snprintf(cf.access_log, sizeof(cf.access_log), "%s", path);
    assert_int_equal(rd_accesslog_open(&cf), 0);
    assert_true(rd_accesslog_enabled());
    log_two();
    /* Buffered: nothing written until it is due, or the log closes. */
    text = slurp(path);
    assert_string_equal(text, "");
    free(text);
    timeout = rd_accesslog_flush_due(rd_clock_ms(), 10000);
    assert_true(timeout > 0 && timeout <= (int)cf.access_log_flush_ms);
    assert_int_equal(rd_accesslog_flush_due(rd_clock_ms() + cf.access_log_flush_ms, 10000), 10000);
    text = slurp(path);
    assert_non_null(strstr(text, "Z 192.0.2.7:4242 tcp 0/echo 250 50 32 54\n"));
    assert_non_null(strstr(text, "Z [2001:db8::5]:53 udp - 6 50 32 0\n"));
    assert_int_equal(text[4], '-');
    assert_int_equal(text[10], 'T');
    free(text);
    rd_accesslog_close();
    /* The same two as json. */
    assert_int_equal(truncate(path, 0), 0);
    snprintf(cf.access_log_format, sizeof(cf.access_log_format), "json");
    assert_int_equal(rd_accesslog_open(&cf), 0);
    log_two();
    rd_accesslog_close();
    text = slurp(path);
    assert_non_null(strstr(text, "\",\"client\":\"192.0.2.7\",\"port\":4242,\"transport\":\"tcp\","
                                 "\"group\":0,\"command\":\"echo\",\"status\":250,\"bytes_in\":50,"
                                 "\"bytes_out\":32,\"duration_us\":54}\n"));
    assert_non_null(strstr(text, "\"client\":\"2001:db8::5\",\"port\":53,\"transport\":\"udp\","
                                 "\"group\":null,\"command\":null,\"status\":6,"));
    free(text);
    assert_false(rd_accesslog_enabled());
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_hooks_without_mapping),
        cmocka_unit_test(test_count_and_render),
        cmocka_unit_test(test_access_log_lines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
