/*
 * scan.h: word-at-a-time scans shared by the two parsers (proto.c, reply.c)
 * and the binary protocol's request writer (binclient.c: is a key text-safe).
 *
 * Both parsers spend most of their time walking runs of key bytes (every
 * byte key_byte_ok() in luagent.h accepts) and runs of decimal digits.
 * Tested eight at a time, a 10-byte key or a 10-digit number costs about a
 * third of the byte loop. Words are read only where all eight bytes lie
 * inside the run's bounds; the byte loop finishes the rest (and does all the
 * work where words are not little-endian).
 */
#ifndef SCAN_H
#define SCAN_H

#include <stdint.h>
#include <string.h>

#include "luagent.h"

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SCAN_WORDS      1
#endif

/*
 * A word's stop mask: the top bit set in each byte that ends a run, where
 * only the lowest one has to be exact (see scan_run).
 *
 * Key bytes: x - 0x21 borrows into the top bit of the bytes below 0x21
 * (which a byte of 0x80 or more never has in ~x), and the bytes equal to
 * 0x7f are the zero bytes of x ^ 0x7f...
 */
static inline uint64_t
key_stops(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, tops = 0x8080808080808080ull;
    uint64_t del = x ^ (ones * 0x7f);

    return ((x - ones * 0x21) & ~x & tops) | ((del - ones) & ~del & tops);
}

/*
 * Digits: once '0' is taken from each byte, a digit is 0..9 and any other
 * byte is 10 or more, which sets the top bit of the byte itself or of the
 * byte plus 0x76.
 */
static inline uint64_t
digit_stops(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, tops = 0x8080808080808080ull;
    uint64_t d = x - ones * '0';

    return (d | (d + ones * 0x76)) & tops;
}

static inline int
scan_is_key_byte(char c)
{
    return key_byte_ok((unsigned char)c);
}

static inline int
scan_is_digit(char c)
{
    return (unsigned)(c - '0') <= 9;
}

/*
 * The first byte in [p, end) that ends a run (stops, in_run), or end. A
 * borrow or carry between the bytes of a word can only flag a byte above
 * one that really ends the run, so the lowest flag is always exact, and it
 * is the only one used. The helpers are inline, so each run below compiles
 * to its own loop.
 */
static inline const char *
scan_run(const char *p, const char *end, uint64_t (*stops)(uint64_t),
         int (*in_run)(char))
{
#ifdef SCAN_WORDS
    while (end - p >= 8) {
        uint64_t x, hit;

        memcpy(&x, p, sizeof(x));
        hit = stops(x);
        if (hit != 0)
            return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#else
    (void)stops;
#endif
    while (p < end && in_run(*p))
        p++;
    return p;
}

/* The first byte in [p, end) that key_byte_ok() refuses, or end. */
static inline const char *
key_run(const char *p, const char *end)
{
    return scan_run(p, end, key_stops, scan_is_key_byte);
}

/*
 * The first byte in [p, end) that is not a decimal digit, or end: for the
 * numbers whose value nobody needs, only that they are numbers.
 */
static inline const char *
digit_run(const char *p, const char *end)
{
    return scan_run(p, end, digit_stops, scan_is_digit);
}

/*
 * Read the decimal digits at p: at most max of them (max <= 19, so that the
 * value fits in 64 bits), stopping at stop or at the first other byte. Sets
 * *val and returns the end of the digits read (p itself when there are
 * none). digits_read_word below reads a short number in one word when the
 * bytes after it can be read too.
 */
static inline const char *
digits_read(const char *p, const char *stop, uint32_t max, uint64_t *val)
{
    const char *lim = stop - p > (long)max ? p + max : stop;
    uint64_t v = 0;

    while (p < lim && scan_is_digit(*p)) {
        v = v * 10 + (unsigned)(*p - '0');
        p++;
    }
    *val = v;
    return p;
}

/*
 * The value of the n (1..8) digits at the start of x, a word read from
 * where they are: '0' is taken from each byte (a borrow out of a byte past
 * the digits only reaches the bytes above it), the digits are shifted to
 * the top so that zero bytes stand for leading zeros, then pairs, fours
 * and eights of digits are combined, each step one multiply.
 */
static inline uint64_t
digits_value(uint64_t x, unsigned n)
{
    x -= 0x3030303030303030ull;
    x <<= 8 * (8 - n);
    x = (x * 10 + (x >> 8)) & 0x00ff00ff00ff00ffull;
    x = (x * 100 + (x >> 16)) & 0x0000ffff0000ffffull;
    return (x * 10000 + (x >> 32)) & 0xffffffffull;
}

/*
 * digits_read, with one word for a number of fewer than eight digits when
 * eight bytes can be read at p (the common case: a length or a flags value
 * with more of the line after it). Same results in every case.
 */
static inline const char *
digits_read_word(const char *p, const char *stop, uint32_t max, uint64_t *val)
{
#ifdef SCAN_WORDS
    if (stop - p >= 8) {
        uint64_t x, hit;
        unsigned n;

        memcpy(&x, p, sizeof(x));
        hit = digit_stops(x);
        if (hit != 0 && (n = (unsigned)__builtin_ctzll(hit) >> 3) <= max) {
            *val = n > 0 ? digits_value(x, n) : 0;
            return p + n;
        }
    }
#endif
    return digits_read(p, stop, max, val);
}

/* The w (4 or 8) bytes at p as one number. */
static inline uint64_t
scan_load(const char *p, unsigned w)
{
    uint32_t half;
    uint64_t x;

    if (w == 8) {
        memcpy(&x, p, 8);
        return x;
    }
    memcpy(&half, p, 4);
    return half;
}

/*
 * a[0..n) and b[0..n) hold the same bytes: for the lengths keys mostly have
 * (4..16), the first and the last w bytes of each (they overlap when n < 2w)
 * instead of a call to memcmp.
 */
static inline int
scan_same(const char *a, const char *b, size_t n)
{
    unsigned w = n >= 8 ? 8 : 4;

    if (n < 4 || n > 16)
        return memcmp(a, b, n) == 0;
    return ((scan_load(a, w) ^ scan_load(b, w))
            | (scan_load(a + n - w, w) ^ scan_load(b + n - w, w))) == 0;
}

#endif
