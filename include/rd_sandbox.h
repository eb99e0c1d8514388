/* What a worker may do, shrunk to what serving needs, so that a worker
 * broken into by a request cannot do much more than answer badly: it runs
 * as an unprivileged account with no capabilities, and under a seccomp
 * system call filter that kills it, with a log line naming the call, on
 * anything else (docs/security.md lists both). The master respawns it. */
#ifndef RD_SANDBOX_H
#define RD_SANDBOX_H

#include "rd_config.h"

/* Exit status of a worker the filter killed (128 + SIGSYS, as a shell says). */
#define RD_SANDBOX_KILLED_STATUS 159

/* In a new child of the master (a worker, or the metrics process; WHO
 * names it in the log), before it sets up: started as root, becomes CF's user
 * and group (the default account, when missing, falls back to
 * RD_FALLBACK_USER; an empty user or a root one stays root, with a
 * warning); started as another user, gives up every capability it was
 * given (systemd's AmbientCapabilities=). Returns -1, logged, on failure. */
int rd_sandbox_drop_privileges(const rd_config_t *cf, const char *who);

/* In a worker that is set up (sockets, threads, files open): loads the
 * system call filter into every thread, unless worker_seccomp is false or
 * the build or the run cannot take it (sanitizers, valgrind), which it
 * logs. Returns -1, logged, on failure. */
int rd_sandbox_enter(const rd_config_t *cf);

#endif
