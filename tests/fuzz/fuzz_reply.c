/*
 * fuzz_reply.c: libFuzzer target for the backend reply parser (src/reply.c).
 *
 * Input: 3 header bytes choose max_value and the split point, the rest is a
 * server's byte stream, cut into units the way backend.c does until NEED_MORE
 * or BAD. Checked for every unit:
 *   - line_len <= len <= the bytes given, the line ends in "\r\n";
 *   - VALUE: key_off + key_len <= rest_off <= len, a non-empty key (not
 *     bounded by KEY_MAX: reply.c only bounds the line),
 *     data_len <= max_value and data_len + line_len + 2 == len;
 *   - meta VA: data_len <= max_value and data_len + line_len + 2 == len;
 *   - other kinds: len == line_len;
 *   - a result does not depend on the split: an exact-size copy of a prefix
 *     gives NEED_MORE or the same result, and the whole unit gives the same;
 *   - reply_parse_expect gives the same result whatever key it expects
 *     (the VALUE's own, flagged as such, or one byte shorter, not flagged).
 * A violated invariant is __builtin_trap().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "luagent.h"
#include "reply.h"


static void
check_unit(const char *buf, size_t avail, uint32_t max_value, enum reply_status st,
           const struct reply *r)
{
    if (st != REPLY_OK_UNIT) {
        CHECK(st == REPLY_NEED_MORE || st == REPLY_BAD);
        return;
    }
    CHECK((unsigned)r->kind < REPLY_KIND_COUNT);
    CHECK(r->len >= 2 && r->len <= avail);
    CHECK(r->line_len >= 2 && r->line_len <= r->len);
    CHECK(buf[r->line_len - 2] == '\r' && buf[r->line_len - 1] == '\n');
    if (r->kind == REPLY_VALUE) {
        CHECK(r->key_len >= 1 && r->key_len < REPLY_LINE_MAX);
        CHECK((uint64_t)r->key_off + r->key_len <= r->rest_off);
        CHECK(r->rest_off <= r->len && r->rest_off < r->line_len);
        CHECK(memchr(buf + r->key_off, ' ', r->key_len) == NULL);
        CHECK(r->data_len <= max_value);
        CHECK((uint64_t)r->data_len + r->line_len + 2 == r->len);
        CHECK(buf[r->len - 2] == '\r' && buf[r->len - 1] == '\n');
    } else if (r->kind == REPLY_META_VA) {
        CHECK(r->data_len <= max_value);
        CHECK((uint64_t)r->data_len + r->line_len + 2 == r->len);
        CHECK(buf[r->len - 2] == '\r' && buf[r->len - 1] == '\n');
    } else {
        CHECK(r->len == r->line_len);
    }
}

static bool
same(enum reply_status a, const struct reply *ra, enum reply_status b, const struct reply *rb)
{
    if (a != b)
        return false;
    if (a != REPLY_OK_UNIT)
        return true;
    if (ra->kind != rb->kind || ra->len != rb->len || ra->line_len != rb->line_len)
        return false;
    if (ra->kind == REPLY_META_VA)
        return ra->data_len == rb->data_len;
    return ra->kind != REPLY_VALUE
        || (ra->key_off == rb->key_off && ra->key_len == rb->key_len
            && ra->rest_off == rb->rest_off && ra->data_len == rb->data_len);
}

static enum reply_status
parse_copy(const char *buf, size_t len, uint32_t max_value, struct reply *r)
{
    char *copy = malloc(len ? len : 1);
    enum reply_status st;

    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    memset(r, 0, sizeof(*r));
    st = reply_parse(copy, len, max_value, r);
    check_unit(copy, len, max_value, st, r);
    free(copy);
    return st;
}

/*
 * The unit parsed again with an expected key: the VALUE's own key (taken
 * only when it is one a request may carry), or one byte less of it.
 */
static void
check_expect(const char *buf, size_t len, uint32_t max_value, enum reply_status st,
             const struct reply *r)
{
    struct reply e;
    enum reply_status se;
    const char *key;
    uint32_t klen, i;

    if (st != REPLY_OK_UNIT || r->kind != REPLY_VALUE || r->key_len > KEY_MAX)
        return;
    key = buf + r->key_off;
    for (i = 0; i < r->key_len; i++)
        if (!key_byte_ok((unsigned char)key[i]))
            return;
    for (klen = r->key_len; klen + 1 >= r->key_len && klen > 0; klen--) {
        memset(&e, 0, sizeof(e));
        se = reply_parse_expect(buf, len, max_value, key, klen, &e);
        CHECK(same(st, r, se, &e));
        CHECK(!e.key_expected || klen == r->key_len);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in;
    uint32_t max_value, split;
    const char *buf;
    size_t len;

    if (!fuzz_input(data, size, &in))
        return 0;
    max_value = in.limit;
    split = in.split;
    buf = in.buf;
    len = in.len;

    for (int n = 0; len > 0 && n < 100000; n++) {
        struct reply r, rp;
        enum reply_status st, sp;
        size_t k;

        memset(&r, 0, sizeof(r));
        st = reply_parse(buf, len, max_value, &r);
        check_unit(buf, len, max_value, st, &r);
        check_expect(buf, len, max_value, st, &r);

        k = (len * ((split + 37u * (unsigned)n) & 0xff)) >> 8;
        sp = parse_copy(buf, k, max_value, &rp);
        if (sp != REPLY_NEED_MORE)
            CHECK(same(st, &r, sp, &rp));
        else if (st == REPLY_OK_UNIT && k >= r.len)
            __builtin_trap();
        if (st == REPLY_OK_UNIT) {
            sp = parse_copy(buf, r.len, max_value, &rp);
            CHECK(same(st, &r, sp, &rp));
        }
        if (st != REPLY_OK_UNIT)
            break;
        buf += r.len;
        len -= r.len;
    }
    return 0;
}
