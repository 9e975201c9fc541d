/*
 * binproto.h: memcached binary-protocol request parser (pure: no I/O, no
 * logging).
 *
 * A binary request is a 24-byte header, then extras, key and value, bodylen
 * bytes in all. The parser checks a header the way memcached 1.6.18 does and
 * says one of: the whole request is here; more bytes are needed (and how
 * many); refuse it with a status and skip its body, the stream staying in
 * step (unknown opcodes, a value over item_max); or refuse it and close, when
 * the header cannot be trusted (bad magic, lengths that contradict each
 * other, the wrong extras for the opcode). Positions are offsets into the
 * caller's buffer; nothing is copied.
 */
#ifndef BINPROTO_H
#define BINPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BIN_HEADER_LEN      24
#define BIN_MAGIC_REQUEST   0x80
#define BIN_MAGIC_RESPONSE  0x81

enum bin_opcode {
    BIN_GET = 0x00, BIN_SET = 0x01, BIN_ADD = 0x02, BIN_REPLACE = 0x03,
    BIN_DELETE = 0x04, BIN_INCREMENT = 0x05, BIN_DECREMENT = 0x06,
    BIN_QUIT = 0x07, BIN_FLUSH = 0x08, BIN_GETQ = 0x09, BIN_NOOP = 0x0a,
    BIN_VERSION = 0x0b, BIN_GETK = 0x0c, BIN_GETKQ = 0x0d, BIN_APPEND = 0x0e,
    BIN_PREPEND = 0x0f, BIN_STAT = 0x10, BIN_SETQ = 0x11, BIN_ADDQ = 0x12,
    BIN_REPLACEQ = 0x13, BIN_DELETEQ = 0x14, BIN_INCREMENTQ = 0x15,
    BIN_DECREMENTQ = 0x16, BIN_QUITQ = 0x17, BIN_FLUSHQ = 0x18,
    BIN_APPENDQ = 0x19, BIN_PREPENDQ = 0x1a, BIN_VERBOSITY = 0x1b,
    BIN_TOUCH = 0x1c, BIN_GAT = 0x1d, BIN_GATQ = 0x1e,
    BIN_SASL_LIST_MECHS = 0x20, BIN_SASL_AUTH = 0x21, BIN_SASL_STEP = 0x22,
    BIN_GATK = 0x23, BIN_GATKQ = 0x24
};

enum bin_status {
    BIN_SUCCESS = 0x00,
    BIN_KEY_ENOENT = 0x01,
    BIN_KEY_EEXISTS = 0x02,
    BIN_E2BIG = 0x03,
    BIN_EINVAL = 0x04,
    BIN_NOT_STORED = 0x05,
    BIN_DELTA_BADVAL = 0x06,
    BIN_UNKNOWN_COMMAND = 0x81,
    BIN_ENOMEM = 0x82,
    BIN_ETMPFAIL = 0x86     /* the protocol's "temporary failure": ours for
                             * a server that could not be asked */
};

/* What an opcode does, quiet and key-returning variants folded together. */
enum bin_kind {
    BIN_K_UNKNOWN,      /* not a command memcached serves (SASL included) */
    BIN_K_GET,          /* get getq getk getkq */
    BIN_K_GAT,          /* gat gatq gatk gatkq */
    BIN_K_TOUCH,
    BIN_K_STORE,        /* set add replace (+q): flags and exptime extras */
    BIN_K_CONCAT,       /* append prepend (+q): no extras */
    BIN_K_DELETE,
    BIN_K_ARITH,        /* increment decrement (+q) */
    BIN_K_QUIT,         /* QUIT to STAT stay in this order: binclient.c */
    BIN_K_FLUSH,
    BIN_K_NOOP,
    BIN_K_VERSION,
    BIN_K_STAT,
    BIN_K_SASL_LIST,    /* answered "unknown command", as memcached built */
    BIN_K_SASL_AUTH     /* without SASL answers it */
};

struct bin_request {
    uint8_t   opcode;       /* as sent */
    uint8_t   kind;         /* enum bin_kind */
    uint8_t   extlen;
    uint16_t  keylen;
    uint32_t  bodylen;
    uint32_t  opaque;       /* the header's 4 bytes as sent (echoed unchanged) */
    uint64_t  cas;
    uint32_t  key_off;      /* BIN_HEADER_LEN + extlen */
    uint32_t  value_off;    /* key_off + keylen */
    uint32_t  value_len;    /* bodylen - extlen - keylen */
    uint32_t  flags;        /* set add replace */
    uint32_t  exptime;      /* set add replace touch gat* flush (4-byte form) incr decr */
    uint64_t  delta;        /* incr decr */
    uint64_t  initial;
};

enum bin_parse_status {
    BIN_PARSE_OK,           /* the whole request, value_off + value_len bytes */
    BIN_PARSE_NEED_MORE,    /* *need: bytes the buffer must hold to go on */
    BIN_PARSE_REFUSE,       /* answer *status; the header, extras and key are
                             * here (value_off bytes): drop them and value_len
                             * more, which may not have arrived yet */
    BIN_PARSE_CLOSE         /* answer *status (none when 0), then close: the
                             * stream cannot be trusted */
};

/*
 * Parse the request at the start of buf[0..len). opcode and opaque are filled
 * as soon as the header is here, whatever the outcome, so the answer can
 * carry them. item_max bounds a stored value (E2BIG above it).
 */
enum bin_parse_status binproto_parse(const char *buf, size_t len, uint32_t item_max,
                                     struct bin_request *req, uint16_t *status,
                                     uint32_t *need);

/* The kind of an opcode. */
enum bin_kind binproto_kind(uint8_t opcode);

/* Quiet variants: success (and for the get family, a miss) is not answered. */
bool binproto_quiet(uint8_t opcode);

/* GetK/GetKQ/GATK/GATKQ: the reply carries the key. */
bool binproto_returns_key(uint8_t opcode);

/* Read big-endian numbers. */
static inline uint32_t
binproto_be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static inline uint64_t
binproto_be64(const char *p)
{
    return (uint64_t)binproto_be32(p) << 32 | binproto_be32(p + 4);
}

#endif
