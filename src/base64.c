/*
 * base64.c: base64 for meta-protocol keys (pure: no I/O, no allocation).
 *
 * The decoder follows memcached's rules rather than a strict RFC 4648
 * reader, because a proxy that decodes a key differently from the server
 * would route it by other bytes than the server stores: characters outside
 * the alphabet are skipped, the alphabet characters (with '=') must be a
 * non-zero multiple of four, '=' counts as a zero digit and the group that
 * holds it is the last one read.
 */
#include "base64.h"

#include <stdint.h>

static const char alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define NOT_B64 0xff

/* The 6-bit value of an alphabet character ('=' is 0), else NOT_B64. */
static uint8_t
digit_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return (uint8_t)(ch - 'A');
    if (ch >= 'a' && ch <= 'z')
        return (uint8_t)(ch - 'a' + 26);
    if (ch >= '0' && ch <= '9')
        return (uint8_t)(ch - '0' + 52);
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    if (ch == '=')
        return 0;
    return NOT_B64;
}

size_t
base64_decode(const char *src, size_t len, unsigned char *out, size_t out_cap)
{
    const unsigned char *in = (const unsigned char *)src;
    size_t i, count = 0, n = 0;
    uint8_t group[4];
    int pad = 0;

    for (i = 0; i < len; i++)
        if (digit_value(in[i]) != NOT_B64)
            count++;
    if (count == 0 || count % 4 != 0 || BASE64_DECODED_MAX(count) > out_cap)
        return 0;

    count = 0;
    for (i = 0; i < len; i++) {
        uint8_t v = digit_value(in[i]);

        if (v == NOT_B64)
            continue;
        if (in[i] == '=')
            pad++;
        group[count++] = v;
        if (count < 4)
            continue;
        out[n++] = (unsigned char)(group[0] << 2 | group[1] >> 4);
        out[n++] = (unsigned char)(group[1] << 4 | group[2] >> 2);
        out[n++] = (unsigned char)(group[2] << 6 | group[3]);
        count = 0;
        if (pad > 2)
            return 0;
        if (pad > 0) {
            n -= (size_t)pad;       /* each '=' stands for one byte less */
            break;
        }
    }
    return n;
}

size_t
base64_encode(const unsigned char *src, size_t len, char *out)
{
    size_t i, n = 0;

    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];

        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = alphabet[(v >> 6) & 63];
        out[n++] = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)src[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)src[i + 1] << 8;
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[n++] = '=';
    }
    return n;
}
