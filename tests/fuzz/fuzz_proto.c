/*
 * fuzz_proto.c: libFuzzer target for the request parser (src/proto.c).
 *
 * Input: 3 header bytes choose item_max and the split point, the rest is a
 * client's byte stream. It is parsed the way client.c does (parse, drop the
 * line, drop the data block of a storage command or a swallowed error, until
 * NEED_MORE or CLOSE), and every result is checked:
 *   - spans and lengths lie inside the bytes given, line_len <= len;
 *   - keyed commands: nkeys matches proto_next_key, keys are 1..250 bytes
 *     a VALUE line can carry back (key_byte_ok), inside the keys span, the
 *     first one is req.key;
 *   - meta commands: a base64 key decodes, a quiet one has "q" in its args;
 *   - a result does not depend on the split: parsing an exact-size copy of a
 *     prefix gives NEED_MORE or the very same result, and a prefix holding the
 *     whole line gives the same result.
 * A violated invariant is __builtin_trap().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "luagent.h"
#include "proto.h"


static void
check_span(struct span s, size_t limit)
{
    CHECK((size_t)s.off <= limit && (size_t)s.len <= limit - s.off);
}

static bool
is_keyed(enum cmd c)
{
    return c < CMD_FLUSH_ALL;
}

static bool
is_retrieval(enum cmd c)
{
    return c <= CMD_GATS;
}

static bool
is_storage(enum cmd c)
{
    return proto_cmd_has_data(c);
}

static void
check_meta(const char *buf, const struct request *rq)
{
    char key[KEY_MAX];

    CHECK(rq->meta == (rq->cmd >= CMD_MG && rq->cmd <= CMD_ME) || rq->cmd == CMD_MN);
    if (!rq->meta)
        return;
    CHECK(!rq->noreply);
    if (rq->base64)
        CHECK(proto_meta_key(buf, rq, key) > 0);
    if (rq->quiet)
        CHECK(rq->args.len > 0 && memchr(buf + rq->args.off, 'q', rq->args.len) != NULL);
}

static void
check_key(const char *buf, struct span k, struct span keys)
{
    CHECK(k.len >= 1 && k.len <= KEY_MAX);
    CHECK(k.off >= keys.off && (uint64_t)k.off + k.len <= (uint64_t)keys.off + keys.len);
    for (uint32_t i = 0; i < k.len; i++)
        CHECK(key_byte_ok((unsigned char)buf[k.off + i]));
}

static void
check_result(const char *buf, size_t len, enum proto_status st,
             const struct request *rq, const struct proto_error *er)
{
    if (st == PROTO_NEED_MORE)
        return;
    CHECK(st == PROTO_OK || st == PROTO_ERROR || st == PROTO_CLOSE);
    if (st != PROTO_OK) {
        CHECK(er->msg != NULL && er->msg[0] != '\0');
        if (st == PROTO_ERROR)
            CHECK(rq->line_len >= 1 && rq->line_len <= len);
        return;
    }
    CHECK(rq->line_len >= 2 && rq->line_len <= len);
    CHECK(buf[rq->line_len - 1] == '\n');
    CHECK((unsigned)rq->cmd < CMD_COUNT);
    check_span(rq->args, rq->line_len);
    check_meta(buf, rq);
    if (!is_keyed(rq->cmd)) {
        CHECK(rq->nkeys == 0);
        return;
    }
    check_span(rq->key, rq->line_len);
    check_span(rq->keys, rq->line_len);
    if (rq->nkeys == 0) {
        CHECK(rq->cmd == CMD_GAT || rq->cmd == CMD_GATS);
        return;
    }
    check_key(buf, rq->key, rq->keys);
    if (is_retrieval(rq->cmd)) {
        uint32_t pos = rq->keys.off, n = 0;
        struct span k;

        while (proto_next_key(buf, rq, &pos, &k)) {
            check_key(buf, k, rq->keys);
            if (n == 0)
                CHECK(k.off == rq->key.off && k.len == rq->key.len);
            n++;
            CHECK(n <= rq->nkeys);
        }
        CHECK(n == rq->nkeys);
    } else {
        CHECK(rq->nkeys == 1);
    }
}

static bool
same_result(enum proto_status a, const struct request *ra, const struct proto_error *ea,
            enum proto_status b, const struct request *rb, const struct proto_error *eb)
{
    if (a != b)
        return false;
    switch (a) {
    case PROTO_OK:
        return ra->cmd == rb->cmd && ra->noreply == rb->noreply
            && ra->line_len == rb->line_len && ra->nkeys == rb->nkeys
            && (!is_storage(ra->cmd) || ra->data_len == rb->data_len)
            && memcmp(&ra->key, &rb->key, sizeof(ra->key)) == 0
            && memcmp(&ra->keys, &rb->keys, sizeof(ra->keys)) == 0
            && memcmp(&ra->args, &rb->args, sizeof(ra->args)) == 0
            && ra->meta == rb->meta && ra->quiet == rb->quiet
            && ra->base64 == rb->base64 && ra->ret_key == rb->ret_key;
    case PROTO_ERROR:
        return ra->line_len == rb->line_len && ra->noreply == rb->noreply
            && strcmp(ea->msg, eb->msg) == 0 && ea->swallow == eb->swallow
            && (!ea->swallow || ra->data_len == rb->data_len);
    case PROTO_CLOSE:
        return ra->noreply == rb->noreply && strcmp(ea->msg, eb->msg) == 0;
    default:
        return true;
    }
}

/* Parse an exact-size heap copy, so ASan sees a read past len. */
static enum proto_status
parse_copy(const char *buf, size_t len, uint32_t item_max, struct request *rq,
           struct proto_error *er)
{
    char *copy = malloc(len ? len : 1);
    enum proto_status st;

    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    memset(rq, 0, sizeof(*rq));
    memset(er, 0, sizeof(*er));
    st = proto_parse(copy, len, item_max, rq, er);
    check_result(copy, len, st, rq, er);
    free(copy);
    return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in;
    uint32_t item_max, split;
    const char *buf;
    size_t len;

    if (!fuzz_input(data, size, &in))
        return 0;
    item_max = in.limit;
    split = in.split;
    buf = in.buf;
    len = in.len;

    for (int n = 0; len > 0 && n < 100000; n++) {
        struct request rq, rp;
        struct proto_error er, ep;
        enum proto_status st, sp;
        size_t k, used;

        memset(&rq, 0, sizeof(rq));
        memset(&er, 0, sizeof(er));
        st = proto_parse(buf, len, item_max, &rq, &er);
        check_result(buf, len, st, &rq, &er);

        /* The same bytes, cut at a point chosen by the input. */
        k = (len * ((split + 37u * (unsigned)n) & 0xff)) >> 8;
        sp = parse_copy(buf, k, item_max, &rp, &ep);
        if (sp != PROTO_NEED_MORE)
            CHECK(same_result(st, &rq, &er, sp, &rp, &ep));
        else if ((st == PROTO_OK || st == PROTO_ERROR) && k >= rq.line_len)
            __builtin_trap();   /* the whole line was there */
        if (st == PROTO_OK || st == PROTO_ERROR) {
            /* A whole-line prefix must give the same result. */
            sp = parse_copy(buf, rq.line_len, item_max, &rp, &ep);
            CHECK(same_result(st, &rq, &er, sp, &rp, &ep));
        }

        if (st == PROTO_NEED_MORE || st == PROTO_CLOSE)
            break;
        used = rq.line_len;
        if ((st == PROTO_OK && is_storage(rq.cmd)) || (st == PROTO_ERROR && er.swallow)) {
            if ((size_t)rq.data_len + 2 > len - used)
                break;      /* the client waits for the data block */
            if (st == PROTO_OK)
                (void)proto_data_ok(buf + used, rq.data_len);
            used += (size_t)rq.data_len + 2;
        }
        CHECK(used > 0 && used <= len);
        buf += used;
        len -= used;
    }
    return 0;
}
