/* Address ranges of allow lists (src/rd_cidr.c), matched against the
 * 16-byte client addresses that rd_limit_key() makes from real sockaddrs. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "rd_cidr.h"
#include "rd_limit.h"

static void key_of(const char *ip, uint8_t key[RD_ADDR_SIZE])
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        ss.ss_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    } else {
        ss.ss_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    }
    rd_limit_key(&ss, key);
}

static bool in(const char *range, const char *ip)
{
    rd_cidr_t c;
    uint8_t key[RD_ADDR_SIZE];

    assert_int_equal(rd_cidr_parse(range, &c), 0);
    key_of(ip, key);
    return rd_cidr_match(&c, 1, key);
}

static void test_v4_ranges(void **state)
{
    (void)state;
    assert_true(in("127.0.0.0/8", "127.0.0.1"));
    assert_true(in("127.0.0.0/8", "127.255.1.2"));
    assert_false(in("127.0.0.0/8", "128.0.0.1"));
    /* host bits in the range are ignored, as the brief's "127.0.0.1/8" */
    assert_true(in("127.0.0.1/8", "127.9.9.9"));
    assert_true(in("192.0.2.7", "192.0.2.7"));
    assert_false(in("192.0.2.7", "192.0.2.8"));
    assert_true(in("192.0.2.0/25", "192.0.2.127"));
    assert_false(in("192.0.2.0/25", "192.0.2.128"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_false(in("0.0.0.0/0", "2001:db8::1"));   /* IPv4 ranges hold IPv4 only */
}

static void test_v6_ranges(void **state)
{
    (void)state;
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_false(in("::1", "127.0.0.1"));
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("::/0", "2001:db8::1"));
    assert_true(in("::/0", "10.1.2.3"));
    /* an IPv4 client on an IPv6 socket arrives IPv4-mapped */
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_true(in("::ffff:10.0.0.0/104", "10.200.0.1"));
}

static void test_list_and_unknown_client(void **state)
{
    rd_cidr_t list[2];
    uint8_t key[RD_ADDR_SIZE], unknown[RD_ADDR_SIZE] = { 0 };

    (void)state;
    assert_int_equal(rd_cidr_parse("127.0.0.0/8", &list[0]), 0);
    assert_int_equal(rd_cidr_parse("::1", &list[1]), 0);
    key_of("::1", key);
    assert_true(rd_cidr_match(list, 2, key));
    key_of("127.0.0.2", key);
    assert_true(rd_cidr_match(list, 2, key));
    key_of("192.0.2.1", key);
    assert_false(rd_cidr_match(list, 2, key));
    assert_false(rd_cidr_match(list, 0, key));
    /* a request whose address nobody set matches no loopback range */
    assert_false(rd_cidr_match(list, 2, unknown));
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "", "/8", "127.0.0.1/", "127.0.0.1/33", "::1/129", "127.0.0.1/8x", "127.0.0.1/-1",
        "localhost", "127.0.0", "1.2.3.4.5", "::1::2", "127.0.0.1/ 8", "[::1]",
        "::1/1/2",
    };
    rd_cidr_t c;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_cidr_parse(bad[i], &c), -1);
    assert_int_equal(rd_cidr_parse(NULL, &c), -1);
    assert_int_equal(rd_cidr_parse("10.0.0.0/32", &c), 0);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(rd_cidr_parse("10.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 96);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_ranges),
        cmocka_unit_test(test_v6_ranges),
        cmocka_unit_test(test_list_and_unknown_client),
        cmocka_unit_test(test_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
