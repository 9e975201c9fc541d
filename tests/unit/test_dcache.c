/* Unit tests for the hook decision cache. */
#include "dcache.h"

#include <stdio.h>

#include "unit.h"

static void
test_basic(void)
{
    struct dcache *dc = dcache_new(4);

    CHECK(dc != NULL);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4), -1);
    dcache_put(dc, 0, -1, true, "sess", 4, 7);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4), 7);
    /* Each part of the key matters: hook, op, delimiter presence, bytes. */
    CHECK_EQ(dcache_get(dc, 1, -1, true, "sess", 4), -1);
    CHECK_EQ(dcache_get(dc, 0, 2, true, "sess", 4), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, false, "sess", 4), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sesS", 4), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "ses", 3), -1);
    /* An empty prefix and "no delimiter" are different decisions. */
    dcache_put(dc, 0, -1, true, "", 0, 1);
    dcache_put(dc, 0, -1, false, "", 0, 2);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "", 0), 1);
    CHECK_EQ(dcache_get(dc, 0, -1, false, "", 0), 2);
    CHECK_EQ(dcache_count(dc), 3);
    /* A second put of the same key keeps the first decision. */
    dcache_put(dc, 0, -1, true, "sess", 4, 9);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4), 7);
    dcache_free(dc);
}

static void
test_bounds(void)
{
    char key[DCACHE_PREFIX_MAX + 1];
    struct dcache *dc = dcache_new(3);
    int i;

    for (i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "p%d", i);
        dcache_put(dc, 0, 1, true, key, 2, i);
    }
    CHECK_EQ(dcache_count(dc), 3);          /* full: later ones not kept */
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p0", 2), 0);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p2", 2), 2);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p3", 2), -1);
    memset(key, 'x', sizeof(key));
    dcache_clear(dc);
    CHECK_EQ(dcache_count(dc), 0);
    dcache_put(dc, 0, 1, true, key, sizeof(key), 5);   /* too long */
    CHECK_EQ(dcache_get(dc, 0, 1, true, key, sizeof(key)), -1);
    dcache_put(dc, 0, 1, true, key, DCACHE_PREFIX_MAX, 5);
    CHECK_EQ(dcache_get(dc, 0, 1, true, key, DCACHE_PREFIX_MAX), 5);
    dcache_free(dc);

    dc = dcache_new(0);                     /* caching off */
    dcache_put(dc, 0, 1, true, "a", 1, 1);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "a", 1), -1);
    dcache_free(dc);
}

int
main(void)
{
    test_basic();
    test_bounds();
    return UNIT_DONE();
}
