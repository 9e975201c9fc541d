/*
 * binreply.c: memcached binary-protocol responses (pure: no I/O, no logging).
 *
 * Which status a server's text reply becomes follows what memcached 1.6.18
 * answers a binary client in the same case (proto_bin.c): a failed add is
 * "key exists", a failed replace "not found", any other refused store "not
 * stored"; a get miss says "Not found", or returns the key for GetK; errors
 * carry memcached's texts. Quiet opcodes stay silent exactly where memcached
 * does: on success, and for the get family on a miss; errors are always
 * written. Replies luagent makes itself (a server that could not be asked)
 * become "temporary failure" with the reason as the body.
 */
#include "binreply.h"

#include <stdlib.h>
#include <string.h>

#include "binproto.h"
#include "buf.h"

#define PREFIX_SERVER_ERROR "SERVER_ERROR "
#define PREFIX_CLIENT_ERROR "CLIENT_ERROR "
#define TOO_LARGE_LINE      "SERVER_ERROR object too large for cache"
#define NON_NUMERIC_LINE    "CLIENT_ERROR cannot increment or decrement non-numeric value"

/* A meta reply's parts that a binary response carries. */
struct meta_parts {
    uint32_t    flags;
    uint64_t    cas;
    const char *data;       /* VA: the value (without its "\r\n") */
    uint32_t    dlen;
};

const char *
binreply_status_text(uint16_t status)
{
    switch (status) {
    case BIN_KEY_ENOENT:        return "Not found";
    case BIN_KEY_EEXISTS:       return "Data exists for key.";
    case BIN_E2BIG:             return "Too large.";
    case BIN_EINVAL:            return "Invalid arguments";
    case BIN_NOT_STORED:        return "Not stored.";
    case BIN_DELTA_BADVAL:      return "Non-numeric server-side value for incr or decr";
    case BIN_UNKNOWN_COMMAND:   return "Unknown command";
    case BIN_ENOMEM:            return "Out of memory";
    case BIN_ETMPFAIL:          return "Temporary failure";
    default:                    return "";
    }
}

static void
put_be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void
put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

void
binreply_packet(struct buf *out, const struct bin_ctx *q, uint16_t status, uint64_t cas,
                const void *extras, uint8_t extlen, const char *key, uint16_t keylen,
                const char *value, uint32_t vlen)
{
    size_t total = BIN_HEADER_LEN + (size_t)extlen + keylen + vlen;
    unsigned char *h;

    if (buf_reserve(out, total) < 0)
        abort();                /* as buf_append: no way on without memory */
    h = (unsigned char *)out->data + out->len;
    h[0] = BIN_MAGIC_RESPONSE;
    h[1] = q->opcode;
    put_be16(h + 2, keylen);
    h[4] = extlen;
    h[5] = 0;                               /* datatype: raw bytes */
    put_be16(h + 6, status);
    put_be32(h + 8, (uint32_t)(total - BIN_HEADER_LEN));
    memcpy(h + 12, &q->opaque, 4);
    put_be64(h + 16, cas);
    h += BIN_HEADER_LEN;
    if (extlen == 4)                        /* flags: a copy of known size */
        memcpy(h, extras, 4);
    else if (extlen > 0)
        memcpy(h, extras, extlen);
    if (keylen > 0)
        memcpy(h + extlen, key, keylen);
    if (vlen > 0)
        memcpy(h + extlen + keylen, value, vlen);
    out->len += (uint32_t)total;
}

void
binreply_error(struct buf *out, const struct bin_ctx *q, uint16_t status, const char *msg,
               size_t len)
{
    if (msg == NULL) {
        msg = binreply_status_text(status);
        len = strlen(msg);
    }
    binreply_packet(out, q, status, 0, NULL, 0, NULL, 0, msg, (uint32_t)len);
}

static bool
starts_with(const char *p, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && memcmp(p, prefix, n) == 0;
}

static bool
equals(const char *p, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(p, word, len) == 0;
}

/* "out of memory" anywhere in the line, in either case memcached writes it. */
static bool
says_out_of_memory(const char *p, size_t len)
{
    static const char lower[] = "out of memory", upper[] = "Out of memory";
    size_t i, n = sizeof(lower) - 1;

    for (i = 0; i + n <= len; i++)
        if (memcmp(p + i, lower, n) == 0 || memcmp(p + i, upper, n) == 0)
            return true;
    return false;
}

uint16_t
binreply_line(struct buf *out, const struct bin_ctx *q, const char *line, size_t len)
{
    uint16_t status = BIN_ETMPFAIL;
    size_t skip = 0;

    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (equals(line, len, TOO_LARGE_LINE)) {
        binreply_error(out, q, BIN_E2BIG, NULL, 0);
        return BIN_E2BIG;
    }
    if (equals(line, len, NON_NUMERIC_LINE)) {
        binreply_error(out, q, BIN_DELTA_BADVAL, NULL, 0);
        return BIN_DELTA_BADVAL;
    }
    if (equals(line, len, "ERROR")) {
        binreply_error(out, q, BIN_UNKNOWN_COMMAND, NULL, 0);
        return BIN_UNKNOWN_COMMAND;
    }
    if (starts_with(line, len, PREFIX_SERVER_ERROR)) {
        skip = sizeof(PREFIX_SERVER_ERROR) - 1;
        if (says_out_of_memory(line, len))
            status = BIN_ENOMEM;
    } else if (starts_with(line, len, PREFIX_CLIENT_ERROR)) {
        skip = sizeof(PREFIX_CLIENT_ERROR) - 1;
        status = BIN_EINVAL;
    }
    binreply_error(out, q, status, line + skip, len - skip);
    return status;
}

/*
 * Digits at *pp, as a number; *pp moves past them. No bound: the caller
 * knows a byte that is no digit ('\r') comes before the end. (Read a word
 * at a time, the numbers of a reply cost more instructions: most are short,
 * and a word takes three multiplies.)
 */
static uint64_t
digits_at(const char **pp)
{
    const char *p = *pp;
    uint64_t v = 0;
    unsigned d;

    while ((d = (unsigned)(unsigned char)*p - '0') < 10) {
        v = v * 10 + d;
        p++;
    }
    *pp = p;
    return v;
}

/*
 * Read a meta reply unit: "<code> [<datalen>] <flag>*\r\n" [+ data "\r\n"],
 * in one pass over the line, without a bound test per byte: every scan
 * below stops at a '\r', and the unit's "\r\n" at its end is the last one
 * it can reach (the line's own comes first; reply.c checked both). Only f
 * (client flags) and c (CAS) matter to a binary response; other flags, and
 * a VA's length, are stepped over.
 */
static void
meta_parse(enum reply_kind kind, const char *unit, size_t len, struct meta_parts *m)
{
    const char *p = unit + 2;

    m->flags = 0;
    m->cas = 0;
    m->data = NULL;
    m->dlen = 0;
    if (len < 4 || unit[len - 2] != '\r')
        return;
    if (kind == REPLY_META_VA)              /* the length: the data's place says it */
        for (p++; *p != ' ' && *p != '\r'; p++)
            ;
    while (*p == ' ') {
        char flag = *++p;                   /* '\r' at the latest */

        if (flag == 'f') {
            p++;
            m->flags = (uint32_t)digits_at(&p);
        } else if (flag == 'c') {
            p++;
            m->cas = digits_at(&p);
        }
        while (*p != ' ' && *p != '\r')
            p++;
    }
    /* The data: after the line, up to the unit's closing "\r\n" (reply.c
     * checked that the line's length says as much). */
    if (kind == REPLY_META_VA && (size_t)(p - unit) + 4 <= len) {
        m->data = p + 2;
        m->dlen = (uint32_t)(len - (size_t)(p - unit) - 4);
    }
}

static bool
is_error_kind(enum reply_kind kind)
{
    return kind == REPLY_ERROR || kind == REPLY_CLIENT_ERROR || kind == REPLY_SERVER_ERROR;
}

static uint16_t
unexpected(struct buf *out, const struct bin_ctx *q)
{
    static const char msg[] = "luagent: unexpected reply from the server";

    binreply_error(out, q, BIN_ETMPFAIL, msg, sizeof(msg) - 1);
    return BIN_ETMPFAIL;
}

/* Get, GAT and Touch: flags in the extras, the value but for Touch. */
static uint16_t
result_get(struct buf *out, const struct bin_ctx *q, const char *key, uint16_t keylen,
           enum reply_kind kind, const char *unit, size_t len)
{
    bool quiet = binproto_quiet(q->opcode), with_key = binproto_returns_key(q->opcode);
    struct meta_parts m;
    unsigned char flags[4];

    if (kind == REPLY_META_EN) {
        if (quiet)
            return BIN_KEY_ENOENT;
        if (with_key)           /* the key as the body, no text */
            binreply_packet(out, q, BIN_KEY_ENOENT, 0, NULL, 0, key, keylen, NULL, 0);
        else
            binreply_error(out, q, BIN_KEY_ENOENT, NULL, 0);
        return BIN_KEY_ENOENT;
    }
    if (kind != REPLY_META_VA && kind != REPLY_META_HD)
        return unexpected(out, q);
    meta_parse(kind, unit, len, &m);
    put_be32(flags, m.flags);
    binreply_packet(out, q, BIN_SUCCESS, m.cas, flags, sizeof(flags),
                    with_key ? key : NULL, with_key ? keylen : 0,
                    q->opcode == BIN_TOUCH ? NULL : m.data,
                    q->opcode == BIN_TOUCH ? 0 : m.dlen);
    return BIN_SUCCESS;
}

/* A success: written unless the opcode is quiet. */
static uint16_t
success(struct buf *out, const struct bin_ctx *q, uint64_t cas, const char *value,
        uint32_t vlen)
{
    if (!binproto_quiet(q->opcode))
        binreply_packet(out, q, BIN_SUCCESS, cas, NULL, 0, NULL, 0, value, vlen);
    return BIN_SUCCESS;
}

static uint16_t
failure(struct buf *out, const struct bin_ctx *q, uint16_t status)
{
    binreply_error(out, q, status, NULL, 0);
    return status;
}

/* NS: what memcached calls a store that did not happen, by opcode. */
static uint16_t
not_stored_status(const struct bin_ctx *q)
{
    if (!q->cas && (q->opcode == BIN_ADD || q->opcode == BIN_ADDQ))
        return BIN_KEY_EEXISTS;
    if (!q->cas && (q->opcode == BIN_REPLACE || q->opcode == BIN_REPLACEQ))
        return BIN_KEY_ENOENT;
    return BIN_NOT_STORED;
}

/* Store, append, delete, incr/decr: HD or VA is success, the rest a status. */
static uint16_t
result_update(struct buf *out, const struct bin_ctx *q, enum reply_kind kind,
              const char *unit, size_t len)
{
    bool arith = binproto_kind(q->opcode) == BIN_K_ARITH;
    struct meta_parts m;

    switch (kind) {
    case REPLY_META_HD:
        if (arith)
            return unexpected(out, q);
        meta_parse(kind, unit, len, &m);
        return success(out, q, m.cas, NULL, 0);
    case REPLY_META_VA: {
        unsigned char value[8];

        if (!arith)
            return unexpected(out, q);
        meta_parse(kind, unit, len, &m);
        {
            const char *digits = m.data;

            put_be64(value, digits != NULL ? digits_at(&digits) : 0);  /* "\r\n" after */
        }
        return success(out, q, m.cas, (const char *)value, sizeof(value));
    }
    case REPLY_META_NS:
        return failure(out, q, not_stored_status(q));
    case REPLY_META_EX:
        return failure(out, q, BIN_KEY_EEXISTS);
    case REPLY_META_NF:
        return failure(out, q, BIN_KEY_ENOENT);
    default:
        return unexpected(out, q);
    }
}

uint16_t
binreply_result(struct buf *out, const struct bin_ctx *q, const char *key, uint16_t keylen,
                enum reply_kind kind, const char *unit, size_t len)
{
    if (is_error_kind(kind))
        return binreply_line(out, q, unit, len);
    switch (binproto_kind(q->opcode)) {
    case BIN_K_GET:
    case BIN_K_GAT:
    case BIN_K_TOUCH:
        return result_get(out, q, key, keylen, kind, unit, len);
    case BIN_K_STORE:
    case BIN_K_CONCAT:
    case BIN_K_DELETE:
    case BIN_K_ARITH:
        return result_update(out, q, kind, unit, len);
    default:
        return unexpected(out, q);
    }
}

void
binreply_stats(struct buf *out, const struct bin_ctx *q, const char *text, size_t len)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *name, *sp, *stop;

        if (eol == NULL)
            break;
        stop = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (starts_with(p, (size_t)(stop - p), "STAT ")) {
            name = p + 5;
            sp = memchr(name, ' ', (size_t)(stop - name));
            if (sp == NULL)
                sp = stop;
            binreply_packet(out, q, BIN_SUCCESS, 0, NULL, 0, name, (uint16_t)(sp - name),
                            sp < stop ? sp + 1 : NULL,
                            sp < stop ? (uint32_t)(stop - sp - 1) : 0);
        }
        p = eol + 1;
    }
    binreply_packet(out, q, BIN_SUCCESS, 0, NULL, 0, NULL, 0, NULL, 0);
}
