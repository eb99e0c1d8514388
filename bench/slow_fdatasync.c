/* bench/slow_fdatasync.c - an LD_PRELOAD shim that makes every fdatasync
 * take SLOW_FDATASYNC_US more microseconds (default 2000): a slow disk for
 * the coin store's group-commit measurement (docs/coins.md).
 *
 *   cc -O2 -shared -fPIC -o slow_fdatasync.so bench/slow_fdatasync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

int fdatasync(int fd)
{
    static int (*real)(int);
    const char *us = getenv("SLOW_FDATASYNC_US");
    long wait = us != NULL ? atol(us) : 2000;
    struct timespec ts = { wait / 1000000, (wait % 1000000) * 1000 };
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    nanosleep(&ts, NULL);
    return real(fd);
}
