/*
 * ratelimit.c: token buckets as GCRA (see ratelimit.h). A bucket that has
 * never been used (full_at 0) is full.
 */
#include "ratelimit.h"

#define BUCKET_NS_MAX   (UINT64_C(1) << 62)    /* far enough ahead, and no overflow near it */

struct rate_limit
rate_limit_make(double rate, unsigned burst)
{
    struct rate_limit rl;
    double interval = 1e9 / rate;

    if (burst == 0)
        burst = 1;
    rl.interval_ns = interval < 1 ? 1 : interval > BUCKET_NS_MAX ? BUCKET_NS_MAX
                   : (uint64_t)interval;
    /* A slow rate with a big burst would overflow: such a bucket is
     * effectively never empty, and ~146 years of tokens say as much. */
    rl.burst_ns = rl.interval_ns > BUCKET_NS_MAX / burst ? BUCKET_NS_MAX
                : rl.interval_ns * burst;
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
