/*
 * buf.h: growable byte buffers with a read position, and a per-worker free
 * list so the request path does not call malloc in steady state.
 *
 * Every buffer counts its capacity in the cache it came from, so a worker
 * knows how many bytes its buffers hold (the memory bounds use that), and
 * an allocation that fails never aborts: buf_get returns NULL, buf_reserve
 * -1, and an append that cannot grow marks the buffer failed.
 *
 * A buffer may be shared (buf_share): a server connection's read buffer
 * lends the bytes of a reply to the results and client outputs that carry
 * it, instead of copying them. Each sharer's buf_put drops one reference;
 * the last one puts the buffer back. While shared, a buffer's bytes do not
 * change: its first owner stops appending to it and reads into another.
 *
 * A struct bufq is an output (a client's, or a server connection's): a
 * queue of pieces, each either bytes of a buffer it owns (the last one open
 * for appends), a shared reference to another buffer's bytes, or constant
 * bytes, written with one writev.
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
    uint32_t    refs;       /* sharers besides the first owner (buf_share) */
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
    if (b->refs > 0) {          /* shared: the last holder puts it back */
        b->refs--;
        return;
    }
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

/* One more holder of b's bytes (released with buf_put); b is returned. */
static inline struct buf *
buf_share(struct buf *b)
{
    b->refs++;
    return b;
}

/* Does anyone besides its first owner hold b's bytes? */
static inline bool buf_shared(const struct buf *b) { return b->refs > 0; }

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

/*
 * A buffer to read into with room for want bytes after the unconsumed ones
 * of in (which may be NULL): in itself, compacted or grown if need be, or a
 * fresh one that takes over those bytes (in is then put). A fresh one is
 * taken when in is shared (its bytes must not change or move), or when sized
 * (want completes a unit of known size) and in is too small: the unit then
 * gets a buffer of its own size rather than a grown one. NULL out of memory
 * (in is kept). Inlined: once per read on the request path, where the
 * common case is a test or two.
 */
static inline __attribute__((always_inline)) struct buf *
buf_read_room(struct buf_cache *cache, struct buf *in, size_t want, bool sized)
{
    uint32_t have = in != NULL ? buf_avail(in) : 0;
    struct buf *fresh;

    if (in != NULL && !buf_shared(in)) {
        if (want <= (size_t)(in->cap - in->len))
            return in;
        if ((size_t)have + want <= in->cap) {
            buf_compact(in);
            return in;
        }
        if (!sized) {
            buf_compact(in);
            return buf_reserve(in, want) == 0 ? in : NULL;
        }
    }
    fresh = buf_get(cache);
    if (fresh == NULL || buf_reserve(fresh, (size_t)have + want) < 0) {
        buf_put(cache, fresh);
        return NULL;
    }
    if (in != NULL) {
        buf_append(fresh, buf_head(in), have);
        buf_put(cache, in);
    }
    return fresh;
}

/* ---- output queues ---- */

/* A piece of output: an owned buffer's unconsumed bytes (p NULL), or len
 * bytes at p inside a shared buffer b (b NULL: constant bytes). */
struct bufq_piece {
    struct buf *b;
    const char *p;
    uint32_t    len;
};

struct bufq {
    struct buf_cache  *cache;       /* where its buffers come from */
    struct bufq_piece *pieces;
    uint32_t           first;       /* pieces[first..n) are queued */
    uint32_t           n, cap;
    uint64_t           bytes;       /* queued bytes, but for those of an open last piece */
    bool               open;        /* the last piece is owned and appended to */
    bool               failed;      /* a piece could not be queued: bytes were lost */
};

/* bufq_tail's slow half: a new owned piece. */
struct buf *bufq_open(struct bufq *q);

/* The owned buffer to append output to (a new piece if the last one is shared);
 * NULL, with the queue marked failed, when out of memory. */
static inline struct buf *
bufq_tail(struct bufq *q)
{
    return q->open ? q->pieces[q->n - 1].b : bufq_open(q);
}

/* Queue len bytes at p inside b by reference (b is shared, not copied). */
void bufq_share(struct bufq *q, struct buf *b, const char *p, uint32_t len);

/* Queue len constant bytes at p (a string literal: nothing holds it). */
void bufq_const(struct bufq *q, const char *p, uint32_t len);

/* Room for n more pieces, so that as many bufq_share/bufq_const calls
 * cannot fail: 0, or -1 (out of memory). */
int bufq_reserve(struct bufq *q, uint32_t n);

/* Bytes queued, not yet written. */
static inline uint64_t
bufq_bytes(const struct bufq *q)
{
    return q->bytes + (q->open ? buf_avail(q->pieces[q->n - 1].b) : 0);
}

/* Were bytes lost (a piece, or an append to the open one, found no memory)? */
static inline bool
bufq_failed(const struct bufq *q)
{
    return q->failed || (q->open && buf_failed(q->pieces[q->n - 1].b));
}

/* At most max pieces from the front, as iovecs (struct iovec layout: base, len);
 * returns how many. */
struct iovec;
int bufq_iov(const struct bufq *q, struct iovec *iov, int max);

/* bufq_consume's general half: any pieces, any part of them. */
void bufq_consume_pieces(struct bufq *q, uint64_t n);

/* n bytes from the front were written: drop them, and the pieces emptied.
 * The common case, one owned piece written whole, stays inline. */
static inline void
bufq_consume(struct bufq *q, uint64_t n)
{
    if (q->open && q->n - q->first == 1 && n == buf_avail(q->pieces[q->first].b)) {
        buf_put(q->cache, q->pieces[q->first].b);
        q->first = q->n = 0;
        q->open = false;
        return;
    }
    bufq_consume_pieces(q, n);
}

/* Let go of everything queued (and the queue's own memory). */
void bufq_clear(struct bufq *q);

#endif
