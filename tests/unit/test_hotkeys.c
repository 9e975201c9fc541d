/* Unit tests for the hot-key sketch: heavy keys found, bounded, decayed, merged. */
#include "hotkeys.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "unit.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t
next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void
see(struct hotkeys *hk, const char *key)
{
    uint32_t len = (uint32_t)strlen(key);

    hotkeys_count(hk, hotkeys_hash(key, len), key, len, 7);
}

static double
rate_of(const struct hotkeys *hk, const char *key, uint64_t now)
{
    uint32_t len = (uint32_t)strlen(key);

    return hotkeys_rate(hk, hotkeys_hash(key, len), key, len, now);
}

/* Is key among the first n of a top list? */
static bool
in_top(const struct hotkey_view *top, int n, const char *key)
{
    int i;

    for (i = 0; i < n; i++)
        if (top[i].klen == strlen(key) && memcmp(top[i].key, key, top[i].klen) == 0)
            return true;
    return false;
}

/*
 * 90% of reads on 10 keys, the rest spread over 100,000 others: the top 10
 * are exactly the ten heavy keys, with rates near the truth, although the
 * sketch holds only 64 keys.
 */
static void
test_skewed_stream(void)
{
    struct hotkeys *hk = hotkeys_new(64, 1, 0);
    struct hotkey_view top[10];
    char key[32];
    int i, n, found = 0;

    CHECK(hk != NULL);
    for (i = 0; i < 100000; i++) {
        if (next_random() % 10 < 9)
            snprintf(key, sizeof(key), "hot:%d", (int)(next_random() % 10));
        else
            snprintf(key, sizeof(key), "cold:%d", (int)(next_random() % 100000));
        see(hk, key);
    }
    /* All 100,000 reads in the first period (f = 0): rate = count. */
    n = hotkeys_top(hk, top, 10, 0);
    CHECK_EQ(n, 10);
    for (i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "hot:%d", i);
        found += in_top(top, n, key);
    }
    CHECK_EQ(found, 10);
    /* Each heavy key had about 9,000 reads; the lower bound stays close. */
    CHECK(top[9].rate > 8000 && top[0].rate < 10000);
    CHECK(top[0].where == 7);
    /* A cold key is not credited with a heavy rate. */
    CHECK(rate_of(hk, "cold:1", 0) < 100);
    hotkeys_free(hk);
}

/* Memory is fixed at creation: any number of distinct keys, same bytes. */
static void
test_bounded(void)
{
    struct hotkeys *hk = hotkeys_new(16, 1, 0);
    struct hotkey_view top[32];
    char key[32];
    int i;

    for (i = 0; i < 50000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        see(hk, key);
    }
    CHECK_EQ(hotkeys_top(hk, top, 32, 0), 16);
    CHECK(hotkeys_bytes(16) < 16 * 512);
    /* The index still finds every key it holds after 50,000 replacements. */
    for (i = 0; i < 16; i++)
        CHECK(rate_of(hk, top[i].key, 0) == top[i].rate);
    hotkeys_free(hk);
}

/*
 * Counts halve every period, so a rate is per second: 100 reads a second for
 * 10 seconds reads near 100; a key that stops reading fades out.
 */
static void
test_decay(void)
{
    struct hotkeys *hk = hotkeys_new(8, 1, 0);
    uint64_t now = 0;
    int s, i;
    double r, mid = 0;

    for (s = 0; s < 10; s++) {
        for (i = 0; i < 100; i++) {
            now = (uint64_t)s * 1000 + (uint64_t)i * 10;
            hotkeys_decay(hk, now);
            see(hk, "steady");
            if (s == 9 && i == 50)
                mid = rate_of(hk, "steady", now);
        }
    }
    r = rate_of(hk, "steady", now);
    CHECK(r > 90 && r < 110);
    /* Mid-period the estimate still reads the rate (count / (1 + f)). */
    CHECK(mid > 90 && mid < 110);
    /* Silent for 5 seconds: the rate falls by 2^5. */
    hotkeys_decay(hk, 15000);
    r = rate_of(hk, "steady", 15000);
    CHECK(r < 10);
    hotkeys_decay(hk, 200000);
    CHECK(rate_of(hk, "steady", 200000) == 0.0);
    hotkeys_free(hk);
}

/* One read in `every` is counted, and the rate is scaled back up. */
static void
test_sampling(void)
{
    struct hotkeys *hk = hotkeys_new(8, 4, 0);
    int i, counted = 0;
    double r;

    for (i = 0; i < 4000; i++) {
        if (hotkeys_sampled(hk)) {
            counted++;
            see(hk, "k");
        }
    }
    CHECK_EQ(counted, 1000);
    r = rate_of(hk, "k", 0);
    CHECK(r == 4000.0);
    for (i = 0; i < 400; i++)
        hotkeys_see(hk, "j", 1, 0);
    CHECK(rate_of(hk, "j", 0) == 400.0);
    hotkeys_free(hk);
}

/* Workers' lists merge: one key's rates add up, order by total. */
static void
test_merge(void)
{
    struct hotkey_view a[2] = { { .rate = 10, .klen = 1, .key = "a", .pool = "p1" },
                                { .rate = 5, .klen = 1, .key = "b" } };
    struct hotkey_view b[2] = { { .rate = 8, .klen = 1, .key = "b", .pool = "p2" },
                                { .rate = 1, .klen = 1, .key = "c" } };
    struct hotkey_view acc[2];
    int n = 0;

    hotkeys_merge(acc, &n, 2, a, 2);
    hotkeys_merge(acc, &n, 2, b, 2);
    CHECK_EQ(n, 2);
    CHECK_STR(acc[0].key, "b");
    CHECK(acc[0].rate == 13.0);
    CHECK_STR(acc[0].pool, "p2");        /* the names of the larger share */
    CHECK_STR(acc[1].key, "a");
}

/* Random streams: the index and the heap stay consistent throughout. */
static void
test_consistency(void)
{
    struct hotkeys *hk = hotkeys_new(32, 1, 0);
    struct hotkey_view top[32];
    char key[32];
    int i, n, round;
    uint64_t now = 0;

    for (round = 0; round < 20; round++) {
        for (i = 0; i < 5000; i++) {
            snprintf(key, sizeof(key), "%d", (int)(next_random() % (next_random() % 500 + 1)));
            see(hk, key);
        }
        now += 700;
        hotkeys_decay(hk, now);
        n = hotkeys_top(hk, top, 32, now);
        for (i = 0; i < n; i++)
            if (rate_of(hk, top[i].key, now) != top[i].rate)
                break;
        CHECK_EQ(i, n);
    }
    hotkeys_free(hk);
}

int
main(void)
{
    test_skewed_stream();
    test_bounded();
    test_decay();
    test_sampling();
    test_merge();
    test_consistency();
    return UNIT_DONE();
}
