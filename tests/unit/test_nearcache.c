/* Unit tests for the near cache store: expiry, stamps, eviction by items and bytes. */
#include "nearcache.h"

#include <stdio.h>

#include "buf.h"
#include "hotkeys.h"
#include "unit.h"

static struct buf_cache bufs;

static int
put(struct nearcache *nc, const char *key, const char *value, uint64_t now)
{
    uint32_t klen = (uint32_t)strlen(key);
    uint64_t h = hotkeys_hash(key, klen);

    return nearcache_put(nc, &bufs, h, key, klen, value, (uint32_t)strlen(value),
                         nearcache_stamp(h), now);
}

/* The value held for key at now, as a string ("" when none). */
static const char *
get(struct nearcache *nc, const char *key, uint64_t now)
{
    static char out[256];
    uint32_t klen = (uint32_t)strlen(key), vlen;
    const char *v = nearcache_get(nc, &bufs, hotkeys_hash(key, klen), key, klen, now, &vlen);

    snprintf(out, sizeof(out), "%.*s", v ? (int)vlen : 0, v ? v : "");
    return out;
}

static void
test_ttl(void)
{
    struct nearcache *nc = nearcache_new(10, 1 << 20, 500);

    CHECK_EQ(put(nc, "a", " 0 1\r\nx\r\n", 1000), 0);
    CHECK_STR(get(nc, "a", 1000), " 0 1\r\nx\r\n");
    CHECK_STR(get(nc, "a", 1499), " 0 1\r\nx\r\n");
    CHECK_STR(get(nc, "a", 1500), "");          /* ttl_ms is a hard bound */
    CHECK_EQ(nearcache_counts(nc).items, 0);
    CHECK_U64(nearcache_counts(nc).bytes, 0);
    nearcache_free(nc, &bufs);
}

/* A change of the key (any store, any thread) makes the entry stale. */
static void
test_stamps(void)
{
    struct nearcache *nc = nearcache_new(10, 1 << 20, 5000);
    uint64_t h = hotkeys_hash("k", 1);
    uint32_t before = nearcache_stamp(h);

    CHECK_EQ(put(nc, "k", "v", 0), 0);
    CHECK_EQ(put(nc, "other", "w", 0), 0);
    nearcache_invalidate(h);
    CHECK_STR(get(nc, "k", 1), "");
    CHECK_STR(get(nc, "other", 1), "w");
    /* A value read before the change is not kept. */
    CHECK_EQ(nearcache_put(nc, &bufs, h, "k", 1, "old", 3, before, 2), -1);
    CHECK_STR(get(nc, "k", 2), "");
    /* flush_all: everything goes. */
    nearcache_invalidate_all();
    CHECK_STR(get(nc, "other", 3), "");
    nearcache_free(nc, &bufs);
}

/* Under max_bytes the least recently used entries go first. */
static void
test_eviction(void)
{
    struct nearcache *nc = nearcache_new(1000, 4 * 1024, 60000);
    char key[16], value[300];
    int i, held = 0;

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CHECK_EQ(put(nc, key, value, 0), 0);
        if (i == 50)
            CHECK(strlen(get(nc, "k45", 0)) > 0);   /* k45 is recent again */
        CHECK(nearcache_counts(nc).bytes <= 4 * 1024);
    }
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        held += strlen(get(nc, key, 0)) > 0;
    }
    CHECK(held > 0 && held < 100);
    CHECK_EQ(held, (int)nearcache_counts(nc).items);
    CHECK_U64(nearcache_counts(nc).evictions, 100 - held);
    CHECK(strlen(get(nc, "k99", 0)) > 0);
    CHECK_STR(get(nc, "k0", 0), "");
    /* Its buffers count in the worker's memory figure. */
    CHECK(bufs.used >= nearcache_counts(nc).bytes - held * 64);
    nearcache_free(nc, &bufs);
    CHECK_U64(bufs.used, 0);

    nc = nearcache_new(3, 1 << 20, 60000);      /* max_items */
    for (i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(nc, key, "v", 0);
    }
    CHECK_EQ(nearcache_counts(nc).items, 3);
    CHECK_STR(get(nc, "k9", 0), "v");
    CHECK_STR(get(nc, "k6", 0), "");
    nearcache_free(nc, &bufs);
}

int
main(void)
{
    test_ttl();
    test_stamps();
    test_eviction();
    return UNIT_DONE();
}
