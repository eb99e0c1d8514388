/* The daemon's monotonic clock in milliseconds: deadlines, timeouts and
 * rate limits are measured with it, never with the wall clock, which an
 * operator or NTP may move. A leaf module: anything may use it. */
#ifndef RD_CLOCK_H
#define RD_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t rd_now_ms(void);

#endif
