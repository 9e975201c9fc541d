/*
 * buf.h: growable byte buffers with a read position, and a per-worker free
 * list so the request path does not call malloc in steady state.
 *
 * Every buffer counts its capacity in the cache it came from, so a worker
 * knows how many bytes its buffers hold (the memory bounds use that), and
 * an allocation that fails never aborts: buf_get returns NULL, buf_reserve
 * -1, and an append that cannot grow marks the buffer failed.
 */
#ifndef BUF_H
#define BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf_cache;

struct buf {
    char       *data;
    uint32_t    pos;        /* first unconsumed byte */
    uint32_t    len;        /* bytes filled */
    uint32_t    cap;        /* bytes allocated */
    bool        failed;     /* an append found no memory: bytes were lost */
    struct buf_cache *owner; /* the cache whose counts include cap */
    struct buf *next;       /* free-list link */
};

/*
 * A free list of buffers; one per worker thread, never shared. Only its
 * thread writes it; `used` may be read by others (relaxed atomic loads).
 */
struct buf_cache {
    struct buf *free;
    unsigned    count;
    unsigned    low;        /* fewest buffers cached since the last trim */
    uint64_t    used;       /* bytes of the buffers taken out, not yet put back */
    uint64_t    cached;     /* bytes of the buffers in the list, as of the last trim */
    uint64_t    released;   /* bytes freed since the last trim */
    uint64_t    takes;      /* buf_get calls since the last trim */
};


#define BUF_SMALL       512             /* initial size of a fresh buffer */
#define BUF_KEEP_MAX    (64 * 1024)     /* larger buffers are not cached */
#define BUF_CACHE_MAX   1024            /* buffers kept per cache */

/* Add to `used`: written by the cache's thread only, read by others. */
static inline void
buf_used_add(struct buf_cache *cache, int64_t delta)
{
    __atomic_store_n(&cache->used, cache->used + (uint64_t)delta, __ATOMIC_RELAXED);
}

/* The slow halves of buf_get and buf_put. */
struct buf *buf_new(struct buf_cache *cache);
void buf_destroy(struct buf_cache *cache, struct buf *b);

/* An empty buffer, or NULL when out of memory. The common case, one from
 * the list, stays inline on the request path. */
static inline struct buf *
buf_get(struct buf_cache *cache)
{
    struct buf *b = cache->free;

    cache->takes++;
    if (b == NULL)
        return buf_new(cache);
    cache->free = b->next;
    if (--cache->count < cache->low)
        cache->low = cache->count;
    b->next = NULL;
    buf_used_add(cache, b->cap);
    return b;
}

static inline void
buf_put(struct buf_cache *cache, struct buf *b)
{
    if (b == NULL)
        return;
    buf_used_add(cache, -(int64_t)b->cap);
    b->pos = b->len = 0;
    b->failed = false;
    if (b->cap > BUF_KEEP_MAX || cache->count >= BUF_CACHE_MAX) {
        buf_destroy(cache, b);
        return;
    }
    b->next = cache->free;
    cache->free = b;
    cache->count++;
}

void buf_cache_free(struct buf_cache *cache);

/*
 * Free the buffers that stayed in the list since the last trim (a burst's
 * leftovers); those that were taken out meanwhile are kept, so a steady load
 * still finds its buffers there. Returns the bytes freed in the period it
 * ends (by buf_put and by the trim) and starts the next one (released and
 * takes back to 0).
 */
uint64_t buf_cache_trim(struct buf_cache *cache);

/* Make room for n more bytes after len. Returns 0, or -1 (out of memory). */
int buf_grow(struct buf *b, size_t n);

static inline int
buf_reserve(struct buf *b, size_t n)
{
    return n <= (size_t)(b->cap - b->len) ? 0 : buf_grow(b, n);
}

/*
 * Append bytes. Out of memory, the bytes are dropped and the buffer is
 * marked failed (buf_failed); whoever sends it decides what that means.
 */
void buf_append_grow(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);

/* The common case, room already there, stays inline on the request path. */
static inline void
buf_append(struct buf *b, const void *p, size_t n)
{
    if (n <= (size_t)(b->cap - b->len)) {
        if (n > 0)
            memcpy(b->data + b->len, p, n);
        b->len += (uint32_t)n;
        return;
    }
    buf_append_grow(b, p, n);
}

static inline bool buf_failed(const struct buf *b) { return b->failed; }

/* Unconsumed bytes. */
static inline const char *buf_head(const struct buf *b) { return b->data + b->pos; }
static inline uint32_t buf_avail(const struct buf *b) { return b->len - b->pos; }

/* Mark n bytes consumed; an emptied buffer rewinds to its start. */
void buf_consume(struct buf *b, size_t n);

/* Move unconsumed bytes to the start of the buffer. */
void buf_compact(struct buf *b);

#endif
