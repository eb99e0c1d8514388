/* Messages to the service manager (sd_notify); nothing when raidad was
 * built without libsystemd or runs without NOTIFY_SOCKET. */
#ifndef RD_NOTIFY_H
#define RD_NOTIFY_H

#include <stdint.h>

void rd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd asks for (WATCHDOG_USEC), or 0. */
uint64_t rd_notify_watchdog_usec(void);

#endif
