/* The pid file, locked for as long as the master runs.
 *
 * The master holds an open file description lock (fcntl F_OFD_SETLK) on
 * the file from before it binds anything until it exits: the kernel drops
 * the lock when the master dies, however it dies. So a second raidad sees
 * that an instance is running and refuses to start without touching the
 * file, and "raidad -s" tells a live master from a stale file (left by a
 * master killed with SIGKILL, whose pid may since belong to any process)
 * and never signals the pid of a stale one. The file is opened with
 * O_NOFOLLOW: a symbolic link planted in its place is refused. */
#ifndef RD_PIDFILE_H
#define RD_PIDFILE_H

#include <stdio.h>
#include <sys/types.h>

/* Creates PATH (and its folder, /run/raidad may be gone after a reboot),
 * or takes over a stale one, locks it and writes this process's pid.
 * Returns the descriptor, to keep open while serving, or -1 with errno:
 * EWOULDBLOCK when a running instance holds it (*HOLDER its pid, or 0 when
 * the file does not say), ELOOP when PATH is a symbolic link, EINVAL when
 * it is not a regular file, or the cause. */
int rd_pidfile_create(const char *path, pid_t *holder);

/* Removes PATH and closes FD, the descriptor rd_pidfile_create gave: only
 * the instance holding the lock removes the file. */
void rd_pidfile_remove(const char *path, int fd);

/* The pid of the instance running with PATH. 0 when none runs: errno
 * ENOENT when there is no file, ESRCH when the file is stale (no one holds
 * its lock). -1 with errno on any other failure (EINVAL: the file holds no
 * pid). */
pid_t rd_pidfile_running(const char *path);

/* rd_pidfile_running for "raidad -s": the pid, or -1 with why none runs
 * said on OUT (a stale file's pid may be anyone's now: never signalled). */
pid_t rd_pidfile_master(const char *path, FILE *out);

#endif
