/*
 * histogram.c: power-of-two latency buckets, merge and quantiles.
 *
 * Recording is a multiplication (the division by a constant), a
 * count-leading-zeros and two relaxed stores: cheap enough for every backend
 * reply. The count is not kept apart: it is the sum of the buckets. Buckets double, so a quantile is known to
 * within its bucket (a factor of two at worst, less after interpolation).
 */
#include "histogram.h"

#define RELAXED_ADD(field, n) \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), \
                     __ATOMIC_RELAXED)
#define RELAXED_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

unsigned
histogram_bucket(uint64_t ns)
{
    uint64_t us;
    unsigned b;

    if (ns > ((uint64_t)1 << 62))       /* centuries: keeps the rounding below from wrapping */
        return HISTOGRAM_BUCKETS - 1;
    us = (ns + 999) / 1000;             /* d <= 2^b us  <=>  ceil(d / 1 us) <= 2^b */
    if (us <= 1)
        return 0;
    b = 64 - (unsigned)__builtin_clzll(us - 1);
    return b < HISTOGRAM_BUCKETS - 1 ? b : HISTOGRAM_BUCKETS - 1;
}

uint64_t
histogram_bucket_bound_ns(unsigned b)
{
    if (b >= HISTOGRAM_BUCKETS - 1)
        return UINT64_MAX;
    return ((uint64_t)1 << b) * 1000;
}

void
histogram_record(struct histogram *h, uint64_t ns)
{
    RELAXED_ADD(h->buckets[histogram_bucket(ns)], 1);
    RELAXED_ADD(h->sum_ns, ns);
}

uint64_t
histogram_count(const struct histogram *h)
{
    uint64_t n = 0;
    unsigned b;

    for (b = 0; b < HISTOGRAM_BUCKETS; b++)
        n += RELAXED_READ(h->buckets[b]);
    return n;
}

void
histogram_merge(struct histogram *dst, const struct histogram *src)
{
    unsigned b;

    for (b = 0; b < HISTOGRAM_BUCKETS; b++)
        dst->buckets[b] += RELAXED_READ(src->buckets[b]);
    dst->sum_ns += RELAXED_READ(src->sum_ns);
}

uint64_t
histogram_quantile(const struct histogram *h, double q)
{
    uint64_t total = histogram_count(h), seen = 0;
    double rank;
    unsigned b;

    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    rank = q * (double)total;
    for (b = 0; b < HISTOGRAM_BUCKETS; b++) {
        uint64_t n = h->buckets[b], lo, hi;

        if (n == 0 || (double)(seen + n) < rank) {
            seen += n;
            continue;
        }
        lo = b == 0 ? 0 : histogram_bucket_bound_ns(b - 1);
        if (b == HISTOGRAM_BUCKETS - 1)
            return lo;
        hi = histogram_bucket_bound_ns(b);
        return lo + (uint64_t)((double)(hi - lo) * ((rank - (double)seen) / (double)n));
    }
    return histogram_bucket_bound_ns(HISTOGRAM_BUCKETS - 2);
}
