/*
 * nearcache.h: the near cache (pure): values of hot keys kept in one
 * worker for at most ttl_ms, and the process-wide write stamps that take
 * them out of every worker at once.
 *
 * A store belongs to one worker and one lg.nearcache node; it takes no lock.
 * Invalidation crosses workers without locks through stamps: a table of
 * counters indexed by key hash, shared by the whole process. A change of a
 * key (write, delete, arith, touch) bumps its counter when it leaves for a
 * server and again when its reply is back; a read records the counter when
 * it leaves, and its value is kept under that stamp. An entry whose stamp
 * differs from its counter is stale and is dropped when next asked for. A
 * read that raced a write on another connection thus never serves the old
 * value after the write's reply. flush_all bumps every stamp at once.
 *
 * The server sees no burst when a copy ends (the read bound): a copy read
 * at t is served until t + ttl_ms; from t + 0.9 ttl_ms one read refreshes
 * it, and while that read is out the copy is still served, up to
 * t + 2 ttl_ms (a late refresh does not end it; a change of the key does).
 * A refresh that comes back without a new copy (an error, a miss, not
 * kept) ends that grace: the copy is served to t + ttl_ms only. The route
 * sends a hot key's reads through its worker's coalesce table, tagged with
 * the stamp, so a get that finds no copy while a read of the same stamp is
 * out waits for that read's reply. Hence, per worker and key: at most one
 * read out at a time (one more for each change of the key), and, while
 * reads are kept, at most one read per 0.9 ttl_ms, however late the
 * server answers.
 */
#ifndef NEARCACHE_H
#define NEARCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct buf_cache;
struct nearcache;

/* What a store did: for stats routes. */
struct nearcache_counts {
    uint64_t    evictions;      /* entries dropped for room (max_items, max_bytes) */
    uint64_t    bytes;          /* held now: key, value and entry */
    uint64_t    items;          /* held now */
};

/* A store of at most max_items entries and max_bytes bytes, each kept ttl_ms. */
struct nearcache *nearcache_new(uint32_t max_items, uint64_t max_bytes, uint32_t ttl_ms);

/* Free a store; its values go back to bufs. */
void nearcache_free(struct nearcache *nc, struct buf_cache *bufs);

/* A held value, by reference: bytes lie inside data, the entry's buffer.
 * A caller that keeps them past the store's next use takes its own
 * reference (buf_share) and puts it back when done (buf_put). */
struct nearcache_hit {
    struct buf     *data;
    const char     *bytes;
    uint32_t        len;
};

/* What nearcache_get found. */
enum nearcache_find {
    NEARCACHE_MISS,     /* not held, or stale or expired (then dropped) */
    NEARCACHE_HIT,      /* fresh: *hit is the value */
    NEARCACHE_REFRESH,  /* fresh, but in the last tenth of its ttl_ms: this read
                         * alone goes to the server and its put replaces the
                         * entry, while other reads keep hitting it (past
                         * ttl_ms too, up to 2 ttl_ms, while it is out); if
                         * it puts nothing, call nearcache_refresh_over */
};

/*
 * Look key up (hash from hotkeys_hash) at now_ms. A value is fresh while
 * it is younger than ttl_ms (2 ttl_ms while its refresh is out) and its key
 * did not change since it was read. Once per entry, the first read in its
 * last tenth of ttl_ms is told to refresh it, so that a hot key is read
 * again before it expires instead of by every read that finds it expired.
 */
enum nearcache_find nearcache_get(struct nearcache *nc, struct buf_cache *bufs, uint64_t hash,
                                  const char *key, uint32_t klen, uint64_t now_ms,
                                  struct nearcache_hit *hit);

/*
 * Keep a copy of value for key, read under stamp (nearcache_stamp when the
 * read left). Evicts the least recently used entries for room. Returns 0,
 * or -1 when it was not kept (too large for the store, stamp already moved,
 * out of memory).
 */
int nearcache_put(struct nearcache *nc, struct buf_cache *bufs, uint64_t hash, const char *key,
                  uint32_t klen, const char *value, uint32_t vlen, uint32_t stamp,
                  uint64_t now_ms);

/* The refresh of key's copy read under stamp came back without a put (it
 * failed, missed, or was not kept): the copy is served to its ttl_ms only. */
void nearcache_refresh_over(struct nearcache *nc, uint64_t hash, const char *key, uint32_t klen,
                            uint32_t stamp);

/* Counters of a store. */
struct nearcache_counts nearcache_counts(const struct nearcache *nc);

/* The key's stamp now (process-wide). */
uint32_t nearcache_stamp(uint64_t hash);

/* A change of the key is on its way or done: entries read before are stale. */
void nearcache_invalidate(uint64_t hash);

/* Every key changed (flush_all): every entry of every store is stale. */
void nearcache_invalidate_all(void);

#endif
