/*
 * fuzz_binproto.c: libFuzzer target for the binary request parser
 * (src/binproto.c) and the response encoder (src/binreply.c).
 *
 * Input: 3 header bytes choose item_max and the split point, the rest is a
 * client's byte stream. It is parsed the way client.c does (take a whole
 * request, or drop a refused one's header and skip its body, until NEED_MORE
 * or CLOSE), and every result is checked:
 *   - offsets and lengths lie inside the bytes given; the key is at most
 *     250 bytes; a stored value is at most item_max; NEED_MORE asks for more
 *     than is there; statuses are the ones memcached uses for each outcome;
 *   - a result does not depend on the split: an exact-size copy of a prefix
 *     gives NEED_MORE (asking for no more than the whole) or the same result;
 *   - each request taken is answered by the encoder from a reply made of its
 *     own value bytes, and what it writes is a sequence of well-formed
 *     response packets carrying the request's opcode and opaque.
 * A violated invariant is __builtin_trap().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "binproto.h"
#include "binreply.h"
#include "buf.h"
#include "fuzz_input.h"
#include "luagent.h"

static void
check_result(size_t len, uint32_t item_max, enum bin_parse_status st,
             const struct bin_request *r, uint16_t status, uint32_t need)
{
    switch (st) {
    case BIN_PARSE_NEED_MORE:
        CHECK(need > len);
        return;
    case BIN_PARSE_CLOSE:
        CHECK(status == 0 || status == BIN_UNKNOWN_COMMAND || status == BIN_EINVAL);
        return;
    case BIN_PARSE_REFUSE:
        CHECK(status == BIN_UNKNOWN_COMMAND || status == BIN_E2BIG);
        CHECK(r->value_off <= len && r->key_off == BIN_HEADER_LEN + (uint32_t)r->extlen);
        CHECK(status != BIN_E2BIG || r->value_len > item_max || r->value_len > UINT32_MAX - 4096);
        return;
    case BIN_PARSE_OK:
        CHECK(r->key_off == BIN_HEADER_LEN + (uint32_t)r->extlen);
        CHECK(r->value_off == r->key_off + r->keylen && r->keylen <= KEY_MAX);
        CHECK((uint64_t)r->value_off + r->value_len <= len);
        CHECK((uint64_t)r->extlen + r->keylen + r->value_len == r->bodylen);
        CHECK(r->kind != BIN_K_UNKNOWN && r->kind != BIN_K_SASL_LIST
              && r->kind != BIN_K_SASL_AUTH);
        CHECK(r->value_len == 0 || r->kind == BIN_K_STORE || r->kind == BIN_K_CONCAT);
        CHECK(r->value_len <= item_max);
        return;
    }
    __builtin_trap();
}

static enum bin_parse_status
parse_copy(const char *buf, size_t len, uint32_t item_max, struct bin_request *r,
           uint16_t *status, uint32_t *need)
{
    char *copy = malloc(len ? len : 1);
    enum bin_parse_status st;

    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    st = binproto_parse(copy, len, item_max, r, status, need);
    check_result(len, item_max, st, r, *status, *need);
    free(copy);
    return st;
}

static bool
same_result(enum bin_parse_status a, const struct bin_request *ra, uint16_t sa,
            enum bin_parse_status b, const struct bin_request *rb, uint16_t sb)
{
    if (a != b || sa != sb)
        return false;
    if (a == BIN_PARSE_CLOSE)
        return ra->opcode == rb->opcode && ra->opaque == rb->opaque;
    return memcmp(ra, rb, sizeof(*ra)) == 0;
}

/* The encoder's output is whole packets, each for this request. */
static void
check_packets(const struct buf *out, const struct bin_request *r)
{
    uint32_t pos = 0;

    while (pos < out->len) {
        const char *h = out->data + pos;
        uint32_t body;

        CHECK(out->len - pos >= BIN_HEADER_LEN);
        CHECK((uint8_t)h[0] == BIN_MAGIC_RESPONSE && (uint8_t)h[1] == r->opcode);
        CHECK(memcmp(h + 12, &r->opaque, 4) == 0);
        body = binproto_be32(h + 8);
        CHECK((uint64_t)(uint8_t)h[4] + (((uint32_t)(uint8_t)h[2] << 8) | (uint8_t)h[3]) <= body);
        CHECK(out->len - pos - BIN_HEADER_LEN >= body);
        pos += BIN_HEADER_LEN + body;
    }
}

/* Answer the request with a reply made of its value bytes (or a miss). */
static void
encode(struct buf_cache *cache, const char *buf, const struct bin_request *r)
{
    struct buf *out = buf_get(cache);
    struct bin_ctx q = { .opaque = r->opaque, .opcode = r->opcode, .cas = r->cas != 0 };
    const char *unit = buf + r->value_off;
    enum reply_kind kind = r->value_len > 0
        ? (enum reply_kind)((uint8_t)unit[0] % REPLY_KIND_COUNT) : REPLY_META_EN;

    binreply_result(out, &q, buf + r->key_off, r->keylen, kind, unit, r->value_len);
    check_packets(out, r);
    out->len = 0;
    binreply_stats(out, &q, unit, r->value_len);
    check_packets(out, r);
    buf_put(cache, out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf_cache cache = { 0 };
    struct fuzz_input in;
    size_t skip = 0;

    if (!fuzz_input(data, size, &in))
        return 0;
    for (int n = 0; in.len > 0 && n < 100000; n++) {
        struct bin_request r, rp;
        uint16_t status, sp_status;
        uint32_t need, sp_need;
        enum bin_parse_status st, sp;
        size_t k, used;

        if (skip > 0) {
            used = skip < in.len ? skip : in.len;
            in.buf += used;
            in.len -= used;
            skip -= used;
            continue;
        }
        st = binproto_parse(in.buf, in.len, in.limit, &r, &status, &need);
        check_result(in.len, in.limit, st, &r, status, need);

        k = (in.len * ((in.split + 37u * (unsigned)n) & 0xff)) >> 8;
        sp = parse_copy(in.buf, k, in.limit, &rp, &sp_status, &sp_need);
        if (sp == BIN_PARSE_NEED_MORE) {
            if (st == BIN_PARSE_NEED_MORE)
                CHECK(sp_need <= need);
            else if (st == BIN_PARSE_OK)
                CHECK(sp_need <= r.value_off + r.value_len);
            else if (st == BIN_PARSE_REFUSE)
                CHECK(sp_need <= r.value_off);
        } else {
            CHECK(same_result(st, &r, status, sp, &rp, sp_status));
        }
        if (st == BIN_PARSE_NEED_MORE || st == BIN_PARSE_CLOSE)
            break;
        if (st == BIN_PARSE_OK) {
            encode(&cache, in.buf, &r);
            used = r.value_off + r.value_len;
        } else {
            used = r.value_off;
            skip = r.value_len;
        }
        CHECK(used > 0 && used <= in.len);
        in.buf += used;
        in.len -= used;
    }
    buf_cache_free(&cache);
    return 0;
}
