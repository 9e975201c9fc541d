/*
 * binreply.h: memcached binary-protocol responses (pure: no I/O, no logging).
 *
 * luagent carries a binary request to memcached as a meta (or classic) text
 * command; this module writes the binary response a memcached server would
 * have written for the server's text reply: status, extras (flags), key,
 * value, CAS and the request's opaque. It also writes the responses luagent
 * gives itself (errors, Noop, Version, Stat).
 */
#ifndef BINREPLY_H
#define BINREPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"

struct buf;

/* bin_ctx.status: nothing is written (a close without a word, as memcached). */
#define BIN_STATUS_SILENT   0xffff

/* What a binary response depends on, kept from its request. */
struct bin_ctx {
    uint32_t opaque;        /* as the client sent it */
    uint8_t  opcode;        /* as the client sent it (quiet variants included) */
    bool     cas;           /* the request carried a CAS value */
    uint16_t status;        /* an answer decided before any server was asked
                             * (an error status), else BIN_SUCCESS */
};

/* One response packet: header, then extras, key and value. */
void binreply_packet(struct buf *out, const struct bin_ctx *q, uint16_t status, uint64_t cas,
                     const void *extras, uint8_t extlen, const char *key, uint16_t keylen,
                     const char *value, uint32_t vlen);

/* An error response; msg NULL means memcached's own text for the status. */
void binreply_error(struct buf *out, const struct bin_ctx *q, uint16_t status,
                    const char *msg, size_t len);

/* memcached's text for an error status ("Not found", ...). */
const char *binreply_status_text(uint16_t status);

/*
 * The response to a keyed request (get, gat, touch, store, append, delete,
 * incr/decr) from the server's reply: kind and the whole unit (line, and
 * for VA the data block). An error line (ERROR, CLIENT_ERROR ...,
 * SERVER_ERROR ..., luagent's own included) maps to an error status. key is
 * the client's key, for the key-returning opcodes. Quiet opcodes write
 * nothing for a success (the get family: for a miss). Returns the status,
 * written or not.
 */
uint16_t binreply_result(struct buf *out, const struct bin_ctx *q, const char *key,
                         uint16_t keylen, enum reply_kind kind, const char *unit, size_t len);

/* The response for a text reply line that says something failed ("SERVER_ERROR ..."). */
uint16_t binreply_line(struct buf *out, const struct bin_ctx *q, const char *line, size_t len);

/*
 * Stat: turn a text stats reply ("STAT <name> <value>\r\n"... "END\r\n")
 * into one response per statistic and the closing empty one.
 */
void binreply_stats(struct buf *out, const struct bin_ctx *q, const char *text, size_t len);

#endif
