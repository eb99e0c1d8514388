/* raidad's main: the command line (-c, -t, -s SIGNAL), the checks of -t,
 * then the master (src/rd_master.c). See man/raidad.8. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rd_coins.h"
#include "rd_coins_disk.h"
#include "rd_config.h"
#include "rd_cycle.h"
#include "rd_log.h"
#include "rd_master.h"
#include "rd_pidfile.h"
#include "rd_proctitle.h"
#include "rd_status.h"

#define DEFAULT_CONF SYSCONFDIR "/raidad/raidad.conf"
#define RELOAD_WAIT_S 30
#define RELOAD_POLL_NS 200000000L   /* the status record, written once a second */

typedef struct options {
    const char *conf;
    const char *signal;
    int test_only;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: raidad [-c FILE] [-t] [-s reload|quit|stop|reopen|status] [-v] [-h]\n"
            "  -c FILE    configuration file (default " DEFAULT_CONF ")\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  signal the running master (found through pid_file):\n"
            "             reload (waits for the verdict), quit (graceful), stop (fast),\n"
            "             reopen (logs),\n"
            "             status (prints the running daemon's state; exit 0 when healthy)\n"
            "  -v         print the version and exit\n"
            "  -h         print this help and exit\n");
}

/* Returns -1 to go on, or the exit status when there is nothing to run. */
static int parse_options(int argc, char **argv, options_t *opt)
{
    int ch;

    opt->conf = DEFAULT_CONF;
    while ((ch = getopt(argc, argv, "c:s:tvh")) != -1) {
        switch (ch) {
        case 'c': opt->conf = optarg; break;
        case 's': opt->signal = optarg; break;
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

/* The verdict: 0 reloaded, 1 refused. */
static int reload_verdict(bool ok)
{
    if (ok)
        return 0;
    fprintf(stderr, "raidad: the reload was refused; the old configuration keeps serving "
            "(see the log)\n");
    return 1;
}

/* SIGHUP carrying RD_RELOAD_MAGIC asks the master for its verdict, which
 * comes back as SIGUSR1 (reloaded) or SIGUSR2 (refused: see its log). A
 * master of another user (the unit's raidad, this caller root) cannot
 * signal back: its status record, written before the verdict is told,
 * counts the verdicts and names their waiters, and is looked at while
 * waiting. */
static int signal_reload(pid_t pid, const char *pid_file)
{
    struct timespec slice = { .tv_nsec = RELOAD_POLL_NS };
    union sigval value = { .sival_int = RD_RELOAD_MAGIC };
    unsigned long before = 0, now;
    sigset_t mask;
    siginfo_t si;
    bool ok;

    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    (void)rd_status_read_verdict(pid_file, (long)pid, (long)getpid(), &before, &ok);
    if (sigqueue(pid, SIGHUP, value) < 0) {
        fprintf(stderr, "raidad: cannot signal process %ld: %s\n", (long)pid, strerror(errno));
        return 1;
    }
    for (long waited = 0; waited < RELOAD_WAIT_S * 1000000000L; waited += RELOAD_POLL_NS) {
        int sig = sigtimedwait(&mask, &si, &slice);

        if (sig > 0 && si.si_pid == pid)
            return reload_verdict(sig == SIGUSR1);
        /* A verdict counted since, told to this process. */
        if (sig < 0 && rd_status_read_verdict(pid_file, (long)pid, (long)getpid(), &now, &ok) == 1
            && now > before)
            return reload_verdict(ok);
    }
    fprintf(stderr, "raidad: no answer from process %ld to the reload\n", (long)pid);
    return 1;
}

static int send_signal(const rd_config_t *cf, const char *name)
{
    static const struct { const char *name; int sig; } sigs[] = {
        { "reload", SIGHUP }, { "quit", SIGQUIT }, { "stop", SIGTERM }, { "reopen", SIGUSR1 },
    };
    pid_t pid;

    if (strcmp(name, "status") == 0)
        return rd_status_show(cf, stdout);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        if (strcmp(name, sigs[i].name) != 0)
            continue;
        if (cf->pid_file[0] == '\0') {
            fprintf(stderr, "raidad: no pid_file is set: cannot find the master\n");
            return 1;
        }
        if ((pid = rd_pidfile_master(cf->pid_file, stderr)) < 0)
            return 1;
        if (sigs[i].sig == SIGHUP)
            return signal_reload(pid, cf->pid_file);
        if (kill(pid, sigs[i].sig) == 0)
            return 0;
        fprintf(stderr, "raidad: cannot signal process %ld: %s\n", (long)pid, strerror(errno));
        return 1;
    }
    fprintf(stderr, "raidad: unknown signal '%s' (reload, quit, stop, reopen or status)\n", name);
    return 2;
}

/* Each connection is a descriptor: raise the soft limit towards
 * max_descriptors as far as the hard limit allows, and say when it falls
 * short. */
static void raise_nofile(const rd_config_t *cf)
{
    struct rlimit rl;
    rlim_t want = cf->max_descriptors;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
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

/* Blocked before any process or thread exists, so that everything inherits
 * the mask and the signals arrive only through signalfd. */
static void block_signals(void)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGCHLD };
    sigset_t mask;

    sigemptyset(&mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&mask, sigs[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The coin store's folder is part of what -t tests: a server that would
 * not start says so now. */
static int check_data_dir(const rd_config_t *cf)
{
    rd_coins_conf_t conf;
    char err[PATH_MAX + 256];

    if (cf->data_dir[0] == '\0')
        return 0;
    rd_config_coins(cf, &conf);
    if (rd_coins_disk_check(cf->data_dir, conf.uid, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "raidad: %s\n", err);
    return -1;
}

/* -t: the file was read and its modules loaded; the data folder is left. */
static int test_verdict(const rd_config_t *cf, const char *path)
{
    if (check_data_dir(cf) < 0)
        return 1;
    printf("raidad: the configuration file %s is valid\n", path);
    return 0;
}

/* -s with any signal but reload: the file is read for its pid_file only. */
static int signal_only(const char *path, const char *name)
{
    char err[RD_CYCLE_ERR_MAX];
    rd_config_t *cf = rd_config_read(path, err, sizeof(err));
    int rc;

    if (cf == NULL) {
        fprintf(stderr, "%s\n", err);
        /* An error elsewhere in the file (an edit not yet reloaded) must
         * not keep the logs from being reopened or the daemon stopped. */
        if ((cf = rd_config_read_pid_file(path)) == NULL)
            return 1;
        fprintf(stderr, "raidad: sending '%s' all the same, to the master of pid_file %s\n",
                name, cf->pid_file);
    }
    rc = send_signal(cf, name);
    free(cf);
    return rc;
}

int main(int argc, char **argv)
{
    options_t opt = { 0 };
    rd_cycle_t cycle;
    char err[RD_CYCLE_ERR_MAX];
    int rc = parse_options(argc, argv, &opt);

    if (rc >= 0)
        return rc;
    /* A reload is checked whole first, modules included, as -t does: the
     * refusal names its FILE:LINE here. Other signals need the pid file only. */
    if (opt.signal != NULL && strcmp(opt.signal, "reload") != 0)
        return signal_only(opt.conf, opt.signal);
    /* The configuration's half of the first cycle (include/rd_cycle.h);
     * the master opens the rest. dlopen is done here, in the master, never
     * in a worker under its system call filter. */
    if (rd_cycle_configure(&cycle, opt.conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (opt.test_only || opt.signal != NULL) {
        rc = opt.test_only ? test_verdict(cycle.config, opt.conf)
                           : send_signal(cycle.config, opt.signal);
        rd_cycle_release(&cycle, NULL);
        return rc;
    }
    rd_log_set_level(cycle.config->log_level);
    if (rd_log_open(cycle.config->error_log) < 0)
        fprintf(stderr, "raidad: cannot open the log %s: %s\n", cycle.config->error_log,
                strerror(errno));
    rd_proctitle_init(argc, argv);
    raise_nofile(cycle.config);
    block_signals();
    return rd_master_run(opt.conf, &cycle);
}
