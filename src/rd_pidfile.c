/* The locked pid file: see include/rd_pidfile.h. Open file description
 * locks rather than flock(): F_OFD_GETLK asks whether the file is locked
 * without taking a lock, so that "raidad -s" never makes a master that
 * starts at the same moment believe another one runs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_log.h"
#include "rd_pidfile.h"

#define PIDFILE_TRIES 8   /* another instance may remove the file we just opened */

static void pidfile_make_dir(const char *path)
{
    char dir[4096];
    char *slash;

    snprintf(dir, sizeof(dir), "%s", path);
    if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
        return;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        rd_log(RD_LOG_WARN, "cannot create %s: %s", dir, strerror(errno));
}

static struct flock whole_file(short type)
{
    return (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
}

/* The pid written in FD, or 0 when it holds none. */
static pid_t pidfile_read(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    char *end;
    long pid;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') || pid <= 1 || pid > 0x7fffffff)
        return 0;
    return (pid_t)pid;
}

/* FD is open on what PATH names now (not a file removed since). */
static bool pidfile_still_named(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Opens PATH and takes its lock: the descriptor, or -1 (errno). */
static int pidfile_open_locked(const char *path, pid_t *holder)
{
    struct flock lock = whole_file(F_WRLCK);
    struct stat st;

    for (int tries = 0; tries < PIDFILE_TRIES; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);

        if (fd < 0)
            return -1;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            errno = EINVAL;
            return -1;
        }
        if (fcntl(fd, F_OFD_SETLK, &lock) < 0) {
            int err = errno == EACCES ? EWOULDBLOCK : errno;

            *holder = pidfile_read(fd);
            close(fd);
            errno = err;
            return -1;
        }
        if (pidfile_still_named(fd, path))
            return fd;
        close(fd);      /* its owner removed it as it left: open the new one */
    }
    errno = EAGAIN;
    return -1;
}

int rd_pidfile_create(const char *path, pid_t *holder)
{
    char buf[32];
    int fd, len;

    *holder = 0;
    pidfile_make_dir(path);
    if ((fd = pidfile_open_locked(path, holder)) < 0)
        return -1;
    len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        int err = errno;

        unlink(path);
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

void rd_pidfile_remove(const char *path, int fd)
{
    if (fd < 0)
        return;
    /* Unlinked before the lock goes: a starting instance that opened the
     * old file finds it no longer named, and opens a new one. */
    if (pidfile_still_named(fd, path))
        unlink(path);
    close(fd);
}

pid_t rd_pidfile_running(const char *path)
{
    struct flock probe = whole_file(F_WRLCK);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    pid_t pid;

    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fcntl(fd, F_OFD_GETLK, &probe) < 0) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    pid = pidfile_read(fd);
    close(fd);
    if (probe.l_type == F_UNLCK) {
        errno = ESRCH;
        return 0;
    }
    if (pid == 0) {
        errno = EINVAL;
        return -1;
    }
    return pid;
}

pid_t rd_pidfile_master(const char *path, FILE *out)
{
    pid_t pid = rd_pidfile_running(path);

    if (pid > 0)
        return pid;
    if (pid == 0 && errno == ESRCH)
        fprintf(out, "raidad: not running: no process holds the pid file %s (stale: its pid is "
                     "not signalled)\n", path);
    else if (pid == 0)
        fprintf(out, "raidad: not running: no pid file %s\n", path);
    else if (errno == EINVAL)
        fprintf(out, "raidad: not running: the pid file %s holds no process id\n", path);
    else
        fprintf(out, "raidad: not running: cannot read the pid file %s: %s\n", path,
                strerror(errno));
    return -1;
}
