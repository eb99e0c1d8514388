/* Whole-or-nothing file writes (see tools/rd_atomicfile.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_atomicfile.h"

static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The folder that holds PATH, synced so that a rename in it is durable. */
static int sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close_keep_errno(fd);
    return rc;
}

/* rename() replaces; without REPLACE the kernel checks that nothing is
 * there (RENAME_NOREPLACE), or, where the file system cannot, link() does
 * (it never replaces) and the temporary name goes. */
static int move_into_place(const char *tmp, const char *path, bool replace)
{
    if (replace)
        return rename(tmp, path);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (link(tmp, path) < 0)
        return -1;
    unlink(tmp);
    return 0;
}

int rd_atomicfile_write(const char *path, const void *data, size_t len, mode_t mode, bool replace)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        close_keep_errno(fd);
        goto fail;
    }
    if (close(fd) < 0)
        goto fail;
    if (move_into_place(tmp, path, replace) < 0)
        goto fail;
    return sync_parent(path);
fail:;
    int saved = errno;
    unlink(tmp);
    errno = saved;
    return -1;
}

int rd_atomicfile_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    struct stat st;
    if (path[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        if (stat(buf, &st) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}
