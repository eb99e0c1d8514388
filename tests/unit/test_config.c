#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_config.h"
#include "rd_log.h"

#define NAME "raidad.conf"

/* ---- helpers ------------------------------------------------------------- */

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* Writes TEXT into a new temporary file whose name goes into PATH. */
static void write_temp(char *path, size_t len, const char *text)
{
    snprintf(path, len, "%s/test_config.XXXXXX", tmp_dir());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static rd_config_t *parse_ok(const char *text)
{
    static rd_config_t cf;
    char err[512] = "";

    int rc = rd_config_parse_string(&cf, text, NAME, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    return &cf;
}

/* TEXT must fail with exactly WANT, and leave the configuration alone. */
static void expect_error(const char *text, const char *want)
{
    rd_config_t cf, saved;
    char err[512] = "";

    memset(&cf, 0xA5, sizeof(cf));
    saved = cf;
    assert_int_equal(rd_config_parse_string(&cf, text, NAME, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_memory_equal(&cf, &saved, sizeof(cf));
}

static void assert_config_equal(const rd_config_t *a, const rd_config_t *b)
{
    assert_int_equal(a->listen_count, b->listen_count);
    for (size_t i = 0; i < a->listen_count; i++) {
        assert_string_equal(a->listen[i].text, b->listen[i].text);
        assert_int_equal(a->listen[i].addr_len, b->listen[i].addr_len);
        assert_memory_equal(&a->listen[i].addr, &b->listen[i].addr, a->listen[i].addr_len);
    }
    assert_int_equal(a->raida_id, b->raida_id);
    assert_int_equal(a->coin_id, b->coin_id);
    assert_int_equal(a->worker_threads, b->worker_threads);
    assert_int_equal(a->commit_threads, b->commit_threads);
    assert_int_equal(a->epoll_timeout_ms, b->epoll_timeout_ms);
    assert_int_equal(a->events_per_wait, b->events_per_wait);
    assert_int_equal(a->max_descriptors, b->max_descriptors);
    assert_int_equal(a->max_body_size, b->max_body_size);
    assert_int_equal(a->socket_timeout_ms, b->socket_timeout_ms);
    assert_int_equal(a->mod_queue_size, b->mod_queue_size);
    assert_int_equal(a->tcp_keepalive, b->tcp_keepalive);
    assert_int_equal(a->keepalive_idle, b->keepalive_idle);
    assert_int_equal(a->keepalive_interval, b->keepalive_interval);
    assert_int_equal(a->keepalive_count, b->keepalive_count);
    assert_int_equal(a->udp_payload_threshold, b->udp_payload_threshold);
    assert_int_equal(a->admin_key_set, b->admin_key_set);
    assert_memory_equal(a->admin_key, b->admin_key, sizeof(a->admin_key));
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->admin_allow_count, b->admin_allow_count);
    assert_memory_equal(a->admin_allow, b->admin_allow,
                        a->admin_allow_count * sizeof(a->admin_allow[0]));
    assert_string_equal(a->user, b->user);
    assert_string_equal(a->group, b->group);
    assert_int_equal(a->worker_seccomp, b->worker_seccomp);
}

static void assert_v4(const rd_listen_addr_t *a, const char *ip, unsigned port, const char *text)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addr;
    struct in_addr want;

    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(a->addr_len, sizeof(*sin));
    assert_int_equal(ntohs(sin->sin_port), port);
    assert_memory_equal(&sin->sin_addr, &want, sizeof(want));
    assert_string_equal(a->text, text);
}

static void assert_v6(const rd_listen_addr_t *a, const char *ip, unsigned port, const char *text)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->addr;
    struct in6_addr want;

    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(a->addr_len, sizeof(*sin6));
    assert_int_equal(ntohs(sin6->sin6_port), port);
    assert_memory_equal(&sin6->sin6_addr, &want, sizeof(want));
    assert_string_equal(a->text, text);
}

/* ---- defaults and values ------------------------------------------------- */

static void test_defaults_when_empty(void **state)
{
    (void)state;
    rd_config_t *cf = parse_ok("");

    assert_string_equal(cf->path, NAME);
    assert_int_equal(cf->listen_count, 1);
    assert_v4(&cf->listen[0], "0.0.0.0", 18000, "0.0.0.0:18000");
    assert_int_equal(cf->raida_id, 0);
    assert_int_equal(cf->coin_id, 6);
    assert_int_equal(cf->worker_threads, 2);
    assert_int_equal(cf->commit_threads, 1);
    assert_int_equal(cf->epoll_timeout_ms, 10000);
    assert_int_equal(cf->events_per_wait, 10000);
    assert_int_equal(cf->limit_prefix_ipv4, 32);
    assert_int_equal(cf->limit_prefix_ipv6, 64);
    assert_int_equal(cf->max_descriptors, 65535);
    assert_int_equal(cf->max_body_size, 65536);
    assert_int_equal(cf->socket_timeout_ms, 2000);
    assert_int_equal(cf->mod_queue_size, 1024);
    assert_true(cf->tcp_keepalive);
    assert_int_equal(cf->keepalive_idle, 60);
    assert_int_equal(cf->keepalive_interval, 10);
    assert_int_equal(cf->keepalive_count, 5);
    assert_int_equal(cf->udp_payload_threshold, 65507);
    assert_false(cf->admin_key_set);
    assert_int_equal(cf->log_level, RD_LOG_INFO);

    rd_config_t def;
    rd_config_defaults(&def);
    assert_config_equal(cf, &def);
    /* Comments only, even without a final newline. */
    assert_config_equal(parse_ok("# nothing\n// here\n/* at all */\n# end"), &def);
}

static void test_every_setting(void **state)
{
    (void)state;
    rd_config_t *cf = parse_ok(
        "listen = \"127.0.0.1:9000\";\n"
        "raida_id = 24;\n"
        "coin_id = 65535;\n"
        "worker_threads = 256;\n"
        "epoll_timeout_ms = 1;\n"
        "events_per_wait = 1000000;\n"
        "max_descriptors = 64;\n"
        "max_body_size = 18;\n"
        "socket_timeout_ms = 3600000;\n"
        "mod_queue_size = 7;\n"
        "tcp_keepalive = false;\n"
        "keepalive_idle = 32767;\n"
        "keepalive_interval = 1;\n"
        "keepalive_count = 127;\n"
        "udp_payload_threshold = 32;\n"
        "admin_key = \"00112233445566778899aAbBcCdDeEfF\";\n"
        "log_level = \"debug\";\n");
    static const uint8_t key[RD_ADMIN_KEY_SIZE] = {
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff
    };

    assert_int_equal(cf->listen_count, 1);
    assert_v4(&cf->listen[0], "127.0.0.1", 9000, "127.0.0.1:9000");
    assert_int_equal(cf->raida_id, 24);
    assert_int_equal(cf->coin_id, 65535);
    assert_int_equal(cf->worker_threads, 256);
    assert_int_equal(cf->epoll_timeout_ms, 1);
    assert_int_equal(cf->events_per_wait, 1000000);
    assert_int_equal(cf->max_descriptors, 64);
    assert_int_equal(cf->max_body_size, 18);
    assert_int_equal(cf->socket_timeout_ms, 3600000);
    assert_int_equal(cf->mod_queue_size, 7);
    assert_false(cf->tcp_keepalive);
    assert_int_equal(cf->keepalive_idle, 32767);
    assert_int_equal(cf->keepalive_interval, 1);
    assert_int_equal(cf->keepalive_count, 127);
    assert_int_equal(cf->udp_payload_threshold, 32);
    assert_true(cf->admin_key_set);
    assert_memory_equal(cf->admin_key, key, sizeof(key));
    assert_int_equal(cf->log_level, RD_LOG_DEBUG);
}

static void test_integer_forms(void **state)
{
    (void)state;
    /* 64-bit and hex literals, and libconfig's other separators. */
    assert_int_equal(parse_ok("raida_id = 7L;")->raida_id, 7);
    assert_int_equal(parse_ok("coin_id = 0x10;")->coin_id, 16);
    assert_int_equal(parse_ok("coin_id: 5")->coin_id, 5);
    assert_int_equal(parse_ok("coin_id\n=\n  9;")->coin_id, 9);
    rd_config_t *cf = parse_ok("raida_id = 3; coin_id = 4; worker_threads = 5;");
    assert_int_equal(cf->raida_id, 3);
    assert_int_equal(cf->coin_id, 4);
    assert_int_equal(cf->worker_threads, 5);
    /* The name also appearing in a string on the same line. */
    assert_int_equal(parse_ok("log_level = \"info\"; coin_id = 8; # coin_id = 99999999999")
                     ->coin_id, 8);
    assert_int_equal(parse_ok("/* raida_id = 4294967297 */ raida_id = 7;")->raida_id, 7);
}

static void test_log_level_setting(void **state)
{
    (void)state;
    static const struct { const char *text; int level; } cases[] = {
        { "emerg", RD_LOG_EMERG }, { "alert", RD_LOG_ALERT }, { "crit", RD_LOG_CRIT },
        { "error", RD_LOG_ERR }, { "err", RD_LOG_ERR }, { "warn", RD_LOG_WARN },
        { "warning", RD_LOG_WARN }, { "notice", RD_LOG_NOTICE }, { "info", RD_LOG_INFO },
        { "debug", RD_LOG_DEBUG }, { "DEBUG", RD_LOG_DEBUG },
    };
    char text[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "log_level = \"%s\";", cases[i].text);
        assert_int_equal(parse_ok(text)->log_level, cases[i].level);
    }
}

/* ---- listen -------------------------------------------------------------- */

static void test_listen_forms(void **state)
{
    (void)state;
    rd_listen_addr_t a;

    assert_int_equal(rd_config_parse_listen("127.0.0.1:18001", &a), 0);
    assert_v4(&a, "127.0.0.1", 18001, "127.0.0.1:18001");
    assert_int_equal(rd_config_parse_listen("10.1.2.3", &a), 0);
    assert_v4(&a, "10.1.2.3", RD_DEFAULT_PORT, "10.1.2.3:18000");
    assert_int_equal(rd_config_parse_listen("8080", &a), 0);
    assert_v4(&a, "0.0.0.0", 8080, "0.0.0.0:8080");
    assert_int_equal(rd_config_parse_listen("*:1", &a), 0);
    assert_v4(&a, "0.0.0.0", 1, "0.0.0.0:1");
    assert_int_equal(rd_config_parse_listen("*", &a), 0);
    assert_v4(&a, "0.0.0.0", RD_DEFAULT_PORT, "0.0.0.0:18000");
    assert_int_equal(rd_config_parse_listen("[::1]:65535", &a), 0);
    assert_v6(&a, "::1", 65535, "[::1]:65535");
    assert_int_equal(rd_config_parse_listen("[::]", &a), 0);
    assert_v6(&a, "::", RD_DEFAULT_PORT, "[::]:18000");
    assert_int_equal(rd_config_parse_listen("[2001:DB8:0:0::1]:443", &a), 0);
    assert_v6(&a, "2001:db8::1", 443, "[2001:db8::1]:443");
}

static void test_listen_bad_forms(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", ":", ":18000", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "0", "65536",
        "1.2.3.4:99999999999999999999", "1.2.3.4:+80", "1.2.3.4: 80", " 1.2.3.4",
        "-1", "256.1.1.1", "1.2.3", "localhost:80", "host.example", "1.2.3.4:80:90",
        "::1", "::1:8000", "[::1", "[::1]x", "[::1]:", "[]", "[]:80", "[1.2.3.4]:80",
        "[fe80::1%eth0]:80", "[::1]:0", "[::1]:http",
    };
    rd_listen_addr_t a, before;

    memset(&a, 0x5A, sizeof(a));
    before = a;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (rd_config_parse_listen(bad[i], &a) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_memory_equal(&a, &before, sizeof(a));
    }
    assert_int_equal(rd_config_parse_listen(NULL, &a), -1);
}

static void test_listen_list(void **state)
{
    (void)state;
    rd_config_t *cf = parse_ok("listen = (\"127.0.0.1:1\", \"[::1]:2\", \"3\");");

    assert_int_equal(cf->listen_count, 3);
    assert_v4(&cf->listen[0], "127.0.0.1", 1, "127.0.0.1:1");
    assert_v6(&cf->listen[1], "::1", 2, "[::1]:2");
    assert_v4(&cf->listen[2], "0.0.0.0", 3, "0.0.0.0:3");

    cf = parse_ok("listen = [\"[::]:18000\", \"0.0.0.0:18000\"];");
    assert_int_equal(cf->listen_count, 2);
    assert_string_equal(cf->listen[0].text, "[::]:18000");
    assert_string_equal(cf->listen[1].text, "0.0.0.0:18000");

    /* Exactly the most allowed. */
    char text[1024];
    size_t n = (size_t)snprintf(text, sizeof(text), "listen = (");
    for (int i = 1; i <= RD_CONFIG_MAX_LISTEN; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s\"%d\"", i > 1 ? ", " : "", i);
    snprintf(text + n, sizeof(text) - n, ");");
    cf = parse_ok(text);
    assert_int_equal(cf->listen_count, RD_CONFIG_MAX_LISTEN);
    assert_string_equal(cf->listen[RD_CONFIG_MAX_LISTEN - 1].text, "0.0.0.0:16");
}

/* metrics_listen against listen once the whole file is read, in either
 * order: the same port on the same address, or on a wildcard of its
 * family, is refused at metrics_listen's line; another family or port is
 * fine, whatever the default listen was when metrics_listen was read. */
static void test_metrics_listen_overlap(void **state)
{
    (void)state;
    expect_error("metrics_listen = \"127.0.0.1:19911\";\nlisten = \"127.0.0.1:19911\";\n",
                 NAME ":1: metrics_listen '127.0.0.1:19911' overlaps listen '127.0.0.1:19911' "
                 "(the same port)");
    expect_error("listen = \"0.0.0.0:19913\";\nmetrics_listen = \"127.0.0.1:19913\";\n",
                 NAME ":2: metrics_listen '127.0.0.1:19913' overlaps listen '0.0.0.0:19913' "
                 "(the same port)");
    expect_error("listen = \"[::1]:19914\";\nmetrics_listen = \"[::]:19914\";\n",
                 NAME ":2: metrics_listen '[::]:19914' overlaps listen '[::1]:19914' "
                 "(the same port)");
    const rd_config_t *cf = parse_ok("metrics_listen = \"0.0.0.0:18000\";\n"
                                     "listen = \"127.0.0.1:19912\";\n");
    assert_int_equal(cf->metrics_listen_count, 1);
    cf = parse_ok("listen = \"0.0.0.0:19915\";\nmetrics_listen = \"[::1]:19915\";\n");
    assert_int_equal(cf->metrics_listen_count, 1);
}

static void test_listen_errors(void **state)
{
    (void)state;
    char text[1024], want[256];

    expect_error("\nlisten = \"localhost:80\";",
                 NAME ":2: listen 'localhost:80' is not a valid address: write ADDR:PORT, "
                 "[IPV6]:PORT, ADDR or PORT, with a numeric address and a port 1..65535");
    expect_error("listen = (\"1.2.3.4\",\n  \"1.2.3.4:0\");",
                 NAME ":2: listen '1.2.3.4:0' is not a valid address: write ADDR:PORT, "
                 "[IPV6]:PORT, ADDR or PORT, with a numeric address and a port 1..65535");
    expect_error("listen = 18000;", NAME ":1: listen must be a string or a list of strings");
    expect_error("listen = true;", NAME ":1: listen must be a string or a list of strings");
    expect_error("listen = { a = 1; };", NAME ":1: listen must be a string or a list of strings");
    expect_error("listen = (\"1\",\n 2);", NAME ":2: listen must be a string or a list of strings");
    expect_error("listen = ();", NAME ":1: listen has 0 entries (1..16 allowed)");
    expect_error("listen = [];", NAME ":1: listen has 0 entries (1..16 allowed)");
    expect_error("listen = (\"1.2.3.4:80\", \"*:5\", \"1.2.3.4:80\");",
                 NAME ":1: listen '1.2.3.4:80' is given twice");

    size_t n = (size_t)snprintf(text, sizeof(text), "\n\nlisten = (");
    for (int i = 1; i <= RD_CONFIG_MAX_LISTEN + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s\"%d\"", i > 1 ? ", " : "", i);
    snprintf(text + n, sizeof(text) - n, ");");
    snprintf(want, sizeof(want), NAME ":3: listen has %d entries (1..%d allowed)",
             RD_CONFIG_MAX_LISTEN + 1, RD_CONFIG_MAX_LISTEN);
    expect_error(text, want);
}

/* ---- errors -------------------------------------------------------------- */

static void test_syntax_error(void **state)
{
    (void)state;
    expect_error("raida_id = 1;\ncoin_id = 2;\nworker_threads = ;\n", NAME ":3: syntax error");
    expect_error("raida_id 1;", NAME ":1: syntax error");
    expect_error("raida_id = 1;\n\n\nlog_level = \"info;\n", NAME ":5: syntax error");
    expect_error("raida_id = 1;\nraida_id = 2;\n", NAME ":2: duplicate setting name");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_error("log_level = \"info\";\n\n\nraida_id = \"1\";",
                 NAME ":4: raida_id must be an integer");
    expect_error("worker_threads = 4.0;", NAME ":1: worker_threads must be an integer");
    expect_error("coin_id = true;", NAME ":1: coin_id must be an integer");
    expect_error("coin_id = (1);", NAME ":1: coin_id must be an integer");
    expect_error("tcp_keepalive = 1;", NAME ":1: tcp_keepalive must be a boolean");
    expect_error("tcp_keepalive = \"yes\";", NAME ":1: tcp_keepalive must be a boolean");
    expect_error("log_level = 6;", NAME ":1: log_level must be a string");
    expect_error("admin_key = (\"00112233445566778899aabbccddeeff\");",
                 NAME ":1: admin_key must be a string");
}

static void test_out_of_range(void **state)
{
    (void)state;
    expect_error("\n\n\nraida_id = 30;", NAME ":4: raida_id = 30 is out of range (0..24)");
    expect_error("raida_id = -1;", NAME ":1: raida_id = -1 is out of range (0..24)");
    expect_error("coin_id = 65536;", NAME ":1: coin_id = 65536 is out of range (0..65535)");
    expect_error("worker_threads = 0;", NAME ":1: worker_threads = 0 is out of range (1..256)");
    expect_error("worker_threads = 257;", NAME ":1: worker_threads = 257 is out of range (1..256)");
    expect_error("commit_threads = 0;", NAME ":1: commit_threads = 0 is out of range (1..64)");
    expect_error("commit_threads = 65;", NAME ":1: commit_threads = 65 is out of range (1..64)");
    expect_error("epoll_timeout_ms = 0;",
                 NAME ":1: epoll_timeout_ms = 0 is out of range (1..3600000)");
    expect_error("epoll_timeout_ms = 3600001;",
                 NAME ":1: epoll_timeout_ms = 3600001 is out of range (1..3600000)");
    expect_error("events_per_wait = 1000001;",
                 NAME ":1: events_per_wait = 1000001 is out of range (1..1000000)");
    expect_error("max_descriptors = 63;",
                 NAME ":1: max_descriptors = 63 is out of range (64..1048576)");
    expect_error("max_body_size = 17;", NAME ":1: max_body_size = 17 is out of range (18..1048576)");
    expect_error("max_body_size = 1048577;",
                 NAME ":1: max_body_size = 1048577 is out of range (18..1048576)");
    expect_error("socket_timeout_ms = 9;",
                 NAME ":1: socket_timeout_ms = 9 is out of range (10..3600000)");
    expect_error("mod_queue_size = 0;", NAME ":1: mod_queue_size = 0 is out of range (1..1048576)");
    expect_error("keepalive_idle = 32768;",
                 NAME ":1: keepalive_idle = 32768 is out of range (1..32767)");
    expect_error("keepalive_interval = 0;",
                 NAME ":1: keepalive_interval = 0 is out of range (1..32767)");
    expect_error("keepalive_count = 128;", NAME ":1: keepalive_count = 128 is out of range (1..127)");
    expect_error("limit_prefix_ipv4 = 33;",
                 NAME ":1: limit_prefix_ipv4 = 33 is out of range (1..32)");
    expect_error("limit_prefix_ipv6 = 0;",
                 NAME ":1: limit_prefix_ipv6 = 0 is out of range (1..128)");
    expect_error("udp_payload_threshold = 31;",
                 NAME ":1: udp_payload_threshold = 31 is out of range (32..65507)");
    expect_error("udp_payload_threshold = 65508;",
                 NAME ":1: udp_payload_threshold = 65508 is out of range (32..65507)");
}

/* Values that do not fit in 32 bits must not wrap into range. */
static void test_huge_integers(void **state)
{
    (void)state;
    expect_error("raida_id = 4294967297;", NAME ":1: raida_id = 4294967297 is out of range (0..24)");
    expect_error("raida_id = 99999999999L;",
                 NAME ":1: raida_id = 99999999999 is out of range (0..24)");
    expect_error("worker_threads = -4294967292;",
                 NAME ":1: worker_threads = -4294967292 is out of range (1..256)");
    expect_error("coin_id = 0x100000001;", NAME ":1: coin_id = 0x100000001 is out of range (0..65535)");
    expect_error("coin_id = 0xFFFFFFFF;", NAME ":1: coin_id = 0xFFFFFFFF is out of range (0..65535)");
    expect_error("raida_id =\n  18446744073709551617;",
                 NAME ":1: raida_id = 18446744073709551617 is out of range (0..24)");
    expect_error("raida_id = -99999999999999999999;",
                 NAME ":1: raida_id = -99999999999999999999 is out of range (0..24)");
    expect_error("coin_id = 1; raida_id = 4294967296;",
                 NAME ":1: raida_id = 4294967296 is out of range (0..24)");
}

static void test_unknown_setting(void **state)
{
    (void)state;
    expect_error("raida_id = 1;\n\n\n\n\n\nfoo = 1;", NAME ":7: unknown setting 'foo'");
    /* A group is a module's settings: tests/unit/test_module.c checks it. */
    expect_error("raida = ( 1 );", NAME ":1: unknown setting 'raida'");
    expect_error("Raida_id = 1;", NAME ":1: unknown setting 'Raida_id'");
}

static void test_bad_admin_key(void **state)
{
    (void)state;
    expect_error("admin_key = \"00112233445566778899aabbccddee\";",
                 NAME ":1: admin_key must be exactly 32 hex digits (16 bytes), not 30");
    expect_error("admin_key = \"00112233445566778899aabbccddeeff00\";",
                 NAME ":1: admin_key must be exactly 32 hex digits (16 bytes), not 34");
    expect_error("admin_key = \"\";",
                 NAME ":1: admin_key must be exactly 32 hex digits (16 bytes), not 0");
    expect_error("\nadmin_key = \"00112233445566778899aabbccddeefg\";",
                 NAME ":2: admin_key must contain only hex digits (0-9, a-f)");
    expect_error("admin_key = \"0x112233445566778899aabbccddeeff\";",
                 NAME ":1: admin_key must contain only hex digits (0-9, a-f)");
}

static void test_bad_log_level(void **state)
{
    (void)state;
    expect_error("log_level = \"verbose\";",
                 NAME ":1: log_level 'verbose' is not a level (emerg, alert, crit, error, "
                 "warn, notice, info, debug)");
    expect_error("log_level = \"\";",
                 NAME ":1: log_level '' is not a level (emerg, alert, crit, error, "
                 "warn, notice, info, debug)");
}

/* ---- files --------------------------------------------------------------- */

static void test_load_file(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512] = "";
    rd_config_t cf;

    write_temp(path, sizeof(path), "raida_id = 12;\nlisten = (\"[::1]:1\", \"127.0.0.1\");\n");
    assert_int_equal(rd_config_load(&cf, path, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(cf.path, path);
    assert_int_equal(cf.raida_id, 12);
    assert_int_equal(cf.listen_count, 2);
    assert_string_equal(cf.listen[1].text, "127.0.0.1:18000");
    assert_int_equal(cf.coin_id, 6);
    assert_int_equal(unlink(path), 0);
}

static void test_load_errors(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512], want[PATH_MAX + 128];
    rd_config_t cf, saved;

    rd_config_defaults(&cf);
    cf.raida_id = 3;
    saved = cf;

    write_temp(path, sizeof(path), "raida_id = 1;\n# x\ncoin_id 2;\n");
    assert_int_equal(rd_config_load(&cf, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: syntax error", path);
    assert_string_equal(err, want);
    assert_memory_equal(&cf, &saved, sizeof(cf));

    write_file(path, "coin_id = 6;\nraida_id = 25;\n");
    assert_int_equal(rd_config_load(&cf, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: raida_id = 25 is out of range (0..24)", path);
    assert_string_equal(err, want);
    assert_memory_equal(&cf, &saved, sizeof(cf));

    write_file(path, "coin_id = 4294967302;\n");
    assert_int_equal(rd_config_load(&cf, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:1: coin_id = 4294967302 is out of range (0..65535)", path);
    assert_string_equal(err, want);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rd_config_load(&cf, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
    assert_string_equal(err, want);
    assert_memory_equal(&cf, &saved, sizeof(cf));

    assert_int_equal(rd_config_load(&cf, tmp_dir(), err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: cannot read: %s", tmp_dir(), strerror(EISDIR));
    assert_string_equal(err, want);
    assert_memory_equal(&cf, &saved, sizeof(cf));
}

/* @include is relative to the including file's folder, and errors in the
 * included file name it. */
static void test_include(void **state)
{
    (void)state;
    char dir[PATH_MAX], main_conf[PATH_MAX + 32], inc[PATH_MAX + 32];
    char err[1024] = "", want[PATH_MAX + 128];
    rd_config_t cf;

    snprintf(dir, sizeof(dir), "%s/test_config.XXXXXX", tmp_dir());
    assert_non_null(mkdtemp(dir));
    snprintf(main_conf, sizeof(main_conf), "%s/raidad.conf", dir);
    snprintf(inc, sizeof(inc), "%s/inc.conf", dir);
    write_file(main_conf, "raida_id = 2;\n@include \"inc.conf\"\nworker_threads = 8;\n");

    write_file(inc, "coin_id = 77;\n");
    assert_int_equal(rd_config_load(&cf, main_conf, err, sizeof(err)), 0);
    assert_int_equal(cf.raida_id, 2);
    assert_int_equal(cf.coin_id, 77);
    assert_int_equal(cf.worker_threads, 8);

    write_file(inc, "coin_id = 77;\nmax_body_size 300;\n");
    assert_int_equal(rd_config_load(&cf, main_conf, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: syntax error", inc);
    assert_string_equal(err, want);

    write_file(inc, "\n\ncoin_id = 65537;\n");
    assert_int_equal(rd_config_load(&cf, main_conf, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: coin_id = 65537 is out of range (0..65535)", inc);
    assert_string_equal(err, want);

    write_file(inc, "\ncoin_id = 4294967297;\n");
    assert_int_equal(rd_config_load(&cf, main_conf, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: coin_id = 4294967297 is out of range (0..65535)", inc);
    assert_string_equal(err, want);

    assert_int_equal(unlink(inc), 0);
    assert_int_equal(rd_config_load(&cf, main_conf, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: cannot open include file", main_conf);
    assert_string_equal(err, want);

    assert_int_equal(unlink(main_conf), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_sample_config(void **state)
{
    (void)state;
    const char *srcdir = getenv("RAIDAD_SRCDIR");
    char path[PATH_MAX], err[512] = "";
    rd_config_t cf, def;

    if (srcdir != NULL && srcdir[0] != '\0')
        snprintf(path, sizeof(path), "%s/conf/raidad.conf", srcdir);
    else
        snprintf(path, sizeof(path), "../conf/raidad.conf");
    int rc = rd_config_load(&cf, path, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s (RAIDAD_SRCDIR names the source tree)", err);
    rd_config_defaults(&def);
    assert_config_equal(&cf, &def);
    assert_string_equal(cf.path, path);
}

/* ---- the sandbox's settings ---------------------------------------------- */

static void test_sandbox_settings(void **state)
{
    rd_config_t def, *cf;
    rd_cidr_t want;

    (void)state;
    rd_config_defaults(&def);
    /* Workers as the raidad account, filtered; admin key in clear from loopback. */
    assert_string_equal(def.user, RD_DEFAULT_USER);
    assert_true(def.worker_seccomp);
    assert_int_equal(def.admin_allow_count, 2);
    assert_int_equal(rd_cidr_parse("127.0.0.0/8", &want), 0);
    assert_memory_equal(&def.admin_allow[0], &want, sizeof(want));
    assert_int_equal(rd_cidr_parse("::1", &want), 0);
    assert_memory_equal(&def.admin_allow[1], &want, sizeof(want));

    cf = parse_ok("worker_seccomp = false;\nadmin_allow = \"192.0.2.0/24\";\n");
    assert_false(cf->worker_seccomp);
    assert_int_equal(cf->admin_allow_count, 1);
    assert_int_equal(rd_cidr_parse("192.0.2.0/24", &want), 0);
    assert_memory_equal(&cf->admin_allow[0], &want, sizeof(want));
    cf = parse_ok("admin_allow = [ \"10.0.0.0/8\", \"2001:db8::/32\", \"::1\" ];\n");
    assert_int_equal(cf->admin_allow_count, 3);
    /* An empty list: the admin key never in clear. */
    cf = parse_ok("admin_allow = [];\n");
    assert_int_equal(cf->admin_allow_count, 0);
    cf = parse_ok("admin_allow = ();\n");
    assert_int_equal(cf->admin_allow_count, 0);
    expect_error("log_level = \"info\";\nadmin_allow = [ \"::1\", \"localhost\" ];",
                 NAME ":2: admin_allow 'localhost' is not an address or range: write ADDR or "
                 "ADDR/LEN, numeric (127.0.0.0/8, ::1, 2001:db8::/32)");
    expect_error("admin_allow = \"127.0.0.1/33\";",
                 NAME ":1: admin_allow '127.0.0.1/33' is not an address or range: write ADDR or "
                 "ADDR/LEN, numeric (127.0.0.0/8, ::1, 2001:db8::/32)");
    expect_error("worker_seccomp = 1;", NAME ":1: worker_seccomp must be a boolean");

    /* The default account may be missing (workers fall back to nobody);
     * root stays a choice; any other unknown account is an error. */
    cf = parse_ok("user = \"" RD_DEFAULT_USER "\";\n");
    assert_string_equal(cf->user, RD_DEFAULT_USER);
    cf = parse_ok("user = \"root\";\n");
    assert_string_equal(cf->user, "root");
    cf = parse_ok("user = \"\";\n");
    assert_string_equal(cf->user, "");
    expect_error("user = \"no-such-user-raidad\";",
                 NAME ":1: user 'no-such-user-raidad' does not exist");
}

/* ---- log ----------------------------------------------------------------- */

static void test_log_level_parse(void **state)
{
    (void)state;
    static const char *const names[] = {
        "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"
    };

    for (int i = RD_LOG_EMERG; i <= RD_LOG_DEBUG; i++) {
        assert_int_equal(rd_log_level_parse(names[i]), i);
        assert_string_equal(rd_log_level_name(i), names[i]);
    }
    assert_int_equal(rd_log_level_parse("err"), RD_LOG_ERR);
    assert_int_equal(rd_log_level_parse("warning"), RD_LOG_WARN);
    assert_int_equal(rd_log_level_parse("Info"), RD_LOG_INFO);
    assert_int_equal(rd_log_level_parse("verbose"), -1);
    assert_int_equal(rd_log_level_parse(""), -1);
    assert_int_equal(rd_log_level_parse(NULL), -1);
}

static char *read_all(const char *path)
{
    static char buf[16384];
    FILE *f = fopen(path, "r");

    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* "<N>YYYY-MM-DD HH:MM:SS [LEVEL] PID: MESSAGE\n" */
static void assert_log_line(const char *line, int level, const char *message)
{
    char want[256];
    int n = snprintf(want, sizeof(want), "<%d>", level);

    assert_memory_equal(line, want, (size_t)n);
    line += n;
    for (const char *f = "dddd-dd-dd dd:dd:dd "; *f; f++, line++) {
        if (*f == 'd')
            assert_true(*line >= '0' && *line <= '9');
        else
            assert_int_equal(*line, *f);
    }
    snprintf(want, sizeof(want), "[%s] %ld: %s\n", rd_log_level_name(level), (long)getpid(),
             message);
    assert_string_equal(line, want);
}

static void test_log_to_file(void **state)
{
    (void)state;
    char path[PATH_MAX], moved[PATH_MAX + 8];

    write_temp(path, sizeof(path), "");
    rd_log_set_level(RD_LOG_INFO);
    assert_int_equal(rd_log_open(path), 0);
    rd_log(RD_LOG_WARN, "hello %d", 42);
    rd_log_debug("not at level info");
    assert_log_line(read_all(path), RD_LOG_WARN, "hello 42");

    /* Reopening after logrotate's rename writes to a new file. */
    snprintf(moved, sizeof(moved), "%s.1", path);
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(rd_log_open(path), 0);
    rd_log_set_level(RD_LOG_DEBUG);
    assert_true(rd_log_enabled(RD_LOG_DEBUG));
    rd_log_debug("two\nlines");
    assert_log_line(read_all(path), RD_LOG_DEBUG, "two lines");

    /* A failed open keeps the current destination. */
    assert_int_equal(rd_log_open("/nonexistent-dir/raidad.log"), -1);
    rd_log_set_level(RD_LOG_ERR);
    assert_false(rd_log_enabled(RD_LOG_WARN));
    rd_log(RD_LOG_WARN, "filtered");
    rd_log(RD_LOG_ERR, "still here");
    const char *text = read_all(path);
    assert_null(strstr(text, "filtered"));
    assert_log_line(strchr(text, '\n') + 1, RD_LOG_ERR, "still here");
    assert_log_line(read_all(moved), RD_LOG_WARN, "hello 42");

    assert_int_equal(rd_log_open(NULL), 0);
    rd_log_set_level(RD_LOG_INFO);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(moved), 0);
}

static void test_log_truncates(void **state)
{
    (void)state;
    char path[PATH_MAX];
    static char big[10000];

    memset(big, 'x', sizeof(big) - 1);
    write_temp(path, sizeof(path), "");
    assert_int_equal(rd_log_open(path), 0);
    rd_log(RD_LOG_NOTICE, "%s", big);
    const char *text = read_all(path);
    size_t len = strlen(text);
    assert_true(len <= 4096);
    assert_string_equal(text + len - 4, "...\n");
    assert_memory_equal(text, "<5>", 3);
    assert_ptr_equal(strchr(text, '\n'), text + len - 1);
    assert_int_equal(rd_log_open(""), 0);
    assert_int_equal(unlink(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_when_empty),
        cmocka_unit_test(test_every_setting),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_log_level_setting),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_bad_forms),
        cmocka_unit_test(test_listen_list),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_metrics_listen_overlap),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_huge_integers),
        cmocka_unit_test(test_unknown_setting),
        cmocka_unit_test(test_bad_admin_key),
        cmocka_unit_test(test_bad_log_level),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_sample_config),
        cmocka_unit_test(test_sandbox_settings),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_to_file),
        cmocka_unit_test(test_log_truncates),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
