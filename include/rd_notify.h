/* Messages to the service manager (sd_notify); nothing when raidad was
 * built without libsystemd or runs without NOTIFY_SOCKET. */
#ifndef RD_NOTIFY_H
#define RD_NOTIFY_H

void rd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
