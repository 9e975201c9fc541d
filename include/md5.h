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

/* The longest input that fits one padded block (a key hashes in one block). */
#define MD5_SHORT_MAX 55

/*
 * The digest's first four bytes as a little-endian word: ketama's key hash.
 * Equal to reading them from md5_digest(), at a lower cost for inputs of at
 * most MD5_SHORT_MAX bytes (longer ones take the full digest).
 */
uint32_t md5_first_word(const void *data, size_t len);

#endif
