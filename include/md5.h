/*
 * md5.h: MD5 digest (RFC 1321), used by the ketama ring and key hash.
 */
#ifndef MD5_H
#define MD5_H

#include <stddef.h>
#include <stdint.h>

struct md5_ctx {
    uint32_t state[4];
    uint64_t bytes;             /* total bytes fed */
    unsigned char block[64];    /* partial input block */
};

void md5_init(struct md5_ctx *ctx);
void md5_update(struct md5_ctx *ctx, const void *data, size_t len);
void md5_final(struct md5_ctx *ctx, unsigned char digest[16]);

/* One-shot digest. */
void md5_digest(const void *data, size_t len, unsigned char digest[16]);

#endif
