/* The monotonic clock, the one every timeout, deadline and duration in
 * raidad reads: wall-clock steps (NTP, an operator's date) must never fire
 * a timeout or make a duration negative. Inline: the data path reads it
 * several times per request. */
#ifndef RD_CLOCK_H
#define RD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rd_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rd_clock_us(void)
{
    return rd_clock_ns() / 1000u;
}

static inline uint64_t rd_clock_ms(void)
{
    return rd_clock_ns() / 1000000u;
}

#endif
