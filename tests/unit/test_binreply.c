/*
 * test_binreply.c: unit tests for the binary response encoder (src/binreply.c).
 *
 * Expected bytes are those memcached 1.6.18 writes to a binary client in the
 * same case (proto_bin.c), the server's meta reply standing for the item.
 */
#include "binreply.h"

#include <stdlib.h>

#include "binproto.h"
#include "buf.h"
#include "unit.h"

static struct buf *out;

static void
reset(void)
{
    out->pos = out->len = 0;
}

static struct bin_ctx
ctx(uint8_t opcode)
{
    struct bin_ctx q = { .opcode = opcode };

    memcpy(&q.opaque, "\x01\x02\x03\x04", 4);
    return q;
}

/* Check the header of the packet at off; returns the offset of its body. */
static size_t
check_header(size_t off, uint8_t opcode, uint16_t status, uint8_t extlen, uint16_t keylen,
             uint32_t bodylen, uint64_t cas)
{
    const unsigned char *h = (const unsigned char *)out->data + off;

    UNIT_REPORT(out->len >= off + 24, "a whole header at %zu (have %u)", off, out->len);
    if (out->len < off + 24)
        return off;
    CHECK_EQ(h[0], 0x81);
    CHECK_EQ(h[1], opcode);
    CHECK_EQ(h[2] << 8 | h[3], keylen);
    CHECK_EQ(h[4], extlen);
    CHECK_EQ(h[5], 0);
    CHECK_EQ(h[6] << 8 | h[7], status);
    CHECK_EQ(binproto_be32((const char *)h + 8), bodylen);
    CHECK_MEM(h + 12, 4, "\x01\x02\x03\x04", 4);
    CHECK_U64(binproto_be64((const char *)h + 16), cas);
    return off + 24;
}

#define UNIT(s) s, sizeof(s) - 1

static void
test_get_hit(void)
{
    struct bin_ctx q = ctx(BIN_GET);
    size_t b;

    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_VA, UNIT("VA 5 f258 c77\r\nhello\r\n")),
             BIN_SUCCESS);
    b = check_header(0, BIN_GET, 0, 4, 0, 9, 77);
    CHECK_MEM(out->data + b, 9, "\x00\x00\x01\x02hello", 9);
    CHECK_EQ(out->len, 33);

    q = ctx(BIN_GETKQ);         /* a quiet hit is written, with its key */
    reset();
    binreply_result(out, &q, "key", 3, REPLY_META_VA, UNIT("VA 0 f0 c1\r\n\r\n"));
    b = check_header(0, BIN_GETKQ, 0, 4, 3, 7, 1);
    CHECK_MEM(out->data + b, 7, "\x00\x00\x00\x00key", 7);

    q = ctx(BIN_TOUCH);         /* flags, no value */
    reset();
    binreply_result(out, &q, "k", 1, REPLY_META_HD, UNIT("HD f7 c9\r\n"));
    b = check_header(0, BIN_TOUCH, 0, 4, 0, 4, 9);
    CHECK_MEM(out->data + b, 4, "\x00\x00\x00\x07", 4);
    CHECK_EQ(out->len, 28);
}

static void
test_get_miss(void)
{
    struct bin_ctx q = ctx(BIN_GET);
    size_t b;

    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_EN, UNIT("EN\r\n")), BIN_KEY_ENOENT);
    b = check_header(0, BIN_GET, BIN_KEY_ENOENT, 0, 0, 9, 0);
    CHECK_MEM(out->data + b, 9, "Not found", 9);

    q = ctx(BIN_GETK);          /* the key, and no text */
    reset();
    binreply_result(out, &q, "abc", 3, REPLY_META_EN, UNIT("EN\r\n"));
    b = check_header(0, BIN_GETK, BIN_KEY_ENOENT, 0, 3, 3, 0);
    CHECK_MEM(out->data + b, 3, "abc", 3);

    static const uint8_t quiet[] = { BIN_GETQ, BIN_GETKQ, BIN_GATQ, BIN_GATKQ };
    for (size_t i = 0; i < sizeof(quiet); i++) {
        q = ctx(quiet[i]);
        reset();
        CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_EN, UNIT("EN\r\n")),
                 BIN_KEY_ENOENT);
        CHECK_EQ(out->len, 0);
    }
}

static void
test_store(void)
{
    struct bin_ctx q = ctx(BIN_SET);

    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_HD, UNIT("HD c12345678901\r\n")),
             BIN_SUCCESS);
    check_header(0, BIN_SET, 0, 0, 0, 0, 12345678901ull);
    CHECK_EQ(out->len, 24);

    q = ctx(BIN_SETQ);
    reset();
    binreply_result(out, &q, "k", 1, REPLY_META_HD, UNIT("HD c1\r\n"));
    CHECK_EQ(out->len, 0);
    reset();                    /* a quiet failure is written */
    binreply_result(out, &q, "k", 1, REPLY_META_EX, UNIT("EX\r\n"));
    check_header(0, BIN_SETQ, BIN_KEY_EEXISTS, 0, 0, 20, 0);
    CHECK_MEM(out->data + 24, 20, "Data exists for key.", 20);

    /* NS by opcode: add -> exists, replace -> not found, others -> not stored */
    q = ctx(BIN_ADD);
    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NS, UNIT("NS\r\n")), BIN_KEY_EEXISTS);
    q = ctx(BIN_REPLACEQ);
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NS, UNIT("NS\r\n")), BIN_KEY_ENOENT);
    q = ctx(BIN_APPEND);
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NS, UNIT("NS\r\n")), BIN_NOT_STORED);
    q = ctx(BIN_ADD);
    q.cas = true;               /* add with a CAS is a CAS in memcached */
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NS, UNIT("NS\r\n")), BIN_NOT_STORED);
    q = ctx(BIN_SET);
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NF, UNIT("NF\r\n")), BIN_KEY_ENOENT);

    q = ctx(BIN_DELETEQ);       /* a quiet delete's miss is written */
    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NF, UNIT("NF\r\n")), BIN_KEY_ENOENT);
    check_header(0, BIN_DELETEQ, BIN_KEY_ENOENT, 0, 0, 9, 0);
}

static void
test_arith(void)
{
    struct bin_ctx q = ctx(BIN_INCREMENT);
    size_t b;

    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_VA,
                             UNIT("VA 20 c3\r\n18446744073709551615\r\n")), BIN_SUCCESS);
    b = check_header(0, BIN_INCREMENT, 0, 0, 0, 8, 3);
    CHECK_MEM(out->data + b, 8, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);

    reset();
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_CLIENT_ERROR,
                             UNIT("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")),
             BIN_DELTA_BADVAL);
    b = check_header(0, BIN_INCREMENT, BIN_DELTA_BADVAL, 0, 0, 46, 0);
    CHECK_MEM(out->data + b, 46, "Non-numeric server-side value for incr or decr", 46);

    q = ctx(BIN_DECREMENTQ);
    reset();
    binreply_result(out, &q, "k", 1, REPLY_META_VA, UNIT("VA 1 c3\r\n0\r\n"));
    CHECK_EQ(out->len, 0);
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_META_NF, UNIT("NF\r\n")), BIN_KEY_ENOENT);
    CHECK(out->len > 0);
}

/*
 * binreply_result on a unit in a heap block of exactly its size, so that a
 * read past the unit shows under ASan.
 */
static uint16_t
result_exact(struct bin_ctx *q, enum reply_kind kind, const char *unit, size_t len)
{
    char *copy = malloc(len);
    uint16_t status;

    memcpy(copy, unit, len);
    status = binreply_result(out, q, "k", 1, kind, copy, len);
    free(copy);
    return status;
}

/* The meta line is read without a bound per byte: its edges. */
static void
test_meta_line_edges(void)
{
    struct bin_ctx q = ctx(BIN_GET);
    size_t b;

    reset();                    /* other flags before and between f and c */
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 2 t-1 f4294967295 s2 c12 k\r\nhi\r\n")),
             BIN_SUCCESS);
    b = check_header(0, BIN_GET, 0, 4, 0, 6, 12);
    CHECK_MEM(out->data + b, 6, "\xff\xff\xff\xffhi", 6);

    reset();                    /* the data looks like flags: not read as the line */
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 6 f1\r\n f9 c8\r\n")), BIN_SUCCESS);
    b = check_header(0, BIN_GET, 0, 4, 0, 10, 0);
    CHECK_MEM(out->data + b, 10, "\x00\x00\x00\x01 f9 c8", 10);

    reset();                    /* data holding "\r\n" and digits */
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 4 c5 f3\r\n7\r\n8\r\n")), BIN_SUCCESS);
    b = check_header(0, BIN_GET, 0, 4, 0, 8, 5);
    CHECK_MEM(out->data + b, 8, "\x00\x00\x00\x03" "7\r\n8", 8);

    reset();                    /* a flag letter with no digits, a trailing space */
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 1 f c \r\nx\r\n")), BIN_SUCCESS);
    b = check_header(0, BIN_GET, 0, 4, 0, 5, 0);
    CHECK_MEM(out->data + b, 5, "\x00\x00\x00\x00x", 5);

    q = ctx(BIN_TOUCH);         /* HD lines ending in a space, or right after a flag */
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD \r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 0);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 0);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD f")), BIN_SUCCESS);  /* no "\r\n": nothing read */
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 0);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c18446744073709551615\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, UINT64_MAX);

    /* numbers of seven and eight digits, the second ending where the unit's
     * line ends: the digits are read byte by byte, with no bound test */
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD f1234567 c12345678\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 12345678);
    CHECK_MEM(out->data + 24, 4, "\x00\x12\xd6\x87", 4);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c123456789 f4000000001\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 123456789);
    CHECK_MEM(out->data + 24, 4, "\xee\x6b\x28\x01", 4);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c1234567890123456 t1\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 1234567890123456ull);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c12345678901234567\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 12345678901234567ull);
    q = ctx(BIN_GET);           /* eight digits with a word of the line after them */
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 2 f12345678 c87654321 t-1\r\nhi\r\n")),
             BIN_SUCCESS);
    check_header(0, BIN_GET, 0, 4, 0, 6, 87654321);
    CHECK_MEM(out->data + 24, 6, "\x00\xbc\x61\x4ehi", 6);
    q = ctx(BIN_TOUCH);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_HD, UNIT("HD c0 f00000042\r\n")), BIN_SUCCESS);
    check_header(0, BIN_TOUCH, 0, 4, 0, 4, 0);
    CHECK_MEM(out->data + 24, 4, "\x00\x00\x00\x2a", 4);

    /* the value is what lies between the line and the unit's "\r\n" (reply.c
     * checked that the line says as much), whatever the length's digits */
    q = ctx(BIN_GET);
    reset();
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 999 c2\r\nab\r\n")), BIN_SUCCESS);
    check_header(0, BIN_GET, 0, 4, 0, 6, 2);
    CHECK_MEM(out->data + 28, 2, "ab", 2);
    reset();                    /* a unit too short for a line end and a block end */
    CHECK_EQ(result_exact(&q, REPLY_META_VA, UNIT("VA 1 c3 \r\n")), BIN_SUCCESS);
    check_header(0, BIN_GET, 0, 4, 0, 4, 3);
    CHECK_EQ(out->len, 28);
}

static void
test_error_lines(void)
{
    struct bin_ctx q = ctx(BIN_SETQ);
    size_t b;

    reset();
    CHECK_EQ(binreply_line(out, &q, UNIT("SERVER_ERROR backend timeout\r\n")), BIN_ETMPFAIL);
    b = check_header(0, BIN_SETQ, BIN_ETMPFAIL, 0, 0, 15, 0);
    CHECK_MEM(out->data + b, 15, "backend timeout", 15);
    reset();
    CHECK_EQ(binreply_line(out, &q, UNIT("SERVER_ERROR object too large for cache\r\n")),
             BIN_E2BIG);
    b = check_header(0, BIN_SETQ, BIN_E2BIG, 0, 0, 10, 0);
    CHECK_MEM(out->data + b, 10, "Too large.", 10);
    reset();
    CHECK_EQ(binreply_line(out, &q, UNIT("SERVER_ERROR out of memory storing object\r\n")),
             BIN_ENOMEM);
    CHECK_MEM(out->data + 24, out->len - 24, "out of memory storing object", 28);
    reset();
    CHECK_EQ(binreply_line(out, &q, UNIT("CLIENT_ERROR key too long after rewrite")),
             BIN_EINVAL);
    CHECK_MEM(out->data + 24, out->len - 24, "key too long after rewrite", 26);
    reset();
    CHECK_EQ(binreply_line(out, &q, UNIT("ERROR\r\n")), BIN_UNKNOWN_COMMAND);
    CHECK_MEM(out->data + 24, out->len - 24, "Unknown command", 15);
    reset();                    /* an error reply to a get: an error, not a miss */
    q = ctx(BIN_GETQ);
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_SERVER_ERROR,
                             UNIT("SERVER_ERROR luagent: route hook failed\r\n")), BIN_ETMPFAIL);
    CHECK(out->len > 24);
    reset();                    /* a reply that fits no binary answer */
    CHECK_EQ(binreply_result(out, &q, "k", 1, REPLY_STORED, UNIT("STORED\r\n")), BIN_ETMPFAIL);
}

static void
test_errors_and_packets(void)
{
    struct bin_ctx q = ctx(0x55);

    reset();
    binreply_error(out, &q, BIN_UNKNOWN_COMMAND, NULL, 0);
    check_header(0, 0x55, BIN_UNKNOWN_COMMAND, 0, 0, 15, 0);
    CHECK_MEM(out->data + 24, 15, "Unknown command", 15);
    CHECK_STR(binreply_status_text(BIN_EINVAL), "Invalid arguments");
    CHECK_STR(binreply_status_text(BIN_E2BIG), "Too large.");

    q = ctx(BIN_NOOP);
    reset();
    binreply_packet(out, &q, BIN_SUCCESS, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(out->len, 24);
    check_header(0, BIN_NOOP, 0, 0, 0, 0, 0);
}

static void
test_stats(void)
{
    static const char text[] = "STAT pid 42\r\nSTAT version 1.6.18-luagent\r\nSTAT empty \r\nEND\r\n";
    struct bin_ctx q = ctx(BIN_STAT);
    size_t b;

    reset();
    binreply_stats(out, &q, text, sizeof(text) - 1);
    b = check_header(0, BIN_STAT, 0, 0, 3, 5, 0);
    CHECK_MEM(out->data + b, 5, "pid42", 5);
    b = check_header(b + 5, BIN_STAT, 0, 0, 7, 21, 0);
    CHECK_MEM(out->data + b, 21, "version1.6.18-luagent", 21);
    b = check_header(b + 21, BIN_STAT, 0, 0, 5, 5, 0);
    b = check_header(b + 5, BIN_STAT, 0, 0, 0, 0, 0);
    CHECK_EQ(out->len, b);
}

int
main(void)
{
    struct buf_cache cache = { 0 };

    out = buf_get(&cache);
    test_get_hit();
    test_get_miss();
    test_store();
    test_arith();
    test_meta_line_edges();
    test_error_lines();
    test_errors_and_packets();
    test_stats();
    buf_put(&cache, out);
    buf_cache_free(&cache);
    return UNIT_DONE();
}
