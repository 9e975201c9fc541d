/*
 * reply.h: memcached backend reply parser (pure: no I/O, no logging).
 *
 * A backend connection feeds the bytes a server sent; the parser cuts them
 * into reply units and classifies each: a retrieval reply is a sequence of
 * VALUE units (line + data block) closed by an END unit; every other command
 * gets a single line (STORED, NOT_FOUND, a number for incr/decr, ...). Meta
 * commands get one unit each: a status line with optional flags ("HD c12"),
 * for VA followed by a data block.
 */
#ifndef REPLY_H
#define REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum reply_kind {
    REPLY_VALUE,        /* "VALUE <key> <flags> <bytes> [<cas>]" + data block */
    REPLY_END,          /* "END": closes a retrieval reply */
    REPLY_STORED,
    REPLY_NOT_STORED,
    REPLY_EXISTS,
    REPLY_NOT_FOUND,
    REPLY_DELETED,
    REPLY_TOUCHED,
    REPLY_OK,
    REPLY_NUMBER,       /* incr/decr result */
    REPLY_VERSION,      /* "VERSION ..." */
    REPLY_STAT,         /* "STAT ..." (stats passthrough) */
    REPLY_ERROR,        /* "ERROR" */
    REPLY_CLIENT_ERROR, /* "CLIENT_ERROR ..." */
    REPLY_SERVER_ERROR, /* "SERVER_ERROR ..." */
    /* meta: <code> [<flags>*] */
    REPLY_META_HD,      /* "HD": success, no value */
    REPLY_META_VA,      /* "VA <bytes>" + data block */
    REPLY_META_EN,      /* "EN": miss (mg, me) */
    REPLY_META_NF,      /* "NF": not found (md, ma, ms with a cas) */
    REPLY_META_NS,      /* "NS": not stored */
    REPLY_META_EX,      /* "EX": cas mismatch */
    REPLY_META_MN,      /* "MN": the no-op's answer */
    REPLY_META_ME,      /* "ME <key> <key=value>*": the debug answer */
    REPLY_KIND_COUNT
};

struct reply {
    enum reply_kind kind;
    uint32_t len;       /* whole unit: line + "\r\n" (+ data block + "\r\n") */
    uint32_t line_len;  /* the line including "\r\n" */
    /* REPLY_VALUE only: */
    uint32_t key_off;   /* key within the unit */
    uint32_t key_len;
    uint32_t rest_off;  /* " <flags> <bytes> [<cas>]\r\n" + data + "\r\n": */
                        /* from just after the key to the end of the unit */
    uint32_t data_len;  /* <bytes> (VALUE and VA) */
    bool     key_expected; /* VALUE: its key is the one given to
                            * reply_parse_expect (else false) */
};

/* Is this one of the meta protocol's replies? */
#define REPLY_IS_META(kind) ((kind) >= REPLY_META_HD && (kind) <= REPLY_META_ME)

enum reply_status {
    REPLY_OK_UNIT,      /* *r describes a complete unit at buf[0..r->len) */
    REPLY_NEED_MORE,    /* not complete yet; once a VALUE or VA line is whole,
                         * r->len is the unit's whole length and the fields
                         * of its line are set as for a whole unit (else *r
                         * is left as is) */
    REPLY_BAD           /* not a memcached reply (or a VALUE over max_value):
                         * the connection is out of sync and must be closed */
};

/* Parse one unit at the start of buf[0..len). */
enum reply_status reply_parse(const char *buf, size_t len, uint32_t max_value,
                              struct reply *r);

/*
 * reply_parse, for a reader that knows which key the next VALUE should
 * carry: key[0..klen), 1..KEY_MAX bytes that key_byte_ok() accepts (as every
 * key of a classic get sent to a server). A VALUE line with that key has it
 * compared instead of scanned, and says so in r->key_expected; every result
 * is the one reply_parse gives.
 */
enum reply_status reply_parse_expect(const char *buf, size_t len, uint32_t max_value,
                                     const char *key, uint32_t klen, struct reply *r);

/* Name of a kind, for logs and stats. */
const char *reply_kind_name(enum reply_kind kind);

#endif
