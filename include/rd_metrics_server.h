/* The metrics endpoint: GET /metrics over HTTP (libmicrohttpd), served by
 * a process of its own, forked and supervised by the master like nginx's
 * cache manager. The master binds its sockets (it may need root for the
 * port) and keeps them across the process's restarts; the process drops
 * to the workers' user, and a slow or hostile client of the endpoint can
 * only ever occupy that process: never a worker, never the master's loop.
 *
 * Everything here but the child's own code runs in the master. */
#ifndef RD_METRICS_SERVER_H
#define RD_METRICS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rd_config.h"

/* Binds CF's metrics_listen addresses (none: nothing to do). -1 (logged)
 * when one cannot be bound. */
int rd_metrics_server_open(const rd_config_t *cf);

/* Called on every turn of the master's loop: starts the process when it
 * is due (at first, and after it died). */
void rd_metrics_server_tick(const rd_config_t *cf, uint64_t now_ms);

/* True when PID was the metrics process (it will be started again). */
bool rd_metrics_server_reaped(pid_t pid, int status);

/* A reload committed CF: new addresses are bound (the old kept if they
 * cannot be), and the process restarts with the new settings. */
void rd_metrics_server_reload(const rd_config_t *cf);

/* The daemon is stopping: the process is told to stop and not restarted. */
void rd_metrics_server_stop(void);

/* At the master's exit: stops the process (bounded wait), closes the sockets. */
void rd_metrics_server_close(void);

/* Hands the reopened error log to the process. */
void rd_metrics_server_send_log(int fd);

/* In a worker just forked: closes the endpoint's descriptors. */
void rd_metrics_server_close_in_child(void);

/* The process's PID, 0 when none runs. */
pid_t rd_metrics_server_pid(void);

#endif
