/* The UDP layer (src/rd_udp.c) on its own: an rd_net_t made as a worker
 * makes it (tests/unit/net_fixture.h), a real listener and a real client
 * socket on 127.0.0.1, the loop turned by hand, and what the pool hands
 * back given to rd_udp_processed as the worker does. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "net_fixture.h"
#include "rd_udp.h"

static int send_echo(net_fixture_t *f, uint16_t echo)
{
    uint8_t frame[128];
    size_t len = net_fixture_echo(frame, sizeof(frame), echo);
    int fd = net_fixture_client(SOCK_DGRAM, &f->udp_addr);

    assert_true(fd >= 0);
    assert_int_equal(send(fd, frame, len, 0), (ssize_t)len);
    return fd;
}

static void expect_echo_answer(int fd, uint16_t echo)
{
    uint8_t buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    rd_client_response_t resp;

    assert_true(n > 0);
    assert_int_equal(rd_client_parse(buf, (size_t)n, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_int_equal(resp.echo, echo);
}

/* Nothing comes within 200 ms. */
static void expect_no_answer(int fd)
{
    struct timeval tv = { .tv_usec = 200000 };
    uint8_t buf[256];

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(recv(fd, buf, sizeof(buf), 0), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static rd_udp_t *udp_serving(net_fixture_t *f)
{
    rd_udp_t *u = rd_udp_create(&f->net, f->listeners, 2);

    assert_non_null(u);
    assert_int_equal(rd_udp_serve(u, 0, true), 0);        /* TCP: not its own */
    assert_int_equal(rd_udp_serve(u, 1, true), 0);
    return u;
}

static void test_a_quick_request_is_answered_on_the_io_thread(void **state)
{
    net_fixture_t *f = net_fixture_create(4, true);
    rd_udp_t *u;
    int fd;

    (void)state;
    assert_non_null(f);
    u = udp_serving(f);
    fd = send_echo(f, 0x0102);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(f->net.in_flight, 0);
    expect_echo_answer(fd, 0x0102);
    close(fd);
    rd_udp_destroy(u);
    net_fixture_destroy(f, false);
}

static void test_a_request_goes_through_the_pool_and_is_answered(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    void *record;
    rd_udp_t *u;
    int fd;

    (void)state;
    assert_non_null(f);
    u = udp_serving(f);
    fd = send_echo(f, 0x0304);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(f->net.in_flight, 1);
    assert_int_equal(net_fixture_wait_finished(f, &record, 1), 1);
    assert_int_equal(rd_job_kind(record), RD_JOB_DATAGRAM);
    rd_udp_processed(u, record);
    assert_int_equal(f->net.in_flight, 0);
    expect_echo_answer(fd, 0x0304);
    close(fd);
    rd_udp_destroy(u);
    net_fixture_destroy(f, false);
}

/* While TCP requests wait for a slot (rd_net.h), a datagram that needs the
 * pool is dropped, as a full receive buffer would drop it. */
static void test_a_datagram_is_dropped_while_tcp_requests_wait(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    rd_udp_t *u;
    int fd;

    (void)state;
    assert_non_null(f);
    u = udp_serving(f);
    f->net.waiting = 1;
    fd = send_echo(f, 0x0506);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(f->net.in_flight, 0);
    assert_int_equal(atomic_load(&f->proto.stats->udp_dropped), 1);
    expect_no_answer(fd);
    close(fd);
    rd_udp_destroy(u);
    net_fixture_destroy(f, false);
}

/* Once its listeners are closed (a graceful stop), the answer of a request
 * that was in the pool is not sent: its socket is gone. */
static void test_no_answer_goes_out_after_the_listeners_close(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    void *record;
    rd_udp_t *u;
    int fd;

    (void)state;
    assert_non_null(f);
    u = udp_serving(f);
    fd = send_echo(f, 0x0708);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(f->net.in_flight, 1);
    rd_udp_close_listeners(u);
    assert_int_equal(fcntl(f->listeners[1].fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    assert_true(fcntl(f->listeners[0].fd, F_GETFD) >= 0);
    assert_int_equal(net_fixture_wait_finished(f, &record, 1), 1);
    rd_udp_processed(u, record);
    assert_int_equal(f->net.in_flight, 0);
    expect_no_answer(fd);
    close(fd);
    rd_udp_destroy(u);
    close(f->listeners[0].fd);
    net_fixture_destroy(f, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_quick_request_is_answered_on_the_io_thread),
        cmocka_unit_test(test_a_request_goes_through_the_pool_and_is_answered),
        cmocka_unit_test(test_a_datagram_is_dropped_while_tcp_requests_wait),
        cmocka_unit_test(test_no_answer_goes_out_after_the_listeners_close),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
