/* The cycle: the state of one configuration generation, as nginx's cycle
 * is. It holds what the file said (the configuration and its command
 * modules), the listening sockets bound for it, and the state every
 * generation shares (statistics, per-address limits, the coin store). The
 * master holds one while serving and two during a reload: the serving
 * generation's and the next one's, which takes over the old sockets where
 * the addresses did not change and shares the rest. A worker is given the
 * cycle of its generation to run with (include/rd_worker.h).
 *
 * It is built in two steps, in the same order at start and at reload:
 * rd_cycle_configure() reads the file and loads its modules, opening
 * nothing (what "raidad -t" checks, and where a reload of a bad file is
 * refused); rd_cycle_open() then binds and shares. At start the master
 * locks the pid file between the two, so that a second instance is refused
 * before it binds anything. */
#ifndef RD_CYCLE_H
#define RD_CYCLE_H

#include <limits.h>
#include <stddef.h>

#include "rd_coins.h"
#include "rd_config.h"
#include "rd_limit.h"
#include "rd_listener.h"
#include "rd_stats.h"

struct rd_module_set;

/* Room for any reason a cycle is refused (a path and what went wrong). */
#define RD_CYCLE_ERR_MAX (PATH_MAX + 256)

typedef struct rd_cycle {
    rd_config_t *config;
    rd_listener_t *listeners;
    size_t listener_count;
    rd_stats_t *stats;          /* shared by every worker, across reloads */
    rd_limit_t *limits;         /* the same */
    rd_coins_shared_t *coins;   /* the coin store, made before the first fork; NULL: none */
    struct rd_module_set *modules;  /* the generation's command modules (rd_modload.h) */
} rd_cycle_t;

/* Reads PATH into C and loads its modules; nothing is opened. Returns 0,
 * or -1 with C empty and "FILE:LINE: what" in ERR. */
int rd_cycle_configure(rd_cycle_t *c, const char *path, char *err, size_t err_len);

/* Opens the configured cycle C after OLD, the generation serving now, or
 * NULL at start. With OLD, C takes over OLD's sockets whose address and
 * type are unchanged and binds only new ones, and shares OLD's statistics,
 * limits and coin store (data_dir changes only with a restart). Without,
 * it binds every socket and creates those. Returns 0, or -1 with the
 * reason in ERR and C as configured, nothing of it opened. */
int rd_cycle_open(rd_cycle_t *c, const rd_cycle_t *old, char *err, size_t err_len);

/* Releases C and empties it: closes its sockets and frees what it does not
 * share with KEEP (the other generation, or NULL when C is the last one).
 * The last release finishes the coin store (rd_coins_finish): no worker
 * may run any more. */
void rd_cycle_release(rd_cycle_t *c, const rd_cycle_t *keep);

#endif
