/*
 * ratelimit.h: token buckets for lg.ratelimit (pure: the caller gives the
 * time).
 *
 * A bucket is kept as one number, the time at which it will be full again
 * ("theoretical arrival time", the GCRA form of a token bucket): a request
 * takes a token when that time, moved on by one token's interval, is at
 * most `burst` intervals ahead of now. One number makes the shared bucket a
 * single compare-and-swap, with no lock and no torn state between workers.
 */
#ifndef RATELIMIT_H
#define RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct rate_limit {
    uint64_t interval_ns;   /* one token's worth of time: 1 s / rate */
    uint64_t burst_ns;      /* burst tokens' worth: how far ahead the bucket may run */
};

/* Parameters for `rate` tokens a second and a bucket of `burst` (>= 1). */
struct rate_limit rate_limit_make(double rate, unsigned burst);

/* Take a token from a bucket only one thread uses; false when it is empty. */
bool rate_take(const struct rate_limit *rl, uint64_t *full_at, uint64_t now_ns);

/* The same for a bucket shared by threads (C11 atomics, lock-free). */
bool rate_take_shared(const struct rate_limit *rl, _Atomic uint64_t *full_at, uint64_t now_ns);

/* Whole tokens left in a bucket at now_ns. */
uint64_t rate_tokens(const struct rate_limit *rl, uint64_t full_at, uint64_t now_ns);

#endif
