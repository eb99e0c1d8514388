/* The TCP layer (src/rd_tcp.c) on its own: an rd_net_t made as a worker
 * makes it (tests/unit/net_fixture.h), a real listener and real client
 * sockets on 127.0.0.1, the loop turned by hand, and what the pool hands
 * back given to rd_tcp_processed as the worker does. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "net_fixture.h"
#include "rd_clock.h"
#include "rd_tcp.h"

/* Sends an echo request numbered ECHO on a new connection. */
static int send_echo(net_fixture_t *f, uint16_t echo)
{
    uint8_t frame[128];
    size_t len = net_fixture_echo(frame, sizeof(frame), echo);
    int fd = net_fixture_client(SOCK_STREAM, &f->tcp_addr);

    assert_true(fd >= 0);
    assert_int_equal(send(fd, frame, len, 0), (ssize_t)len);
    return fd;
}

/* Reads the whole answer (the server closes after it) and checks it. */
static void expect_echo_answer(int fd, uint16_t echo)
{
    uint8_t buf[256];
    size_t have = 0;
    ssize_t n;
    rd_client_response_t resp;

    while ((n = recv(fd, buf + have, sizeof(buf) - have, 0)) > 0)
        have += (size_t)n;
    assert_int_equal(n, 0);
    assert_int_equal(rd_client_parse(buf, have, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_int_equal(resp.echo, echo);
    close(fd);
}

/* The TCP layer over F's listeners, serving the TCP one (0). */
static rd_tcp_t *tcp_serving(net_fixture_t *f)
{
    rd_tcp_t *t = rd_tcp_create(&f->net, f->listeners, 2);

    assert_non_null(t);
    assert_int_equal(rd_tcp_serve(t, 0, true), 0);
    return t;
}

/* Gives back what the pool finished, as the worker does, WANT records. */
static void collect(net_fixture_t *f, rd_tcp_t *t, size_t want)
{
    void *records[8];

    assert_int_equal(net_fixture_wait_finished(f, records, want), want);
    for (size_t i = 0; i < want; i++) {
        assert_int_equal(rd_job_kind(records[i]), RD_JOB_CONN);
        rd_tcp_processed(t, records[i]);
    }
    rd_tcp_submit_waiting(t);
}

static void test_a_request_goes_through_the_pool_and_is_answered(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    rd_tcp_t *t;
    int fd;

    (void)state;
    assert_non_null(f);
    t = tcp_serving(f);
    assert_int_equal(rd_tcp_serve(t, 1, true), 0);        /* UDP: not its own */
    fd = send_echo(f, 0x1234);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(rd_tcp_active(t), 1);
    assert_int_equal(f->net.in_flight, 1);
    collect(f, t, 1);
    assert_int_equal(rd_tcp_active(t), 0);
    assert_int_equal(f->net.in_flight, 0);
    expect_echo_answer(fd, 0x1234);
    rd_tcp_destroy(t);
    net_fixture_destroy(f, false);
}

/* One request slot: the second request waits for it, the listener leaves
 * the loop (the third connection stays in the backlog), and each comes
 * back in turn as slots free up. */
static void test_accepting_pauses_while_a_request_waits_for_a_slot(void **state)
{
    net_fixture_t *f = net_fixture_create(1, false);
    rd_tcp_t *t;
    int a, b, c;

    (void)state;
    assert_non_null(f);
    t = tcp_serving(f);
    a = send_echo(f, 1);
    b = send_echo(f, 2);
    c = send_echo(f, 3);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(rd_tcp_active(t), 2);
    assert_int_equal(f->net.in_flight, 1);
    assert_int_equal(f->net.waiting, 1);
    /* The first is answered; the second takes its slot; accepting resumes. */
    collect(f, t, 1);
    expect_echo_answer(a, 1);
    assert_int_equal(f->net.waiting, 0);
    assert_int_equal(f->net.in_flight, 1);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(rd_tcp_active(t), 2);
    assert_int_equal(f->net.waiting, 1);
    collect(f, t, 1);
    expect_echo_answer(b, 2);
    collect(f, t, 1);
    expect_echo_answer(c, 3);
    assert_int_equal(rd_tcp_active(t), 0);
    assert_int_equal(f->net.in_flight, 0);
    assert_int_equal(f->net.waiting, 0);
    rd_tcp_destroy(t);
    net_fixture_destroy(f, false);
}

static void test_a_silent_connection_is_closed_at_socket_timeout(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    rd_tcp_t *t;
    uint8_t byte;
    int fd, next;

    (void)state;
    assert_non_null(f);
    t = tcp_serving(f);
    fd = net_fixture_client(SOCK_STREAM, &f->tcp_addr);
    assert_true(fd >= 0);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    assert_int_equal(rd_tcp_active(t), 1);
    next = rd_tcp_timers(t, rd_clock_ms(), rd_clock_ms());
    assert_in_range(next, 0, f->cf.socket_timeout_ms);
    /* Its deadline (socket_timeout_ms from now) has passed. */
    uint64_t later = rd_clock_ms() + f->cf.socket_timeout_ms + 1;
    assert_int_equal(rd_tcp_timers(t, later, later), -1);
    assert_int_equal(rd_tcp_active(t), 0);
    assert_int_equal(recv(fd, &byte, 1, 0), 0);
    close(fd);
    rd_tcp_destroy(t);
    net_fixture_destroy(f, false);
}

/* The loop was not looking (the process frozen) while the deadline passed
 * and the request arrived: the request is read and answered, not cut,
 * because no poll that began after the deadline had found it missing. */
static void test_a_request_that_came_while_frozen_is_answered(void **state)
{
    net_fixture_t *f = net_fixture_create(4, false);
    uint8_t frame[128];
    size_t len = net_fixture_echo(frame, sizeof(frame), 0x4242);
    rd_tcp_t *t;
    int fd;

    (void)state;
    assert_non_null(f);
    t = tcp_serving(f);
    fd = net_fixture_client(SOCK_STREAM, &f->tcp_addr);
    assert_true(fd >= 0);
    uint64_t polled = rd_clock_ms();
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);    /* accepted, nothing to read */
    assert_int_equal(rd_tcp_active(t), 1);
    /* Frozen past the deadline; the request arrives meanwhile. */
    assert_int_equal(send(fd, frame, len, 0), (ssize_t)len);
    uint64_t now = rd_clock_ms() + f->cf.socket_timeout_ms + 1;
    assert_int_equal(rd_tcp_timers(t, polled, now), 0);   /* look once more first */
    assert_int_equal(rd_tcp_active(t), 1);
    assert_true(rd_event_loop_poll(&f->loop, 2000) > 0);
    collect(f, t, 1);
    expect_echo_answer(fd, 0x4242);
    assert_int_equal(rd_tcp_active(t), 0);
    rd_tcp_destroy(t);
    net_fixture_destroy(f, false);
}

/* A graceful stop takes the connection already waiting, then closes the
 * TCP listener (and leaves the UDP one alone). */
static void test_closing_the_listeners_takes_what_waits_first(void **state)
{
    net_fixture_t *f = net_fixture_create(4, true);
    rd_tcp_t *t;
    int fd, late;

    (void)state;
    assert_non_null(f);
    t = tcp_serving(f);
    fd = send_echo(f, 0x0707);
    rd_tcp_close_listeners(t);
    /* Answered on the I/O thread at once (quick_commands_inline). */
    expect_echo_answer(fd, 0x0707);
    assert_int_equal(fcntl(f->listeners[0].fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    assert_true(fcntl(f->listeners[1].fd, F_GETFD) >= 0);
    late = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(late, (const struct sockaddr *)&f->tcp_addr, sizeof(f->tcp_addr)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(late);
    rd_tcp_destroy(t);
    close(f->listeners[1].fd);
    net_fixture_destroy(f, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_request_goes_through_the_pool_and_is_answered),
        cmocka_unit_test(test_accepting_pauses_while_a_request_waits_for_a_slot),
        cmocka_unit_test(test_a_silent_connection_is_closed_at_socket_timeout),
        cmocka_unit_test(test_a_request_that_came_while_frozen_is_answered),
        cmocka_unit_test(test_closing_the_listeners_takes_what_waits_first),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
