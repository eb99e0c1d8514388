/* The status view: the master writes a small status record next to its
 * pid file once a second (written to a temporary name, then renamed: a
 * reader never sees half of it), and "raidad -s status" reads it and
 * prints it for a person, like nginx's stub_status. The record comes from
 * the master's own memory; the per-worker request counts, which workers
 * write, are only printed. */
#ifndef RD_STATUS_H
#define RD_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rd_config.h"

#define RD_STATUS_MAX_WORKERS 256

typedef struct rd_status_worker {
    long pid;
    unsigned generation;
    const char *state;          /* starting, serving, silent, draining */
    unsigned connections;       /* as its last heartbeat said */
    unsigned long long requests;
} rd_status_worker_t;

typedef struct rd_status_record {
    long master_pid;
    unsigned generation;
    unsigned expected;          /* workers configured */
    bool healthy;               /* every configured worker serves and answers */
    long metrics_pid;           /* 0: none */
    size_t count;
    rd_status_worker_t workers[RD_STATUS_MAX_WORKERS];
} rd_status_t;

/* The master: a reload was committed (OK) or refused (WHY). */
void rd_status_reload(bool ok, const char *why);
#define RD_STATUS_MAX_WAITERS 16

/* The master: the N processes PIDS waiting for a reload's verdict are
 * told OK or not. Counted in the record, with their pids, for a waiter
 * the master cannot signal (the master runs as raidad, "raidad -s reload"
 * as root); the record is to be published before they are told. */
void rd_status_verdict(bool ok, const long *pids, size_t n);
/* "raidad -s reload": how many verdicts MASTER_PID's record counts; with
 * ME, whether the last one was told to ME (1, and OK set) or not (0). -1
 * when there is no record of that master. */
int rd_status_read_verdict(const char *pid_file, long master_pid, long me, unsigned long *count,
                           bool *ok);

/* The master: writes ST for PID_FILE (nothing when it is ""). */
void rd_status_publish(const char *pid_file, const rd_status_t *st);
/* The master, at exit. */
void rd_status_remove(const char *pid_file);

/* "raidad -s status": prints the running daemon's status to OUT. Returns
 * 0 when it is healthy, 1 when not (or its record is stale), 3 when none
 * runs. */
int rd_status_show(const rd_config_t *cf, FILE *out);

#endif
