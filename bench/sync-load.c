/* bench/sync-load.c - another process's disk syncs, at a steady rate, to
 * tell what a server's own syncs cost it from what any sync costs the
 * machine. Writes 512 bytes into FILE (one of 64 blocks in turn) and
 * fdatasyncs it, RATE times a second, for SECONDS or until SIGTERM or
 * SIGINT, then removes FILE and prints how many syncs it made.
 *
 *   cc -O2 -o sync-load bench/sync-load.c
 *   sync-load /var/tmp/sync-load.dat 1500 5
 *
 * bench/run.sh runs it beside raidad serving its coins from memory (the
 * row "pown, in memory, syncs beside"): on a virtual machine whose disk
 * syncs are costly to every process, that row falls to the disk's pown
 * rate although raidad itself syncs nothing to a disk
 * (docs/performance.md, "What a sync costs the machine"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK   4096
#define BLOCKS  64
#define WRITE   512

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The blocks written once and synced first: the syncs that are measured
 * then rewrite blocks the file has, as a journal written ahead does. */
static int prepare(int fd)
{
    static const char zeros[BLOCK];
    for (off_t i = 0; i < BLOCKS; i++)
        if (pwrite(fd, zeros, BLOCK, i * BLOCK) != BLOCK)
            return -1;
    return fdatasync(fd);
}

static int run(int fd, double rate, double seconds, long *done)
{
    static const char data[WRITE] = "sync-load";
    double start = now_s();
    for (;;) {
        double elapsed = now_s() - start;
        if (elapsed >= seconds || stop)
            return 0;
        if ((double)*done >= elapsed * rate) {
            /* Ahead of the rate: wait for the next slot. */
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (pwrite(fd, data, WRITE, (*done % BLOCKS) * BLOCK) != WRITE || fdatasync(fd) < 0)
            return -1;
        (*done)++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: sync-load FILE RATE SECONDS\n");
        return 2;
    }
    char *end1, *end2;
    double rate = strtod(argv[2], &end1), seconds = strtod(argv[3], &end2);
    if (*end1 != '\0' || *end2 != '\0' || rate <= 0 || rate > 1e6 || seconds <= 0
        || seconds > 3600) {
        fprintf(stderr, "sync-load: RATE must be 0..1000000 a second, SECONDS 0..3600\n");
        return 2;
    }
    int fd = open(argv[1], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "sync-load: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    /* Without SA_RESTART: a signal cuts the wait short, and the file is
     * removed all the same. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    long done = 0;
    int rc = prepare(fd) == 0 ? run(fd, rate, seconds, &done) : -1;
    if (rc < 0)
        fprintf(stderr, "sync-load: %s: %s\n", argv[1], strerror(errno));
    close(fd);
    unlink(argv[1]);
    printf("sync-load: %ld syncs\n", done);
    return rc < 0 ? 1 : 0;
}
