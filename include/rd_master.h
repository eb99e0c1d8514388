/* The master process: binds the sockets once, forks the workers and
 * supervises them (reload, stop, respawn), and talks to systemd. */
#ifndef RD_MASTER_H
#define RD_MASTER_H

#include <stdint.h>

#include "rd_cycle.h"

/* sigqueue() value of a SIGHUP sent by "raidad -s reload": the master then
 * answers the sender with SIGUSR1 (reloaded) or SIGUSR2 (refused). */
#define RD_RELOAD_MAGIC 0x52444844

/* Serves until stopped; takes over FIRST, configured and not yet opened
 * (rd_cycle_configure), and opens it. Returns the exit status. */
int rd_master_run(const char *conf_path, rd_cycle_t *first);

#endif
