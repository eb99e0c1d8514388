/* Process-wide state, in one place (nginx's cycle): what a worker is given
 * to run with. */
#ifndef RD_CYCLE_H
#define RD_CYCLE_H

#include <stddef.h>

#include "rd_coins.h"
#include "rd_config.h"
#include "rd_limit.h"
#include "rd_listener.h"
#include "rd_stats.h"

struct rd_modset;

typedef struct rd_cycle {
    rd_config_t *config;
    rd_listener_t *listeners;
    size_t listener_count;
    rd_stats_t *stats;          /* shared by every worker, across reloads */
    rd_limit_t *limits;         /* the same */
    rd_coins_shared_t *coins;   /* the coin store, made before the first fork; NULL: none */
    struct rd_modset *modules;  /* the generation's command modules (rd_modload.h) */
} rd_cycle_t;

#endif
