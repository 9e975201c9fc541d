/*
 * buf.h: growable byte buffers with a read position, and a per-worker free
 * list so the request path does not call malloc in steady state.
 */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char       *data;
    uint32_t    pos;        /* first unconsumed byte */
    uint32_t    len;        /* bytes filled */
    uint32_t    cap;        /* bytes allocated */
    struct buf *next;       /* free-list link */
};

/* A free list of buffers; one per worker thread, never shared. */
struct buf_cache {
    struct buf *free;
    unsigned    count;
};

#define BUF_SMALL       512             /* initial size of a fresh buffer */
#define BUF_KEEP_MAX    (64 * 1024)     /* larger buffers are not cached */
#define BUF_CACHE_MAX   1024            /* buffers kept per cache */

struct buf *buf_get(struct buf_cache *cache);
void buf_put(struct buf_cache *cache, struct buf *b);
void buf_cache_free(struct buf_cache *cache);

/* Make room for n more bytes after len. Returns 0, or -1 (out of memory). */
int buf_reserve(struct buf *b, size_t n);

/* Append bytes (aborts on out of memory: the proxy cannot go on without it). */
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

/* Unconsumed bytes. */
static inline const char *buf_head(const struct buf *b) { return b->data + b->pos; }
static inline uint32_t buf_avail(const struct buf *b) { return b->len - b->pos; }

/* Mark n bytes consumed; an emptied buffer rewinds to its start. */
void buf_consume(struct buf *b, size_t n);

/* Move unconsumed bytes to the start of the buffer. */
void buf_compact(struct buf *b);

#endif
