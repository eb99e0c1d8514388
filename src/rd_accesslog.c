/* The access log (see include/rd_accesslog.h). The state is the process's
 * own and touched by its I/O thread only, hence no lock. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rd_accesslog.h"
#include "rd_clock.h"
#include "rd_commands.h"
#include "rd_limit.h"
#include "rd_log.h"
#include "rd_metrics.h"

#define LINE_MAX_BYTES 512

static struct {
    int fd;                     /* -1: off */
    bool json;
    char *buf;
    size_t len, cap;
    uint64_t oldest_ms;         /* when the first buffered line came */
    unsigned flush_ms;
    time_t stamp_sec;           /* the second STAMP spells */
    char stamp[24];             /* "2026-11-29T08:30:00" */
} al = { .fd = -1 };

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int rd_accesslog_open(const rd_config_t *cf)
{
    if (cf->access_log[0] == '\0')
        return 0;
    al.fd = open_file(cf->access_log);
    al.cap = cf->access_log_buffer;
    al.buf = malloc(al.cap);
    if (al.fd < 0 || al.buf == NULL) {
        rd_log(RD_LOG_ERR, "cannot open the access log %s: %s", cf->access_log,
               strerror(al.fd < 0 ? errno : ENOMEM));
        rd_accesslog_close();
        return -1;
    }
    al.json = strcmp(cf->access_log_format, "json") == 0;
    al.flush_ms = cf->access_log_flush_ms;
    return 0;
}

int rd_accesslog_open_file(const rd_config_t *cf)
{
    int fd;

    if (cf->access_log[0] == '\0')
        return -1;
    if ((fd = open_file(cf->access_log)) < 0)
        rd_log(RD_LOG_ERR, "cannot reopen %s: %s", cf->access_log, strerror(errno));
    return fd;
}

bool rd_accesslog_enabled(void)
{
    return al.fd >= 0;
}

/* A short write means a full disk or the like: what is left is dropped
 * rather than kept growing (the next lines get their chance). */
static void flush(void)
{
    size_t off = 0;

    while (off < al.len) {
        ssize_t n = write(al.fd, al.buf + off, al.len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    al.len = 0;
}

void rd_accesslog_adopt(int fd)
{
    if (al.fd < 0) {
        close(fd);
        return;
    }
    flush();
    close(al.fd);
    al.fd = fd;
}

/* "2026-11-29T08:30:00.123456Z": the date is formatted once a second. */
static void timestamp(char *out, size_t len)
{
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != al.stamp_sec && gmtime_r(&now.tv_sec, &tm) != NULL) {
        strftime(al.stamp, sizeof(al.stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        al.stamp_sec = now.tv_sec;
    }
    snprintf(out, len, "%.19s.%06dZ", al.stamp, (int)(now.tv_nsec / 1000) % 1000000);
}

static int format_line(char *line, const char *client, uint16_t port, int transport,
                       const rd_request_t *req, unsigned status, size_t in, size_t out,
                       uint64_t ns)
{
    const char *proto = transport == RD_METRICS_TCP ? "tcp" : "udp";
    const rd_command_t *cmd = req != NULL && req->header_valid ? req->cmd : NULL;
    bool v6 = strchr(client, ':') != NULL;
    unsigned long long us = ns / 1000;
    char when[40], what[48];

    timestamp(when, sizeof(when));
    if (al.json) {
        if (cmd != NULL)
            snprintf(what, sizeof(what), "%u,\"command\":\"%s\"", cmd->group, cmd->name);
        else
            snprintf(what, sizeof(what), "null,\"command\":null");
        return snprintf(line, LINE_MAX_BYTES, "{\"time\":\"%s\",\"client\":\"%s\",\"port\":%u,"
                        "\"transport\":\"%s\",\"group\":%s,\"status\":%u,\"bytes_in\":%zu,"
                        "\"bytes_out\":%zu,\"duration_us\":%llu}\n",
                        when, client, port, proto, what, status, in, out, us);
    }
    if (cmd != NULL)
        snprintf(what, sizeof(what), "%u/%s", cmd->group, cmd->name);
    else
        snprintf(what, sizeof(what), "-");
    return snprintf(line, LINE_MAX_BYTES, "%s %s%s%s:%u %s %s %u %zu %zu %llu\n", when,
                    v6 ? "[" : "", client, v6 ? "]" : "", port, proto, what, status, in, out, us);
}

void rd_accesslog_add(const uint8_t key[16], uint16_t port, int transport,
                      const rd_request_t *req, unsigned status, size_t bytes_in,
                      size_t bytes_out, uint64_t duration_ns)
{
    char client[64], line[LINE_MAX_BYTES];
    int n;

    if (al.fd < 0)
        return;
    rd_limit_key_text(key, client, sizeof(client));
    n = format_line(line, client, port, transport, req, status, bytes_in, bytes_out,
                    duration_ns);
    if (n <= 0 || n >= LINE_MAX_BYTES)
        return;
    if (al.len + (size_t)n > al.cap)
        flush();
    if (al.len == 0)
        al.oldest_ms = rd_clock_ms();
    memcpy(al.buf + al.len, line, (size_t)n);
    al.len += (size_t)n;
}

int rd_accesslog_flush_due(uint64_t now_ms, int timeout_ms)
{
    uint64_t due;

    if (al.fd < 0 || al.len == 0)
        return timeout_ms;
    due = al.oldest_ms + al.flush_ms;
    if (now_ms >= due) {
        flush();
        return timeout_ms;
    }
    return timeout_ms >= 0 && due - now_ms > (uint64_t)timeout_ms ? timeout_ms
                                                                     : (int)(due - now_ms);
}

void rd_accesslog_close(void)
{
    if (al.fd >= 0) {
        flush();
        close(al.fd);
    }
    free(al.buf);
    al.buf = NULL;
    al.fd = -1;
    al.len = al.cap = 0;
}
