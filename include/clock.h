/*
 * clock.h: the two clocks of the request path.
 *
 * clock_ms is coarse (the kernel's tick, about 4 ms here) and cheap: it is
 * what deadlines are measured with. clock_ns is precise, for round-trip
 * times; both read CLOCK_MONOTONIC through the vDSO, so no system call.
 * clock_unix is the wall clock in whole seconds, read precisely: time()
 * reads the coarse clock, which can still say the last second a few
 * milliseconds after the log's own timestamps have moved on.
 */
#ifndef CLOCK_H
#define CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on a monotonic clock (cheap, coarse). */
static inline uint64_t
clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Nanoseconds on a monotonic clock (about 16 ns a read). */
static inline uint64_t
clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Unix seconds, precise (agrees with gettimeofday and the log). */
static inline int64_t
clock_unix(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

#endif
