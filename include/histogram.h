/*
 * histogram.h: latency histograms with log-scale (power of two) buckets.
 *
 * Bucket b counts durations d with 2^(b-1) us < d <= 2^b us (bucket 0: d <=
 * 1 us); the last bucket counts everything longer. Upper bounds are
 * inclusive, as Prometheus' `le` label wants. A histogram is written by one
 * thread and read by others: recording uses relaxed atomic stores of values
 * only the owner changes, so no locked instruction is needed; a reader may
 * see a count from just before or just after a record, never a torn value.
 * Pure: no dependency on the rest of luagent.
 */
#ifndef HISTOGRAM_H
#define HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_BUCKETS 26    /* <= 1 us ... <= 2^24 us (16.8 s), then +Inf */

struct histogram {
    uint64_t buckets[HISTOGRAM_BUCKETS];
    uint64_t sum_ns;            /* total of the observations, in nanoseconds */
};

/* The bucket a duration (in nanoseconds) falls in. */
unsigned histogram_bucket(uint64_t ns);

/* Upper bound of bucket b in nanoseconds; UINT64_MAX for the last one. */
uint64_t histogram_bucket_bound_ns(unsigned b);

/* Count one duration (owner thread only). */
void histogram_record(struct histogram *h, uint64_t ns);

/* Observations (the sum of the buckets). */
uint64_t histogram_count(const struct histogram *h);

/* Add src (read with relaxed atomic loads) into dst (private to the caller). */
void histogram_merge(struct histogram *dst, const struct histogram *src);

/*
 * The q-quantile (0 <= q <= 1) in nanoseconds, interpolated linearly inside
 * its bucket, as Prometheus' histogram_quantile() does; a quantile in the last
 * (unbounded) bucket reports that bucket's lower bound. 0 when empty.
 */
uint64_t histogram_quantile(const struct histogram *h, double q);

#endif
