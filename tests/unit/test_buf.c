/* Unit tests for buffers: byte accounting, failure without abort, trimming. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>

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

int
main(void)
{
    test_accounting();
    test_large();
    test_failure();
    test_trim();
    return UNIT_DONE();
}
