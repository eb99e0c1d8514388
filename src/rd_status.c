/* The status record (see include/rd_status.h): its writer, in the master,
 * and its reader, "raidad -s status". The record is plain "key value"
 * lines, so that a script may read it too (docs/observability.md). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rd_log.h"
#include "rd_pidfile.h"
#include "rd_status.h"

#define STALE_SECONDS 10        /* the master writes every second */

/* The master's memory of the last reload. */
static struct {
    time_t started;
    time_t reload_time;         /* 0: none since the start */
    bool reload_ok;
    char reload_error[256];
    unsigned long verdicts;     /* told to the waiters of reloads so far */
    bool verdict_ok;            /* the last one, */
    long verdict_pids[RD_STATUS_MAX_WAITERS];    /* and to whom */
    size_t verdict_n;
} rs;

void rd_status_verdict(bool ok, const long *pids, size_t n)
{
    rs.verdicts++;
    rs.verdict_ok = ok;
    rs.verdict_n = n < RD_STATUS_MAX_WAITERS ? n : RD_STATUS_MAX_WAITERS;
    memcpy(rs.verdict_pids, pids, rs.verdict_n * sizeof(*pids));
}

void rd_status_reload(bool ok, const char *why)
{
    rs.reload_time = time(NULL);
    rs.reload_ok = ok;
    snprintf(rs.reload_error, sizeof(rs.reload_error), "%s", ok || why == NULL ? "" : why);
    /* One line in the record: the reason may quote a file's text. */
    for (char *p = rs.reload_error; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/* "/run/raidad/raidad.pid" -> "/run/raidad/raidad.status". */
static int status_path(const char *pid_file, char *out, size_t len)
{
    size_t n = strlen(pid_file);
    int rc;

    if (n == 0)
        return -1;
    if (n > 4 && strcmp(pid_file + n - 4, ".pid") == 0)
        n -= 4;
    rc = snprintf(out, len, "%.*s.status", (int)n, pid_file);
    return rc < 0 || (size_t)rc >= len ? -1 : 0;
}

static void write_record(FILE *f, const rd_status_t *st)
{
    fprintf(f, "raidad-status 1\nversion %s\nmaster_pid %ld\nstarted %lld\nupdated %lld\n"
            "generation %u\nhealthy %d\nworkers_expected %u\nmetrics_pid %ld\n",
            PACKAGE_VERSION, st->master_pid, (long long)rs.started, (long long)time(NULL),
            st->generation, st->healthy, st->expected, st->metrics_pid);
    if (rs.reload_time != 0)
        fprintf(f, "reload %s %lld\n", rs.reload_ok ? "ok" : "refused",
                (long long)rs.reload_time);
    if (!rs.reload_ok && rs.reload_time != 0)
        fprintf(f, "reload_error %s\n", rs.reload_error);
    if (rs.verdicts > 0) {
        fprintf(f, "reload_verdict %lu %s", rs.verdicts, rs.verdict_ok ? "ok" : "refused");
        for (size_t i = 0; i < rs.verdict_n; i++)
            fprintf(f, " %ld", rs.verdict_pids[i]);
        fputc('\n', f);
    }
    for (size_t i = 0; i < st->count; i++) {
        const rd_status_worker_t *w = &st->workers[i];

        fprintf(f, "worker %ld %u %s %u %llu\n", w->pid, w->generation, w->state,
                w->connections, w->requests);
    }
}

void rd_status_publish(const char *pid_file, const rd_status_t *st)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    FILE *f;
    int fd;

    if (rs.started == 0)
        rs.started = time(NULL);
    if (status_path(pid_file, path, sizeof(path)) < 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* A new file, never one found there: a link left in a folder others
     * may write would have the master (root) overwrite its target. */
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        rd_log_debug("cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    write_record(f, st);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        rd_log_debug("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
}

void rd_status_remove(const char *pid_file)
{
    char path[PATH_MAX];

    if (status_path(pid_file, path, sizeof(path)) == 0)
        unlink(path);
}

/* ---- raidad -s status ---- */

typedef struct record {
    long master_pid, metrics_pid;
    long long started, updated, reload_time;
    unsigned generation, expected;
    int healthy;
    unsigned long verdicts;
    char verdict[16];
    char verdict_pids[256];     /* " PID PID ...", as written */
    char reload[16];
    char reload_error[512];
    char version[32];
    size_t count;
    rd_status_worker_t workers[RD_STATUS_MAX_WORKERS];
    char states[RD_STATUS_MAX_WORKERS][16];
} record_t;

static void parse_line(record_t *r, const char *line)
{
    rd_status_worker_t *w = &r->workers[r->count];
    int end = 0;

    /* Before "reload", whose %s would take "_verdict". */
    if (sscanf(line, "reload_verdict %lu %15s%n", &r->verdicts, r->verdict, &end) == 2) {
        snprintf(r->verdict_pids, sizeof(r->verdict_pids), "%s", line + end);
        r->verdict_pids[strcspn(r->verdict_pids, "\n")] = '\0';
        return;
    }

    if (sscanf(line, "master_pid %ld", &r->master_pid) == 1 ||
        sscanf(line, "metrics_pid %ld", &r->metrics_pid) == 1 ||
        sscanf(line, "started %lld", &r->started) == 1 ||
        sscanf(line, "updated %lld", &r->updated) == 1 ||
        sscanf(line, "generation %u", &r->generation) == 1 ||
        sscanf(line, "workers_expected %u", &r->expected) == 1 ||
        sscanf(line, "healthy %d", &r->healthy) == 1 ||
        sscanf(line, "version %31s", r->version) == 1 ||
        sscanf(line, "reload %15s %lld", r->reload, &r->reload_time) == 2)
        return;
    if (strncmp(line, "reload_error ", 13) == 0) {
        snprintf(r->reload_error, sizeof(r->reload_error), "%.299s", line + 13);
        r->reload_error[strcspn(r->reload_error, "\n")] = '\0';
        return;
    }
    if (r->count < RD_STATUS_MAX_WORKERS &&
        sscanf(line, "worker %ld %u %15s %u %llu", &w->pid, &w->generation, r->states[r->count],
               &w->connections, &w->requests) == 5) {
        w->state = r->states[r->count];
        r->count++;
    }
}

static int read_record(const char *path, record_t *r)
{
    FILE *f = fopen(path, "re");
    char line[512];

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        parse_line(r, line);
    fclose(f);
    return r->master_pid > 0 ? 0 : -1;
}

static void span(char *out, size_t len, long long s)
{
    if (s < 0)
        s = 0;
    if (s >= 86400)
        snprintf(out, len, "%lldd %02lldh %02lldm %02llds", s / 86400, s % 86400 / 3600,
                 s % 3600 / 60, s % 60);
    else if (s >= 3600)
        snprintf(out, len, "%lldh %02lldm %02llds", s / 3600, s % 3600 / 60, s % 60);
    else if (s >= 60)
        snprintf(out, len, "%lldm %02llds", s / 60, s % 60);
    else
        snprintf(out, len, "%llds", s);
}

static void when(char *out, size_t len, long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, len, "%lld", t);
}

static void print_record(const record_t *r, long long now, FILE *out)
{
    char up[64], since[64], at[64], ago[64];

    span(up, sizeof(up), now - r->started);
    when(since, sizeof(since), r->started);
    fprintf(out, "raidad %s: running, %s\n", r->version, r->healthy ? "healthy" : "NOT healthy");
    fprintf(out, "master pid:       %ld\n", r->master_pid);
    fprintf(out, "uptime:           %s (since %s)\n", up, since);
    fprintf(out, "generation:       %u\n", r->generation);
    if (r->reload_time == 0) {
        fprintf(out, "last reload:      none since the start\n");
    } else {
        when(at, sizeof(at), r->reload_time);
        span(ago, sizeof(ago), now - r->reload_time);
        fprintf(out, "last reload:      %s at %s (%s ago)%s%s\n",
                strcmp(r->reload, "ok") == 0 ? "ok" : "REFUSED", at, ago,
                r->reload_error[0] ? ": " : "", r->reload_error);
    }
    if (r->metrics_pid > 0)
        fprintf(out, "metrics process:  %ld\n", r->metrics_pid);
    fprintf(out, "workers:          %zu (%u configured)\n", r->count, r->expected);
    fprintf(out, "  %-8s %-5s %-10s %12s %14s\n", "PID", "GEN", "STATE", "CONNECTIONS", "REQUESTS");
    for (size_t i = 0; i < r->count; i++)
        fprintf(out, "  %-8ld %-5u %-10s %12u %14llu\n", r->workers[i].pid,
                r->workers[i].generation, r->workers[i].state, r->workers[i].connections,
                r->workers[i].requests);
}

/* PID is one of the " PID PID ..." of LIST. */
static bool listed(const char *list, long pid)
{
    char *end;

    for (const char *p = list; *p != '\0'; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p)
            return false;
        if (v == pid)
            return true;
    }
    return false;
}

int rd_status_read_verdict(const char *pid_file, long master_pid, long me, unsigned long *count,
                           bool *ok)
{
    char path[PATH_MAX];
    record_t *r = calloc(1, sizeof(*r));
    int rc = -1;

    if (r != NULL && status_path(pid_file, path, sizeof(path)) == 0 && read_record(path, r) == 0
        && r->master_pid == master_pid) {
        *count = r->verdicts;
        *ok = strcmp(r->verdict, "ok") == 0;
        rc = listed(r->verdict_pids, me) ? 1 : 0;
    }
    free(r);
    return rc;
}

int rd_status_show(const rd_config_t *cf, FILE *out)
{
    char path[PATH_MAX];
    record_t *r;
    long pid;
    long long now = (long long)time(NULL);
    int rc;

    if (cf->pid_file[0] == '\0') {
        fprintf(out, "raidad: no pid_file is configured: the status cannot be found\n");
        return 3;
    }
    /* As "raidad -s" finds it (the pid file's lock), not by kill(pid, 0):
     * after a kill -9 the pid may be another process's by now. */
    if ((pid = rd_pidfile_master(cf->pid_file, out)) < 0)
        return 3;
    if (status_path(cf->pid_file, path, sizeof(path)) < 0 || (r = calloc(1, sizeof(*r))) == NULL)
        return 1;
    if (read_record(path, r) < 0 || r->master_pid != pid) {
        fprintf(out, "raidad: process %ld runs but wrote no status record (%s)\n", pid, path);
        rc = 1;
    } else if (now - r->updated > STALE_SECONDS) {
        print_record(r, now, out);
        fprintf(out, "raidad: the status record is %lld s old: the master is not answering\n",
                now - r->updated);
        rc = 1;
    } else {
        print_record(r, now, out);
        rc = r->healthy ? 0 : 1;
    }
    free(r);
    return rc;
}
