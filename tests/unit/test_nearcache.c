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

/* The refresh of key's copy came back without a put. */
static void
refresh_over(struct nearcache *nc, const char *key)
{
    uint32_t klen = (uint32_t)strlen(key);
    uint64_t h = hotkeys_hash(key, klen);

    nearcache_refresh_over(nc, h, key, klen, nearcache_stamp(h));
}

/* What a read of key at now finds: its value, "" (a miss) or "refresh". */
static const char *
get(struct nearcache *nc, const char *key, uint64_t now)
{
    static char out[256];
    uint32_t klen = (uint32_t)strlen(key);
    struct nearcache_hit hit;

    switch (nearcache_get(nc, &bufs, hotkeys_hash(key, klen), key, klen, now, &hit)) {
    case NEARCACHE_HIT:
        snprintf(out, sizeof(out), "%.*s", (int)hit.len, hit.bytes);
        return out;
    case NEARCACHE_REFRESH:
        return "refresh";
    default:
        return "";
    }
}

static void
test_ttl(void)
{
    struct nearcache *nc = nearcache_new(10, 1 << 20, 500);

    CHECK_EQ(put(nc, "a", " 0 1\r\nx\r\n", 1000), 0);
    CHECK_STR(get(nc, "a", 1000), " 0 1\r\nx\r\n");
    CHECK_STR(get(nc, "a", 1449), " 0 1\r\nx\r\n");
    CHECK_STR(get(nc, "a", 1450), "refresh");   /* its last tenth: one read refreshes */
    CHECK_STR(get(nc, "a", 1451), " 0 1\r\nx\r\n");
    refresh_over(nc, "a");                      /* it failed (test_late_refresh: it is out) */
    CHECK_STR(get(nc, "a", 1499), " 0 1\r\nx\r\n");
    CHECK_STR(get(nc, "a", 1500), "");          /* ttl_ms is a hard bound */
    CHECK_EQ(nearcache_counts(nc).items, 0);
    CHECK_U64(nearcache_counts(nc).bytes, 0);
    nearcache_free(nc, &bufs);
}

/*
 * A hot key is read again once before it expires, by one read, and the
 * others keep hitting: without that, every read between the expiry and the
 * refill's reply went to the server (a herd twice a second per hot key).
 */
static void
test_refresh(void)
{
    struct nearcache *nc = nearcache_new(10, 1 << 20, 1000);
    int t, refreshes = 0, misses = 0;

    CHECK_EQ(put(nc, "h", "v1", 0), 0);
    /* Reads every millisecond for 3 s; a refresh's reply comes 5 ms later. */
    for (t = 0; t < 3000; t++) {
        const char *v = get(nc, "h", (uint64_t)t);

        if (strcmp(v, "refresh") == 0) {
            refreshes++;
            CHECK_STR(get(nc, "h", (uint64_t)t + 1), t < 1000 ? "v1" : "v2");
            CHECK_EQ(put(nc, "h", "v2", (uint64_t)t + 5), 0);
        } else {
            misses += *v == '\0';
        }
    }
    CHECK_EQ(misses, 0);
    CHECK_EQ(refreshes, 3);             /* 900 ms into each 1000 ms */
    /* A refresh whose read comes back without a put (a failed read): the
     * entry is still served to its end, then missed; no second refresh in
     * between. */
    CHECK_STR(get(nc, "h", 3615), "refresh");     /* put at 2715 */
    CHECK_STR(get(nc, "h", 3650), "v2");
    refresh_over(nc, "h");
    CHECK_STR(get(nc, "h", 3714), "v2");
    CHECK_STR(get(nc, "h", 3715), "");
    /* A short ttl_ms (under 10 ms) has no refresh window: it just expires. */
    nearcache_free(nc, &bufs);
    nc = nearcache_new(10, 1 << 20, 5);
    CHECK_EQ(put(nc, "s", "v", 0), 0);
    CHECK_STR(get(nc, "s", 4), "v");
    CHECK_STR(get(nc, "s", 5), "");
    nearcache_free(nc, &bufs);
}

/*
 * A refresh the server answers late (after the copy's ttl_ms): the copy is
 * served on while the refresh is out, so reads do not reach the late server
 * one by one, but never past 2 x ttl_ms, nor after a change of the key; a
 * refresh that comes back without a put ends that grace.
 */
static void
test_late_refresh(void)
{
    struct nearcache *nc = nearcache_new(10, 1 << 20, 1000);
    uint64_t h = hotkeys_hash("h", 1);
    uint32_t before_change;

    CHECK_EQ(put(nc, "h", "v1", 0), 0);
    CHECK_STR(get(nc, "h", 900), "refresh");
    CHECK_STR(get(nc, "h", 1000), "v1");          /* past ttl_ms: the refresh is out */
    CHECK_STR(get(nc, "h", 1999), "v1");
    CHECK_STR(get(nc, "h", 2000), "");            /* 2 x ttl_ms: a hard bound */
    CHECK_EQ(nearcache_counts(nc).items, 0);

    /* The refresh comes back without a put after the copy's ttl_ms: gone. */
    CHECK_EQ(put(nc, "h", "v2", 3000), 0);
    CHECK_STR(get(nc, "h", 3900), "refresh");
    CHECK_STR(get(nc, "h", 4100), "v2");
    refresh_over(nc, "h");
    CHECK_STR(get(nc, "h", 4101), "");

    /* A change of the key ends the copy in its grace too. */
    CHECK_EQ(put(nc, "h", "v3", 5000), 0);
    CHECK_STR(get(nc, "h", 5900), "refresh");
    CHECK_STR(get(nc, "h", 6100), "v3");
    before_change = nearcache_stamp(h);
    nearcache_invalidate(h);
    CHECK_STR(get(nc, "h", 6101), "");

    /* The late refresh of the copy read before the change does not end the
     * grace of a copy read after it. */
    CHECK_EQ(put(nc, "h", "v4", 7000), 0);
    CHECK_STR(get(nc, "h", 7900), "refresh");
    nearcache_refresh_over(nc, h, "h", 1, before_change);
    CHECK_STR(get(nc, "h", 8100), "v4");
    nearcache_free(nc, &bufs);
}

/*
 * A hit is the entry's buffer by reference: the bytes outlive the entry
 * (invalidated, evicted, the store freed) until the holder lets them go.
 */
static void
test_hit_by_reference(void)
{
    struct nearcache *nc = nearcache_new(1, 1 << 20, 60000);
    struct nearcache_hit hit;
    uint64_t h = hotkeys_hash("k", 1);
    struct buf *held[3];
    int i;

    CHECK_EQ(put(nc, "k", "first", 0), 0);
    CHECK_EQ(nearcache_get(nc, &bufs, h, "k", 1, 1, &hit), NEARCACHE_HIT);
    held[0] = buf_share(hit.data);
    nearcache_invalidate(h);
    CHECK_STR(get(nc, "k", 2), "");             /* the stale entry is dropped */
    CHECK_EQ(put(nc, "k", "second", 3), 0);
    CHECK_EQ(nearcache_get(nc, &bufs, h, "k", 1, 4, &hit), NEARCACHE_HIT);
    held[1] = buf_share(hit.data);
    CHECK_EQ(put(nc, "other", "evicts k", 5), 0);   /* max_items 1 */
    CHECK_EQ(nearcache_counts(nc).evictions, 1);
    CHECK_EQ(nearcache_get(nc, &bufs, hotkeys_hash("other", 5), "other", 5, 6, &hit),
             NEARCACHE_HIT);
    held[2] = buf_share(hit.data);
    nearcache_free(nc, &bufs);
    CHECK(memcmp(buf_head(held[0]) + 1, "first", 5) == 0);
    CHECK(memcmp(buf_head(held[1]) + 1, "second", 6) == 0);
    CHECK(memcmp(buf_head(held[2]) + 5, "evicts k", 8) == 0);
    CHECK(bufs.used > 0);                       /* still held */
    for (i = 0; i < 3; i++)
        buf_put(&bufs, held[i]);
    CHECK_U64(bufs.used, 0);
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
    test_refresh();
    test_late_refresh();
    test_hit_by_reference();
    test_stamps();
    test_eviction();
    return UNIT_DONE();
}
