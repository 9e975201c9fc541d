/* Unit tests for buffers: byte accounting, failure without abort, trimming. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#include "unit.h"

/* `used` counts the capacity of buffers out of the cache; `cached` the rest. */
static void
test_accounting(void)
{
    struct buf_cache cache = { 0 };
    struct buf *a = buf_get(&cache), *b;

    CHECK(a != NULL);
    CHECK_U64(cache.used, 0);
    buf_append(a, "hello", 5);
    CHECK_EQ(a->cap, BUF_SMALL);
    CHECK_U64(cache.used, BUF_SMALL);
    CHECK_EQ(buf_reserve(a, 2000), 0);              /* doubles past what is there */
    CHECK_EQ(a->cap, 2048);
    CHECK_U64(cache.used, 2048);
    buf_put(&cache, a);
    CHECK_U64(cache.used, 0);
    CHECK_EQ(cache.count, 1);
    b = buf_get(&cache);                            /* the same buffer, empty */
    CHECK(b == a);
    CHECK_EQ(b->len, 0);
    CHECK_U64(cache.used, 2048);
    buf_put(&cache, b);
    CHECK_U64(buf_cache_trim(&cache), 0);           /* in use during the period */
    CHECK_U64(cache.cached, 2048);                  /* counted at the trim */
    buf_cache_free(&cache);
    CHECK_U64(cache.cached, 0);
}

/* A large value in a new buffer gets its size, not the next power of two,
 * and is freed rather than cached when put back. */
static void
test_large(void)
{
    struct buf_cache cache = { 0 };
    struct buf *b = buf_get(&cache);

    CHECK_EQ(buf_reserve(b, 1048600), 0);
    CHECK_EQ(b->cap, 1048600);
    CHECK_U64(cache.used, 1048600);
    buf_put(&cache, b);
    CHECK_U64(cache.used, 0);
    CHECK_EQ(cache.count, 0);
    CHECK_U64(buf_cache_trim(&cache), 1048600);     /* reported as released */
}

/* Out of room: -1 and a failed mark, never an abort; put clears the mark. */
static void
test_failure(void)
{
    struct buf_cache cache = { 0 };
    struct buf *b = buf_get(&cache);
    static const char byte[1] = { 'x' };
    const char *volatile src = byte;   /* its size unknown to the compiler */

    buf_append(b, "ok", 2);
    CHECK_EQ(buf_reserve(b, (size_t)UINT32_MAX), -1);
    CHECK(!buf_failed(b));
    buf_append_grow(b, src, (size_t)UINT32_MAX);  /* cannot fit: nothing copied */
    CHECK(buf_failed(b));
    CHECK_EQ(b->len, 2);
    CHECK_U64(cache.used, b->cap);
    buf_put(&cache, b);
    b = buf_get(&cache);
    CHECK(!buf_failed(b));
    buf_put(&cache, b);
    buf_cache_free(&cache);
}

/* A trim frees the buffers that stayed in the list all period long. */
static void
test_trim(void)
{
    struct buf_cache cache = { 0 };
    struct buf *b[3];
    int i;

    for (i = 0; i < 3; i++) {
        b[i] = buf_get(&cache);
        buf_append(b[i], "abc", 3);
    }
    for (i = 0; i < 3; i++)
        buf_put(&cache, b[i]);
    CHECK_EQ(cache.count, 3);
    CHECK_U64(buf_cache_trim(&cache), 0);           /* the list was empty all along */
    CHECK_EQ(cache.count, 3);
    /* One taken and given back: two stayed unused. */
    buf_put(&cache, buf_get(&cache));
    CHECK_U64(buf_cache_trim(&cache), 2 * BUF_SMALL);
    CHECK_EQ(cache.count, 1);
    CHECK_U64(cache.cached, BUF_SMALL);
    CHECK_U64(buf_cache_trim(&cache), BUF_SMALL);   /* idle: the last one goes */
    CHECK_EQ(cache.count, 0);
    CHECK_U64(cache.cached, 0);
    CHECK_U64(cache.used, 0);
}

/* A shared buffer goes back to the cache with its last holder's put. */
static void
test_share(void)
{
    struct buf_cache cache = { 0 };
    struct buf *b = buf_get(&cache);

    buf_append(b, "abc", 3);
    CHECK(!buf_shared(b));
    CHECK(buf_share(b) == b);
    CHECK(buf_shared(b));
    buf_put(&cache, b);                             /* the first owner lets go */
    CHECK_EQ(cache.count, 0);
    CHECK_U64(cache.used, BUF_SMALL);               /* still held, still counted */
    CHECK_MEM(b->data, b->len, "abc", 3);
    buf_put(&cache, b);                             /* the last holder */
    CHECK_EQ(cache.count, 1);
    CHECK_U64(cache.used, 0);
    buf_cache_free(&cache);
}

/* An output queue: appends to its open piece, shared pieces by reference,
 * iovecs in order, partial writes, and the references let go as written. */
static void
test_queue(void)
{
    struct buf_cache cache = { 0 };
    struct bufq q = { .cache = &cache };
    struct buf *value = buf_get(&cache), *out;
    struct iovec iov[8];

    buf_append(value, "0123456789", 10);
    out = bufq_tail(&q);
    buf_append(out, "VALUE k", 7);
    CHECK_U64(bufq_bytes(&q), 7);
    bufq_share(&q, value, value->data + 2, 6);      /* "234567" */
    CHECK_EQ(value->refs, 1);
    buf_append(bufq_tail(&q), "END\r\n", 5);      /* a new open piece after it */
    CHECK(bufq_tail(&q) != out);
    CHECK_U64(bufq_bytes(&q), 18);
    CHECK_EQ(bufq_iov(&q, iov, 8), 3);
    CHECK_MEM(iov[0].iov_base, iov[0].iov_len, "VALUE k", 7);
    CHECK(iov[1].iov_base == value->data + 2);
    CHECK_MEM(iov[2].iov_base, iov[2].iov_len, "END\r\n", 5);
    CHECK_EQ(bufq_iov(&q, iov, 2), 2);              /* no more than asked */
    bufq_consume(&q, 9);                            /* "VALUE k" and "23" */
    CHECK_U64(bufq_bytes(&q), 9);
    CHECK_EQ(bufq_iov(&q, iov, 8), 2);
    CHECK_MEM(iov[0].iov_base, iov[0].iov_len, "4567", 4);
    bufq_consume(&q, 4);
    CHECK_EQ(value->refs, 0);                       /* written: the reference is gone */
    bufq_consume(&q, 5);
    CHECK_U64(bufq_bytes(&q), 0);
    CHECK_EQ(bufq_iov(&q, iov, 8), 0);
    buf_put(&cache, value);
    CHECK_U64(cache.used, 0);                       /* every piece went back */
    bufq_clear(&q);
    buf_cache_free(&cache);
}

/* Many pieces: the queue grows, and a cleared queue lets go of them all. */
static void
test_queue_many(void)
{
    struct buf_cache cache = { 0 };
    struct bufq q = { .cache = &cache };
    struct buf *value = buf_get(&cache);
    int i;

    buf_append(value, "v", 1);
    for (i = 0; i < 100; i++) {
        buf_append(bufq_tail(&q), "h", 1);
        bufq_share(&q, value, value->data, 1);
    }
    CHECK_U64(bufq_bytes(&q), 200);
    CHECK_EQ(value->refs, 100);
    CHECK(!bufq_failed(&q));
    bufq_consume(&q, 150);
    CHECK_EQ(value->refs, 25);
    bufq_clear(&q);
    CHECK_EQ(value->refs, 0);
    buf_put(&cache, value);
    CHECK_U64(cache.used, 0);
    buf_cache_free(&cache);
}

int
main(void)
{
    test_accounting();
    test_large();
    test_failure();
    test_trim();
    test_share();
    test_queue();
    test_queue_many();
    return UNIT_DONE();
}
