/* Unit tests for the latency histogram: bucketing, merge, quantiles. */
#include "histogram.h"

#include <stdint.h>

#include "unit.h"

#define US 1000ull
#define MS 1000000ull

static void
test_buckets(void)
{
    CHECK_EQ(histogram_bucket(0), 0);
    CHECK_EQ(histogram_bucket(1), 0);
    CHECK_EQ(histogram_bucket(1 * US), 0);          /* bounds are inclusive */
    CHECK_EQ(histogram_bucket(1 * US + 1), 1);
    CHECK_EQ(histogram_bucket(2 * US), 1);
    CHECK_EQ(histogram_bucket(2 * US + 1), 2);
    CHECK_EQ(histogram_bucket(4 * US), 2);
    CHECK_EQ(histogram_bucket(5 * US), 3);
    CHECK_EQ(histogram_bucket(100 * US), 7);        /* 64 us < 100 us <= 128 us */
    CHECK_EQ(histogram_bucket(128 * US), 7);
    CHECK_EQ(histogram_bucket(1 * MS), 10);         /* 512 us < 1 ms <= 1024 us */
    CHECK_EQ(histogram_bucket(16777216 * US), 24);  /* the last bounded bucket */
    CHECK_EQ(histogram_bucket(16777216 * US + 1), HISTOGRAM_BUCKETS - 1);
    CHECK_EQ(histogram_bucket(UINT64_MAX), HISTOGRAM_BUCKETS - 1);

    CHECK_U64(histogram_bucket_bound_ns(0), 1 * US);
    CHECK_U64(histogram_bucket_bound_ns(7), 128 * US);
    CHECK_U64(histogram_bucket_bound_ns(HISTOGRAM_BUCKETS - 1), UINT64_MAX);
    /* Every bound falls in its own bucket, one nanosecond more in the next. */
    for (unsigned b = 0; b + 1 < HISTOGRAM_BUCKETS; b++) {
        CHECK_EQ(histogram_bucket(histogram_bucket_bound_ns(b)), b);
        CHECK_EQ(histogram_bucket(histogram_bucket_bound_ns(b) + 1), b + 1);
    }
}

static void
test_record_and_merge(void)
{
    struct histogram a = { 0 }, b = { 0 }, sum = { 0 };

    histogram_record(&a, 50 * US);
    histogram_record(&a, 50 * US);
    histogram_record(&a, 3 * MS);
    histogram_record(&b, 50 * US);
    histogram_record(&b, 20 * 1000 * MS);           /* 20 s: overflow bucket */
    CHECK_U64(histogram_count(&a), 3);
    CHECK_U64(a.sum_ns, 100 * US + 3 * MS);
    CHECK_U64(a.buckets[histogram_bucket(50 * US)], 2);

    histogram_merge(&sum, &a);
    histogram_merge(&sum, &b);
    CHECK_U64(histogram_count(&sum), 5);
    CHECK_U64(sum.sum_ns, 150 * US + 3 * MS + 20 * 1000 * MS);
    CHECK_U64(sum.buckets[histogram_bucket(50 * US)], 3);
    CHECK_U64(sum.buckets[histogram_bucket(3 * MS)], 1);
    CHECK_U64(sum.buckets[HISTOGRAM_BUCKETS - 1], 1);
    /* Merging leaves the sources alone. */
    CHECK_U64(histogram_count(&a), 3);
    CHECK_U64(histogram_count(&b), 2);
}

static void
test_quantiles(void)
{
    struct histogram h = { 0 };
    uint64_t p50, p99;
    int i;

    CHECK_U64(histogram_quantile(&h, 0.5), 0);      /* empty */

    /* 100 observations in (64, 128] us: quantiles interpolate within it. */
    for (i = 0; i < 100; i++)
        histogram_record(&h, 100 * US);
    p50 = histogram_quantile(&h, 0.5);
    CHECK_U64(p50, 96 * US);                         /* halfway from 64 to 128 */
    CHECK_U64(histogram_quantile(&h, 1.0), 128 * US);
    CHECK_U64(histogram_quantile(&h, 0.0), 64 * US);

    /* Three slow requests in a hundred: p50 stays, p99 moves to the slow bucket. */
    struct histogram mixed = { 0 };

    for (i = 0; i < 97; i++)
        histogram_record(&mixed, 100 * US);
    for (i = 0; i < 3; i++)
        histogram_record(&mixed, 900 * MS);
    p50 = histogram_quantile(&mixed, 0.5);
    p99 = histogram_quantile(&mixed, 0.99);
    CHECK(p50 > 64 * US && p50 <= 128 * US);
    CHECK(p99 > 524288 * US && p99 <= 1048576 * US);   /* 900 ms's bucket */
    CHECK_U64(histogram_quantile(&mixed, 0.97), 128 * US);
    /* Out-of-range q is clamped. */
    CHECK_U64(histogram_quantile(&h, 2.0), histogram_quantile(&h, 1.0));
    CHECK_U64(histogram_quantile(&h, -1.0), histogram_quantile(&h, 0.0));

    /* A quantile in the unbounded bucket reports its lower bound. */
    struct histogram slow = { 0 };

    histogram_record(&slow, 60ull * 1000 * MS);
    CHECK_U64(histogram_quantile(&slow, 0.5),
              histogram_bucket_bound_ns(HISTOGRAM_BUCKETS - 2));
}

int
main(void)
{
    test_buckets();
    test_record_and_merge();
    test_quantiles();
    return UNIT_DONE();
}
