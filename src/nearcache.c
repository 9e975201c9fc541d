/*
 * nearcache.c: the near cache's per-worker store (pure) and the
 * process-wide write stamps.
 *
 * Owns: entries (key and value in one buffer from the worker's buffer
 * cache, so the bytes count in the worker's memory figures and bounds), an
 * open-addressing index by key hash (linear probing, backward-shift
 * deletion), and a least-recently-used list. Invariant: every entry is in
 * the index and the list exactly once, and the store's bytes and items never
 * stay above its limits after a put.
 */
#include "nearcache.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define STAMP_SLOTS     (1u << 16)

/* Bumped by any worker, read by all: relaxed counters, see nearcache.h. */
static uint32_t stamps[STAMP_SLOTS];
static uint32_t flush_epoch;

/* Where an entry's one refresh is. */
enum nc_refresh {
    REFRESH_NONE,                   /* not asked for yet */
    REFRESH_OUT,                    /* on its way: the entry is served up to its grace */
    REFRESH_OVER,                   /* back without a new copy: served to expires_ms */
};

struct nc_entry {
    uint64_t         hash;
    uint64_t         expires_ms;
    uint64_t         refresh_ms;    /* from here on, one read refreshes it */
    uint8_t          refresh;       /* enum nc_refresh */
    uint32_t         stamp;         /* nearcache_stamp when the value was read */
    uint32_t         klen;          /* data: key, then value */
    struct buf      *data;
    struct nc_entry *newer, *older; /* the LRU list */
};

struct nearcache {
    uint32_t         max_items;
    uint64_t         max_bytes;
    uint32_t         ttl_ms;
    uint32_t         mask;          /* index slots - 1 */
    struct nc_entry **index;
    struct nc_entry *newest, *oldest;
    struct nearcache_counts counts;
};

uint32_t
nearcache_stamp(uint64_t hash)
{
    return __atomic_load_n(&stamps[hash & (STAMP_SLOTS - 1)], __ATOMIC_ACQUIRE)
         + __atomic_load_n(&flush_epoch, __ATOMIC_ACQUIRE);
}

void
nearcache_invalidate(uint64_t hash)
{
    __atomic_add_fetch(&stamps[hash & (STAMP_SLOTS - 1)], 1, __ATOMIC_RELEASE);
}

void
nearcache_invalidate_all(void)
{
    __atomic_add_fetch(&flush_epoch, 1, __ATOMIC_RELEASE);
}

struct nearcache *
nearcache_new(uint32_t max_items, uint64_t max_bytes, uint32_t ttl_ms)
{
    struct nearcache *nc = calloc(1, sizeof(*nc));
    uint32_t slots = 8;

    if (nc == NULL)
        return NULL;
    while (slots < 2 * (uint64_t)max_items && slots < (1u << 30))
        slots *= 2;
    nc->max_items = max_items;
    nc->max_bytes = max_bytes;
    nc->ttl_ms = ttl_ms;
    nc->mask = slots - 1;
    nc->index = calloc(slots, sizeof(*nc->index));
    if (nc->index == NULL) {
        free(nc);
        return NULL;
    }
    return nc;
}

static uint64_t
entry_bytes(const struct nc_entry *e)
{
    return sizeof(*e) + e->data->cap;
}

/* ---- the LRU list ---- */

static void
list_unlink(struct nearcache *nc, struct nc_entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        nc->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        nc->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void
list_push_newest(struct nearcache *nc, struct nc_entry *e)
{
    e->older = nc->newest;
    e->newer = NULL;
    if (nc->newest != NULL)
        nc->newest->newer = e;
    nc->newest = e;
    if (nc->oldest == NULL)
        nc->oldest = e;
}

/* ---- the index ---- */

static uint32_t
index_slot(const struct nearcache *nc, uint64_t hash, const char *key, uint32_t klen)
{
    uint32_t slot = (uint32_t)hash & nc->mask;
    const struct nc_entry *e;

    while ((e = nc->index[slot]) != NULL) {
        if (e->hash == hash && e->klen == klen && memcmp(e->data->data, key, klen) == 0)
            return slot;
        slot = (slot + 1) & nc->mask;
    }
    return slot;        /* the free slot where it would go */
}

static void
index_remove(struct nearcache *nc, uint32_t hole)
{
    uint32_t slot, home;
    struct nc_entry *f;

    nc->index[hole] = NULL;
    for (slot = (hole + 1) & nc->mask; (f = nc->index[slot]) != NULL;
         slot = (slot + 1) & nc->mask) {
        home = (uint32_t)f->hash & nc->mask;
        if (((slot - home) & nc->mask) >= ((slot - hole) & nc->mask)) {
            nc->index[hole] = f;
            nc->index[slot] = NULL;
            hole = slot;
        }
    }
}

/* Drop the entry in index slot `slot`. */
static void
entry_drop(struct nearcache *nc, struct buf_cache *bufs, uint32_t slot)
{
    struct nc_entry *e = nc->index[slot];

    index_remove(nc, slot);
    list_unlink(nc, e);
    nc->counts.bytes -= entry_bytes(e);
    nc->counts.items--;
    buf_put(bufs, e->data);
    free(e);
}

static void
evict_oldest(struct nearcache *nc, struct buf_cache *bufs)
{
    const struct nc_entry *e = nc->oldest;

    entry_drop(nc, bufs, index_slot(nc, e->hash, e->data->data, e->klen));
    nc->counts.evictions++;
}

void
nearcache_free(struct nearcache *nc, struct buf_cache *bufs)
{
    struct nc_entry *e, *next;

    if (nc == NULL)
        return;
    for (e = nc->newest; e != NULL; e = next) {
        next = e->older;
        buf_put(bufs, e->data);
        free(e);
    }
    free(nc->index);
    free(nc);
}

/* The end of an entry: its expiry, or a ttl later while its refresh is out. */
static uint64_t
entry_served_until(const struct nearcache *nc, const struct nc_entry *e)
{
    return e->refresh == REFRESH_OUT ? e->expires_ms + nc->ttl_ms : e->expires_ms;
}

enum nearcache_find
nearcache_get(struct nearcache *nc, struct buf_cache *bufs, uint64_t hash, const char *key,
              uint32_t klen, uint64_t now_ms, struct nearcache_hit *hit)
{
    uint32_t slot = index_slot(nc, hash, key, klen);
    struct nc_entry *e = nc->index[slot];

    if (e == NULL)
        return NEARCACHE_MISS;
    if (now_ms >= entry_served_until(nc, e) || e->stamp != nearcache_stamp(hash)) {
        entry_drop(nc, bufs, slot);
        return NEARCACHE_MISS;
    }
    if (nc->newest != e) {
        list_unlink(nc, e);
        list_push_newest(nc, e);
    }
    if (now_ms >= e->refresh_ms && e->refresh == REFRESH_NONE) {
        e->refresh = REFRESH_OUT;
        return NEARCACHE_REFRESH;
    }
    hit->data = e->data;
    hit->bytes = e->data->data + e->klen;
    hit->len = e->data->len - e->klen;
    return NEARCACHE_HIT;
}

int
nearcache_put(struct nearcache *nc, struct buf_cache *bufs, uint64_t hash, const char *key,
              uint32_t klen, const char *value, uint32_t vlen, uint32_t stamp, uint64_t now_ms)
{
    uint32_t slot = index_slot(nc, hash, key, klen);
    struct nc_entry *e;
    struct buf *b;

    /* A change since the read left: the value may be the old one. */
    if (stamp != nearcache_stamp(hash))
        return -1;
    if (nc->index[slot] != NULL)
        entry_drop(nc, bufs, slot);
    if (sizeof(*e) + (uint64_t)klen + vlen > nc->max_bytes || nc->max_items == 0)
        return -1;
    e = malloc(sizeof(*e));
    /* A fresh buffer, sized to the copy: a cached one may be a server
     * connection's large read buffer, and its capacity is what counts. */
    b = buf_new(bufs);
    if (b != NULL && buf_reserve(b, (size_t)klen + vlen) == 0) {
        buf_append(b, key, klen);
        buf_append(b, value, vlen);
    }
    if (e == NULL || b == NULL || buf_failed(b) || b->len != klen + vlen) {
        free(e);
        buf_put(bufs, b);
        return -1;
    }
    e->hash = hash;
    e->expires_ms = now_ms + nc->ttl_ms;
    e->refresh_ms = e->expires_ms - nc->ttl_ms / 10;
    e->refresh = REFRESH_NONE;
    e->stamp = stamp;
    e->klen = klen;
    e->data = b;
    while (nc->oldest != NULL && (nc->counts.items + 1 > nc->max_items
                                  || nc->counts.bytes + entry_bytes(e) > nc->max_bytes))
        evict_oldest(nc, bufs);
    if (nc->counts.bytes + entry_bytes(e) > nc->max_bytes) {
        buf_put(bufs, b);       /* the buffer's capacity alone is over the limit */
        free(e);
        return -1;
    }
    nc->index[index_slot(nc, hash, key, klen)] = e;
    list_push_newest(nc, e);
    nc->counts.bytes += entry_bytes(e);
    nc->counts.items++;
    return 0;
}

void
nearcache_refresh_over(struct nearcache *nc, uint64_t hash, const char *key, uint32_t klen,
                       uint32_t stamp)
{
    struct nc_entry *e = nc->index[index_slot(nc, hash, key, klen)];

    /* A copy read after a change has another stamp. Without a change, a
     * worker has one read of the key out at a time (coalesced), so this is
     * the copy the read refreshed; were it not (a read that could not be
     * coalesced), that copy would only lose its grace, which is safe. */
    if (e != NULL && e->stamp == stamp && e->refresh == REFRESH_OUT)
        e->refresh = REFRESH_OVER;
}

struct nearcache_counts
nearcache_counts(const struct nearcache *nc)
{
    return nc->counts;
}
