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

/*
 * A server connection's output with a data block by reference: the line in
 * the open piece, the block shared, constant bytes after it. Room reserved
 * for pieces means the shares after it cannot fail.
 */
static void
test_queue_const_and_reserve(void)
{
    struct buf_cache cache = { 0 };
    struct bufq q = { .cache = &cache };
    struct buf *block = buf_get(&cache);
    struct iovec iov[8];
    uint32_t cap;

    buf_append(block, "set k 0 0 4\r\nDATA", 17);
    buf_append(bufq_tail(&q), "set x 0 0 4\r\n", 13);
    CHECK_EQ(bufq_reserve(&q, 3), 0);
    cap = q.cap;
    CHECK(q.cap - q.n >= 3);
    bufq_share(&q, block, block->data + 13, 4);
    bufq_const(&q, "\r\n", 2);
    bufq_const(&q, "mn\r\n", 4);
    CHECK_EQ(q.cap, cap);                           /* no growth: room was there */
    CHECK(!q.open);                                 /* the next append opens a piece */
    CHECK_U64(bufq_bytes(&q), 23);
    CHECK_EQ(bufq_iov(&q, iov, 8), 4);
    CHECK_MEM(iov[1].iov_base, iov[1].iov_len, "DATA", 4);
    CHECK_MEM(iov[2].iov_base, iov[2].iov_len, "\r\n", 2);
    CHECK_MEM(iov[3].iov_base, iov[3].iov_len, "mn\r\n", 4);
    CHECK_EQ(block->refs, 1);
    bufq_consume(&q, 18);                           /* into the constant "\r\n" */
    CHECK_EQ(block->refs, 0);
    CHECK_EQ(bufq_iov(&q, iov, 8), 2);
    CHECK_MEM(iov[0].iov_base, iov[0].iov_len, "\n", 1);
    bufq_consume(&q, 5);
    CHECK_U64(bufq_bytes(&q), 0);
    bufq_const(&q, "", 0);                          /* nothing: no piece */
    CHECK_U64(bufq_bytes(&q), 0);
    CHECK_EQ(bufq_iov(&q, iov, 8), 0);
    /* Written pieces at the front make the room, without growing. */
    for (cap = 0; cap < 7; cap++)
        bufq_const(&q, "ab", 2);
    bufq_consume(&q, 12);
    cap = q.cap;
    CHECK_EQ(bufq_reserve(&q, q.cap - 1), 0);
    CHECK_EQ(q.cap, cap);
    CHECK_EQ(q.first, 0);
    CHECK_EQ(bufq_reserve(&q, 3 * q.cap), 0);      /* grown past a doubling */
    CHECK(q.cap - q.n >= 3 * cap);
    bufq_clear(&q);
    buf_put(&cache, block);
    CHECK_U64(cache.used, 0);
    buf_cache_free(&cache);
}

/*
 * The room for a read: the buffer itself while it is not shared, a fresh
 * one (taking the unread bytes) once it is, or once a unit of known size
 * does not fit; the shared bytes do not move.
 */
static void
test_read_room(void)
{
    struct buf_cache cache = { 0 };
    struct buf *in = buf_read_room(&cache, NULL, 100, false), *held, *next;
    const char *at;

    CHECK(in != NULL && in->cap >= 100);
    buf_append(in, "set k 0 0 5\r\nhello\r\nget", 23);
    buf_consume(in, 13);
    CHECK(buf_read_room(&cache, in, 10, false) == in);     /* room after it */
    CHECK_EQ(in->pos, 13);
    CHECK(buf_read_room(&cache, in, in->cap - 11, false) == in);  /* fits once compacted */
    CHECK_EQ(in->pos, 0);
    CHECK_MEM(buf_head(in), buf_avail(in), "hello\r\nget", 10);
    held = buf_share(in);                           /* a request holds "hello" */
    at = buf_head(in);
    buf_consume(in, 7);
    next = buf_read_room(&cache, in, 10, false);
    CHECK(next != NULL && next != in);
    CHECK_MEM(buf_head(next), buf_avail(next), "get", 3);
    CHECK(buf_head(held) != NULL && at == held->data);
    CHECK_MEM(at, 5, "hello", 5);                   /* untouched, still there */
    CHECK_EQ(held->refs, 0);                        /* the reader's reference went */
    buf_put(&cache, held);
    /* A unit of known size that does not fit gets a buffer of its own size. */
    in = next;
    next = buf_read_room(&cache, in, 200000, true);
    CHECK(next != NULL && next != in);
    CHECK_EQ(next->cap, 200003);     /* "get" + 200000 */
    CHECK_MEM(buf_head(next), buf_avail(next), "get", 3);
    buf_put(&cache, next);
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
    test_queue_const_and_reserve();
    test_read_room();
    return UNIT_DONE();
}
