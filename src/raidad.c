#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rd_config.h"
#include "rd_cycle.h"
#include "rd_listener.h"
#include "rd_log.h"
#include "rd_notify.h"
#include "rd_stats.h"
#include "rd_worker.h"

#define DEFAULT_CONF SYSCONFDIR "/raidad/raidad.conf"

typedef struct options {
    const char *conf;
    int test_only;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: raidad [-c FILE] [-t] [-v] [-h]\n"
            "  -c FILE  configuration file (default " DEFAULT_CONF ")\n"
            "  -t       test the configuration and exit\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n");
}

/* Returns -1 to go on, or the exit status when there is nothing to run. */
static int parse_options(int argc, char **argv, options_t *opt)
{
    int ch;

    opt->conf = DEFAULT_CONF;
    while ((ch = getopt(argc, argv, "c:tvh")) != -1) {
        switch (ch) {
        case 'c': opt->conf = optarg; break;
        case 't': opt->test_only = 1; break;
        case 'v': printf("raidad %s (build %s)\n", PACKAGE_VERSION, RAIDAD_BUILD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Each connection is a descriptor: raise the soft limit towards
 * max_descriptors as far as the hard limit allows, and say when it falls
 * short. */
static void raise_nofile(const rd_config_t *cf)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = cf->max_descriptors;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        rd_log(RD_LOG_NOTICE, "max_descriptors %u is over the hard limit %lu: serving with %lu",
               cf->max_descriptors, (unsigned long)rl.rlim_max, (unsigned long)rl.rlim_max);
        want = rl.rlim_max;
    }
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        rd_log(RD_LOG_WARN, "setrlimit(NOFILE, %lu): %s", (unsigned long)want, strerror(errno));
}

/* Blocked before any thread exists, so that every thread inherits the mask
 * and the signals reach only the worker's signalfd. */
static void block_signals(void)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int serve(rd_config_t *cf)
{
    rd_cycle_t cycle = { .config = cf };
    int rc;

    if (rd_listeners_open(cf, &cycle.listeners, &cycle.listener_count) < 0)
        return 1;
    cycle.stats = rd_stats_create();
    if (cycle.stats == NULL) {
        rd_log(RD_LOG_CRIT, "cannot map the statistics: %s", strerror(errno));
        rd_listeners_close(cycle.listeners, cycle.listener_count);
        return 1;
    }
    for (size_t i = 0; i < cf->listen_count; i++)
        rd_log(RD_LOG_NOTICE, "listening on %s (tcp, udp)", cf->listen[i].text);
    /* The sockets are bound: connections queue in the kernel until the
     * loop takes them, so none is refused from here on. */
    rd_notify("READY=1\nSTATUS=serving on %s\nMAINPID=%ld", cf->listen[0].text, (long)getpid());
    rc = rd_worker_run(&cycle);
    rd_notify("STOPPING=1");
    rd_stats_destroy(cycle.stats);
    rd_listeners_close(cycle.listeners, cycle.listener_count);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    options_t opt = { 0 };
    rd_config_t *cf;
    char err[512];
    int rc = parse_options(argc, argv, &opt);

    if (rc >= 0)
        return rc;
    cf = malloc(sizeof(*cf));
    if (cf == NULL) {
        fprintf(stderr, "raidad: out of memory\n");
        return 1;
    }
    rd_config_defaults(cf);
    if (rd_config_load(cf, opt.conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        free(cf);
        return 1;
    }
    if (opt.test_only) {
        printf("raidad: the configuration file %s syntax is ok\n", opt.conf);
        free(cf);
        return 0;
    }
    rd_log_set_level(cf->log_level);
    raise_nofile(cf);
    block_signals();
    rc = serve(cf);
    free(cf);
    return rc;
}
