/* bench/fsync-delay.c - an LD_PRELOAD shim that makes fsync, fdatasync
 * and msync(MS_SYNC) take longer, to see how a server whose writes wait
 * for the disk behaves when the disk is slow (a loaded or networked one)
 * while the benchmark runs on a fast one or on tmpfs. Each call sleeps
 * FSYNC_DELAY_US microseconds (default 2000), then does the real call.
 * With FSYNC_DELAY_REPORT=1 each process says on standard error, when it
 * exits, how many calls it delayed (FSYNC_DELAY_US=0: counts them only).
 *
 *   cc -O2 -shared -fPIC -o fsync-delay.so bench/fsync-delay.c -ldl
 *   LD_PRELOAD=./fsync-delay.so FSYNC_DELAY_US=2000 raidad -c raidad.conf
 *
 * bench/run.sh builds it and uses it for its "pown, syncs slowed" row. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DELAY_US 2000L
#define MAX_DELAY_US     10000000L      /* 10 s: anything longer is a typo */

static atomic_ulong delayed;

static long delay_us(void)
{
    const char *s = getenv("FSYNC_DELAY_US");
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return DEFAULT_DELAY_US;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > MAX_DELAY_US)
        return DEFAULT_DELAY_US;
    return v;
}

/* Sleeps the whole delay, signals or not; errno is the caller's. */
static void pause_for_disk(void)
{
    long us = delay_us();
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    int saved = errno;

    /* FSYNC_DELAY_US=0 only counts the calls (bench/run.sh: requests
     * per sync at the disk's own speed). */
    while (us > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    errno = saved;
    atomic_fetch_add(&delayed, 1);
}

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);

    if (f == NULL) {
        fprintf(stderr, "fsync-delay: no %s to wrap\n", name);
        abort();
    }
    return f;
}

int fsync(int fd)
{
    static int (*next)(int);

    if (next == NULL)
        next = (int (*)(int))real("fsync");
    pause_for_disk();
    return next(fd);
}

int fdatasync(int fd)
{
    static int (*next)(int);

    if (next == NULL)
        next = (int (*)(int))real("fdatasync");
    pause_for_disk();
    return next(fd);
}

int msync(void *addr, size_t len, int flags)
{
    static int (*next)(void *, size_t, int);

    if (next == NULL)
        next = (int (*)(void *, size_t, int))real("msync");
    if (flags & MS_SYNC)
        pause_for_disk();
    return next(addr, len, flags);
}

__attribute__((destructor))
static void report(void)
{
    const char *s = getenv("FSYNC_DELAY_REPORT");

    if (s != NULL && s[0] == '1')
        fprintf(stderr, "fsync-delay: process %ld delayed %lu syncs by %ld us\n",
                (long)getpid(), atomic_load(&delayed), delay_us());
}
