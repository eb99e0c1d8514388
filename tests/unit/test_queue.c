#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd_queue.h"

#define PRODUCERS 4
#define PER_PRODUCER 100000
#define TOTAL (PRODUCERS * PER_PRODUCER)
#define WAIT_MS 5000

/* Items are tagged integers, never dereferenced; +1 keeps them non-NULL. */
static void *tag(uintptr_t v)
{
    return (void *)(v + 1);
}

static uintptr_t untag(void *p)
{
    return (uintptr_t)p - 1;
}

static bool readable(const rd_queue_t *q, int timeout_ms)
{
    struct pollfd pfd = { .fd = rd_queue_fd(q), .events = POLLIN };

    return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_create_refuses_zero(void **state)
{
    (void)state;
    assert_null(rd_queue_create(0));
}

static void test_order(void **state)
{
    rd_queue_t *q = rd_queue_create(4);
    void *out[8];
    uintptr_t next = 0, want = 0;
    int round;

    (void)state;
    assert_non_null(q);
    assert_int_equal(rd_queue_capacity(q), 4);
    /* Several rounds of 3 through 4 slots make head and tail wrap. */
    for (round = 0; round < 5; round++) {
        size_t i, n;

        for (i = 0; i < 3; i++)
            assert_int_equal(rd_queue_push(q, tag(next++)), 0);
        n = rd_queue_pop_all(q, out, 8);
        assert_int_equal(n, 3);
        for (i = 0; i < n; i++)
            assert_int_equal(untag(out[i]), want++);
    }
    assert_int_equal(rd_queue_pop_all(q, out, 8), 0);
    rd_queue_destroy(q);
}

static void test_full(void **state)
{
    rd_queue_t *q = rd_queue_create(3);
    void *out[8];
    size_t i;

    (void)state;
    assert_non_null(q);
    for (i = 0; i < 3; i++)
        assert_int_equal(rd_queue_push(q, tag(i)), 0);
    assert_int_equal(rd_queue_push(q, tag(99)), -1);
    assert_int_equal(rd_queue_push(q, tag(98)), -1);
    assert_int_equal(rd_queue_pop_all(q, out, 8), 3);
    for (i = 0; i < 3; i++)
        assert_int_equal(untag(out[i]), i);
    /* Room again once drained. */
    assert_int_equal(rd_queue_push(q, tag(7)), 0);
    assert_int_equal(rd_queue_pop_all(q, out, 8), 1);
    assert_int_equal(untag(out[0]), 7);
    rd_queue_destroy(q);
}

static void test_eventfd(void **state)
{
    rd_queue_t *q = rd_queue_create(8);
    void *out[8];

    (void)state;
    assert_non_null(q);
    assert_true(rd_queue_fd(q) >= 0);
    assert_false(readable(q, 0));
    assert_int_equal(rd_queue_push(q, tag(1)), 0);
    assert_true(readable(q, 0));
    assert_int_equal(rd_queue_push(q, tag(2)), 0);
    assert_int_equal(rd_queue_pop_all(q, out, 8), 2);
    assert_false(readable(q, 0));
    /* A pop with nothing queued must not block on the empty eventfd. */
    assert_int_equal(rd_queue_pop_all(q, out, 8), 0);
    assert_false(readable(q, 0));
    rd_queue_destroy(q);
}

static void test_partial_pop(void **state)
{
    rd_queue_t *q = rd_queue_create(8);
    void *out[8];
    size_t i;

    (void)state;
    assert_non_null(q);
    for (i = 0; i < 5; i++)
        assert_int_equal(rd_queue_push(q, tag(i)), 0);
    assert_int_equal(rd_queue_pop_all(q, out, 2), 2);
    assert_int_equal(untag(out[0]), 0);
    assert_int_equal(untag(out[1]), 1);
    /* What is left must still wake the reader. */
    assert_true(readable(q, 0));
    assert_int_equal(rd_queue_pop_all(q, out, 8), 3);
    for (i = 0; i < 3; i++)
        assert_int_equal(untag(out[i]), i + 2);
    assert_false(readable(q, 0));
    rd_queue_destroy(q);
}

/* Shared by the producer threads and the consuming test thread. */
struct stress {
    rd_queue_t *q;
    atomic_bool abort;          /* consumer gave up: producers stop */
    unsigned char seen[TOTAL];  /* times each item arrived */
    uintptr_t last[PRODUCERS];  /* next sequence expected per producer */
    size_t received;
    size_t duplicates;
    size_t out_of_order;
};

struct producer {
    struct stress *s;
    int id;
};

/* Retries while the queue is full; false if the consumer gave up. */
static bool produce(struct stress *s, void *item)
{
    while (rd_queue_push(s->q, item) != 0) {
        if (atomic_load(&s->abort))
            return false;
        sched_yield();
    }
    return true;
}

static void *producer_main(void *data)
{
    struct producer *p = data;
    struct stress *s = p->s;
    size_t i;

    for (i = 0; i < PER_PRODUCER; i++) {
        if (!produce(s, tag((uintptr_t)p->id * PER_PRODUCER + i)))
            return NULL;
    }
    return NULL;
}

static void stress_record(struct stress *s, void **items, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        uintptr_t v = untag(items[i]);
        size_t prod = v / PER_PRODUCER;

        if (v >= TOTAL || s->seen[v]) {
            s->duplicates++;
            continue;
        }
        s->seen[v] = 1;
        /* One producer pushes in sequence, so its items come out in
         * sequence: the queue is FIFO. */
        if (v % PER_PRODUCER != s->last[prod])
            s->out_of_order++;
        s->last[prod] = v % PER_PRODUCER + 1;
        s->received++;
    }
}

static int start_producers(struct stress *s, pthread_t *tids,
                           struct producer *p)
{
    int i;

    for (i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){ s, i };
        if (pthread_create(&tids[i], NULL, producer_main, &p[i]) != 0) {
            atomic_store(&s->abort, true);
            while (i-- > 0)
                pthread_join(tids[i], NULL);
            return -1;
        }
    }
    return 0;
}

static void join_producers(pthread_t *tids)
{
    int i;

    for (i = 0; i < PRODUCERS; i++)
        pthread_join(tids[i], NULL);
}

/* Pops until every item is in or nothing came for WAIT_MS. STRICT pops
 * only when poll() reports the eventfd readable, so a lost wake-up shows
 * up as a timeout; otherwise it also pops after a short idle poll. */
static bool consume(struct stress *s, size_t batch, bool strict)
{
    void *buf[1024];
    double deadline = now_s() + WAIT_MS / 1000.0;

    while (s->received + s->duplicates < TOTAL) {
        size_t n;

        if (!readable(s->q, strict ? WAIT_MS : 1) && strict)
            return false;
        n = rd_queue_pop_all(s->q, buf, batch);
        stress_record(s, buf, n);
        if (n > 0)
            deadline = now_s() + WAIT_MS / 1000.0;
        else if (now_s() > deadline)
            return false;
    }
    return true;
}

static void run_stress(size_t batch, bool strict)
{
    struct stress *s = calloc(1, sizeof(*s));
    struct producer p[PRODUCERS];
    pthread_t tids[PRODUCERS];
    void *extra[1];
    bool done;

    assert_non_null(s);
    s->q = rd_queue_create(1024);
    assert_non_null(s->q);
    assert_int_equal(start_producers(s, tids, p), 0);
    done = consume(s, batch, strict);
    /* Stop and join before any assert, so that no producer is left
     * spinning on a freed queue. */
    atomic_store(&s->abort, true);
    join_producers(tids);

    assert_true(done);
    assert_int_equal(s->duplicates, 0);
    assert_int_equal(s->out_of_order, 0);
    assert_int_equal(s->received, TOTAL);
    assert_int_equal(rd_queue_pop_all(s->q, extra, 1), 0);
    assert_null(memchr(s->seen, 0, TOTAL));
    rd_queue_destroy(s->q);
    free(s);
}

static void test_concurrent_producers(void **state)
{
    (void)state;
    run_stress(1024, false);
}

/* The consumer sleeps in poll() only, and pops fewer than the capacity at
 * a time: every item must still be announced by the eventfd. */
static void test_wakeup_not_lost(void **state)
{
    (void)state;
    run_stress(64, true);
}

#define RACE_ROUNDS 20000

/* One producer, one item per round, pushed the moment the consumer enters
 * rd_queue_pop_all. */
struct race {
    rd_queue_t *q;
    atomic_uint go;             /* round the consumer has started */
    atomic_bool abort;
};

/* Spins until round K starts; false if the consumer gave up. */
static bool race_wait(struct race *r, unsigned k)
{
    unsigned spins = 0;

    while (atomic_load(&r->go) < k) {
        if (atomic_load(&r->abort))
            return false;
        if (++spins % 4096 == 0)
            sched_yield();
    }
    return true;
}

static void *race_producer(void *data)
{
    struct race *r = data;
    unsigned k;

    for (k = 1; k <= RACE_ROUNDS; k++) {
        volatile unsigned delay;

        if (!race_wait(r, k))
            return NULL;
        /* A varying head start sweeps the push across every point of
         * the consumer's pop_all. */
        for (delay = k % 97; delay > 0; delay--)
            ;
        if (rd_queue_push(r->q, tag(k)) != 0)
            return NULL;
    }
    return NULL;
}

/* Starts round K and takes its item, waking only on the eventfd; returns
 * false if the item never arrives or is not K. */
static bool race_round(struct race *r, unsigned k)
{
    void *item;
    size_t n;

    atomic_store(&r->go, k);
    n = rd_queue_pop_all(r->q, &item, 1);
    while (n == 0) {
        if (!readable(r->q, WAIT_MS))
            return false;
        n = rd_queue_pop_all(r->q, &item, 1);
    }
    return untag(item) == k;
}

/* A push racing the consumer's pop_all: if pop_all cleared the eventfd
 * after draining, a push landing in between would leave its item without a
 * wake-up, and with no further push to cover for it poll() would time out. */
static void test_push_races_pop(void **state)
{
    struct race r = { .q = rd_queue_create(4) };
    pthread_t producer;
    unsigned k, failed_round = 0;

    (void)state;
    assert_non_null(r.q);
    assert_int_equal(pthread_create(&producer, NULL, race_producer, &r), 0);
    for (k = 1; k <= RACE_ROUNDS && failed_round == 0; k++)
        if (!race_round(&r, k))
            failed_round = k;
    atomic_store(&r.abort, true);
    pthread_join(producer, NULL);

    assert_int_equal(failed_round, 0);
    rd_queue_destroy(r.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses_zero),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_eventfd),
        cmocka_unit_test(test_partial_pop),
        cmocka_unit_test(test_concurrent_producers),
        cmocka_unit_test(test_wakeup_not_lost),
        cmocka_unit_test(test_push_races_pop),
    };

    /* Every wait in the tests is bounded, but a broken destroy could still
     * block in pthread_join: the default SIGALRM action ends the run. */
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
