/*
 * test_scan.c: unit tests for the word-at-a-time scans (include/scan.h).
 *
 * key_run and digit_run must stop exactly where the byte-by-byte loops
 * stop, whatever the bytes around that place are: every byte value is put
 * at every place of runs that span several 8-byte words, behind fillers
 * that sit just inside and outside each class (0x21 and 0x7e are key bytes,
 * 0x20 and 0x7f are not; '0' and '9' are digits, '/' and ':' are not), so a
 * borrow or carry that flagged the wrong byte would show. Runs that end in
 * the last one to seven bytes of a range of eight or more go through the
 * overlapping read of its last word.
 */
#include "scan.h"

#include <stdlib.h>

#include "unit.h"

static const char *
key_run_bytewise(const char *p, const char *end)
{
    while (p < end && key_byte_ok((unsigned char)*p))
        p++;
    return p;
}

static const char *
digit_run_bytewise(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

#define RUN_MAX 26

/* Every byte value at every place of runs of every length up to RUN_MAX. */
static void
test_every_place(const char *name, const char *(*fast)(const char *, const char *),
                 const char *(*slow)(const char *, const char *),
                 const unsigned char *fillers, size_t nfillers)
{
    size_t f, len, pos, wrong = 0, tried = 0;
    unsigned c;

    for (f = 0; f < nfillers; f++) {
        for (len = 0; len <= RUN_MAX; len++) {
            for (pos = 0; pos < len; pos++) {
                for (c = 0; c < 256; c++) {
                    /* an exact-size heap copy: ASan sees any read past it */
                    char *buf = malloc(len);

                    memset(buf, fillers[f], len);
                    buf[pos] = (char)c;
                    tried++;
                    if (fast(buf, buf + len) != slow(buf, buf + len))
                        wrong++;
                    free(buf);
                }
            }
        }
    }
    UNIT_REPORT(wrong == 0, "%s: %zu of %zu runs end elsewhere than byte by byte",
                name, wrong, tried);
}

/* Two bytes from a small set at every pair of places, for carry chains. */
static void
test_pairs(const char *name, const char *(*fast)(const char *, const char *),
           const char *(*slow)(const char *, const char *), unsigned char filler,
           const unsigned char *set, size_t nset)
{
    char buf[RUN_MAX];
    size_t i, j, a, b, wrong = 0, tried = 0;

    for (i = 0; i < RUN_MAX; i++) {
        for (j = i + 1; j < RUN_MAX; j++) {
            for (a = 0; a < nset; a++) {
                for (b = 0; b < nset; b++) {
                    memset(buf, filler, sizeof(buf));
                    buf[i] = (char)set[a];
                    buf[j] = (char)set[b];
                    tried++;
                    if (fast(buf, buf + sizeof(buf)) != slow(buf, buf + sizeof(buf)))
                        wrong++;
                }
            }
        }
    }
    UNIT_REPORT(wrong == 0, "%s: %zu of %zu pairs wrong", name, wrong, tried);
}

static void
test_key_run(void)
{
    static const unsigned char fillers[] = { 'k', 0x21, 0x7e, 0x80, 0xff };
    static const unsigned char edges[] = { 0x00, 0x01, 0x1f, 0x20, 0x21, 0x7e, 0x7f,
                                           0x80, 0x81, 0xfe, 0xff };
    const char *s = "bench:1234 5 6";

    test_every_place("key_run", key_run, key_run_bytewise, fillers, sizeof(fillers));
    test_pairs("key_run pairs", key_run, key_run_bytewise, 'k', edges, sizeof(edges));
    CHECK(key_run(s, s + strlen(s)) == s + 10);
    CHECK(key_run(s, s + 4) == s + 4);
    CHECK(key_run(s, s) == s);
}

static void
test_digit_run(void)
{
    static const unsigned char fillers[] = { '0', '9', '5' };
    static const unsigned char edges[] = { 0x00, '/', '0', '9', ':', ' ', 0x7f,
                                           0x80, 0xb0, 0xb9, 0xff };
    const char *s = "1234567890 0 100\r\n";
    uint64_t v;

    test_every_place("digit_run", digit_run, digit_run_bytewise, fillers, sizeof(fillers));
    test_pairs("digit_run pairs", digit_run, digit_run_bytewise, '7', edges, sizeof(edges));
    CHECK(digit_run(s, s + strlen(s)) == s + 10);
    CHECK(digit_run(s + 10, s + strlen(s)) == s + 10);

    /* digits_read: at most max digits, stopped by stop or a non-digit */
    CHECK(digits_read(s, s + strlen(s), 19, &v) == s + 10);
    CHECK_U64(v, 1234567890u);
    CHECK(digits_read(s, s + strlen(s), 4, &v) == s + 4);
    CHECK_U64(v, 1234u);
    CHECK(digits_read(s, s + 3, 19, &v) == s + 3);
    CHECK_U64(v, 123u);
    CHECK(digits_read(s + 10, s + strlen(s), 19, &v) == s + 10);
    CHECK_U64(v, 0u);
    s = "9999999999999999999";
    CHECK(digits_read(s, s + 19, 19, &v) == s + 19);
    CHECK_U64(v, 9999999999999999999ull);
}

int
main(void)
{
    test_key_run();
    test_digit_run();
    return UNIT_DONE();
}
