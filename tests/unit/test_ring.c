/* rd_ring: the bounded FIFO under the thread pool and the modification
 * queue, alone (test_queue and test_threadpool cover it in place). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "rd_ring.h"

/* Wider than a pointer and of an odd size: copies must move whole items. */
typedef struct {
    uint64_t seq;
    char tag[13];
} item_t;

static void test_init_refuses_zero(void **state)
{
    rd_ring_t r;

    (void)state;
    assert_int_equal(rd_ring_init(&r, 0, sizeof(item_t)), -1);
    rd_ring_free(&r);
    assert_int_equal(rd_ring_init(&r, 4, 0), -1);
    rd_ring_free(&r);
}

static void test_empty_and_full(void **state)
{
    rd_ring_t r;
    item_t it = { 1, "x" }, out;

    (void)state;
    assert_int_equal(rd_ring_init(&r, 2, sizeof(item_t)), 0);
    assert_false(rd_ring_pop(&r, &out));
    assert_true(rd_ring_push(&r, &it));
    assert_true(rd_ring_push(&r, &it));
    assert_false(rd_ring_push(&r, &it));       /* full: refused, nothing lost */
    assert_int_equal(rd_ring_count(&r), 2);
    assert_true(rd_ring_pop(&r, &out));
    assert_true(rd_ring_pop(&r, &out));
    assert_false(rd_ring_pop(&r, &out));
    rd_ring_free(&r);
}

/* Many laps around a ring of 3, filled to different depths: FIFO order and
 * every byte of every item survive the wrap. */
static void test_order_across_wraps(void **state)
{
    rd_ring_t r;
    uint64_t pushed = 0, popped = 0;

    (void)state;
    assert_int_equal(rd_ring_init(&r, 3, sizeof(item_t)), 0);
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i <= round % 3; i++) {
            item_t it = { .seq = pushed };

            snprintf(it.tag, sizeof(it.tag), "item%llu", (unsigned long long)pushed);
            assert_true(rd_ring_push(&r, &it));
            pushed++;
        }
        while (rd_ring_count(&r) > 0) {
            item_t out;
            char want[sizeof(out.tag)];

            assert_true(rd_ring_pop(&r, &out));
            snprintf(want, sizeof(want), "item%llu", (unsigned long long)popped);
            assert_int_equal(out.seq, popped);
            assert_string_equal(out.tag, want);
            popped++;
        }
    }
    assert_int_equal(pushed, popped);
    rd_ring_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_refuses_zero),
        cmocka_unit_test(test_empty_and_full),
        cmocka_unit_test(test_order_across_wraps),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
