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
#include <sys/uio.h>

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
    if (b->len == 0 && b->data != NULL) {
        /* Nothing to keep (a cached buffer taken for a large unit): a
         * realloc would copy the old block for nothing. */
        grown = malloc(cap);
        if (grown == NULL)
            return -1;
        free(b->data);
    } else {
        grown = realloc(b->data, cap);
        if (grown == NULL)
            return -1;
    }
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

/* ---- output queues ---- */

int
bufq_reserve(struct bufq *q, uint32_t n)
{
    struct bufq_piece *grown;
    uint32_t cap;

    if (q->cap - q->n >= n)
        return 0;
    if (q->first > 0) {         /* written pieces at the front: slide down */
        memmove(q->pieces, q->pieces + q->first, (q->n - q->first) * sizeof(*q->pieces));
        q->n -= q->first;
        q->first = 0;
        if (q->cap - q->n >= n)
            return 0;
    }
    cap = q->cap ? q->cap * 2 : 8;
    while (cap - q->n < n)
        cap *= 2;
    grown = realloc(q->pieces, cap * sizeof(*grown));
    if (grown == NULL)
        return -1;
    q->pieces = grown;
    q->cap = cap;
    return 0;
}

/* Room for one more piece at the end: 0, or -1 (out of memory). */
static int
bufq_room(struct bufq *q)
{
    return q->n < q->cap ? 0 : bufq_reserve(q, 1);
}

/* The open last piece is appended to no more: its bytes count in q->bytes. */
static void
bufq_seal(struct bufq *q)
{
    if (q->open) {
        q->bytes += buf_avail(q->pieces[q->n - 1].b);
        if (buf_failed(q->pieces[q->n - 1].b))
            q->failed = true;
    }
    q->open = false;
}

struct buf *
bufq_open(struct bufq *q)
{
    struct buf *b;

    if (bufq_room(q) < 0 || (b = buf_get(q->cache)) == NULL) {
        q->failed = true;
        return NULL;
    }
    q->pieces[q->n++] = (struct bufq_piece){ b, NULL, 0 };
    q->open = true;
    return b;
}

/* A piece that is not open for appends; false when out of memory. */
static bool
bufq_add(struct bufq *q, struct buf *b, const char *p, uint32_t len)
{
    if (len == 0)
        return false;
    bufq_seal(q);
    if (bufq_room(q) < 0) {
        q->failed = true;
        return false;
    }
    q->pieces[q->n++] = (struct bufq_piece){ b, p, len };
    q->bytes += len;
    return true;
}

void
bufq_share(struct bufq *q, struct buf *b, const char *p, uint32_t len)
{
    if (bufq_add(q, b, p, len))
        buf_share(b);
}

void
bufq_const(struct bufq *q, const char *p, uint32_t len)
{
    bufq_add(q, NULL, p, len);
}

int
bufq_iov(const struct bufq *q, struct iovec *iov, int max)
{
    uint32_t i;
    int k = 0;

    for (i = q->first; i < q->n && k < max; i++) {
        const struct bufq_piece *pc = &q->pieces[i];

        iov[k].iov_base = (void *)(pc->p != NULL ? pc->p : buf_head(pc->b));
        iov[k].iov_len = pc->p != NULL ? pc->len : buf_avail(pc->b);
        if (iov[k].iov_len > 0)
            k++;
    }
    return k;
}

/* The front piece is written out: let go of it. */
static void
bufq_drop_first(struct bufq *q)
{
    struct bufq_piece *pc = &q->pieces[q->first++];

    if (q->open && q->first == q->n)
        q->open = false;
    buf_put(q->cache, pc->b);
    if (q->first == q->n)
        q->first = q->n = 0;
}

void
bufq_consume_pieces(struct bufq *q, uint64_t n)
{
    while (q->first < q->n) {
        struct bufq_piece *pc = &q->pieces[q->first];
        bool open = q->open && q->first == q->n - 1;
        uint32_t have = pc->p != NULL ? pc->len : buf_avail(pc->b);
        uint32_t take = n < have ? (uint32_t)n : have;

        if (pc->p != NULL) {
            pc->p += take;
            pc->len -= take;
        } else {
            buf_consume(pc->b, take);
        }
        if (!open)
            q->bytes -= take;
        n -= take;
        if (take < have)
            return;
        bufq_drop_first(q);
    }
}

void
bufq_clear(struct bufq *q)
{
    while (q->first < q->n)
        bufq_drop_first(q);
    free(q->pieces);
    q->pieces = NULL;
    q->first = q->n = q->cap = 0;
    q->bytes = 0;
    q->open = q->failed = false;
}
