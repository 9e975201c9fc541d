/*
 * binproto.c: memcached binary-protocol request parser (pure: no I/O, no
 * logging).
 *
 * The checks and their order are memcached 1.6.18's (proto_bin.c): magic,
 * then key and extras against the body length, then the 250-byte key limit,
 * then each opcode's own shape. Where memcached reads past a request it did
 * not take whole (a Stat or GAT header announcing a value it then leaves in
 * the stream, an unknown opcode whose skipped length counts the key and
 * extras twice), luagent keeps the stream in step instead: such a header is
 * refused and closed, and an unknown opcode's body is skipped exactly.
 *
 * Invariant: a result never depends on how the bytes were split across
 * reads; each decision looks only at the header once it is whole, and at the
 * extras only once they are here.
 */
#include "binproto.h"

#include <string.h>

#include "luagent.h"

/* memcached refuses a longer body than this as too large in any case. */
#define BIN_VALUE_MAX   (UINT32_MAX - 4096)

struct opcode_info {
    uint8_t kind;           /* enum bin_kind */
    bool    quiet;
    bool    returns_key;
};

static const struct opcode_info opcodes[256] = {
    [BIN_GET]       = { BIN_K_GET, false, false },
    [BIN_GETQ]      = { BIN_K_GET, true, false },
    [BIN_GETK]      = { BIN_K_GET, false, true },
    [BIN_GETKQ]     = { BIN_K_GET, true, true },
    [BIN_GAT]       = { BIN_K_GAT, false, false },
    [BIN_GATQ]      = { BIN_K_GAT, true, false },
    [BIN_GATK]      = { BIN_K_GAT, false, true },
    [BIN_GATKQ]     = { BIN_K_GAT, true, true },
    [BIN_TOUCH]     = { BIN_K_TOUCH, false, false },
    [BIN_SET]       = { BIN_K_STORE, false, false },
    [BIN_SETQ]      = { BIN_K_STORE, true, false },
    [BIN_ADD]       = { BIN_K_STORE, false, false },
    [BIN_ADDQ]      = { BIN_K_STORE, true, false },
    [BIN_REPLACE]   = { BIN_K_STORE, false, false },
    [BIN_REPLACEQ]  = { BIN_K_STORE, true, false },
    [BIN_APPEND]    = { BIN_K_CONCAT, false, false },
    [BIN_APPENDQ]   = { BIN_K_CONCAT, true, false },
    [BIN_PREPEND]   = { BIN_K_CONCAT, false, false },
    [BIN_PREPENDQ]  = { BIN_K_CONCAT, true, false },
    [BIN_DELETE]    = { BIN_K_DELETE, false, false },
    [BIN_DELETEQ]   = { BIN_K_DELETE, true, false },
    [BIN_INCREMENT] = { BIN_K_ARITH, false, false },
    [BIN_INCREMENTQ] = { BIN_K_ARITH, true, false },
    [BIN_DECREMENT] = { BIN_K_ARITH, false, false },
    [BIN_DECREMENTQ] = { BIN_K_ARITH, true, false },
    [BIN_QUIT]      = { BIN_K_QUIT, false, false },
    [BIN_QUITQ]     = { BIN_K_QUIT, true, false },
    [BIN_FLUSH]     = { BIN_K_FLUSH, false, false },
    [BIN_FLUSHQ]    = { BIN_K_FLUSH, true, false },
    [BIN_NOOP]      = { BIN_K_NOOP, false, false },
    [BIN_VERSION]   = { BIN_K_VERSION, false, false },
    [BIN_STAT]      = { BIN_K_STAT, false, false },
    [BIN_SASL_LIST_MECHS] = { BIN_K_SASL_LIST, false, false },
    [BIN_SASL_AUTH] = { BIN_K_SASL_AUTH, false, false },
    [BIN_SASL_STEP] = { BIN_K_SASL_AUTH, false, false },
    /* BIN_VERBOSITY: memcached has never served it: unknown command. */
};

enum bin_kind
binproto_kind(uint8_t opcode)
{
    return (enum bin_kind)opcodes[opcode].kind;
}

bool
binproto_quiet(uint8_t opcode)
{
    return opcodes[opcode].quiet;
}

bool
binproto_returns_key(uint8_t opcode)
{
    return opcodes[opcode].returns_key;
}

/* Does the header have the shape this kind of request must have? */
static bool
shape_ok(const struct bin_request *r)
{
    uint32_t ext = r->extlen, key = r->keylen, body = r->bodylen;

    switch ((enum bin_kind)r->kind) {
    case BIN_K_GET:
    case BIN_K_DELETE:
        return ext == 0 && key > 0 && body == key;
    case BIN_K_GAT:
    case BIN_K_TOUCH:
        /* memcached checks only the extras and the key, then leaves any
         * value in the stream: a value here is refused instead. */
        return ext == 4 && key > 0 && body == key + 4;
    case BIN_K_STORE:
        return ext == 8 && key > 0 && body >= key + 8;
    case BIN_K_CONCAT:
        return ext == 0 && key > 0;
    case BIN_K_ARITH:
        return ext == 20 && key > 0 && body == key + 20;
    case BIN_K_QUIT:
    case BIN_K_NOOP:
    case BIN_K_VERSION:
    case BIN_K_SASL_LIST:
        return ext == 0 && key == 0 && body == 0;
    case BIN_K_FLUSH:
        return key == 0 && body == ext && (ext == 0 || ext == 4);
    case BIN_K_STAT:
        return ext == 0 && body == key;     /* memcached: ext == 0 (see above) */
    case BIN_K_SASL_AUTH:
        return ext == 0 && key > 0;
    case BIN_K_UNKNOWN:
        return true;
    }
    return false;
}

/* The extras that carry numbers, decoded (they are in the buffer). */
static void
read_extras(const char *ext, struct bin_request *r)
{
    switch ((enum bin_kind)r->kind) {
    case BIN_K_STORE:
        r->flags = binproto_be32(ext);
        r->exptime = binproto_be32(ext + 4);
        break;
    case BIN_K_GAT:
    case BIN_K_TOUCH:
    case BIN_K_FLUSH:
        r->exptime = r->extlen == 4 ? binproto_be32(ext) : 0;
        break;
    case BIN_K_ARITH:
        r->delta = binproto_be64(ext);
        r->initial = binproto_be64(ext + 8);
        r->exptime = binproto_be32(ext + 16);
        break;
    default:
        break;
    }
}

static void
read_header(const char *buf, struct bin_request *r)
{
    memset(r, 0, sizeof(*r));
    r->opcode = (uint8_t)buf[1];
    r->kind = opcodes[r->opcode].kind;
    r->keylen = (uint16_t)((uint8_t)buf[2] << 8 | (uint8_t)buf[3]);
    r->extlen = (uint8_t)buf[4];
    r->bodylen = binproto_be32(buf + 8);
    memcpy(&r->opaque, buf + 12, 4);
    r->cas = binproto_be64(buf + 16);
}

enum bin_parse_status
binproto_parse(const char *buf, size_t len, uint32_t item_max, struct bin_request *req,
               uint16_t *status, uint32_t *need)
{
    uint32_t head;

    *status = BIN_SUCCESS;
    *need = 0;
    if (len < BIN_HEADER_LEN) {
        memset(req, 0, sizeof(*req));
        *need = BIN_HEADER_LEN;
        return BIN_PARSE_NEED_MORE;
    }
    read_header(buf, req);
    if ((uint8_t)buf[0] != BIN_MAGIC_REQUEST)
        return BIN_PARSE_CLOSE;             /* memcached closes without a word */
    if (req->keylen > req->bodylen || (uint32_t)req->keylen + req->extlen > req->bodylen) {
        *status = BIN_UNKNOWN_COMMAND;
        return BIN_PARSE_CLOSE;
    }
    if (req->keylen > KEY_MAX || !shape_ok(req)) {
        *status = BIN_EINVAL;
        return BIN_PARSE_CLOSE;
    }
    req->key_off = BIN_HEADER_LEN + req->extlen;
    req->value_off = req->key_off + req->keylen;
    req->value_len = req->bodylen - req->extlen - req->keylen;
    head = req->value_off;
    if (len < head) {
        *need = head;
        return BIN_PARSE_NEED_MORE;
    }
    read_extras(buf + BIN_HEADER_LEN, req);
    if (req->kind == BIN_K_UNKNOWN || req->kind == BIN_K_SASL_LIST
        || req->kind == BIN_K_SASL_AUTH) {
        *status = BIN_UNKNOWN_COMMAND;
        return BIN_PARSE_REFUSE;
    }
    if ((req->kind == BIN_K_STORE || req->kind == BIN_K_CONCAT)
        && (req->value_len > item_max || req->value_len > BIN_VALUE_MAX)) {
        *status = BIN_E2BIG;
        return BIN_PARSE_REFUSE;
    }
    if (len - head < req->value_len) {
        *need = head + req->value_len;
        return BIN_PARSE_NEED_MORE;
    }
    return BIN_PARSE_OK;
}
