/* Building and releasing a configuration generation's state (see
 * include/rd_cycle.h): the one place that knows what a generation holds,
 * what it takes over from the one before it, and what it shares with it.
 * The master calls it at start and at each reload (src/rd_master.c),
 * "raidad -t" its first step (src/raidad.c). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_cycle.h"
#include "rd_log.h"
#include "rd_modload.h"

int rd_cycle_configure(rd_cycle_t *c, const char *path, char *err, size_t err_len)
{
    *c = (rd_cycle_t){ 0 };
    if ((c->config = rd_config_read(path, err, err_len)) == NULL)
        return -1;
    if ((c->modules = rd_modload_modules(c->config, err, err_len)) == NULL) {
        free(c->config);
        c->config = NULL;
        return -1;
    }
    return 0;
}

/* Addresses the per-address table can follow: room for every connection
 * the workers may hold, twice over, within reason. */
static size_t limit_capacity(const rd_config_t *cf)
{
    size_t want = (size_t)cf->max_descriptors * 2;

    return want < 4096 ? 4096 : want > (1u << 20) ? (1u << 20) : want;
}

/* Before any worker exists: the check, the journal's replay and the
 * shared memory. After the fork the master never looks at that memory. */
static int cycle_open_coins(rd_cycle_t *c, char *err, size_t err_len)
{
    rd_coins_conf_t conf;

    if (c->config->data_dir[0] == '\0')
        return 0;
    rd_config_coins(c->config, &conf);
    if ((c->coins = rd_coins_prepare(&conf, err, err_len)) == NULL)
        return -1;
    rd_log(RD_LOG_NOTICE, "coin store %s ready", c->config->data_dir);
    return 0;
}

/* The state every generation shares, made once at start. */
static int cycle_create_shared(rd_cycle_t *c, char *err, size_t err_len)
{
    if ((c->stats = rd_stats_create()) == NULL) {
        snprintf(err, err_len, "cannot create the statistics: out of memory");
        return -1;
    }
    if ((c->limits = rd_limit_create(limit_capacity(c->config))) == NULL) {
        snprintf(err, err_len, "cannot create the per-address table: out of memory");
        return -1;
    }
    return cycle_open_coins(c, err, err_len);
}

static void cycle_share(rd_cycle_t *c, const rd_cycle_t *old)
{
    c->stats = old->stats;
    c->limits = old->limits;
    c->coins = old->coins;
    if (strcmp(c->config->data_dir, old->config->data_dir) != 0)
        rd_log(RD_LOG_WARN, "data_dir changes only with a restart: still serving %s",
               old->coins != NULL ? rd_coins_shared_dir(old->coins) : "no coin store");
}

/* Closes what C opened and does not share with KEEP; leaves its
 * configuration and modules. */
static void cycle_close(rd_cycle_t *c, const rd_cycle_t *keep)
{
    rd_listeners_release(c->listeners, c->listener_count,
                         keep ? keep->listeners : NULL, keep ? keep->listener_count : 0);
    c->listeners = NULL;
    c->listener_count = 0;
    if (keep == NULL || keep->stats != c->stats)
        rd_stats_destroy(c->stats);
    if (keep == NULL || keep->limits != c->limits)
        rd_limit_destroy(c->limits);
    if (keep == NULL || keep->coins != c->coins)
        rd_coins_finish(c->coins);
    c->stats = NULL;
    c->limits = NULL;
    c->coins = NULL;
}

int rd_cycle_open(rd_cycle_t *c, const rd_cycle_t *old, char *err, size_t err_len)
{
    int rc;

    /* The listeners log each socket they cannot bind, and why. */
    if (old != NULL)
        rc = rd_listeners_open_reusing(c->config, old->listeners, old->listener_count,
                                       &c->listeners, &c->listener_count);
    else
        rc = rd_listeners_open(c->config, &c->listeners, &c->listener_count);
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the %slistening sockets", old != NULL ? "new " : "");
        return -1;
    }
    if (old != NULL) {
        cycle_share(c, old);
        return 0;
    }
    if (cycle_create_shared(c, err, err_len) < 0) {
        cycle_close(c, NULL);
        return -1;
    }
    return 0;
}

void rd_cycle_release(rd_cycle_t *c, const rd_cycle_t *keep)
{
    cycle_close(c, keep);
    rd_module_set_free(c->modules);
    free(c->config);
    *c = (rd_cycle_t){ 0 };
}
