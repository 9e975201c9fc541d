/*
 * respond.c: reply assembly: the bytes a client gets for a finished
 * request, in the text protocol or the binary one (pure: no I/O, no
 * logging; the output buffer is the only thing that grows).
 *
 * Text replies follow memcached byte for byte: VALUE lines in the order the
 * keys were asked, with the client's own key (the server saw it after any
 * rewrite), then END; meta replies with the client's key put back; a
 * server's line as it came; luagent's own errors in memcached's
 * SERVER_ERROR form. Binary responses are those memcached writes for the
 * same outcome (binreply.c), with the request's opaque and opcode.
 */
#include "respond.h"

#include <string.h>

#include "base64.h"
#include "binproto.h"
#include "binreply.h"
#include "buf.h"
#include "luagent.h"

static const char version_text[] = VERSION_TEXT;

static const char *const fail_lines[FAIL_COUNT] = {
    [FAIL_NONE]        = "SERVER_ERROR luagent: no reply",
    [FAIL_UNAVAILABLE] = "SERVER_ERROR backend unavailable",
    [FAIL_TIMEOUT]     = "SERVER_ERROR backend timeout",
    [FAIL_CLOSED]      = "SERVER_ERROR backend closed connection",
    [FAIL_PROTOCOL]    = "SERVER_ERROR backend protocol error",
    [FAIL_NOMEM]       = "SERVER_ERROR out of memory",
};

const char *
fail_reason_line(enum fail_reason why)
{
    return fail_lines[why];
}

/* ---- text ---- */

static void
append_line(struct buf *out, const char *line)
{
    buf_append_str(out, line);
    buf_append(out, "\r\n", 2);
}

/* A server's answer, or our error line when it could not be asked. */
static void
append_result(struct buf *out, const struct result *res)
{
    if (res->fail != FAIL_NONE)
        append_line(out, fail_reason_line(res->fail));
    else if (res->data != NULL)
        buf_append(out, res->bytes, res->len);
}

/*
 * Copy a key: one of up to 16 bytes (most are) in two overlapping moves of
 * 4 or 8 bytes, inline, rather than a call to memcpy for a few bytes.
 */
static inline void
copy_key(char *to, const char *from, uint32_t n)
{
    uint64_t a, b;
    uint32_t c, d;

    if (n >= 8 && n <= 16) {
        memcpy(&a, from, 8);
        memcpy(&b, from + n - 8, 8);
        memcpy(to, &a, 8);
        memcpy(to + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(&c, from, 4);
        memcpy(&d, from + n - 4, 4);
        memcpy(to, &c, 4);
        memcpy(to + n - 4, &d, 4);
    } else {
        memcpy(to, from, n);
    }
}

/*
 * A hit's VALUE line and data block, appended to out (the queue's open
 * piece): a large block by reference, not copied. Returns the piece to
 * append to next: out (marked failed when it had no room for the line), or
 * NULL after a shared block, so that a piece is opened only if more output
 * follows (bufq_tail). The common case makes room once and copies its three
 * parts straight in.
 */
static struct buf *
write_value(struct bufq *q, struct buf *out, const struct slot *s)
{
    bool share = s->res.len >= RESPOND_SHARE_MIN;
    size_t n = 6 + (size_t)s->klen + (share ? 0 : s->res.len);
    char *p;

    if (buf_reserve(out, n) < 0) {
        out->failed = true;     /* as an append that cannot grow does */
        return out;
    }
    p = out->data + out->len;
    memcpy(p, "VALUE ", 6);
    copy_key(p + 6, s->key, s->klen);
    if (!share)
        memcpy(p + 6 + s->klen, s->res.bytes, s->res.len);
    out->len += (uint32_t)n;
    if (!share)
        return out;
    bufq_share(q, s->res.data, s->res.bytes, s->res.len);
    return NULL;
}

uint32_t
respond_text_values(struct bufq *q, const struct creq *r, uint32_t from, struct stats *st)
{
    const struct slot *s = &r->slots[from], *end = &r->slots[r->nslots];
    struct buf *out = NULL;
    uint32_t hits = 0;

    for (; s < end && s->done; s++) {
        /* A key the proxy could not get is a miss: other keys may be written already. */
        if (s->res.fail != FAIL_NONE || s->res.kind != REPLY_VALUE)
            continue;
        if (out == NULL)
            out = bufq_tail(q);
        if (out != NULL)
            out = write_value(q, out, s);
        hits++;
    }
    STAT_ADD(st->get_hits, hits);
    STAT_ADD(st->get_misses, (uint32_t)(s - &r->slots[from]) - hits);
    return (uint32_t)(s - r->slots);
}

/* VALUE lines in the order asked (those not streamed yet), then END. */
static void
write_retrieval(struct bufq *q, const struct creq *r, struct stats *st)
{
    struct buf *out;

    if (r->nslots == 1 && result_is_error(&r->slots[0].res)) {
        /* One key, no answer: say why (a multi-get treats it as a miss). */
        if ((out = bufq_tail(q)) != NULL)
            append_result(out, &r->slots[0].res);
        STAT_INC(st->server_errors);
        return;
    }
    respond_text_values(q, r, r->nwritten, st);
    if ((out = bufq_tail(q)) != NULL)
        buf_append(out, "END\r\n", 5);
}

/*
 * A meta reply that carries the key ("k<key>" among its flags, or the key of
 * "ME <key> ...") gets the client's key back, as VALUE lines do: the server
 * saw the key after any rewrite. The server marks a key it wrote in base64
 * with a "b" flag after it; the client's key is written in the same form.
 */
static void
append_key_form(struct buf *out, const struct slot *s, bool in_base64)
{
    char enc[BASE64_ENCODED_LEN(KEY_MAX)];

    if (!in_base64) {
        buf_append(out, s->key, s->klen);
        return;
    }
    buf_append(out, enc, base64_encode((const unsigned char *)s->key, s->klen, enc));
}

/* The token starting at p (no further than end): its end. */
static const char *
token_end(const char *p, const char *end)
{
    const char *sp = memchr(p, ' ', (size_t)(end - p));

    return sp != NULL ? sp : end;
}

static void
write_meta_key(struct buf *out, const struct creq *r, const struct result *res)
{
    const char *unit = res->bytes, *end, *p, *key = NULL, *key_end = NULL;
    bool in_base64 = false;

    end = memchr(unit, '\r', res->len);
    if (end == NULL) {                  /* cannot happen: units end in \r\n */
        buf_append(out, unit, res->len);
        return;
    }
    p = token_end(unit, end);           /* past the code */
    if (res->kind == REPLY_META_ME) {
        key = p + 1;                    /* "ME <key> exp=..." */
        key_end = token_end(key, end);
        in_base64 = res->key_base64;    /* no "b" flag here: see backend.c */
    } else {
        if (res->kind == REPLY_META_VA && p < end)
            p = token_end(p + 1, end);  /* past "VA <bytes>" */
        while (p < end && key == NULL) {
            const char *t = p + 1, *e = token_end(t, end);

            if (e > t && *t == 'k') {
                key = t + 1;
                key_end = e;
                in_base64 = end - e >= 2 && e[1] == 'b' && (e + 2 == end || e[2] == ' ');
            }
            p = e;
        }
    }
    if (key == NULL || key > end) {
        buf_append(out, unit, res->len);
        return;
    }
    buf_append(out, unit, (size_t)(key - unit));
    append_key_form(out, &r->slots[0], in_base64);
    buf_append(out, key_end, res->len - (size_t)(key_end - unit));
}

/* A meta reply: nothing when a quiet request's server said nothing (MN);
 * the key mapped back. */
static void
write_meta(struct buf *out, const struct creq *r, struct stats *st)
{
    const struct result *res = &r->slots[0].res;

    if (res->fail != FAIL_NONE) {
        STAT_INC(st->server_errors);
        append_result(out, res);
        return;
    }
    if (res->kind == REPLY_META_MN)
        return;
    if (r->req.ret_key && res->data != NULL && REPLY_IS_META(res->kind))
        write_meta_key(out, r, res);
    else
        append_result(out, res);
}

static void
write_broadcast(struct buf *out, const struct creq *r)
{
    uint32_t i;

    for (i = 0; i < r->nslots; i++) {
        if (r->slots[i].res.fail != FAIL_NONE || r->slots[i].res.kind != REPLY_OK) {
            append_result(out, &r->slots[i].res);
            return;
        }
    }
    append_line(out, "OK");
}

void
respond_text(struct bufq *q, const struct creq *r, struct stats *st)
{
    struct buf *out;

    if (!r->local && !r->req.noreply && !r->oom && !r->req.meta
        && proto_cmd_is_retrieval(r->req.cmd)) {
        write_retrieval(q, r, st);
        return;
    }
    if ((out = bufq_tail(q)) == NULL)
        return;
    if (r->local != NULL) {
        if (r->local[0] != '\0' && !r->req.noreply)
            append_line(out, r->local);
        return;
    }
    if (r->req.noreply)
        return;
    if (r->oom) {
        append_line(out, "SERVER_ERROR out of memory");
        return;
    }
    if (r->req.meta) {
        write_meta(out, r, st);
    } else if (r->req.cmd == CMD_FLUSH_ALL) {
        write_broadcast(out, r);
    } else {
        if (r->slots[0].res.fail != FAIL_NONE)
            STAT_INC(st->server_errors);
        append_result(out, &r->slots[0].res);
    }
}

/* ---- binary ---- */

/* luagent could not get a server's reply: "temporary failure" and why. */
static void
write_failure(struct buf *out, const struct creq *r, enum fail_reason why, struct stats *st)
{
    const char *line = fail_reason_line(why);

    STAT_INC(st->server_errors);
    binreply_line(out, &r->bin, line, strlen(line));
}

/* flush_all went to every server: success only if every one said OK. */
static void
write_flush(struct buf *out, const struct creq *r, struct stats *st)
{
    uint32_t i;

    for (i = 0; i < r->nslots; i++) {
        const struct result *res = &r->slots[i].res;

        if (res->fail != FAIL_NONE) {
            write_failure(out, r, res->fail, st);
            return;
        }
        if (res->kind != REPLY_OK) {
            binreply_line(out, &r->bin, res->data ? res->bytes : "", res->len);
            return;
        }
    }
    if (!binproto_quiet(r->bin.opcode))
        binreply_packet(out, &r->bin, BIN_SUCCESS, 0, NULL, 0, NULL, 0, NULL, 0);
}

static void
write_keyed(struct buf *out, const struct creq *r, struct stats *st)
{
    const struct slot *s = &r->slots[0];
    const struct result *res = &s->res;
    enum bin_kind kind = binproto_kind(r->bin.opcode);
    uint16_t status;

    if (res->fail != FAIL_NONE) {
        write_failure(out, r, res->fail, st);
        return;
    }
    status = binreply_result(out, &r->bin, s->key, (uint16_t)s->klen, res->kind,
                             res->data ? res->bytes : "", res->len);
    if (kind == BIN_K_GET || kind == BIN_K_GAT) {
        if (status == BIN_SUCCESS)
            STAT_INC(st->get_hits);
        else if (status == BIN_KEY_ENOENT)
            STAT_INC(st->get_misses);
    }
}

void
respond_binary(struct buf *out, const struct creq *r, struct stats *st)
{
    const struct bin_ctx *q = &r->bin;

    if (q->status == BIN_STATUS_SILENT)
        return;
    if (q->status != BIN_SUCCESS) {
        binreply_error(out, q, q->status, NULL, 0);
        return;
    }
    switch (binproto_kind(q->opcode)) {
    case BIN_K_NOOP:
        binreply_packet(out, q, BIN_SUCCESS, 0, NULL, 0, NULL, 0, NULL, 0);
        return;
    case BIN_K_VERSION:
        binreply_packet(out, q, BIN_SUCCESS, 0, NULL, 0, NULL, 0, version_text,
                        sizeof(version_text) - 1);
        return;
    case BIN_K_QUIT:
        if (!binproto_quiet(q->opcode))
            binreply_packet(out, q, BIN_SUCCESS, 0, NULL, 0, NULL, 0, NULL, 0);
        return;
    case BIN_K_STAT:        /* a group luagent does not have (respond_binary_stats) */
        binreply_error(out, q, BIN_KEY_ENOENT, NULL, 0);
        return;
    case BIN_K_FLUSH:
        write_flush(out, r, st);
        return;
    default:
        write_keyed(out, r, st);
        return;
    }
}

void
respond_binary_stats(struct buf *out, const struct creq *r, const struct buf *text)
{
    if (text == NULL)
        binreply_error(out, &r->bin, BIN_ENOMEM, NULL, 0);
    else
        binreply_stats(out, &r->bin, text->data, text->len);
}
