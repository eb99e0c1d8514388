/* tests/seccomp_deny: runs a command under a seccomp filter that makes the
 * named system calls fail with EPERM, as the shipped systemd unit's
 * SystemCallFilter= and SystemCallErrorNumber=EPERM do, for tests that
 * start raidad as the unit would without systemd as PID 1:
 *
 *   tests/seccomp_deny sched_setscheduler sched_setaffinity -- raidad -c FILE
 *
 * The filter is inherited across fork and exec, and narrower filters the
 * workers load add to it. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <seccomp.h>

int main(int argc, char **argv)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int i;

    if (ctx == NULL) {
        fprintf(stderr, "seccomp_deny: seccomp_init failed\n");
        return 2;
    }
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int nr = seccomp_syscall_resolve_name(argv[i]);

        if (nr == __NR_SCMP_ERROR || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0) {
            fprintf(stderr, "seccomp_deny: %s: no such system call\n", argv[i]);
            return 2;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: seccomp_deny SYSCALL... -- COMMAND [ARG...]\n");
        return 2;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0) {
        perror("seccomp_deny: loading the filter");
        return 2;
    }
    seccomp_release(ctx);
    execvp(argv[i + 1], argv + i + 1);
    fprintf(stderr, "seccomp_deny: %s: %s\n", argv[i + 1], strerror(errno));
    return 127;
}
