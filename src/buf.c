/*
 * buf.c: growable buffers and their free list.
 *
 * Invariant: pos <= len <= cap. Buffers in a cache are empty and at most
 * BUF_KEEP_MAX bytes, so a burst of huge values does not pin memory, and a
 * trim frees those no request took out since the last one, so a burst of
 * many does not either. A cache's `used` is the capacity of every buffer
 * taken out of it and not yet put back: the bytes its worker holds.
 * Nothing here aborts: running out of memory is the caller's to answer.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

struct buf *
buf_new(struct buf_cache *cache)
{
    struct buf *b = calloc(1, sizeof(*b));

    if (b != NULL)
        b->owner = cache;
    return b;
}

void
buf_destroy(struct buf_cache *cache, struct buf *b)
{
    cache->released += b->cap;
    free(b->data);
    free(b);
}

void
buf_cache_free(struct buf_cache *cache)
{
    while (cache->free != NULL) {
        struct buf *b = cache->free;

        cache->free = b->next;
        free(b->data);
        free(b);
    }
    cache->count = cache->low = 0;
    cache->cached = 0;
}

uint64_t
buf_cache_trim(struct buf_cache *cache)
{
    uint64_t freed, cached = 0;
    unsigned n = cache->low;
    struct buf *b;

    while (n-- > 0 && cache->free != NULL) {
        b = cache->free;
        cache->free = b->next;
        cache->count--;
        buf_destroy(cache, b);
    }
    for (b = cache->free; b != NULL; b = b->next)
        cached += b->cap;
    cache->cached = cached;
    freed = cache->released;
    cache->low = cache->count;
    cache->released = 0;
    cache->takes = 0;
    return freed;
}

int
buf_grow(struct buf *b, size_t n)
{
    size_t need = (size_t)b->len + n, cap = b->cap ? b->cap : BUF_SMALL;
    char *grown;

    if (need <= b->cap)
        return 0;
    if (need > UINT32_MAX)
        return -1;
    if (b->len == 0 && need > BUF_KEEP_MAX)
        cap = need;         /* a large value in a new buffer: no slack to pay for */
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    grown = realloc(b->data, cap);
    if (grown == NULL)
        return -1;
    buf_used_add(b->owner, (int64_t)(cap - b->cap));
    b->data = grown;
    b->cap = (uint32_t)cap;
    return 0;
}

void
buf_append_grow(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;     /* p may be NULL then */
    if (buf_reserve(b, n) < 0) {
        b->failed = true;
        return;
    }
    memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
}

void
buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void
buf_consume(struct buf *b, size_t n)
{
    b->pos += (uint32_t)n;
    if (b->pos >= b->len)
        b->pos = b->len = 0;
}

void
buf_compact(struct buf *b)
{
    if (b->pos == 0)
        return;
    memmove(b->data, b->data + b->pos, b->len - b->pos);
    b->len -= b->pos;
    b->pos = 0;
}
