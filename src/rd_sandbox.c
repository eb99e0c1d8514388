/* The workers' sandbox: the account they run as and the system call filter
 * they serve under (include/rd_sandbox.h; docs/security.md says why each
 * call is allowed).
 *
 * The filter is an allow list built with libseccomp. A call not on it
 * traps (SIGSYS): the handler writes one log line naming the call, with
 * write(2) only, and ends the worker; the master sees it exit with
 * RD_SANDBOX_KILLED_STATUS and starts another. Names are looked up before
 * the filter is loaded, since libseccomp's lookup allocates and a signal
 * handler may not.
 *
 * Test builds (tests/raidad-hooked, compiled with RD_TEST_HOOKS, never
 * installed) add a hook: with RAIDAD_TEST_FORBIDDEN=execve or
 * =socket_packet in the environment, a worker that receives SIGUSR2 makes
 * that call, so that the tests can watch the filter at work. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <netinet/in.h>

#include <seccomp.h>

#include "rd_log.h"
#include "rd_sandbox.h"

/* ---- the account ---------------------------------------------------------- */

static void sandbox_warn_root(const char *who, const char *why)
{
    rd_log(RD_LOG_WARN, "%s: running as root (%s): a process broken into would own the "
           "machine; set user to an unprivileged account (docs/security.md)", who, why);
}

/* Capabilities given to a non-root master (AmbientCapabilities=) are not
 * for its workers: without them a worker cannot bind low ports, and it
 * holds fewer than its master, so the kernel keeps it out of the master's
 * memory (/proc/PID/mem) although both run as the same user. */
static int sandbox_drop_capabilities(const char *who)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(data, 0, sizeof(data));
    /* EINVAL: a kernel without ambient capabilities has none to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        rd_log(RD_LOG_CRIT, "%s: cannot clear the ambient capabilities: %s", who, strerror(errno));
        return -1;
    }
    if (syscall(SYS_capset, &head, data) < 0) {
        rd_log(RD_LOG_CRIT, "%s: cannot give up its capabilities: %s", who, strerror(errno));
        return -1;
    }
    return 0;
}

static int sandbox_group(const rd_config_t *cf, const char *who, gid_t *gid)
{
    struct group *gr;

    if (cf->group[0] == '\0')
        return 0;
    if ((gr = getgrnam(cf->group)) == NULL) {
        rd_log(RD_LOG_CRIT, "%s: unknown group '%s'", who, cf->group);
        return -1;
    }
    *gid = gr->gr_gid;
    return 0;
}

int rd_sandbox_drop_privileges(const rd_config_t *cf, const char *who)
{
    const char *name = cf->user;
    struct passwd *pw;
    uid_t uid;
    gid_t gid;

    if (geteuid() != 0)
        return sandbox_drop_capabilities(who);
    if (name[0] == '\0') {
        sandbox_warn_root(who, "user is empty");
        return 0;
    }
    if ((pw = rd_config_worker_passwd(cf)) != NULL && strcmp(pw->pw_name, name) != 0) {
        rd_log(RD_LOG_WARN, "%s: user '%s' does not exist (\"make install\" creates it): "
               "running as '%s'", who, name, pw->pw_name);
        name = pw->pw_name;
    }
    if (pw == NULL) {
        rd_log(RD_LOG_CRIT, "%s: unknown user '%s'", who, name);
        return -1;
    }
    if (pw->pw_uid == 0) {
        sandbox_warn_root(who, "user is root");
        return 0;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    if (sandbox_group(cf, who, &gid) < 0)
        return -1;
    if (initgroups(name, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        rd_log(RD_LOG_CRIT, "%s: cannot become %s: %s", who, name, strerror(errno));
        return -1;
    }
    /* setuid() from root changes every uid, saved one included: if root
     * could still come back, the drop did not happen. */
    if (setuid(0) == 0) {
        rd_log(RD_LOG_CRIT, "%s: could become root again after becoming %s", who, name);
        return -1;
    }
    return 0;
}

/* ---- the filter's log line ------------------------------------------------ */

#define SANDBOX_MAX_NR 512          /* the table of names covers 0..SANDBOX_MAX_NR-1 */

/* What the SIGSYS handler reads. A signal handler reaches nothing but
 * globals; these are written once, before the filter is loaded. */
static struct {
    const char *names[SANDBOX_MAX_NR];
    long utc_offset;                /* seconds east of UTC, for the time stamp */
} sandbox_trap;

typedef struct {
    char buf[256];
    size_t len;
} line_t;

static void line_str(line_t *l, const char *s)
{
    while (*s != '\0' && l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = *s++;
}

static void line_num(line_t *l, unsigned long v, int width)
{
    char digits[24];
    int n = 0;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof(digits));
    while (n < width && n < (int)sizeof(digits))
        digits[n++] = '0';
    while (n > 0 && l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = digits[--n];
}

/* "YYYY-MM-DD HH:MM:SS" of T: the civil date from a day count (the
 * proleptic Gregorian calendar), since localtime_r() is not
 * async-signal-safe. */
static void line_time(line_t *l, long long t)
{
    long long days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    long long secs = t - days * 86400;
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    long long day = doy - (153 * mp + 2) / 5 + 1;
    long long month = mp < 10 ? mp + 3 : mp - 9;
    long long year = yoe + era * 400 + (month <= 2);

    line_num(l, (unsigned long)year, 4);
    line_str(l, "-");
    line_num(l, (unsigned long)month, 2);
    line_str(l, "-");
    line_num(l, (unsigned long)day, 2);
    line_str(l, " ");
    line_num(l, (unsigned long)(secs / 3600), 2);
    line_str(l, ":");
    line_num(l, (unsigned long)(secs / 60 % 60), 2);
    line_str(l, ":");
    line_num(l, (unsigned long)(secs % 60), 2);
}

/* The log line of rd_log.c ("<2>DATE TIME [crit] PID: ..."), built and
 * written with async-signal-safe calls only, then the end of the worker:
 * returning would let the call fail and the worker go on. */
static void sandbox_on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    int nr = si->si_syscall;
    const char *name = nr >= 0 && nr < SANDBOX_MAX_NR ? sandbox_trap.names[nr] : NULL;
    struct timespec now;
    line_t l = { .len = 0 };

    (void)sig;
    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &now);
    line_str(&l, "<2>");
    line_time(&l, (long long)now.tv_sec + sandbox_trap.utc_offset);
    line_str(&l, " [crit] ");
    line_num(&l, (unsigned long)getpid(), 1);
    line_str(&l, ": seccomp: worker killed: forbidden system call ");
    line_str(&l, name != NULL ? name : "unknown");
    line_str(&l, " (");
    if (nr < 0) {
        line_str(&l, "-");
        nr = -nr;
    }
    line_num(&l, (unsigned long)nr, 1);
    line_str(&l, ")\n");
    if (write(rd_log_fd(), l.buf, l.len) < 0) {
        /* nowhere left to say it */
    }
    _exit(RD_SANDBOX_KILLED_STATUS);
}

static int sandbox_prepare_trap(void)
{
    struct sigaction sa;
    struct tm tm;
    time_t now = time(NULL);
    sigset_t sys;

    for (int nr = 0; nr < SANDBOX_MAX_NR; nr++)
        sandbox_trap.names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    sandbox_trap.utc_offset = localtime_r(&now, &tm) != NULL ? tm.tm_gmtoff : 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = sandbox_on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    /* A blocked SIGSYS would make the kernel kill without the handler
     * (pool threads block the others; rd_threadpool.c leaves SIGSYS). */
    if (sigaction(SIGSYS, &sa, NULL) < 0 || pthread_sigmask(SIG_UNBLOCK, &sys, NULL) != 0)
        return -1;
    return 0;
}

/* ---- the allow list ------------------------------------------------------- */

/* What serving needs, and what the work under way will add (the coin store
 * opens, writes and syncs page files and a journal). A call this
 * architecture lacks (open on arm64...) has a negative pseudo number from
 * SCMP_SYS, and is skipped. */
static const int sandbox_allowed[] = {
    /* descriptors and files */
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
    SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(lseek), SCMP_SYS(close),
    SCMP_SYS(dup3), SCMP_SYS(fcntl), SCMP_SYS(flock),
    SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2),
    SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx),
    SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(syncfs), SCMP_SYS(ftruncate),
    SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2),
    SCMP_SYS(unlink), SCMP_SYS(unlinkat),
    SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(fallocate), SCMP_SYS(fadvise64),
    SCMP_SYS(msync), SCMP_SYS(getdents64), SCMP_SYS(mkdir), SCMP_SYS(mkdirat),
    /* events */
    SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2), SCMP_SYS(eventfd2),
    SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime),
    SCMP_SYS(signalfd4), SCMP_SYS(poll), SCMP_SYS(ppoll),
    /* sockets already open: no socket() at all */
    SCMP_SYS(accept4), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(recvmsg),
    SCMP_SYS(sendmsg), SCMP_SYS(recvmmsg), SCMP_SYS(sendmmsg), SCMP_SYS(shutdown),
    SCMP_SYS(getsockname), SCMP_SYS(getpeername),
    /* signals: its own only (kill and rt_sigqueueinfo reach others) */
    SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigpending), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(rt_sigsuspend),
    SCMP_SYS(sigaltstack), SCMP_SYS(restart_syscall),
    /* threads and memory */
    SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(sched_yield),
    SCMP_SYS(sched_getaffinity), SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(brk),
    SCMP_SYS(mremap),
    /* time, identity, randomness, the end */
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time),
    SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
    SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid), SCMP_SYS(getuid),
    SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
    SCMP_SYS(getrandom), SCMP_SYS(exit), SCMP_SYS(exit_group),
    /* glibc's qsort of 1 KiB or more asks once how much memory there is
     * (the coin ids of a sum of 256 coins or more) */
    SCMP_SYS(sysinfo),
};

/* Calls allowed only with some arguments. SCMP_CMP_EQ uses one datum; the
 * second, 0, keeps clang's -Wmissing-field-initializers quiet. */
static int sandbox_add_conditional(scmp_filter_ctx ctx)
{
    int rc = 0;

    /* Threads, not processes: a fork or a new namespace traps. clone3's
     * flags lie in memory a filter cannot read: it fails with ENOSYS, and
     * glibc falls back to clone. */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                           SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* Signals to its own threads only: abort() and raise() work, the
     * master and other processes of the same user are out of reach. */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                           SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0));
    /* Never executable memory: no code can be mapped in. */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    /* Socket options of the socket layer and TCP (keepalive, buffers). */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 1,
                           SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET, 0));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 1,
                           SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP, 0));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(getsockopt), 1,
                           SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET, 0));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(getsockopt), 1,
                           SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP, 0));
    /* Limits may be read (getrlimit), not raised. */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
                           SCMP_A2(SCMP_CMP_EQ, 0, 0));
    /* prctl: a thread's name, nothing else. */
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                           SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                           SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME, 0));
    return rc;
}

static int sandbox_load(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    int rc = ctx == NULL ? -ENOMEM : 0;

    for (size_t i = 0; rc == 0 && i < sizeof(sandbox_allowed) / sizeof(sandbox_allowed[0]); i++)
        if (sandbox_allowed[i] >= 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sandbox_allowed[i], 0);
    if (rc == 0 && sandbox_add_conditional(ctx) != 0)
        rc = -EINVAL;
    /* Every thread of the worker (the pool's are running already). */
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    /* A call of another ABI (int 0x80, x32) ends the whole worker, not the
     * one thread (libseccomp's default), which would leave it half alive. */
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc == 0)
        rc = seccomp_load(ctx);
    if (ctx != NULL)
        seccomp_release(ctx);
    if (rc != 0)
        errno = rc < 0 ? -rc : EINVAL;
    return rc == 0 ? 0 : -1;
}

/* ---- test hooks (tests/raidad-hooked only) -------------------------------- */

#ifdef RD_TEST_HOOKS
extern char **environ;

static int hook_call;               /* 1: execve, 2: socket(AF_PACKET) */

static void hook_on_usr2(int sig)
{
    char *argv[] = { (char *)"/bin/true", NULL };

    (void)sig;
    if (hook_call == 1)
        execve("/bin/true", argv, environ);
    else if (hook_call == 2)
        socket(AF_PACKET, SOCK_RAW, 0);
}

static void hook_install(void)
{
    const char *what = getenv("RAIDAD_TEST_FORBIDDEN");
    struct sigaction sa;

    if (what == NULL)
        return;
    hook_call = strcmp(what, "execve") == 0 ? 1 : strcmp(what, "socket_packet") == 0 ? 2 : 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = hook_on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    rd_log(RD_LOG_NOTICE, "test hook: SIGUSR2 makes this worker call %s", what);
}
#else
static void hook_install(void)
{
}
#endif

/* ---- entering -------------------------------------------------------------- */

/* What cannot work under the filter: the sanitizers' runtimes (LeakSanitizer
 * stops the world with ptrace from a cloned process, symbolizers are
 * executed), and valgrind, which runs the worker's calls as its own. */
static const char *sandbox_unfit(void)
{
#ifdef RD_SANITIZED
    return "this is a sanitizer build";
#else
    const char *preload = getenv("LD_PRELOAD");

    if (preload != NULL && strstr(preload, "vgpreload") != NULL)
        return "valgrind runs this worker";
    return NULL;
#endif
}

int rd_sandbox_enter(const rd_config_t *cf)
{
    const char *unfit = sandbox_unfit();

    hook_install();
    if (!cf->worker_seccomp) {
        rd_log(RD_LOG_DEBUG, "seccomp: off (worker_seccomp = false)");
        return 0;
    }
    if (unfit != NULL) {
        rd_log(RD_LOG_NOTICE, "seccomp: off: %s", unfit);
        return 0;
    }
    if (sandbox_prepare_trap() < 0 || sandbox_load() < 0) {
        rd_log(RD_LOG_CRIT, "seccomp: cannot load the system call filter: %s "
               "(worker_seccomp = false turns it off)", strerror(errno));
        return -1;
    }
    rd_log(RD_LOG_DEBUG, "seccomp: system call filter loaded");
    return 0;
}
