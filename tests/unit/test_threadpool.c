#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd_threadpool.h"

#define WAIT_S 5
#define MANY 100000

/* A gate that jobs wait at until the test opens it. Every wait is bounded
 * by WAIT_S so that a broken pool fails the test instead of hanging it. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned arrived;
    unsigned quorum;    /* opens by itself once this many arrived; 0: never */
    bool open;
    bool timed_out;
};

static void gate_init(struct gate *g, unsigned quorum)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->arrived = 0;
    g->quorum = quorum;
    g->open = false;
    g->timed_out = false;
}

static void gate_fini(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static struct timespec deadline(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    return ts;
}

static bool gate_is_open(const struct gate *g)
{
    return g->open || (g->quorum > 0 && g->arrived >= g->quorum);
}

/* Arrives, then waits for the gate; returns false on timeout. */
static bool gate_pass(struct gate *g)
{
    struct timespec until = deadline();
    bool ok = true;

    pthread_mutex_lock(&g->lock);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!gate_is_open(g) && ok)
        ok = pthread_cond_timedwait(&g->cond, &g->lock, &until) != ETIMEDOUT;
    if (!ok)
        g->timed_out = true;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

/* Waits until N jobs arrived; returns false on timeout. */
static bool gate_wait_arrived(struct gate *g, unsigned n)
{
    struct timespec until = deadline();
    bool ok = true;

    pthread_mutex_lock(&g->lock);
    while (g->arrived < n && ok)
        ok = pthread_cond_timedwait(&g->cond, &g->lock, &until) != ETIMEDOUT;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static bool gate_timed_out(struct gate *g)
{
    bool t;

    pthread_mutex_lock(&g->lock);
    t = g->timed_out;
    pthread_mutex_unlock(&g->lock);
    return t;
}

static void job_gate(void *arg)
{
    gate_pass(arg);
}

static void job_count(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

static void test_create_refuses_zero(void **state)
{
    (void)state;
    assert_null(rd_threadpool_create(0, 16));
    assert_null(rd_threadpool_create(4, 0));
}

static void test_threads(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(4, 16);

    (void)state;
    assert_non_null(pool);
    assert_int_equal(rd_threadpool_threads(pool), 4);
    assert_int_equal(rd_threadpool_busy(pool), 0);
    rd_threadpool_destroy(pool);
}

/* Submits, retrying on a full FIFO for at most WAIT_S. */
static int submit_retry(rd_threadpool_t *pool, rd_job_fn fn, void *arg)
{
    time_t until = time(NULL) + WAIT_S;

    while (rd_threadpool_submit(pool, fn, arg) != 0) {
        if (time(NULL) > until)
            return -1;
        sched_yield();
    }
    return 0;
}

static void test_every_job_once(void **state)
{
    atomic_uint *runs = calloc(MANY, sizeof(*runs));
    rd_threadpool_t *pool = rd_threadpool_create(4, 256);
    size_t i, wrong = 0, refused = 0;

    (void)state;
    assert_non_null(runs);
    assert_non_null(pool);
    for (i = 0; i < MANY; i++)
        if (submit_retry(pool, job_count, &runs[i]) != 0)
            refused++;
    rd_threadpool_destroy(pool);
    for (i = 0; i < MANY; i++)
        if (atomic_load(&runs[i]) != 1)
            wrong++;
    free(runs);
    assert_int_equal(refused, 0);
    assert_int_equal(wrong, 0);
}

/* Asserting while jobs are held at a gate would leave them waiting on a
 * dead stack frame: the tests below record what they see, open the gate,
 * destroy the pool, and only then assert. */

/* Two threads held at a gate, a FIFO of four: the fifth waiting job is
 * refused, and the four accepted ones run once the gate opens. */
static void test_full_fifo(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(2, 4);
    atomic_uint ran = 0, refused_ran = 0;
    int held = 0, accepted = 0, refused;
    size_t busy;
    struct gate g;
    int i;

    (void)state;
    assert_non_null(pool);
    gate_init(&g, 0);
    for (i = 0; i < 2; i++)
        held += rd_threadpool_submit(pool, job_gate, &g) == 0;
    held = held == 2 && gate_wait_arrived(&g, 2);
    for (i = 0; i < 4; i++)
        accepted += rd_threadpool_submit(pool, job_count, &ran) == 0;
    refused = rd_threadpool_submit(pool, job_count, &refused_ran);
    busy = rd_threadpool_busy(pool);
    gate_open(&g);
    rd_threadpool_destroy(pool);

    assert_true(held);
    assert_int_equal(accepted, 4);
    assert_int_equal(refused, -1);
    assert_int_equal(busy, 6);
    assert_false(gate_timed_out(&g));
    assert_int_equal(atomic_load(&ran), 4);
    assert_int_equal(atomic_load(&refused_ran), 0);
    gate_fini(&g);
}

/* Polls rd_threadpool_busy until it reads WANT, for at most WAIT_S. */
static bool busy_becomes(rd_threadpool_t *pool, size_t want)
{
    time_t until = time(NULL) + WAIT_S;

    while (rd_threadpool_busy(pool) != want) {
        if (time(NULL) > until)
            return false;
        usleep(1000);
    }
    return true;
}

static void test_busy(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(2, 8);
    atomic_uint ran = 0;
    size_t idle, one_running, two_running_three_queued;
    bool held1, held2, drained;
    int accepted = 0;
    struct gate g;
    int i;

    (void)state;
    assert_non_null(pool);
    gate_init(&g, 0);
    idle = rd_threadpool_busy(pool);
    held1 = rd_threadpool_submit(pool, job_gate, &g) == 0 &&
            gate_wait_arrived(&g, 1);
    one_running = rd_threadpool_busy(pool);
    held2 = rd_threadpool_submit(pool, job_gate, &g) == 0 &&
            gate_wait_arrived(&g, 2);
    for (i = 0; i < 3; i++)
        accepted += rd_threadpool_submit(pool, job_count, &ran) == 0;
    two_running_three_queued = rd_threadpool_busy(pool);
    gate_open(&g);
    drained = busy_becomes(pool, 0);
    rd_threadpool_destroy(pool);

    assert_int_equal(idle, 0);
    assert_true(held1);
    assert_int_equal(one_running, 1);
    assert_true(held2);
    assert_int_equal(accepted, 3);
    assert_int_equal(two_running_three_queued, 5);
    assert_true(drained);
    assert_int_equal(atomic_load(&ran), 3);
    assert_false(gate_timed_out(&g));
    gate_fini(&g);
}

static void *open_later(void *arg)
{
    usleep(100 * 1000);
    gate_open(arg);
    return NULL;
}

/* The only thread is held while ten jobs wait; destroy is called before
 * the gate opens and must still run all ten. */
static void test_destroy_runs_queued(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(1, 16);
    atomic_uint ran = 0;
    unsigned ran_before;
    int accepted = 0, opener_ok;
    bool held;
    pthread_t opener;
    struct gate g;
    int i;

    (void)state;
    assert_non_null(pool);
    gate_init(&g, 0);
    held = rd_threadpool_submit(pool, job_gate, &g) == 0 &&
           gate_wait_arrived(&g, 1);
    for (i = 0; i < 10; i++)
        accepted += rd_threadpool_submit(pool, job_count, &ran) == 0;
    ran_before = atomic_load(&ran);
    opener_ok = pthread_create(&opener, NULL, open_later, &g) == 0;
    if (!opener_ok)
        gate_open(&g);
    rd_threadpool_destroy(pool);
    if (opener_ok)
        pthread_join(opener, NULL);

    assert_true(held);
    assert_true(opener_ok);
    assert_int_equal(accepted, 10);
    assert_int_equal(ran_before, 0);
    assert_int_equal(atomic_load(&ran), 10);
    assert_false(gate_timed_out(&g));
    gate_fini(&g);
}

struct order {
    atomic_uint next;
    unsigned seen[8];
};

struct order_job {
    struct order *order;
    unsigned index;
};

static void job_order(void *arg)
{
    struct order_job *j = arg;
    unsigned slot = atomic_fetch_add(&j->order->next, 1);

    if (slot < 8)
        j->order->seen[slot] = j->index;
}

/* One thread, held while eight jobs queue up: they must run in the order
 * they were submitted. */
static void test_fifo_order(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(1, 8);
    struct order order = { .next = 0 };
    struct order_job jobs[8];
    int accepted = 0;
    bool held;
    struct gate g;
    unsigned i;

    (void)state;
    assert_non_null(pool);
    gate_init(&g, 0);
    held = rd_threadpool_submit(pool, job_gate, &g) == 0 &&
           gate_wait_arrived(&g, 1);
    for (i = 0; i < 8; i++) {
        jobs[i] = (struct order_job){ &order, i };
        accepted += rd_threadpool_submit(pool, job_order, &jobs[i]) == 0;
    }
    gate_open(&g);
    rd_threadpool_destroy(pool);

    assert_true(held);
    assert_int_equal(accepted, 8);
    assert_int_equal(atomic_load(&order.next), 8);
    for (i = 0; i < 8; i++)
        assert_int_equal(order.seen[i], i);
    gate_fini(&g);
}

struct mask_seen {
    int term, hup, intr;
};

static void job_mask(void *arg)
{
    struct mask_seen *m = arg;
    sigset_t cur;

    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    m->term = sigismember(&cur, SIGTERM);
    m->hup = sigismember(&cur, SIGHUP);
    m->intr = sigismember(&cur, SIGINT);
}

/* Signals must reach the I/O thread only: pool threads block them all,
 * and creating the pool leaves the caller's own mask as it was. */
static void test_signals_blocked(void **state)
{
    struct mask_seen m = { -1, -1, -1 };
    sigset_t wanted, after;
    rd_threadpool_t *pool;
    int accepted;

    (void)state;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &wanted, NULL);
    pool = rd_threadpool_create(1, 4);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    assert_non_null(pool);
    accepted = rd_threadpool_submit(pool, job_mask, &m);
    rd_threadpool_destroy(pool);

    assert_int_equal(accepted, 0);
    assert_int_equal(m.term, 1);
    assert_int_equal(m.hup, 1);
    assert_int_equal(m.intr, 1);
    assert_int_equal(sigismember(&after, SIGTERM), 0);
    assert_int_equal(sigismember(&after, SIGHUP), 0);
}

#define NTHREADS 4

struct rendezvous {
    struct gate gate;
    pthread_mutex_t lock;
    pthread_t ids[NTHREADS];
    unsigned n;
};

/* Records the thread, then waits for NTHREADS jobs to be in at once: this
 * can only succeed if they run concurrently on NTHREADS threads. */
static void job_rendezvous(void *arg)
{
    struct rendezvous *r = arg;

    pthread_mutex_lock(&r->lock);
    if (r->n < NTHREADS)
        r->ids[r->n++] = pthread_self();
    pthread_mutex_unlock(&r->lock);
    gate_pass(&r->gate);
}

static unsigned distinct_threads(const struct rendezvous *r)
{
    unsigned i, j, distinct = 0;

    for (i = 0; i < r->n; i++) {
        for (j = 0; j < i; j++)
            if (pthread_equal(r->ids[i], r->ids[j]))
                break;
        if (j == i)
            distinct++;
    }
    return distinct;
}

static void test_concurrent(void **state)
{
    rd_threadpool_t *pool = rd_threadpool_create(NTHREADS, 16);
    struct rendezvous r = { .n = 0 };
    int accepted = 0, i;

    (void)state;
    assert_non_null(pool);
    gate_init(&r.gate, NTHREADS);
    pthread_mutex_init(&r.lock, NULL);
    for (i = 0; i < NTHREADS; i++)
        accepted += rd_threadpool_submit(pool, job_rendezvous, &r) == 0;
    rd_threadpool_destroy(pool);
    assert_int_equal(accepted, NTHREADS);
    assert_false(gate_timed_out(&r.gate));
    assert_int_equal(r.n, NTHREADS);
    assert_int_equal(distinct_threads(&r), NTHREADS);
    pthread_mutex_destroy(&r.lock);
    gate_fini(&r.gate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses_zero),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_every_job_once),
        cmocka_unit_test(test_full_fifo),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_destroy_runs_queued),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_signals_blocked),
    };

    /* Every wait in the tests is bounded, but a broken destroy could still
     * block in pthread_join: the default SIGALRM action ends the run. */
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
