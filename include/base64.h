/*
 * base64.h: base64 (RFC 4648 alphabet, '=' padding) for meta-protocol keys
 * (pure: no I/O, no allocation).
 *
 * Decoding accepts exactly what memcached's decoder accepts, so a key that
 * memcached would refuse is refused here and one it takes decodes to the
 * same bytes: bytes outside the alphabet are skipped, the remaining
 * characters must be a non-zero multiple of four, and decoding stops after
 * the first group that holds padding (one or two '='; more is an error).
 */
#ifndef BASE64_H
#define BASE64_H

#include <stddef.h>

/* Bytes base64_encode writes for len input bytes. */
#define BASE64_ENCODED_LEN(len)    ((((len) + 2) / 3) * 4)

/* Most bytes base64_decode can write for len input characters. */
#define BASE64_DECODED_MAX(len)    ((len) / 4 * 3)

/*
 * Decode src[0..len) into out (out_cap bytes, at least
 * BASE64_DECODED_MAX(len) to be sure it fits). Returns the decoded length,
 * or 0 when the input is not valid base64 or does not fit.
 */
size_t base64_decode(const char *src, size_t len, unsigned char *out, size_t out_cap);

/*
 * Encode src[0..len) into out, which must hold BASE64_ENCODED_LEN(len)
 * bytes (no NUL is written). Returns the encoded length.
 */
size_t base64_encode(const unsigned char *src, size_t len, char *out);

#endif
