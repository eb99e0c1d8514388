/* rd_stats.c: the request counters live in shared memory, so that the
 * workers forked after they exist all add to the same totals. (What the
 * protocol counts per answer is test_protocol.c's.) */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "rd_stats.h"

static void test_stats_shared_across_fork(void **state)
{
    (void)state;
    rd_stats_t *st = rd_stats_create();
    assert_non_null(st);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rd_stats_count(st, 1, 0, 1, 250);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(st->requests, 1);
    assert_int_equal(st->by_status[250], 1);
    assert_int_equal(st->by_command[0][1], 1);
    rd_stats_destroy(st);
}

/* A group beyond the table counts its status only; no counters, no crash. */
static void test_stats_count_bounds(void **state)
{
    (void)state;
    rd_stats_t *st = rd_stats_create();
    assert_non_null(st);
    rd_stats_count(st, 1, RD_STATS_GROUPS, 0, 250);
    assert_int_equal(st->requests, 1);
    assert_int_equal(st->by_status[250], 1);
    rd_stats_count(st, 0, 3, 4, 6);                     /* header too broken to name one */
    assert_int_equal(st->by_status[6], 1);
    assert_int_equal(st->by_command[3][4], 0);
    rd_stats_count(NULL, 1, 0, 0, 250);
    assert_true(st->started > 0);
    rd_stats_destroy(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_shared_across_fork),
        cmocka_unit_test(test_stats_count_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
