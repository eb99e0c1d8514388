/* Logging to stderr (or a file), one line per message, each prefixed with
 * its syslog priority ("<3>") so that journald files it at the right level. */
#ifndef RD_LOG_H
#define RD_LOG_H

#include <stdbool.h>

enum rd_log_level {
    RD_LOG_EMERG = 0, RD_LOG_ALERT, RD_LOG_CRIT, RD_LOG_ERR,
    RD_LOG_WARN, RD_LOG_NOTICE, RD_LOG_INFO, RD_LOG_DEBUG
};

/* Level from its name ("error", "warn", "notice", "info", "debug", ...); -1 if unknown. */
int rd_log_level_parse(const char *name);
const char *rd_log_level_name(int level);
void rd_log_set_level(int level);
bool rd_log_enabled(int level);

/* Sends the log to PATH (appending), or back to stderr when PATH is NULL or
 * empty. Called again with the same path, it reopens the file (logrotate). */
int rd_log_open(const char *path);

/* Logs into FD from now on (a file the master opened for a worker that may
 * no longer open it itself); FD is taken over. */
int rd_log_adopt(int fd);
/* The descriptor the log writes to (STDERR_FILENO for standard error). */
int rd_log_fd(void);

void rd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rd_log_debug(...) \
    do { if (rd_log_enabled(RD_LOG_DEBUG)) rd_log(RD_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
