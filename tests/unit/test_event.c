/* The event loop's posted events (src/rd_event.c), on a real epoll set and
 * real pipes: what a handler that stopped before its descriptor was
 * drained relies on to be called again (the wakeup_budget of the accept,
 * UDP and lingering-close loops). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd_event.h"

#define CALLS_MAX 16

/* What the handlers saw, in order. */
typedef struct seen {
    int calls;
    int order[CALLS_MAX];
    uint32_t events[CALLS_MAX];
} seen_t;

typedef struct probe {
    rd_event_t ev;
    rd_event_loop_t *loop;
    seen_t *seen;
    int id;
    int repost;             /* times the handler posts itself again */
    rd_event_t *forget;     /* an event the handler forgets (closes) */
} probe_t;

static void probe_handler(rd_event_t *ev, uint32_t events)
{
    probe_t *p = ev->data;

    if (p->seen->calls < CALLS_MAX) {
        p->seen->order[p->seen->calls] = p->id;
        p->seen->events[p->seen->calls] = events;
    }
    p->seen->calls++;
    if (p->forget != NULL)
        rd_event_forget(p->loop, p->forget);
    if (p->repost > 0) {
        p->repost--;
        rd_event_post(p->loop, ev);
    }
}

static void probe_init(probe_t *p, rd_event_loop_t *loop, seen_t *seen, int id, int fd)
{
    memset(p, 0, sizeof(*p));
    p->ev = (rd_event_t){ .fd = fd, .handler = probe_handler, .data = p };
    p->loop = loop;
    p->seen = seen;
    p->id = id;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Posted twice, called once, with EPOLLIN, in the order posted; a poll with
 * posted events does not wait for its timeout. */
static void test_posted_run_once_in_order_without_waiting(void **state)
{
    rd_event_loop_t loop;
    seen_t seen = { 0 };
    probe_t a, b;
    double start;

    (void)state;
    assert_int_equal(rd_event_loop_init(&loop, 8), 0);
    probe_init(&a, &loop, &seen, 1, -1);
    probe_init(&b, &loop, &seen, 2, -1);
    rd_event_post(&loop, &b.ev);
    rd_event_post(&loop, &a.ev);
    rd_event_post(&loop, &b.ev);
    start = now_s();
    assert_int_equal(rd_event_loop_poll(&loop, 5000), 0);
    assert_true(now_s() - start < 2.0);
    assert_int_equal(seen.calls, 2);
    assert_int_equal(seen.order[0], 2);
    assert_int_equal(seen.order[1], 1);
    assert_int_equal(seen.events[0], EPOLLIN);
    /* Nothing posted any more: the next poll waits (100 ms here). */
    start = now_s();
    assert_int_equal(rd_event_loop_poll(&loop, 100), 0);
    assert_true(now_s() - start >= 0.09);
    assert_int_equal(seen.calls, 2);
    rd_event_loop_free(&loop);
}

/* A handler that posts itself again runs once per turn, after epoll's
 * events of that turn: a busy socket cannot starve a ready one. */
static void test_repost_waits_for_the_next_turn(void **state)
{
    rd_event_loop_t loop;
    seen_t seen = { 0 };
    probe_t busy, ready;
    int fds[2];

    (void)state;
    assert_int_equal(rd_event_loop_init(&loop, 8), 0);
    assert_int_equal(pipe(fds), 0);
    probe_init(&busy, &loop, &seen, 1, -1);
    probe_init(&ready, &loop, &seen, 2, fds[0]);
    busy.repost = 3;
    assert_int_equal(rd_event_add(&loop, &ready.ev, EPOLLIN | EPOLLET), 0);
    rd_event_post(&loop, &busy.ev);
    assert_int_equal(rd_event_loop_poll(&loop, 1000), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(rd_event_loop_poll(&loop, 1000), 1);
    assert_int_equal(seen.calls, 3);
    assert_int_equal(seen.order[1], 2);     /* epoll's event first */
    assert_int_equal(seen.order[2], 1);
    assert_int_equal(rd_event_loop_poll(&loop, 1000), 0);
    assert_int_equal(rd_event_loop_poll(&loop, 1000), 0);
    assert_int_equal(seen.calls, 5);
    assert_false(busy.ev.posted);
    rd_event_loop_free(&loop);
    close(fds[0]);
    close(fds[1]);
}

/* Forgotten (its owner closed it), a posted event is not called: neither
 * when forgotten before the turn, nor by a handler earlier in the same
 * turn; rd_event_del forgets too. */
static void test_forgotten_events_are_not_called(void **state)
{
    rd_event_loop_t loop;
    seen_t seen = { 0 };
    probe_t a, b, c, d;
    int fds[2];

    (void)state;
    assert_int_equal(rd_event_loop_init(&loop, 8), 0);
    assert_int_equal(pipe(fds), 0);
    probe_init(&a, &loop, &seen, 1, -1);
    probe_init(&b, &loop, &seen, 2, -1);
    probe_init(&c, &loop, &seen, 3, -1);
    probe_init(&d, &loop, &seen, 4, fds[0]);
    a.forget = &b.ev;
    assert_int_equal(rd_event_add(&loop, &d.ev, EPOLLIN | EPOLLET), 0);
    rd_event_post(&loop, &a.ev);
    rd_event_post(&loop, &b.ev);
    rd_event_post(&loop, &c.ev);
    rd_event_post(&loop, &d.ev);
    rd_event_forget(&loop, &c.ev);
    assert_int_equal(rd_event_del(&loop, &d.ev), 0);
    assert_int_equal(rd_event_loop_poll(&loop, 1000), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.order[0], 1);
    assert_false(b.ev.posted || c.ev.posted || d.ev.posted);
    rd_event_loop_free(&loop);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posted_run_once_in_order_without_waiting),
        cmocka_unit_test(test_repost_waits_for_the_next_turn),
        cmocka_unit_test(test_forgotten_events_are_not_called),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
