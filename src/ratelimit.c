/*
 * ratelimit.c: token buckets as GCRA (see ratelimit.h). A bucket that has
 * never been used (full_at 0) is full.
 */
#include "ratelimit.h"

struct rate_limit
rate_limit_make(double rate, unsigned burst)
{
    struct rate_limit rl;
    double interval = 1e9 / rate;

    rl.interval_ns = interval < 1 ? 1 : (uint64_t)interval;
    rl.burst_ns = rl.interval_ns * (burst > 0 ? burst : 1);
    return rl;
}

/* The bucket's next full_at if a token is taken now, or 0 when none is left. */
static uint64_t
rate_next(const struct rate_limit *rl, uint64_t full_at, uint64_t now_ns)
{
    uint64_t next = (full_at > now_ns ? full_at : now_ns) + rl->interval_ns;

    return next - now_ns <= rl->burst_ns ? next : 0;
}

bool
rate_take(const struct rate_limit *rl, uint64_t *full_at, uint64_t now_ns)
{
    uint64_t next = rate_next(rl, *full_at, now_ns);

    if (next == 0)
        return false;
    *full_at = next;
    return true;
}

bool
rate_take_shared(const struct rate_limit *rl, _Atomic uint64_t *full_at, uint64_t now_ns)
{
    uint64_t seen = atomic_load_explicit(full_at, memory_order_relaxed), next;

    do {
        next = rate_next(rl, seen, now_ns);
        if (next == 0)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(full_at, &seen, next,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

uint64_t
rate_tokens(const struct rate_limit *rl, uint64_t full_at, uint64_t now_ns)
{
    uint64_t ahead = full_at > now_ns ? full_at - now_ns : 0;

    return ahead >= rl->burst_ns ? 0 : (rl->burst_ns - ahead) / rl->interval_ns;
}
