/* Logging with syslog priority prefixes (see include/rd_log.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rd_log.h"

/* One line is at most PIPE_BUF bytes, so that even a write to a pipe is
 * atomic and lines from several threads or processes never interleave. */
#define RD_LOG_LINE_MAX 4096

/* Private state, like syslog(3)'s. level and fd are read by every thread
 * without a lock, hence the atomic accesses; path is only touched by the
 * thread that calls rd_log_open(). */
static struct {
    atomic_int level;
    atomic_int fd;
    char path[PATH_MAX];
} rd_log_state = { RD_LOG_INFO, STDERR_FILENO, "" };

static const char *const rd_log_names[] = {
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"
};

int rd_log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = RD_LOG_EMERG; i <= RD_LOG_DEBUG; i++)
        if (strcasecmp(name, rd_log_names[i]) == 0)
            return i;
    /* The spellings syslog(3) and journalctl use. */
    if (strcasecmp(name, "err") == 0)
        return RD_LOG_ERR;
    if (strcasecmp(name, "warning") == 0)
        return RD_LOG_WARN;
    return -1;
}

const char *rd_log_level_name(int level)
{
    if (level < RD_LOG_EMERG || level > RD_LOG_DEBUG)
        return "unknown";
    return rd_log_names[level];
}

void rd_log_set_level(int level)
{
    if (level < RD_LOG_EMERG)
        level = RD_LOG_EMERG;
    if (level > RD_LOG_DEBUG)
        level = RD_LOG_DEBUG;
    atomic_store_explicit(&rd_log_state.level, level, memory_order_relaxed);
}

bool rd_log_enabled(int level)
{
    return level <= atomic_load_explicit(&rd_log_state.level, memory_order_relaxed);
}

/* Once the log has a descriptor of its own, its number never changes: a new
 * file (or stderr) is dup'ed onto it. A thread that has just loaded the number
 * therefore never writes into a closed, or worse reused, descriptor. */
static int rd_log_replace_fd(int newfd)
{
    int fd = atomic_load_explicit(&rd_log_state.fd, memory_order_relaxed);

    if (fd == STDERR_FILENO) {
        atomic_store_explicit(&rd_log_state.fd, newfd, memory_order_relaxed);
        return 0;
    }
    if (dup3(newfd, fd, O_CLOEXEC) < 0)
        return -1;
    if (newfd != STDERR_FILENO)
        close(newfd);
    return 0;
}

int rd_log_adopt(int fd)
{
    if (rd_log_replace_fd(fd) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

int rd_log_fd(void)
{
    return atomic_load_explicit(&rd_log_state.fd, memory_order_relaxed);
}

int rd_log_open(const char *path)
{
    int fd = STDERR_FILENO;

    if (path != NULL && path[0] != '\0') {
        if (strlen(path) >= sizeof(rd_log_state.path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
            return -1;
    } else if (atomic_load_explicit(&rd_log_state.fd, memory_order_relaxed) == STDERR_FILENO) {
        rd_log_state.path[0] = '\0';
        return 0;
    }
    if (rd_log_replace_fd(fd) < 0) {
        int saved = errno;
        if (fd != STDERR_FILENO)
            close(fd);
        errno = saved;
        return -1;
    }
    snprintf(rd_log_state.path, sizeof(rd_log_state.path), "%s", path ? path : "");
    return 0;
}

/* "<6>2026-11-25 06:28:00 [info] 1234: " */
static size_t rd_log_prefix(char *buf, size_t size, int level)
{
    struct timespec now;
    struct tm tm;
    char stamp[32] = "";

    clock_gettime(CLOCK_REALTIME, &now);
    if (localtime_r(&now.tv_sec, &tm) != NULL)
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
    int n = snprintf(buf, size, "<%d>%s [%s] %ld: ", level, stamp,
                     rd_log_names[level], (long)getpid());
    return n < 0 ? 0 : (size_t)n;
}

/* Keeps one message on one line: a newline inside it would make journald
 * (or a log reader) take the rest for a separate entry of unknown origin. */
static void rd_log_flatten(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n' || s[i] == '\r')
            s[i] = ' ';
}

static void rd_log_write(const char *buf, size_t len)
{
    int fd = atomic_load_explicit(&rd_log_state.fd, memory_order_relaxed);

    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;             /* nowhere left to report it */
        buf += n;
        len -= (size_t)n;
    }
}

/* Cuts a truncated message at a character boundary, not inside a UTF-8
 * sequence, so that the line stays valid text. */
static size_t rd_log_utf8_cut(const char *s, size_t len)
{
    size_t end = len;

    while (end > 0 && ((unsigned char)s[end - 1] & 0xC0) == 0x80)
        end--;
    if (end > 0 && ((unsigned char)s[end - 1] & 0xC0) == 0xC0)
        end--;                  /* the lead byte of the cut sequence */
    return end < len ? end : len;
}

void rd_log(int level, const char *fmt, ...)
{
    static const char ellipsis[] = "...\n";
    char line[RD_LOG_LINE_MAX];
    int saved_errno = errno;    /* for %m, and so callers can log then test errno */

    if (level < RD_LOG_EMERG)
        level = RD_LOG_EMERG;
    if (level > RD_LOG_DEBUG)
        level = RD_LOG_DEBUG;
    if (!rd_log_enabled(level))
        return;

    /* Room is kept for the ellipsis that marks a truncated message. */
    size_t room = sizeof(line) - (sizeof(ellipsis) - 1);
    size_t len = rd_log_prefix(line, room, level);
    if (len >= room)
        len = room - 1;
    va_list ap;
    va_start(ap, fmt);
    errno = saved_errno;
    int n = vsnprintf(line + len, room - len, fmt, ap);
    va_end(ap);
    size_t msg = n < 0 ? 0 : (size_t)n;
    bool cut = msg >= room - len;
    if (cut)
        msg = rd_log_utf8_cut(line + len, room - len - 1);
    rd_log_flatten(line + len, msg);
    len += msg;
    if (cut) {
        memcpy(line + len, ellipsis, sizeof(ellipsis) - 1);
        len += sizeof(ellipsis) - 1;
    } else {
        line[len++] = '\n';
    }
    rd_log_write(line, len);
    errno = saved_errno;
}
