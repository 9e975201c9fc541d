/* Unit tests for the hook decision cache. */
#include "dcache.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

static void
test_basic(void)
{
    struct dcache *dc = dcache_new(4);

    CHECK(dc != NULL);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4, ""), -1);
    dcache_put(dc, 0, -1, true, "sess", 4, NULL, 7);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4, ""), 7);
    /* Each part of the key matters: hook, op, delimiter presence, bytes. */
    CHECK_EQ(dcache_get(dc, 1, -1, true, "sess", 4, ""), -1);
    CHECK_EQ(dcache_get(dc, 0, 2, true, "sess", 4, ""), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, false, "sess", 4, ""), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sesS", 4, ""), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "ses", 3, ""), -1);
    /* An empty prefix and "no delimiter" are different decisions. */
    dcache_put(dc, 0, -1, true, "", 0, NULL, 1);
    dcache_put(dc, 0, -1, false, "", 0, NULL, 2);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "", 0, ""), 1);
    CHECK_EQ(dcache_get(dc, 0, -1, false, "", 0, ""), 2);
    CHECK_EQ(dcache_count(dc), 3);
    /* A second put of the same key keeps the first decision. */
    dcache_put(dc, 0, -1, true, "sess", 4, NULL, 9);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "sess", 4, ""), 7);
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
        dcache_put(dc, 0, 1, true, key, 2, NULL, i);
    }
    CHECK_EQ(dcache_count(dc), 3);          /* full: later ones not kept */
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p0", 2, ""), 0);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p2", 2, ""), 2);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "p3", 2, ""), -1);
    memset(key, 'x', sizeof(key));
    dcache_clear(dc);
    CHECK_EQ(dcache_count(dc), 0);
    dcache_put(dc, 0, 1, true, key, sizeof(key), NULL, 5);   /* too long */
    CHECK_EQ(dcache_get(dc, 0, 1, true, key, sizeof(key), ""), -1);
    dcache_put(dc, 0, 1, true, key, DCACHE_PREFIX_MAX, NULL, 5);
    CHECK_EQ(dcache_get(dc, 0, 1, true, key, DCACHE_PREFIX_MAX, ""), 5);
    dcache_free(dc);

    dc = dcache_new(0);                     /* caching off */
    dcache_put(dc, 0, 1, true, "a", 1, NULL, 1);
    CHECK_EQ(dcache_get(dc, 0, 1, true, "a", 1, ""), -1);
    dcache_free(dc);
}

/* A decision that looked at the client's listener holds for that listener only. */
static void
test_listener(void)
{
    char name[DCACHE_LISTENER_MAX + 2];
    struct dcache *dc = dcache_new(8);

    dcache_put(dc, 0, -1, true, "k", 1, "a", 1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "a"), 1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "b"), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "ab"), -1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, ""), -1);
    dcache_put(dc, 0, -1, true, "k", 1, "b", 2);
    dcache_put(dc, 0, -1, true, "k", 1, "", 3);        /* a request of no client */
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "a"), 1);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "b"), 2);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, ""), 3);
    dcache_put(dc, 0, -1, true, "k", 1, "a", 9);       /* kept: the first decision */
    CHECK_EQ(dcache_get(dc, 0, -1, true, "k", 1, "a"), 1);
    CHECK_EQ(dcache_count(dc), 3);
    /* A decision for any listener serves them all. */
    dcache_put(dc, 0, -1, true, "any", 3, NULL, 4);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "any", 3, "a"), 4);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "any", 3, ""), 4);
    /* A name longer than an entry holds is not cached, nor matched. */
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    dcache_put(dc, 0, -1, true, "long", 4, name, 5);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "long", 4, name), -1);
    name[DCACHE_LISTENER_MAX] = '\0';
    dcache_put(dc, 0, -1, true, "long", 4, name, 6);
    CHECK_EQ(dcache_get(dc, 0, -1, true, "long", 4, name), 6);
    dcache_free(dc);
}

int
main(void)
{
    test_basic();
    test_bounds();
    test_listener();
    return UNIT_DONE();
}
