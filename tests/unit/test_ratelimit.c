/* Unit tests for the token buckets of lg.ratelimit. */
#include "ratelimit.h"

#include "unit.h"

#define MS 1000000ULL

/* Requests every `every` ns for `span` ns: how many got a token. */
static unsigned
passes(const struct rate_limit *rl, uint64_t start, uint64_t every, uint64_t span)
{
    uint64_t full_at = 0, t;
    unsigned n = 0;

    for (t = start; t < start + span; t += every)
        n += rate_take(rl, &full_at, t);
    return n;
}

static void
test_bucket(void)
{
    struct rate_limit rl = rate_limit_make(100, 10);
    uint64_t full_at = 0, now = 5000 * MS;
    int i;

    CHECK_U64(rl.interval_ns, 10 * MS);
    CHECK_EQ(rate_tokens(&rl, full_at, now), 10);          /* starts full */
    for (i = 0; i < 10; i++)
        CHECK(rate_take(&rl, &full_at, now));
    CHECK(!rate_take(&rl, &full_at, now));                 /* burst spent */
    CHECK_EQ(rate_tokens(&rl, full_at, now), 0);
    CHECK(!rate_take(&rl, &full_at, now + 9 * MS));
    CHECK(rate_take(&rl, &full_at, now + 10 * MS));        /* one interval: one token */
    CHECK(!rate_take(&rl, &full_at, now + 10 * MS));
    CHECK_EQ(rate_tokens(&rl, full_at, now + 60 * MS), 5);
    CHECK_EQ(rate_tokens(&rl, full_at, now + 10000 * MS), 10);  /* never more than burst */
}

static void
test_rate(void)
{
    struct rate_limit rl = rate_limit_make(100, 10);

    /* 1,000 requests over one second: the burst, then 100 a second. */
    CHECK_EQ(passes(&rl, 1000 * MS, 1 * MS, 1000 * MS), 109);
    /* Slower than the rate: all pass. */
    CHECK_EQ(passes(&rl, 1000 * MS, 20 * MS, 1000 * MS), 50);
    rl = rate_limit_make(0.5, 1);                          /* one every 2 s */
    CHECK_EQ(passes(&rl, 1000 * MS, 100 * MS, 10000 * MS), 5);
}

static void
test_shared(void)
{
    struct rate_limit rl = rate_limit_make(1000, 3);
    _Atomic uint64_t full_at = 0;
    uint64_t now = 77 * MS;

    CHECK(rate_take_shared(&rl, &full_at, now));
    CHECK(rate_take_shared(&rl, &full_at, now));
    CHECK(rate_take_shared(&rl, &full_at, now));
    CHECK(!rate_take_shared(&rl, &full_at, now));
    CHECK(rate_take_shared(&rl, &full_at, now + 1 * MS));
}

/* The extremes the policy allows neither overflow nor stop the bucket. */
static void
test_extremes(void)
{
    struct rate_limit rl = rate_limit_make(0.001, 1000000000);
    uint64_t full_at = 0, now = 1000 * MS;

    CHECK_U64(rl.burst_ns, UINT64_C(1) << 62);   /* saturated, not wrapped */
    CHECK(rate_take(&rl, &full_at, now));
    CHECK(rate_take(&rl, &full_at, now));
    rl = rate_limit_make(1e9, 1);
    full_at = 0;
    CHECK(rate_take(&rl, &full_at, now));
    CHECK(!rate_take(&rl, &full_at, now));
    CHECK(rate_take(&rl, &full_at, now + 1));
}

int
main(void)
{
    test_bucket();
    test_rate();
    test_shared();
    test_extremes();
    return UNIT_DONE();
}
