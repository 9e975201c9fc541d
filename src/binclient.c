/*
 * binclient.c: the binary-protocol front end of a client connection.
 *
 * A binary request is turned into the request the same text command would
 * make: the classic command (so policies route it by the same key, operation
 * class and command name), flagged meta so that the backend carries it as
 * the meta command that returns what a binary response needs:
 *
 *   Get, GetK (+Q)        get      mg <key> f v c
 *   GAT, GATK (+Q)        gat      mg <key> f v c T<exptime>
 *   Touch                 touch    mg <key> f c T<exptime>
 *   Set, Add, Replace     set ...  ms <key> <len> c [F<flags>] [T<exptime>] [ME|MR] [C<cas>]
 *   Append, Prepend       append   ms <key> <len> c MA|MP [C<cas>]
 *   Delete                delete   md <key> [C<cas>]
 *   Increment, Decrement  incr     ma <key> v c D<delta> [N<exptime> J<initial>] [MD] [C<cas>]
 *   Flush                 flush_all [<delay>], to every server
 *   Noop, Version, Stat, Quit: answered by luagent
 *
 * Quiet variants are sent as the plain command; the response encoder leaves
 * out what memcached leaves out. So each request has exactly one server
 * reply, and Noop (answered from the client's FIFO) comes after every reply
 * before it, whichever servers they came from. A key with bytes the text
 * protocol cannot carry (space, control bytes) travels in base64 ("b").
 *
 * Invariant: everything a response needs (opcode, opaque, CAS given) is in
 * the request's bin context; the request's buffer holds the meta request
 * ("<mg|ms|md|ma> <key> <flags>\r\n", and a value) as the backend writes it
 * when no route rewrites the key or the exptime.
 */
#include "binclient.h"

#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "binproto.h"
#include "binreply.h"
#include "buf.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "luagent.h"
#include "proto.h"
#include "request.h"
#include "route.h"
#include "scan.h"

#define ARGS_MAX    128     /* the longest meta flags we write (incr: ~95, " b" included) */

/* Does the key hold a byte the text protocol cannot carry in a key (space
 * and below, and DEL)? Then it goes to the server in base64. */
static bool
key_needs_base64(const char *key, uint32_t len)
{
    return key_run(key, key + len) != key + len;
}

/* Decimal digits of v, two a step, from a table of the hundred pairs. */
static char *
put_u64(char *p, uint64_t v)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    static const uint64_t pow10[] = {
        1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
        100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
        10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
        100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull
    };
    uint32_t n = 1;
    char *end;

    while (n < 20 && v >= pow10[n])
        n++;
    end = p + n;
    for (; v >= 100; v /= 100, n -= 2)
        memcpy(p + n - 2, pairs + 2 * (v % 100), 2);
    if (v >= 10)
        memcpy(p, pairs + 2 * v, 2);
    else
        *p = (char)('0' + v);
    return end;
}

/* " <letter><number>" */
static char *
put_flag(char *p, char letter, uint64_t v)
{
    *p++ = ' ';
    *p++ = letter;
    return put_u64(p, v);
}

static char *
put_text(char *p, const char *s)
{
    size_t n = strlen(s);

    memcpy(p, s, n);
    return p + n;
}

/* A binary exptime is unsigned; meta takes a signed 32-bit one. Both read
 * values over 30 days as a unix time, so the clamp only moves a date past
 * 2038 to 2038. */
static uint64_t
exptime_arg(uint32_t exptime)
{
    return exptime > INT32_MAX ? INT32_MAX : exptime;
}

/* The classic command a binary request is routed as. */
static enum cmd
routed_cmd(const struct bin_request *bq)
{
    switch (bq->opcode) {
    case BIN_GET: case BIN_GETQ: case BIN_GETK: case BIN_GETKQ:
        return CMD_GET;
    case BIN_GAT: case BIN_GATQ: case BIN_GATK: case BIN_GATKQ:
        return CMD_GAT;
    case BIN_TOUCH:
        return CMD_TOUCH;
    case BIN_SET: case BIN_SETQ:
        return bq->cas != 0 ? CMD_CAS : CMD_SET;
    case BIN_ADD: case BIN_ADDQ:
        return bq->cas != 0 ? CMD_CAS : CMD_ADD;     /* memcached: a CAS */
    case BIN_REPLACE: case BIN_REPLACEQ:
        return bq->cas != 0 ? CMD_CAS : CMD_REPLACE;
    case BIN_APPEND: case BIN_APPENDQ:
        return CMD_APPEND;
    case BIN_PREPEND: case BIN_PREPENDQ:
        return CMD_PREPEND;
    case BIN_DELETE: case BIN_DELETEQ:
        return CMD_DELETE;
    case BIN_INCREMENT: case BIN_INCREMENTQ:
        return CMD_INCR;
    default:
        return CMD_DECR;
    }
}

/* The meta flags for a keyed request; returns their length. */
static uint32_t
meta_args(const struct bin_request *bq, enum cmd cmd, char *args)
{
    char *p = args;

    switch ((enum bin_kind)bq->kind) {
    case BIN_K_GET:
        p = put_text(p, "f v c");
        break;
    case BIN_K_GAT:
        p = put_text(p, "f v c");
        p = put_flag(p, 'T', exptime_arg(bq->exptime));
        break;
    case BIN_K_TOUCH:
        p = put_text(p, "f c");
        p = put_flag(p, 'T', exptime_arg(bq->exptime));
        break;
    case BIN_K_STORE:
    case BIN_K_CONCAT:
        p = put_u64(p, bq->value_len);
        p = put_text(p, " c");
        if (bq->flags != 0)
            p = put_flag(p, 'F', bq->flags);
        if (bq->exptime != 0)
            p = put_flag(p, 'T', exptime_arg(bq->exptime));
        if (cmd == CMD_ADD)
            p = put_text(p, " ME");
        else if (cmd == CMD_REPLACE)
            p = put_text(p, " MR");
        else if (cmd == CMD_APPEND)
            p = put_text(p, " MA");
        else if (cmd == CMD_PREPEND)
            p = put_text(p, " MP");
        if (bq->cas != 0)
            p = put_flag(p, 'C', bq->cas);
        break;
    case BIN_K_DELETE:
        if (bq->cas != 0) {
            *p++ = 'C';
            p = put_u64(p, bq->cas);
        }
        break;
    case BIN_K_ARITH:
        p = put_text(p, "v c");
        p = put_flag(p, 'D', bq->delta);
        if (bq->exptime != 0xffffffffu) {   /* create a missing key */
            p = put_flag(p, 'N', exptime_arg(bq->exptime));
            p = put_flag(p, 'J', bq->initial);
        }
        if (cmd == CMD_DECR)
            p = put_text(p, " MD");
        if (bq->cas != 0)
            p = put_flag(p, 'C', bq->cas);
        break;
    default:
        break;
    }
    return (uint32_t)(p - args);
}

static void
bind_ctx(struct creq *r, const struct bin_request *bq)
{
    r->binary = true;
    r->bin.opcode = bq->opcode;
    r->bin.opaque = bq->opaque;
    r->bin.cas = bq->cas != 0;
}

static void answer_no_memory(const struct bin_conn *bc, struct creq *r);

/* The key as it goes to the server: its bytes, or their base64. */
static char *
put_key(char *p, const char *key, uint32_t len, bool in_base64)
{
    if (!in_base64) {
        memcpy(p, key, len);
        return p + len;
    }
    return p + base64_encode((const unsigned char *)key, len, p);
}

/*
 * A keyed request: the meta request "<mg|ms|md|ma> <key> <flags>\r\n" (+
 * "<value>\r\n") in the request's buffer, written once into room reserved
 * once. It is the line backend.c would write for it, so that goes to the
 * server as it is here.
 */
static void
take_keyed(const struct bin_conn *bc, const char *in, const struct bin_request *bq)
{
    struct creq *r = bc->ops->request_new(bc->c);
    struct request *rq;
    const char *key = in + bq->key_off;
    bool store = bq->kind == BIN_K_STORE || bq->kind == BIN_K_CONCAT;
    struct buf *b;
    char *p, *args;

    if (r == NULL)
        return;                 /* the client was closed */
    rq = &r->req;
    bind_ctx(r, bq);
    rq->cmd = routed_cmd(bq);
    rq->meta = true;
    rq->nkeys = 1;
    rq->base64 = key_needs_base64(key, bq->keylen);
    if (store) {
        rq->data_len = bq->value_len;
        /* A large value stays where it was read; it has no "\r\n" after it there. */
        creq_share_data(r, bc->in, in + bq->value_off, false);
    }
    b = r->buf = buf_get(&bc->rt->rq.bufs);
    if (b == NULL || bc->ops->memory_refused(bc->c)
        || buf_reserve(b, (store && r->data == NULL ? (size_t)bq->value_len : 0) + ARGS_MAX
                          + 2 * KEY_MAX) < 0) {
        answer_no_memory(bc, r);
        return;
    }
    p = b->data + b->len;
    memcpy(p, proto_meta_name(rq->cmd), 2);
    p[2] = ' ';
    p += 3;
    rq->key.off = (uint32_t)(p - b->data);
    p = put_key(p, key, bq->keylen, rq->base64);
    rq->key.len = (uint32_t)(p - b->data) - rq->key.off;
    rq->keys = rq->key;
    args = p + 1;
    p = args + meta_args(bq, rq->cmd, args);
    if (rq->base64) {           /* the server decodes the key */
        if (p > args)
            *p++ = ' ';
        *p++ = 'b';
    }
    if (p > args) {
        args[-1] = ' ';
        rq->args.off = (uint32_t)(args - b->data);
        rq->args.len = (uint32_t)(p - args);
    } else {
        p = args - 1;
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    rq->line_len = (uint32_t)(p - b->data);
    if (store && r->data == NULL) {
        memcpy(p, in + bq->value_off, bq->value_len);
        p += bq->value_len;
        memcpy(p, "\r\n", 2);
        p += 2;
    }
    b->len = (uint32_t)(p - b->data);
    bc->ops->request_start(bc->c, r);
}

/* A request luagent answers, or flush_all; stat's key becomes its arguments. */
static void
take_proxy(const struct bin_conn *bc, const char *in, const struct bin_request *bq,
           enum cmd cmd)
{
    struct creq *r = bc->ops->request_new(bc->c);
    struct request *rq;
    char num[24];

    if (r == NULL)
        return;                 /* the client was closed */
    rq = &r->req;
    bind_ctx(r, bq);
    rq->cmd = cmd;
    r->buf = buf_get(&bc->rt->rq.bufs);
    if (r->buf == NULL || buf_reserve(r->buf, (size_t)bq->keylen + sizeof(num)) < 0) {
        answer_no_memory(bc, r);
        return;
    }
    if (cmd == CMD_STATS) {
        buf_append(r->buf, in + bq->key_off, bq->keylen);
        rq->args.len = bq->keylen;
    } else if (cmd == CMD_FLUSH_ALL && bq->exptime != 0) {
        rq->args.len = (uint32_t)(put_u64(num, exptime_arg(bq->exptime)) - num);
        buf_append(r->buf, num, rq->args.len);
    }
    bc->ops->request_start(bc->c, r);
}

/* Out of memory for this request: ENOMEM, as memcached answers then. */
static void
answer_no_memory(const struct bin_conn *bc, struct creq *r)
{
    STAT_INC(bc->rt->rq.stats.out_of_memory);
    buf_put(&bc->rt->rq.bufs, r->buf);
    r->buf = NULL;
    r->bin.status = BIN_ENOMEM;
    r->local = "";
    bc->ops->request_ready(bc->c, r);
}

/* An answer decided here: an error status, or silence before a close. */
static void
take_refused(const struct bin_conn *bc, const struct bin_request *bq, uint16_t status, bool close)
{
    struct creq *r = bc->ops->request_new(bc->c);

    if (r == NULL)
        return;                 /* the client was closed */
    bind_ctx(r, bq);
    r->bin.status = status;
    r->local = "";
    r->close_after = close;
    bc->ops->request_ready(bc->c, r);
}

/*
 * A set refused as too large still removes the key's old value, as
 * memcached does for a binary Set (not for Add or Replace).
 */
static void
drop_stale(struct route_ctx *rt, const char *key, uint16_t keylen)
{
    struct buf *req = buf_get(&rt->rq.bufs);
    bool in_base64 = key_needs_base64(key, keylen);

    if (req == NULL)
        return;                 /* out of memory: the old value stays */
    if (buf_reserve(req, 3 + BASE64_ENCODED_LEN(KEY_MAX) + 4) < 0) {
        buf_put(&rt->rq.bufs, req);
        return;                 /* out of memory: the old value stays */
    }
    buf_append(req, "md ", 3);
    req->len = (uint32_t)(put_key(req->data + req->len, key, keylen, in_base64) - req->data);
    if (in_base64)
        buf_append(req, " b", 2);
    buf_append(req, "\r\n", 2);
    route_background(rt, rt->current, rt->current->config->root, req);
}

/*
 * The requests luagent answers itself, and flush_all: the command each
 * becomes, by kind from BIN_K_QUIT to BIN_K_STAT. Noop is answered as mn is:
 * after every earlier reply.
 */
static const enum cmd proxy_cmds[] = { CMD_QUIT, CMD_FLUSH_ALL, CMD_MN, CMD_VERSION, CMD_STATS };

static void
take_request(const struct bin_conn *bc, const char *in, const struct bin_request *bq)
{
    if (bq->kind >= BIN_K_QUIT && bq->kind <= BIN_K_STAT)
        take_proxy(bc, in, bq, proxy_cmds[bq->kind - BIN_K_QUIT]);
    else
        take_keyed(bc, in, bq);
}

void
binclient_take(const struct bin_conn *bc, const char *in, uint32_t avail,
               struct bin_take *t)
{
    static const char key = 0;      /* one log budget for every binary client */
    struct bin_request bq;
    uint16_t status;
    uint32_t need;

    memset(t, 0, sizeof(*t));
    switch (binproto_parse(in, avail, bc->rt->current->config->item_max, &bq, &status, &need)) {
    case BIN_PARSE_NEED_MORE:
        t->need = need;
        return;
    case BIN_PARSE_CLOSE:
        STAT_INC(bc->rt->rq.stats.binary_requests);
        STAT_INC(bc->rt->rq.stats.client_errors);
        log_ratelimited(LOG_WARN, &key, "client: binary request with a header that cannot "
                        "be trusted (magic 0x%02x, opcode 0x%02x, key %u, extras %u, "
                        "body %u bytes): closed", (uint8_t)in[0], bq.opcode, bq.keylen,
                        bq.extlen, bq.bodylen);
        take_refused(bc, &bq, status != BIN_SUCCESS ? status : BIN_STATUS_SILENT, true);
        t->close = true;
        return;
    case BIN_PARSE_REFUSE:
        STAT_INC(bc->rt->rq.stats.binary_requests);
        STAT_INC(bc->rt->rq.stats.client_errors);
        if (status == BIN_E2BIG && (bq.opcode == BIN_SET || bq.opcode == BIN_SETQ))
            drop_stale(bc->rt, in + bq.key_off, bq.keylen);
        take_refused(bc, &bq, status, false);
        t->consume = bq.value_off;
        t->swallow = bq.value_len;
        return;
    case BIN_PARSE_OK:
        STAT_INC(bc->rt->rq.stats.binary_requests);
        t->consume = bq.value_off + bq.value_len;
        take_request(bc, in, &bq);
        return;
    }
}
