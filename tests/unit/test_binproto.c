/*
 * test_binproto.c: unit tests for the binary request parser (src/binproto.c).
 *
 * The accepted shapes and the statuses of refused headers are memcached
 * 1.6.18's (proto_bin.c dispatch_bin_command), checked against a live
 * memcached in tests/integration/test_binary.py. Where luagent keeps the
 * stream in step and memcached does not, the case says "deviation".
 */
#include "binproto.h"

#include <stdlib.h>

#include "luagent.h"
#include "unit.h"

#define ITEM_MAX    1000

/* Build a request: header, extras, key, value. Returns its length. */
static size_t
req_build(unsigned char *out, uint8_t magic, uint8_t opcode, const void *ext, uint8_t extlen,
          const char *key, uint16_t keylen, const char *value, uint32_t vlen, uint32_t bodylen,
          uint64_t cas)
{
    memset(out, 0, BIN_HEADER_LEN);
    out[0] = magic;
    out[1] = opcode;
    out[2] = (unsigned char)(keylen >> 8);
    out[3] = (unsigned char)keylen;
    out[4] = extlen;
    out[8] = (unsigned char)(bodylen >> 24);
    out[9] = (unsigned char)(bodylen >> 16);
    out[10] = (unsigned char)(bodylen >> 8);
    out[11] = (unsigned char)bodylen;
    memcpy(out + 12, "\xde\xad\xbe\xef", 4);
    for (int i = 0; i < 8; i++)
        out[16 + i] = (unsigned char)(cas >> (56 - 8 * i));
    if (extlen)
        memcpy(out + BIN_HEADER_LEN, ext, extlen);
    if (keylen)
        memcpy(out + BIN_HEADER_LEN + extlen, key, keylen);
    if (vlen)
        memcpy(out + BIN_HEADER_LEN + extlen + keylen, value, vlen);
    return BIN_HEADER_LEN + (size_t)extlen + keylen + vlen;
}

/* A well-formed request (bodylen from its parts). */
static size_t
req(unsigned char *out, uint8_t opcode, const void *ext, uint8_t extlen, const char *key,
    const char *value, uint32_t vlen)
{
    uint16_t keylen = key ? (uint16_t)strlen(key) : 0;

    return req_build(out, BIN_MAGIC_REQUEST, opcode, ext, extlen, key, keylen, value, vlen,
                     (uint32_t)extlen + keylen + vlen, 0);
}

static struct bin_request br;
static uint16_t status;
static uint32_t need;

/* Parse from an exact-size heap copy, so ASan sees any read past the end. */
static enum bin_parse_status
parse(const unsigned char *s, size_t n)
{
    unsigned char *copy = malloc(n ? n : 1);
    enum bin_parse_status st;

    memcpy(copy, s, n);
    st = binproto_parse((const char *)copy, n, ITEM_MAX, &br, &status, &need);
    free(copy);
    return st;
}

static const unsigned char set_extras[8] = { 0, 0, 0x01, 0x02, 0, 0, 0x0e, 0x10 };
static const unsigned char arith_extras[20] = {
    0, 0, 0, 0, 0, 0, 0, 5,         /* delta 5 */
    0, 0, 0, 0, 0, 0, 0, 42,        /* initial 42 */
    0xff, 0xff, 0xff, 0xff          /* exptime: do not create */
};
static const unsigned char four[4] = { 0, 0, 0, 100 };

static void
test_get(void)
{
    unsigned char b[512];
    size_t n = req(b, BIN_GETK, NULL, 0, "foo", NULL, 0);

    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.opcode, BIN_GETK);
    CHECK_EQ(br.kind, BIN_K_GET);
    CHECK_EQ(br.key_off, 24);
    CHECK_EQ(br.keylen, 3);
    CHECK_EQ(br.value_len, 0);
    CHECK_MEM(&br.opaque, 4, "\xde\xad\xbe\xef", 4);
    CHECK(binproto_returns_key(BIN_GETK));
    CHECK(!binproto_quiet(BIN_GETK));
    CHECK(binproto_quiet(BIN_GETKQ) && binproto_returns_key(BIN_GETKQ));
    CHECK(binproto_quiet(BIN_GETQ) && !binproto_returns_key(BIN_GETQ));
}

static void
test_set_fields(void)
{
    unsigned char b[512];
    size_t n = req_build(b, BIN_MAGIC_REQUEST, BIN_SETQ, set_extras, 8, "k", 1, "hello", 5,
                         14, 0x0102030405060708ull);

    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.kind, BIN_K_STORE);
    CHECK_EQ(br.flags, 0x0102);
    CHECK_EQ(br.exptime, 3600);
    CHECK_U64(br.cas, 0x0102030405060708ull);
    CHECK_EQ(br.key_off, 32);
    CHECK_EQ(br.value_off, 33);
    CHECK_EQ(br.value_len, 5);
    CHECK(binproto_quiet(BIN_SETQ));
}

static void
test_arith_fields(void)
{
    unsigned char b[512];
    size_t n = req(b, BIN_DECREMENTQ, arith_extras, 20, "cnt", NULL, 0);

    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.kind, BIN_K_ARITH);
    CHECK_U64(br.delta, 5);
    CHECK_U64(br.initial, 42);
    CHECK_U64(br.exptime, 0xffffffffu);
}

static void
test_touch_flush_fields(void)
{
    unsigned char b[512];
    size_t n = req(b, BIN_GATKQ, four, 4, "t", NULL, 0);

    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.kind, BIN_K_GAT);
    CHECK_EQ(br.exptime, 100);
    n = req(b, BIN_FLUSHQ, four, 4, NULL, NULL, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.exptime, 100);
    n = req(b, BIN_FLUSH, NULL, 0, NULL, NULL, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    CHECK_EQ(br.exptime, 0);
}

/* Every opcode memcached serves, in its accepted shape. */
static void
test_every_opcode(void)
{
    static const struct {
        uint8_t op;
        const void *ext;
        uint8_t extlen;
        const char *key;
        const char *value;
        enum bin_kind kind;
    } ok[] = {
        { BIN_GET, NULL, 0, "k", NULL, BIN_K_GET },
        { BIN_GETQ, NULL, 0, "k", NULL, BIN_K_GET },
        { BIN_SET, set_extras, 8, "k", "v", BIN_K_STORE },
        { BIN_ADD, set_extras, 8, "k", "", BIN_K_STORE },
        { BIN_REPLACEQ, set_extras, 8, "k", "v", BIN_K_STORE },
        { BIN_APPEND, NULL, 0, "k", "v", BIN_K_CONCAT },
        { BIN_PREPENDQ, NULL, 0, "k", "", BIN_K_CONCAT },
        { BIN_DELETE, NULL, 0, "k", NULL, BIN_K_DELETE },
        { BIN_DELETEQ, NULL, 0, "k", NULL, BIN_K_DELETE },
        { BIN_INCREMENT, arith_extras, 20, "k", NULL, BIN_K_ARITH },
        { BIN_QUIT, NULL, 0, NULL, NULL, BIN_K_QUIT },
        { BIN_QUITQ, NULL, 0, NULL, NULL, BIN_K_QUIT },
        { BIN_NOOP, NULL, 0, NULL, NULL, BIN_K_NOOP },
        { BIN_VERSION, NULL, 0, NULL, NULL, BIN_K_VERSION },
        { BIN_STAT, NULL, 0, NULL, NULL, BIN_K_STAT },
        { BIN_STAT, NULL, 0, "pools", NULL, BIN_K_STAT },
        { BIN_TOUCH, four, 4, "k", NULL, BIN_K_TOUCH },
        { BIN_GAT, four, 4, "k", NULL, BIN_K_GAT },
        { BIN_GATQ, four, 4, "k", NULL, BIN_K_GAT },
        { BIN_GATK, four, 4, "k", NULL, BIN_K_GAT },
    };
    unsigned char b[512];
    size_t i;

    for (i = 0; i < ARRAY_SIZE(ok); i++) {
        size_t vlen = ok[i].value ? strlen(ok[i].value) : 0;
        size_t n = req(b, ok[i].op, ok[i].ext, ok[i].extlen, ok[i].key, ok[i].value,
                       (uint32_t)vlen);

        UNIT_REPORT(parse(b, n) == BIN_PARSE_OK && br.kind == ok[i].kind,
                    "opcode 0x%02x accepted as kind %d (got status %d kind %d)",
                    ok[i].op, ok[i].kind, status, br.kind);
    }
}

/* Opcodes memcached does not serve: "unknown command", body skipped. */
static void
test_unknown(void)
{
    unsigned char b[512];
    size_t n = req(b, BIN_VERBOSITY, four, 4, NULL, NULL, 0);

    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);
    CHECK_EQ(br.value_off + br.value_len, n);
    n = req(b, 0x55, NULL, 0, "key", "some value", 10);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);
    CHECK_EQ(br.value_off, 27);      /* deviation: memcached skips 13 more */
    CHECK_EQ(br.value_len, 10);
    CHECK_EQ(br.opcode, 0x55);
    n = req(b, BIN_SASL_LIST_MECHS, NULL, 0, NULL, NULL, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);
    n = req(b, BIN_SASL_AUTH, NULL, 0, "PLAIN", "\0user\0pass", 10);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);
    CHECK_EQ(br.value_off + br.value_len, n);
    /* The refusal comes once the key is here, before the value. */
    CHECK_EQ(parse(b, 28), BIN_PARSE_NEED_MORE);
    CHECK_EQ(need, 29);
    CHECK_EQ(parse(b, 29), BIN_PARSE_REFUSE);
}

/* Headers that cannot be trusted: the connection closes. */
static void
test_untrusted(void)
{
    unsigned char b[512];
    size_t n;

    n = req(b, BIN_GET, NULL, 0, "k", NULL, 0);
    b[0] = 0x81;                        /* a response's magic */
    CHECK_EQ(parse(b, n), BIN_PARSE_CLOSE);
    CHECK_EQ(status, 0);                /* memcached closes without a reply */
    b[0] = 'g';
    CHECK_EQ(parse(b, n), BIN_PARSE_CLOSE);

    /* key longer than the body */
    n = req_build(b, BIN_MAGIC_REQUEST, BIN_GET, NULL, 0, "key", 3, NULL, 0, 2, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_CLOSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);
    CHECK_EQ(br.opcode, BIN_GET);
    CHECK_MEM(&br.opaque, 4, "\xde\xad\xbe\xef", 4);
    /* key + extras longer than the body, before the key has arrived */
    n = req_build(b, BIN_MAGIC_REQUEST, BIN_SET, set_extras, 8, "key", 3, NULL, 0, 10, 0);
    CHECK_EQ(parse(b, BIN_HEADER_LEN), BIN_PARSE_CLOSE);
    CHECK_EQ(status, BIN_UNKNOWN_COMMAND);

    /* a key over 250 bytes, any opcode */
    {
        char key[300];

        memset(key, 'a', sizeof(key));
        n = req_build(b, BIN_MAGIC_REQUEST, BIN_GET, NULL, 0, key, 251, NULL, 0, 251, 0);
        CHECK_EQ(parse(b, n), BIN_PARSE_CLOSE);
        CHECK_EQ(status, BIN_EINVAL);
        n = req_build(b, BIN_MAGIC_REQUEST, 0x55, NULL, 0, key, 251, NULL, 0, 251, 0);
        CHECK_EQ(parse(b, n), BIN_PARSE_CLOSE);
        CHECK_EQ(status, BIN_EINVAL);
        n = req_build(b, BIN_MAGIC_REQUEST, BIN_GET, NULL, 0, key, 250, NULL, 0, 250, 0);
        CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    }

    /* the wrong extras or lengths for the opcode: EINVAL, close */
    static const struct {
        uint8_t op;
        uint8_t extlen;
        uint16_t keylen;
        uint32_t bodylen;
    } bad[] = {
        { BIN_GET, 4, 1, 5 },           /* extras */
        { BIN_GET, 0, 0, 0 },           /* no key */
        { BIN_GET, 0, 1, 3 },           /* a value */
        { BIN_SET, 4, 1, 5 },           /* 4 extras, not 8 */
        { BIN_SET, 8, 0, 8 },           /* no key */
        { BIN_APPEND, 8, 1, 9 },        /* extras */
        { BIN_DELETE, 4, 1, 5 },        /* an old delete's expiration */
        { BIN_INCREMENT, 8, 1, 9 },
        { BIN_INCREMENT, 20, 1, 22 },   /* a value */
        { BIN_NOOP, 0, 0, 1 },
        { BIN_VERSION, 0, 1, 1 },
        { BIN_QUIT, 4, 0, 4 },
        { BIN_FLUSH, 8, 0, 8 },
        { BIN_FLUSH, 4, 0, 6 },
        { BIN_TOUCH, 0, 1, 1 },
        { BIN_GAT, 4, 0, 4 },
        { BIN_GAT, 4, 1, 9 },           /* deviation: memcached leaves the value unread */
        { BIN_STAT, 4, 0, 4 },
        { BIN_STAT, 0, 1, 5 },          /* deviation, as for GAT */
        { BIN_SASL_LIST_MECHS, 0, 1, 1 },
        { BIN_SASL_AUTH, 0, 0, 4 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        unsigned char body[64] = { 0 };

        n = req_build(b, BIN_MAGIC_REQUEST, bad[i].op, body, bad[i].extlen, "kkkkk",
                      bad[i].keylen, (const char *)body,
                      bad[i].bodylen - bad[i].extlen - bad[i].keylen, bad[i].bodylen, 0);
        UNIT_REPORT(parse(b, n) == BIN_PARSE_CLOSE && status == BIN_EINVAL,
                    "opcode 0x%02x ext %u key %u body %u refused EINVAL (got %d)",
                    bad[i].op, bad[i].extlen, bad[i].keylen, bad[i].bodylen, status);
    }
}

/* A value over item_max: E2BIG, and the body is skipped without being buffered. */
static void
test_too_large(void)
{
    unsigned char b[2048];
    char value[ITEM_MAX + 1];
    size_t n;

    memset(value, 'v', sizeof(value));
    n = req(b, BIN_SET, set_extras, 8, "big", value, ITEM_MAX + 1);
    CHECK_EQ(parse(b, 35), BIN_PARSE_REFUSE);   /* header, extras and key suffice */
    CHECK_EQ(status, BIN_E2BIG);
    CHECK_EQ(br.value_off, 35);
    CHECK_EQ(br.value_len, ITEM_MAX + 1);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    n = req(b, BIN_APPENDQ, NULL, 0, "big", value, ITEM_MAX + 1);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_E2BIG);
    n = req(b, BIN_SET, set_extras, 8, "fits", value, ITEM_MAX);
    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
    /* A 4 GiB body: refused from the header alone, no overflow. */
    n = req_build(b, BIN_MAGIC_REQUEST, BIN_SET, set_extras, 8, "k", 1, NULL, 0,
                  0xffffffffu, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_REFUSE);
    CHECK_EQ(status, BIN_E2BIG);
    CHECK_U64(br.value_len, 0xffffffffu - 9);
}

/*
 * What a client connection does with a stream: parse, take or skip, repeat.
 * The stream arrives in two pieces, cut at byte cut; the outcomes (as text
 * in log) must not depend on where the cut is.
 */
static void
drive(const unsigned char *stream, size_t len, size_t cut, char *log, size_t logcap)
{
    unsigned char *buf = malloc(len + 1);
    size_t have = 0, skip = 0, piece;
    bool closed = false;

    log[0] = '\0';
    for (piece = 0; piece < 2 && !closed; piece++) {
        size_t from = piece == 0 ? 0 : cut, to = piece == 0 ? cut : len;

        memcpy(buf + have, stream + from, to - from);
        have += to - from;
        while (!closed) {
            enum bin_parse_status st;
            size_t used;

            if (skip > 0) {         /* a refused body: dropped as it arrives */
                used = skip < have ? skip : have;
                memmove(buf, buf + used, have - used);
                have -= used;
                skip -= used;
            }
            if (have == 0)
                break;
            st = binproto_parse((const char *)buf, have, ITEM_MAX, &br, &status, &need);
            if (st == BIN_PARSE_NEED_MORE) {
                if (need <= have)
                    snprintf(log + strlen(log), logcap - strlen(log), "[need %u]", need);
                break;
            }
            snprintf(log + strlen(log), logcap - strlen(log), "%d:%02x:%x ", st, br.opcode,
                     status);
            closed = st == BIN_PARSE_CLOSE;
            used = st == BIN_PARSE_OK ? br.value_off + br.value_len : br.value_off;
            if (st == BIN_PARSE_REFUSE)
                skip = br.value_len;
            if (!closed) {
                memmove(buf, buf + used, have - used);
                have -= used;
            }
        }
    }
    free(buf);
}

/* A pipeline of every kind of request, refusals included, split at every offset. */
static void
test_split_everywhere(void)
{
    unsigned char s[8192];
    char big[ITEM_MAX + 40];
    size_t n = 0, cut, mismatches = 0;
    char whole[1024], cut_log[1024];

    memset(big, 'x', sizeof(big));
    n += req(s + n, BIN_SET, set_extras, 8, "key1", "value one", 9);
    n += req(s + n, BIN_GETKQ, NULL, 0, "key1", NULL, 0);
    n += req(s + n, BIN_SET, set_extras, 8, "big", big, ITEM_MAX + 30);  /* E2BIG */
    n += req(s + n, 0x42, NULL, 0, "odd", "skipped", 7);                 /* unknown */
    n += req(s + n, BIN_INCREMENT, arith_extras, 20, "cnt", NULL, 0);
    n += req(s + n, BIN_GAT, four, 4, "key1", NULL, 0);
    n += req(s + n, BIN_APPENDQ, NULL, 0, "key1", "++", 2);
    n += req(s + n, BIN_FLUSH, four, 4, NULL, NULL, 0);
    n += req(s + n, BIN_STAT, NULL, 0, "pools", NULL, 0);
    n += req(s + n, BIN_NOOP, NULL, 0, NULL, NULL, 0);
    n += req_build(s + n, BIN_MAGIC_REQUEST, BIN_GET, NULL, 0, "k", 1, NULL, 0, 0, 0);
    n += req(s + n, BIN_NOOP, NULL, 0, NULL, NULL, 0);                   /* after the close */

    drive(s, n, n, whole, sizeof(whole));
    CHECK_STR(whole, "0:01:0 0:0d:0 2:01:3 2:42:81 0:05:0 0:1d:0 0:19:0 0:08:0 "
                     "0:10:0 0:0a:0 3:00:81 ");
    for (cut = 1; cut < n; cut++) {
        drive(s, n, cut, cut_log, sizeof(cut_log));
        if (strcmp(whole, cut_log) != 0 && mismatches++ < 3)
            printf("# cut at %zu: %s\n", cut, cut_log);
    }
    CHECK_EQ(mismatches, 0);
}

/* Every prefix of a request needs more, and says how much at most the whole. */
static void
test_prefixes(void)
{
    unsigned char b[512];
    size_t n = req(b, BIN_SET, set_extras, 8, "prefix", "0123456789", 10), i;
    size_t wrong = 0;

    for (i = 0; i < n; i++) {
        if (parse(b, i) != BIN_PARSE_NEED_MORE || need <= i || need > n)
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    CHECK_EQ(parse(b, n), BIN_PARSE_OK);
}

int
main(void)
{
    test_get();
    test_set_fields();
    test_arith_fields();
    test_touch_flush_fields();
    test_every_opcode();
    test_unknown();
    test_untrusted();
    test_too_large();
    test_split_everywhere();
    test_prefixes();
    return UNIT_DONE();
}
