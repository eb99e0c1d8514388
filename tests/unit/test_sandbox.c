/* The workers' system call filter (src/rd_sandbox.c), in forked children:
 * the calls serving makes pass, others end the child with status 159 and
 * the log line naming the call. The filter is off in sanitizer builds
 * (their runtimes need more calls): there the tests check that it is. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "rd_config.h"
#include "rd_log.h"
#include "rd_sandbox.h"

typedef void child_fn(void);

static char log_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(log_path, sizeof(log_path), "/tmp/test_sandbox.XXXXXX");
    int fd = mkstemp(log_path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(log_path);
    return 0;
}

/* Runs FN in a child under the filter; returns its wait status. */
static int run_filtered(child_fn *fn, bool filter)
{
    pid_t pid;
    int status;

    assert_int_equal(truncate(log_path, 0), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rd_config_t cf;

        rd_config_defaults(&cf);
        cf.worker_seccomp = filter;
        if (rd_log_open(log_path) < 0 || rd_sandbox_enter(&cf) < 0)
            _exit(3);
        fn();
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static char *read_log(void)
{
    static char buf[4096];
    int fd = open(log_path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

static void expect_killed(child_fn *fn, const char *call)
{
    char want[128];
    int status = run_filtered(fn, true);

    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), RD_SANDBOX_KILLED_STATUS);
    const char *log = read_log();
    const char *at = strstr(log, "seccomp: worker killed: forbidden system call ");
    if (at == NULL)
        fail_msg("no seccomp line in: %s", log);
    snprintf(want, sizeof(want), "seccomp: worker killed: forbidden system call %s (", call);
    if (strncmp(at, want, strlen(want)) != 0)
        fail_msg("wanted '%s...', got: %s", want, at);
    assert_true(strncmp(log, "<2>", 3) == 0);
    assert_non_null(strstr(log, " [crit] "));
}

/* ---- what serving does ---------------------------------------------------- */

static void *thread_main(void *arg)
{
    return arg;
}

static void serving_calls(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    uint64_t one = 1;
    struct epoll_event e = { .events = EPOLLIN };
    struct timespec ts;
    pthread_t t;
    char buf[64];
    void *mem;

    if (ep < 0 || ev < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) < 0)
        _exit(4);
    if (write(ev, &one, sizeof(one)) != sizeof(one) || epoll_wait(ep, &e, 1, 100) != 1)
        _exit(5);
    /* a thread: clone3 refused with ENOSYS, glibc falls back to clone */
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0)
        _exit(6);
    mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || munmap(mem, 1 << 20) < 0)
        _exit(7);
    free(malloc(1 << 22));
    if (getrandom(buf, 16, 0) != 16 || clock_gettime(CLOCK_REALTIME, &ts) < 0)
        _exit(8);
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof(buf)) < 0 || close(fd) < 0)
        _exit(9);
    signal(SIGUSR2, SIG_IGN);
    if (raise(SIGUSR2) != 0)
        _exit(10);
    close(ev);
    close(ep);
}

/* Registered in one kind of build only (see main). */
__attribute__((unused))
static void test_serving_calls_pass(void **state)
{
    (void)state;
    int status = run_filtered(serving_calls, true);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_null(strstr(read_log(), "seccomp: worker killed"));
}

/* ---- what it never does --------------------------------------------------- */

static void packet_socket(void)
{
    socket(AF_PACKET, SOCK_RAW, 0);
}

static void inet_socket(void)
{
    socket(AF_INET, SOCK_STREAM, 0);
}

static void run_a_program(void)
{
    char *argv[] = { (char *)"/bin/true", NULL };
    char *envp[] = { NULL };

    execve("/bin/true", argv, envp);
}

static void a_process(void)
{
    pid_t pid = fork();

    if (pid == 0)
        _exit(0);
}

static void executable_memory(void)
{
    mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void signal_the_parent(void)
{
    kill(getppid(), 0);
}

/* Reading a limit is allowed, setting one is not. */
static void set_a_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(4);
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Registered in one kind of build only (see main). */
__attribute__((unused))
static void test_forbidden_calls_kill(void **state)
{
    (void)state;
    expect_killed(packet_socket, "socket");
    expect_killed(inet_socket, "socket");
    expect_killed(run_a_program, "execve");
    expect_killed(a_process, "clone");
    expect_killed(executable_memory, "mmap");
    expect_killed(signal_the_parent, "kill");
    expect_killed(set_a_limit, "prlimit64");
}

static void test_off_when_asked(void **state)
{
    (void)state;
    int status = run_filtered(a_process, false);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Sanitizer builds: the filter stays off, and says so. */
/* Registered in one kind of build only (see main). */
__attribute__((unused))
static void test_off_in_sanitizer_builds(void **state)
{
    (void)state;
    int status = run_filtered(a_process, true);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(read_log(), "seccomp: off: this is a sanitizer build"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#ifdef RD_SANITIZED
        cmocka_unit_test(test_off_in_sanitizer_builds),
#else
        cmocka_unit_test(test_serving_calls_pass),
        cmocka_unit_test(test_forbidden_calls_kill),
#endif
        cmocka_unit_test(test_off_when_asked),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
