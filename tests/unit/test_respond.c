/*
 * test_respond.c: unit tests for reply assembly (src/respond.c).
 *
 * Each test builds a finished request by hand, the way the client and the
 * route engine leave it (parsed request, slots with their results), and
 * checks the exact bytes a client would get and the counters the reply
 * adds. Expected bytes are memcached's own for the same outcome.
 */
#include "respond.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "binproto.h"
#include "buf.h"
#include "counters.h"
#include "luagent.h"
#include "proto.h"
#include "request.h"
#include "unit.h"

static struct buf_cache cache;
static struct buf *out;
static struct stats st;

/*
 * Linked with -Wl,--wrap=realloc (see the Makefile): while fail_realloc is
 * set, a buffer cannot grow, as when the system is out of memory.
 */
static bool fail_realloc;
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

void *
__wrap_realloc(void *p, size_t n)
{
    return fail_realloc ? NULL : __real_realloc(p, n);
}

#define LIT(s) s, sizeof(s) - 1

/* A buffer holding bytes (a result's data). */
static struct buf *
bytes(const char *s, size_t len)
{
    struct buf *b = buf_get(&cache);

    buf_append(b, s, len);
    return b;
}

/* A request parsed from line, with room for n slots; keys filled from it. */
static void
request_from(struct creq *r, const char *line, uint32_t n)
{
    struct proto_error err;
    uint32_t pos, i = 0;
    struct span k;

    memset(r, 0, sizeof(*r));
    r->buf = bytes(line, strlen(line));
    CHECK_EQ(proto_parse(r->buf->data, r->buf->len, 1 << 20, &r->req, &err), PROTO_OK);
    CHECK_EQ(creq_slots(r, n), 0);
    if (!proto_cmd_is_retrieval(r->req.cmd)) {
        if (n > 0)
            creq_key_slot(r);
        return;
    }
    pos = r->req.keys.off;
    while (i < n && proto_next_key(r->buf->data, &r->req, &pos, &k)) {
        r->slots[i].key = r->buf->data + k.off;
        r->slots[i].klen = k.len;
        i++;
    }
}

static void
set_result(struct creq *r, uint32_t i, enum reply_kind kind, const char *data, size_t len)
{
    r->slots[i].res.kind = kind;
    if (data != NULL)
        result_set_buf(&r->slots[i].res, bytes(data, len));
    r->slots[i].done = true;
    r->ndone++;
}

static void
set_fail(struct creq *r, uint32_t i, enum fail_reason why)
{
    r->slots[i].res.fail = why;
    r->slots[i].done = true;
    r->ndone++;
}

static void
done_with(struct creq *r)
{
    uint32_t i;

    for (i = 0; i < r->nslots; i++)
        buf_put(&cache, r->slots[i].res.data);
    if (r->slots != &r->one)
        free(r->spare);
    buf_put(&cache, r->buf);
}

/* respond_text's output, flattened into out: the pieces in order. */
static void
text_reply(const struct creq *r)
{
    struct bufq q = { .cache = &cache };
    struct iovec iov[64];
    int i, n;

    respond_text(&q, r, &st);
    CHECK(!bufq_failed(&q));
    n = bufq_iov(&q, iov, 64);
    for (i = 0; i < n; i++)
        buf_append(out, iov[i].iov_base, iov[i].iov_len);
    bufq_clear(&q);
}

static void
reset(void)
{
    out->pos = out->len = 0;
    memset(&st, 0, sizeof(st));
}

#define CHECK_OUT(s) CHECK_MEM(out->data, out->len, s, sizeof(s) - 1)

/* ---- text ---- */

static void
test_get_hit_and_miss(void)
{
    struct creq r;

    reset();
    request_from(&r, "get foo\r\n", 1);
    set_result(&r, 0, REPLY_VALUE, LIT(" 5 3\r\nbar\r\n"));
    text_reply(&r);
    CHECK_OUT("VALUE foo 5 3\r\nbar\r\nEND\r\n");
    CHECK_U64(st.get_hits, 1);
    CHECK_U64(st.get_misses, 0);
    done_with(&r);

    reset();
    request_from(&r, "get foo\r\n", 1);
    set_result(&r, 0, REPLY_END, NULL, 0);
    text_reply(&r);
    CHECK_OUT("END\r\n");
    CHECK_U64(st.get_hits, 0);
    CHECK_U64(st.get_misses, 1);
    done_with(&r);
}

/*
 * A VALUE line carries the client's key whole at every length: short keys
 * are copied by a path of their own (4..7 and 8..16 bytes).
 */
static void
test_value_key_lengths(void)
{
    char line[KEY_MAX + 16], want[KEY_MAX + 32];
    uint32_t n;

    for (n = 1; n <= KEY_MAX; n++) {
        struct creq r;
        int len;

        memset(line, 0, sizeof(line));
        memcpy(line, "get ", 4);
        for (uint32_t i = 0; i < n; i++)
            line[4 + i] = (char)('a' + (i * 7 + n) % 26);
        memcpy(line + 4 + n, "\r\n", 2);
        reset();
        request_from(&r, line, 1);
        set_result(&r, 0, REPLY_VALUE, LIT(" 0 1\r\nv\r\n"));
        text_reply(&r);
        len = snprintf(want, sizeof(want), "VALUE %.*s 0 1\r\nv\r\nEND\r\n", (int)n, line + 4);
        CHECK_MEM(out->data, out->len, want, (size_t)len);
        done_with(&r);
    }
}

/*
 * A hit whose VALUE line finds no room, and no memory to grow the output
 * piece: the output is marked failed (its client is then closed), never
 * left holding part of the line. The piece is filled so that "VALUE " and
 * "END\r\n" alone would still fit in what is left of it.
 */
static void
test_value_without_memory(void)
{
    struct bufq q = { .cache = &cache };
    struct creq r;
    struct buf *tail;
    uint32_t filled;

    reset();
    request_from(&r, "get k\r\n", 1);
    set_result(&r, 0, REPLY_VALUE, LIT(" 0 1\r\nv\r\n"));
    tail = bufq_tail(&q);
    CHECK(tail != NULL);
    while (tail->cap - tail->len > 6 + 5)
        buf_append(tail, "x", 1);
    filled = tail->len;
    fail_realloc = true;
    respond_text(&q, &r, &st);
    fail_realloc = false;
    CHECK(bufq_failed(&q));
    CHECK(tail->len < filled + 5 || memcmp(tail->data + filled, "VALUE", 5) != 0);
    bufq_clear(&q);
    done_with(&r);
}

/*
 * A multi-get written as it comes in: the done keys in order up to the first
 * that is not, then (once all are in) the rest from there and END, as one
 * reply; a key that failed meanwhile is a miss. Stats count each key once.
 */
static void
test_multiget_streamed(void)
{
    struct creq r;
    struct bufq q = { .cache = &cache };

    reset();
    request_from(&r, "get a b c d\r\n", 4);
    set_result(&r, 1, REPLY_VALUE, LIT(" 0 1\r\nB\r\n"));
    CHECK_EQ(respond_text_values(&q, &r, 0, &st), 0);         /* a is not in: nothing */
    CHECK_U64(bufq_bytes(&q), 0);
    set_result(&r, 0, REPLY_VALUE, LIT(" 0 1\r\nA\r\n"));
    r.nwritten = respond_text_values(&q, &r, 0, &st);
    CHECK_EQ(r.nwritten, 2);
    CHECK_U64(bufq_bytes(&q), 2 * strlen("VALUE a 0 1\r\nA\r\n"));
    set_fail(&r, 3, FAIL_CLOSED);
    set_result(&r, 2, REPLY_END, NULL, 0);
    text_reply(&r);
    CHECK_OUT("END\r\n");                                    /* c missed, d failed */
    CHECK_U64(st.get_hits, 2);
    CHECK_U64(st.get_misses, 2);
    bufq_clear(&q);
    done_with(&r);
}

/* A large value goes into the output by reference to the bytes the result
 * holds, not copied; a small one is copied into the line before it. */
static void
test_large_value_shared(void)
{
    struct creq r;
    struct bufq q = { .cache = &cache };
    struct iovec iov[8];
    struct buf *held;
    char unit[16 + RESPOND_SHARE_MIN];
    int n;

    reset();
    n = snprintf(unit, sizeof(unit), " 0 %d\r\n", RESPOND_SHARE_MIN);
    memset(unit + n, 'v', RESPOND_SHARE_MIN);
    memcpy(unit + n + RESPOND_SHARE_MIN, "\r\n", 2);
    request_from(&r, "get k s\r\n", 2);
    set_result(&r, 0, REPLY_VALUE, unit, (size_t)n + RESPOND_SHARE_MIN + 2);
    set_result(&r, 1, REPLY_VALUE, LIT(" 0 1\r\nx\r\n"));
    held = r.slots[0].res.data;
    respond_text(&q, &r, &st);
    n = bufq_iov(&q, iov, 8);
    CHECK_EQ(n, 3);                             /* "VALUE k", the value, the rest */
    CHECK(iov[1].iov_base == r.slots[0].res.bytes);
    CHECK_EQ(held->refs, 1);                    /* the output's reference */
    CHECK_MEM(iov[2].iov_base, iov[2].iov_len, "VALUE s 0 1\r\nx\r\nEND\r\n", 21);
    bufq_clear(&q);
    CHECK_EQ(held->refs, 0);
    done_with(&r);
}

/* Keys in the order asked, whatever the servers did; a failed key is a miss. */
static void
test_multiget(void)
{
    struct creq r;

    reset();
    request_from(&r, "gets a bb c d\r\n", 4);
    set_result(&r, 0, REPLY_VALUE, LIT(" 0 1 7\r\nx\r\n"));
    set_result(&r, 1, REPLY_END, NULL, 0);
    set_fail(&r, 2, FAIL_TIMEOUT);
    set_result(&r, 3, REPLY_VALUE, LIT(" 3 2 8\r\nyz\r\n"));
    text_reply(&r);
    CHECK_OUT("VALUE a 0 1 7\r\nx\r\nVALUE d 3 2 8\r\nyz\r\nEND\r\n");
    CHECK_U64(st.get_hits, 2);
    CHECK_U64(st.get_misses, 2);
    CHECK_U64(st.server_errors, 0);
    done_with(&r);
}

/* One key that could not be read: why, not a miss. */
static void
test_get_errors(void)
{
    struct creq r;

    reset();
    request_from(&r, "get foo\r\n", 1);
    set_fail(&r, 0, FAIL_TIMEOUT);
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR backend timeout\r\n");
    CHECK_U64(st.server_errors, 1);
    CHECK_U64(st.get_misses, 0);
    done_with(&r);

    reset();
    request_from(&r, "get foo\r\n", 1);
    set_result(&r, 0, REPLY_SERVER_ERROR, LIT("SERVER_ERROR busy\r\n"));
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR busy\r\n");
    CHECK_U64(st.server_errors, 1);
    done_with(&r);
}

static void
test_fail_lines(void)
{
    CHECK_STR(fail_reason_line(FAIL_UNAVAILABLE), "SERVER_ERROR backend unavailable");
    CHECK_STR(fail_reason_line(FAIL_TIMEOUT), "SERVER_ERROR backend timeout");
    CHECK_STR(fail_reason_line(FAIL_CLOSED), "SERVER_ERROR backend closed connection");
    CHECK_STR(fail_reason_line(FAIL_PROTOCOL), "SERVER_ERROR backend protocol error");
    CHECK_STR(fail_reason_line(FAIL_NOMEM), "SERVER_ERROR out of memory");
}

static void
test_storage_and_lines(void)
{
    struct creq r;

    reset();
    request_from(&r, "set k 0 0 1\r\nv\r\n", 1);
    set_result(&r, 0, REPLY_STORED, LIT("STORED\r\n"));
    text_reply(&r);
    CHECK_OUT("STORED\r\n");
    done_with(&r);

    reset();
    request_from(&r, "delete k\r\n", 1);
    set_fail(&r, 0, FAIL_UNAVAILABLE);
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR backend unavailable\r\n");
    CHECK_U64(st.server_errors, 1);
    done_with(&r);

    /* noreply: nothing, even for an error */
    reset();
    request_from(&r, "set k 0 0 1 noreply\r\nv\r\n", 1);
    set_fail(&r, 0, FAIL_TIMEOUT);
    text_reply(&r);
    CHECK_EQ(out->len, 0);
    done_with(&r);

    /* answered out of memory as a whole, whatever its slots hold */
    reset();
    request_from(&r, "get a b\r\n", 2);
    set_result(&r, 0, REPLY_VALUE, LIT(" 0 1\r\nx\r\n"));
    set_result(&r, 1, REPLY_END, NULL, 0);
    r.oom = true;
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR out of memory\r\n");
    done_with(&r);
}

static void
test_local(void)
{
    struct creq r;

    reset();
    memset(&r, 0, sizeof(r));
    r.local = "ERROR";
    text_reply(&r);
    CHECK_OUT("ERROR\r\n");

    reset();
    r.local = "";               /* quit: silence */
    text_reply(&r);
    CHECK_EQ(out->len, 0);

    reset();
    r.local = "CLIENT_ERROR bad data chunk";
    r.req.noreply = true;       /* memcached keeps even errors quiet then */
    text_reply(&r);
    CHECK_EQ(out->len, 0);
}

/* flush_all: OK only if every server said OK; else the first other answer. */
static void
test_broadcast(void)
{
    struct creq r;

    reset();
    request_from(&r, "flush_all\r\n", 0);
    CHECK_EQ(creq_slots(&r, 3), 0);
    set_result(&r, 0, REPLY_OK, LIT("OK\r\n"));
    set_result(&r, 1, REPLY_OK, LIT("OK\r\n"));
    set_result(&r, 2, REPLY_OK, LIT("OK\r\n"));
    text_reply(&r);
    CHECK_OUT("OK\r\n");
    done_with(&r);

    reset();
    request_from(&r, "flush_all\r\n", 0);
    CHECK_EQ(creq_slots(&r, 3), 0);
    set_result(&r, 0, REPLY_OK, LIT("OK\r\n"));
    set_fail(&r, 1, FAIL_CLOSED);
    set_result(&r, 2, REPLY_ERROR, LIT("ERROR\r\n"));
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR backend closed connection\r\n");
    done_with(&r);
}

/* A meta reply gets the client's key back in place of the server's. */
static void
test_meta_key_mapped_back(void)
{
    struct creq r;

    reset();
    request_from(&r, "mg foo v k f\r\n", 1);
    CHECK_EQ(r.req.ret_key, 1);
    set_result(&r, 0, REPLY_META_VA, LIT("VA 3 kapp:foo f5\r\nbar\r\n"));
    text_reply(&r);
    CHECK_OUT("VA 3 kfoo f5\r\nbar\r\n");
    done_with(&r);

    /* the server wrote the key in base64 ("b" after it): so is the client's */
    reset();
    request_from(&r, "mg foo k\r\n", 1);
    set_result(&r, 0, REPLY_META_HD, LIT("HD kYXBwOmZvbw== b\r\n"));
    text_reply(&r);
    CHECK_OUT("HD kZm9v b\r\n");
    done_with(&r);

    /* me names the key right after the code; key_base64 says its form */
    reset();
    request_from(&r, "me foo\r\n", 1);
    set_result(&r, 0, REPLY_META_ME, LIT("ME app:foo exp=-1 la=2 cas=3 fetch=no cls=1 size=63\r\n"));
    text_reply(&r);
    CHECK_OUT("ME foo exp=-1 la=2 cas=3 fetch=no cls=1 size=63\r\n");
    done_with(&r);

    /* no k flag: the server's reply as it is */
    reset();
    request_from(&r, "mg foo v\r\n", 1);
    set_result(&r, 0, REPLY_META_VA, LIT("VA 1\r\nz\r\n"));
    text_reply(&r);
    CHECK_OUT("VA 1\r\nz\r\n");
    done_with(&r);
}

static void
test_meta_quiet_and_failure(void)
{
    struct creq r;

    /* a quiet request's server said nothing: neither does luagent */
    reset();
    request_from(&r, "mg foo v q\r\n", 1);
    set_result(&r, 0, REPLY_META_MN, NULL, 0);
    text_reply(&r);
    CHECK_EQ(out->len, 0);
    done_with(&r);

    reset();
    request_from(&r, "ms foo 1\r\nx\r\n", 1);
    set_fail(&r, 0, FAIL_PROTOCOL);
    text_reply(&r);
    CHECK_OUT("SERVER_ERROR backend protocol error\r\n");
    CHECK_U64(st.server_errors, 1);
    done_with(&r);
}

/* ---- binary ---- */

/* A binary request as binclient.c leaves it: a meta request, the bin context. */
static void
binary_from(struct creq *r, const char *meta_line, uint8_t opcode, const char *key)
{
    request_from(r, meta_line, 1);
    r->binary = true;
    r->bin.opcode = opcode;
    memcpy(&r->bin.opaque, "\x01\x02\x03\x04", 4);
    r->slots[0].key = key;
    r->slots[0].klen = (uint32_t)strlen(key);
}

static void
test_binary_getk_hit(void)
{
    struct creq r;

    reset();
    binary_from(&r, "mg app:foo f v c\r\n", BIN_GETK, "foo");
    set_result(&r, 0, REPLY_META_VA, LIT("VA 3 f5 c77\r\nbar\r\n"));
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x0c\x00\x03" "\x04\x00\x00\x00"         /* GetK, key 3, extras 4 */
              "\x00\x00\x00\x0a" "\x01\x02\x03\x04"         /* body 10, opaque */
              "\x00\x00\x00\x00\x00\x00\x00\x4d"            /* CAS 77 */
              "\x00\x00\x00\x05" "foo" "bar");              /* flags 5, key, value */
    CHECK_U64(st.get_hits, 1);
    done_with(&r);
}

static void
test_binary_misses_and_failures(void)
{
    struct creq r;

    /* Get miss: "Not found" */
    reset();
    binary_from(&r, "mg foo f v c\r\n", BIN_GET, "foo");
    set_result(&r, 0, REPLY_META_EN, LIT("EN\r\n"));
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x00\x00\x00" "\x00\x00\x00\x01"
              "\x00\x00\x00\x09" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "Not found");
    CHECK_U64(st.get_misses, 1);
    done_with(&r);

    /* GetQ miss: silence */
    reset();
    binary_from(&r, "mg foo f v c\r\n", BIN_GETQ, "foo");
    set_result(&r, 0, REPLY_META_EN, LIT("EN\r\n"));
    respond_binary(out, &r, &st);
    CHECK_EQ(out->len, 0);
    done_with(&r);

    /* no server answer: temporary failure, the reason as the body */
    reset();
    binary_from(&r, "mg foo f v c\r\n", BIN_GET, "foo");
    set_fail(&r, 0, FAIL_TIMEOUT);
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x00\x00\x00" "\x00\x00\x00\x86"
              "\x00\x00\x00\x0f" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "backend timeout");
    CHECK_U64(st.server_errors, 1);
    done_with(&r);

    /* a status decided before any server (E2BIG and the like) */
    reset();
    memset(&r, 0, sizeof(r));
    r.binary = true;
    r.bin.opcode = BIN_SET;
    r.bin.status = BIN_ENOMEM;
    memcpy(&r.bin.opaque, "\x01\x02\x03\x04", 4);
    r.local = "";
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x01\x00\x00" "\x00\x00\x00\x82"
              "\x00\x00\x00\x0d" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "Out of memory");
}

static void
test_binary_set_and_noop(void)
{
    struct creq r;

    reset();
    binary_from(&r, "ms foo 1 c\r\nx\r\n", BIN_SET, "foo");
    set_result(&r, 0, REPLY_META_HD, LIT("HD c9\r\n"));
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x01\x00\x00" "\x00\x00\x00\x00"
              "\x00\x00\x00\x00" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x09");
    done_with(&r);

    reset();
    memset(&r, 0, sizeof(r));
    r.binary = true;
    r.bin.opcode = BIN_NOOP;
    memcpy(&r.bin.opaque, "\x01\x02\x03\x04", 4);
    r.local = "MN";
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x0a\x00\x00" "\x00\x00\x00\x00"
              "\x00\x00\x00\x00" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00");
}

static void
test_binary_stats(void)
{
    struct creq r;
    struct buf *text = bytes(LIT("STAT pid 7\r\nEND\r\n"));

    reset();
    memset(&r, 0, sizeof(r));
    r.binary = true;
    r.bin.opcode = BIN_STAT;
    memcpy(&r.bin.opaque, "\x01\x02\x03\x04", 4);
    r.stats = true;
    respond_binary_stats(out, &r, text);
    CHECK_OUT("\x81\x10\x00\x03" "\x00\x00\x00\x00"           /* key "pid" */
              "\x00\x00\x00\x04" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "pid" "7"
              "\x81\x10\x00\x00" "\x00\x00\x00\x00"           /* the closing one */
              "\x00\x00\x00\x00" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00");
    buf_put(&cache, text);

    /* the text could not be had */
    reset();
    respond_binary_stats(out, &r, NULL);
    CHECK_OUT("\x81\x10\x00\x00" "\x00\x00\x00\x82"
              "\x00\x00\x00\x0d" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "Out of memory");

    /* a group luagent does not have */
    reset();
    r.stats = false;
    respond_binary(out, &r, &st);
    CHECK_OUT("\x81\x10\x00\x00" "\x00\x00\x00\x01"
              "\x00\x00\x00\x09" "\x01\x02\x03\x04"
              "\x00\x00\x00\x00\x00\x00\x00\x00" "Not found");
}

int
main(void)
{
    out = buf_get(&cache);
    test_get_hit_and_miss();
    test_value_key_lengths();
    test_value_without_memory();
    test_multiget();
    test_multiget_streamed();
    test_large_value_shared();
    test_get_errors();
    test_fail_lines();
    test_storage_and_lines();
    test_local();
    test_broadcast();
    test_meta_key_mapped_back();
    test_meta_quiet_and_failure();
    test_binary_getk_hit();
    test_binary_misses_and_failures();
    test_binary_set_and_noop();
    test_binary_stats();
    buf_put(&cache, out);
    CHECK_EQ(cache.used, 0);        /* every buffer given back */
    return UNIT_DONE();
}
