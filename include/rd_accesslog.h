/* The access log (access_log, off by default): one line per request, in
 * the plain or the json format (docs/observability.md). Lines are gathered
 * in a buffer of the worker's I/O thread, which alone writes them, and
 * written when the buffer fills, when access_log_flush_ms has passed since
 * the oldest line, and at exit: the data path pays no write per request.
 * Several workers append to one file (O_APPEND), whole lines per write. */
#ifndef RD_ACCESSLOG_H
#define RD_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_config.h"
#include "rd_frame.h"

/* Opens CF's access log for this process (a worker, before it gives up
 * root). Returns -1 (logged) on failure; 0 also when there is none. */
int rd_accesslog_open(const rd_config_t *cf);

/* The master, for a reopen (SIGUSR1): the file opened afresh, to be passed
 * to the workers; -1 when there is no access log or it cannot be opened. */
int rd_accesslog_open_file(const rd_config_t *cf);

/* Writes into FD from now on (what was buffered goes to the old file). */
void rd_accesslog_adopt(int fd);

bool rd_accesslog_enabled(void);

/* One request. KEY: the client's address as rd_limit_key() makes it. */
void rd_accesslog_add(const uint8_t key[16], uint16_t port, int transport,
                      const rd_request_t *req, unsigned status, size_t bytes_in,
                      size_t bytes_out, uint64_t duration_ns);

/* Writes the buffer out when it is due; returns TIMEOUT_MS, or less when
 * the buffer must be written sooner. */
int rd_accesslog_flush_due(uint64_t now_ms, int timeout_ms);

/* Writes what is buffered and closes (worker exit). */
void rd_accesslog_close(void);

#endif
