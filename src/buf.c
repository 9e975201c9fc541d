/*
 * buf.c: growable buffers and their free list.
 *
 * Invariant: pos <= len <= cap. Buffers in a cache are empty and at most
 * BUF_KEEP_MAX bytes, so a burst of huge values does not pin memory.
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
oom(size_t n)
{
    fprintf(stderr, "luagent: out of memory allocating %zu bytes\n", n);
    abort();
}

struct buf *
buf_get(struct buf_cache *cache)
{
    struct buf *b = cache->free;

    if (b != NULL) {
        cache->free = b->next;
        cache->count--;
        b->next = NULL;
        return b;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        oom(sizeof(*b));
    return b;
}

void
buf_put(struct buf_cache *cache, struct buf *b)
{
    if (b == NULL)
        return;
    b->pos = b->len = 0;
    if (b->cap > BUF_KEEP_MAX || cache->count >= BUF_CACHE_MAX) {
        free(b->data);
        free(b);
        return;
    }
    b->next = cache->free;
    cache->free = b;
    cache->count++;
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
    cache->count = 0;
}

int
buf_reserve(struct buf *b, size_t n)
{
    size_t need = (size_t)b->len + n, cap = b->cap ? b->cap : BUF_SMALL;
    char *grown;

    if (need <= b->cap)
        return 0;
    if (need > UINT32_MAX)
        return -1;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    grown = realloc(b->data, cap);
    if (grown == NULL)
        return -1;
    b->data = grown;
    b->cap = (uint32_t)cap;
    return 0;
}

void
buf_append_grow(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;     /* p may be NULL then */
    if (buf_reserve(b, n) < 0)
        oom(n);
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
