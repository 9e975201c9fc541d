/*
 * md5.c: MD5 message digest (RFC 1321).
 *
 * Needed by the ketama ring (server points) and by the md5 key hash. Pure:
 * no allocation, no I/O. Invariant: ctx->block holds the (ctx->bytes % 64)
 * input bytes not yet compressed; every full block is compressed at once.
 */
#include "md5.h"

#include <stdbool.h>
#include <string.h>

/* Per-step additive constants: floor(|sin(i + 1)| * 2^32), RFC 1321 3.4. */
static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
    0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
    0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
    0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
    0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
    0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
    0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/*
 * The four round functions (RFC 1321 3.4); F and G in their cheaper forms.
 * H is spelt two ways so that each pair of round-3 steps shares an xor: the
 * first step of a pair takes x ^ y, the second y ^ z of the same two words
 * (b ^ c in steps 32 and 33), and the compiler computes it once.
 */
#define MD5_F(x, y, z)  ((z) ^ ((x) & ((y) ^ (z))))
#define MD5_G(x, y, z)  ((y) ^ ((z) & ((x) ^ (y))))
#define MD5_HH(x, y, z) (((x) ^ (y)) ^ (z))
#define MD5_H2(x, y, z) ((x) ^ ((y) ^ (z)))
#define MD5_I(x, y, z)  ((y) ^ ((x) | ~(z)))

/* One step: a = b + ((a + fn(b, c, d) + word + k) <<< s). */
#define MD5_STEP(fn, a, b, c, d, word, k, s) do {                   \
    (a) += fn((b), (c), (d)) + (word) + (k);                        \
    (a) = ((a) << (s)) | ((a) >> (32 - (s)));                       \
    (a) += (b);                                                     \
} while (0)

/* MD5 reads its input as little-endian words whatever the host order. */
static uint32_t
md5_load_le(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
#endif
}

static void
md5_store_le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/*
 * The 64 steps of one block, from message words m[] into the state. Written
 * out so the compiler sees constant word indexes and shift counts (ketama
 * hashes every key, so this is on the request path), and always inlined so
 * its two knobs are compile-time constants in each caller:
 *
 * - live: only m[0..live-1] and m[14] may be non-zero; every other word is
 *   known to be zero and its adds vanish. A key of up to 55 bytes fills one
 *   block: its bytes, the 0x80 pad byte, zeros, then its bit length in m[14]
 *   (m[15], the length's high half, is zero), so a short key has few live
 *   words.
 * - first_word_only: only state[0] is wanted (the key hash reads the first
 *   four digest bytes). Steps 61-63 change only b, c and d, so they and the
 *   other three final adds are skipped; state[1..3] are then left unchanged.
 */
#define MD5_W(i) ((i) < live || (i) == 14 ? m[i] : 0)

static inline __attribute__((always_inline)) void
md5_rounds(uint32_t state[4], const uint32_t m[16], unsigned live,
           bool first_word_only)
{
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];

    MD5_STEP(MD5_F, a, b, c, d, MD5_W(0),  md5_k[0],  7);
    MD5_STEP(MD5_F, d, a, b, c, MD5_W(1),  md5_k[1],  12);
    MD5_STEP(MD5_F, c, d, a, b, MD5_W(2),  md5_k[2],  17);
    MD5_STEP(MD5_F, b, c, d, a, MD5_W(3),  md5_k[3],  22);
    MD5_STEP(MD5_F, a, b, c, d, MD5_W(4),  md5_k[4],  7);
    MD5_STEP(MD5_F, d, a, b, c, MD5_W(5),  md5_k[5],  12);
    MD5_STEP(MD5_F, c, d, a, b, MD5_W(6),  md5_k[6],  17);
    MD5_STEP(MD5_F, b, c, d, a, MD5_W(7),  md5_k[7],  22);
    MD5_STEP(MD5_F, a, b, c, d, MD5_W(8),  md5_k[8],  7);
    MD5_STEP(MD5_F, d, a, b, c, MD5_W(9),  md5_k[9],  12);
    MD5_STEP(MD5_F, c, d, a, b, MD5_W(10), md5_k[10], 17);
    MD5_STEP(MD5_F, b, c, d, a, MD5_W(11), md5_k[11], 22);
    MD5_STEP(MD5_F, a, b, c, d, MD5_W(12), md5_k[12], 7);
    MD5_STEP(MD5_F, d, a, b, c, MD5_W(13), md5_k[13], 12);
    MD5_STEP(MD5_F, c, d, a, b, MD5_W(14), md5_k[14], 17);
    MD5_STEP(MD5_F, b, c, d, a, MD5_W(15), md5_k[15], 22);

    MD5_STEP(MD5_G, a, b, c, d, MD5_W(1),  md5_k[16], 5);
    MD5_STEP(MD5_G, d, a, b, c, MD5_W(6),  md5_k[17], 9);
    MD5_STEP(MD5_G, c, d, a, b, MD5_W(11), md5_k[18], 14);
    MD5_STEP(MD5_G, b, c, d, a, MD5_W(0),  md5_k[19], 20);
    MD5_STEP(MD5_G, a, b, c, d, MD5_W(5),  md5_k[20], 5);
    MD5_STEP(MD5_G, d, a, b, c, MD5_W(10), md5_k[21], 9);
    MD5_STEP(MD5_G, c, d, a, b, MD5_W(15), md5_k[22], 14);
    MD5_STEP(MD5_G, b, c, d, a, MD5_W(4),  md5_k[23], 20);
    MD5_STEP(MD5_G, a, b, c, d, MD5_W(9),  md5_k[24], 5);
    MD5_STEP(MD5_G, d, a, b, c, MD5_W(14), md5_k[25], 9);
    MD5_STEP(MD5_G, c, d, a, b, MD5_W(3),  md5_k[26], 14);
    MD5_STEP(MD5_G, b, c, d, a, MD5_W(8),  md5_k[27], 20);
    MD5_STEP(MD5_G, a, b, c, d, MD5_W(13), md5_k[28], 5);
    MD5_STEP(MD5_G, d, a, b, c, MD5_W(2),  md5_k[29], 9);
    MD5_STEP(MD5_G, c, d, a, b, MD5_W(7),  md5_k[30], 14);
    MD5_STEP(MD5_G, b, c, d, a, MD5_W(12), md5_k[31], 20);

    MD5_STEP(MD5_HH, a, b, c, d, MD5_W(5),  md5_k[32], 4);
    MD5_STEP(MD5_H2, d, a, b, c, MD5_W(8),  md5_k[33], 11);
    MD5_STEP(MD5_HH, c, d, a, b, MD5_W(11), md5_k[34], 16);
    MD5_STEP(MD5_H2, b, c, d, a, MD5_W(14), md5_k[35], 23);
    MD5_STEP(MD5_HH, a, b, c, d, MD5_W(1),  md5_k[36], 4);
    MD5_STEP(MD5_H2, d, a, b, c, MD5_W(4),  md5_k[37], 11);
    MD5_STEP(MD5_HH, c, d, a, b, MD5_W(7),  md5_k[38], 16);
    MD5_STEP(MD5_H2, b, c, d, a, MD5_W(10), md5_k[39], 23);
    MD5_STEP(MD5_HH, a, b, c, d, MD5_W(13), md5_k[40], 4);
    MD5_STEP(MD5_H2, d, a, b, c, MD5_W(0),  md5_k[41], 11);
    MD5_STEP(MD5_HH, c, d, a, b, MD5_W(3),  md5_k[42], 16);
    MD5_STEP(MD5_H2, b, c, d, a, MD5_W(6),  md5_k[43], 23);
    MD5_STEP(MD5_HH, a, b, c, d, MD5_W(9),  md5_k[44], 4);
    MD5_STEP(MD5_H2, d, a, b, c, MD5_W(12), md5_k[45], 11);
    MD5_STEP(MD5_HH, c, d, a, b, MD5_W(15), md5_k[46], 16);
    MD5_STEP(MD5_H2, b, c, d, a, MD5_W(2),  md5_k[47], 23);

    MD5_STEP(MD5_I, a, b, c, d, MD5_W(0),  md5_k[48], 6);
    MD5_STEP(MD5_I, d, a, b, c, MD5_W(7),  md5_k[49], 10);
    MD5_STEP(MD5_I, c, d, a, b, MD5_W(14), md5_k[50], 15);
    MD5_STEP(MD5_I, b, c, d, a, MD5_W(5),  md5_k[51], 21);
    MD5_STEP(MD5_I, a, b, c, d, MD5_W(12), md5_k[52], 6);
    MD5_STEP(MD5_I, d, a, b, c, MD5_W(3),  md5_k[53], 10);
    MD5_STEP(MD5_I, c, d, a, b, MD5_W(10), md5_k[54], 15);
    MD5_STEP(MD5_I, b, c, d, a, MD5_W(1),  md5_k[55], 21);
    MD5_STEP(MD5_I, a, b, c, d, MD5_W(8),  md5_k[56], 6);
    MD5_STEP(MD5_I, d, a, b, c, MD5_W(15), md5_k[57], 10);
    MD5_STEP(MD5_I, c, d, a, b, MD5_W(6),  md5_k[58], 15);
    MD5_STEP(MD5_I, b, c, d, a, MD5_W(13), md5_k[59], 21);
    MD5_STEP(MD5_I, a, b, c, d, MD5_W(4),  md5_k[60], 6);

    /* a is final here; the last three steps change only d, c and b. */
    if (first_word_only) {
        state[0] += a;
        return;
    }
    MD5_STEP(MD5_I, d, a, b, c, MD5_W(11), md5_k[61], 10);
    MD5_STEP(MD5_I, c, d, a, b, MD5_W(2),  md5_k[62], 15);
    MD5_STEP(MD5_I, b, c, d, a, MD5_W(9),  md5_k[63], 21);

    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

/* One block's message words into the state: the steps with nothing left out. */
static void
md5_compress_words(uint32_t state[4], const uint32_t m[16])
{
    md5_rounds(state, m, 16, false);
}

/* One 64-byte block into the state. */
static void
md5_compress(uint32_t state[4], const unsigned char block[64])
{
    uint32_t m[16];
    unsigned i;

    for (i = 0; i < 16; i++)
        m[i] = md5_load_le(block + 4 * i);
    md5_compress_words(state, m);
}

#define MD5_INIT_STATE { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 }

void
md5_init(struct md5_ctx *ctx)
{
    static const uint32_t init[4] = MD5_INIT_STATE;

    memcpy(ctx->state, init, sizeof(init));
    ctx->bytes = 0;
}

void
md5_update(struct md5_ctx *ctx, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t used = (size_t)(ctx->bytes % 64);
    size_t take;

    if (len == 0) {
        return;
    }
    ctx->bytes += len;

    /* Top up a partial block first. */
    if (used > 0) {
        take = 64 - used;
        if (take > len) {
            take = len;
        }
        memcpy(ctx->block + used, p, take);
        p += take;
        len -= take;
        if (used + take < 64) {
            return;
        }
        md5_compress(ctx->state, ctx->block);
    }

    /* Whole blocks straight from the caller's buffer. */
    while (len >= 64) {
        md5_compress(ctx->state, p);
        p += 64;
        len -= 64;
    }

    memcpy(ctx->block, p, len);
}

void
md5_final(struct md5_ctx *ctx, unsigned char digest[16])
{
    static const unsigned char pad[64] = { 0x80 };
    unsigned char lenbuf[8];
    uint64_t bits = ctx->bytes * 8;
    size_t used = (size_t)(ctx->bytes % 64);
    size_t padlen;
    int i;

    /* Pad to 56 mod 64, then append the bit length, little-endian. */
    padlen = used < 56 ? 56 - used : 120 - used;
    for (i = 0; i < 8; i++) {
        lenbuf[i] = (unsigned char)(bits >> (8 * i));
    }
    md5_update(ctx, pad, padlen);
    md5_update(ctx, lenbuf, 8);

    for (i = 0; i < 4; i++) {
        md5_store_le(digest + 4 * i, ctx->state[i]);
    }
    memset(ctx, 0, sizeof(*ctx));
}

/*
 * A short key's last word: its last 0-3 bytes with the 0x80 pad byte above
 * them. Keys of four bytes or more read their last four bytes as one word
 * and keep its top `tail` bytes (shifted as 64 bits, so that a tail of 0
 * shifts all four out instead of shifting a 32-bit word by 32).
 */
static inline uint32_t
md5_last_word(const unsigned char *key, size_t len)
{
    unsigned tail = (unsigned)(len % 4), i;
    uint32_t w = 0;

    if (len >= 4) {
        w = (uint32_t)((uint64_t)md5_load_le(key + len - 4) >> (32 - 8 * tail));
    } else {
        for (i = 0; i < tail; i++)
            w |= (uint32_t)key[i] << (8 * i);
    }
    return w | 0x80u << (8 * tail);
}

/*
 * The message words of a key of at most MD5_SHORT_MAX bytes, its one padded
 * block: whole key words, the last word, zeros, the bit length in m[14].
 * Only m[0..live-1] and m[14] are written (see md5_rounds); inlined, so each
 * caller's live is a constant.
 */
static inline __attribute__((always_inline)) void
md5_short_words(uint32_t m[16], const unsigned char *key, size_t len,
                unsigned live)
{
    size_t i;

    for (i = 0; i < live; i++)
        m[i] = 0;
    for (i = 0; i < len / 4; i++)
        m[i] = md5_load_le(key + 4 * i);
    m[i] = md5_last_word(key, len);
    m[14] = (uint32_t)len * 8;
}

void
md5_digest(const void *data, size_t len, unsigned char digest[16])
{
    struct md5_ctx ctx;
    int i;

    if (len <= MD5_SHORT_MAX) {
        /* One padded block, no context bookkeeping. */
        uint32_t m[16], state[4] = MD5_INIT_STATE;

        m[15] = 0;
        md5_short_words(m, data, len, 14);
        md5_compress_words(state, m);
        for (i = 0; i < 4; i++)
            md5_store_le(digest + 4 * i, state[i]);
        return;
    }
    md5_init(&ctx);
    md5_update(&ctx, data, len);
    md5_final(&ctx, digest);
}

/*
 * The short-key path: one block, and of the 64 steps only what decides the
 * first word. Each length class gets its own copy of the steps, specialised
 * to the words its keys can fill (keys 0-11 bytes fill m[0..2], 12-27 bytes
 * m[0..6], 28-55 bytes m[0..13]; m[14] always), with the initial state
 * folded in as constants.
 */
uint32_t
md5_first_word(const void *key, size_t len)
{
    uint32_t m[16], state[4] = MD5_INIT_STATE;
    unsigned char digest[16];

    if (len > MD5_SHORT_MAX) {
        md5_digest(key, len, digest);
        return md5_load_le(digest);
    }
    if (len <= 11) {
        md5_short_words(m, key, len, 3);
        md5_rounds(state, m, 3, true);
    } else if (len <= 27) {
        md5_short_words(m, key, len, 7);
        md5_rounds(state, m, 7, true);
    } else {
        md5_short_words(m, key, len, 14);
        md5_rounds(state, m, 14, true);
    }
    return state[0];
}
