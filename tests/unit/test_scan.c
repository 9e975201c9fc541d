/*
 * test_scan.c: unit tests for the word-at-a-time scans (include/scan.h).
 *
 * key_run and digit_run must stop exactly where the byte-by-byte loops
 * stop, whatever the bytes around that place are: every byte value is put
 * at every place of runs that span several 8-byte words, behind fillers
 * that sit just inside and outside each class (0x21 and 0x7e are key bytes,
 * 0x20 and 0x7f are not; '0' and '9' are digits, '/' and ':' are not), so a
 * borrow or carry that flagged the wrong byte would show.
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

/*
 * digits_read_word gives digits_read's result for every number of 0..20
 * digits followed by every kind of byte, at every max, from exact-size
 * heap copies (so the word read never passes the bytes given).
 */
static void
test_digits_read_word(void)
{
    static const char after[] = { ' ', '\r', '\0', '/', ':', 'x', (char)0xb5 };
    size_t digits, a, extra, fill, tried = 0, wrong = 0;
    uint32_t max;

    for (digits = 0; digits <= 20; digits++) {
        for (a = 0, fill = 0; a < sizeof(after); a++, fill = (fill + 1) % 3) {
            for (extra = 0; extra <= 9; extra++) {
                size_t n = digits + extra, i;
                char *buf = malloc(n ? n : 1);

                /* mixed digits, all nines, all zeros */
                for (i = 0; i < digits; i++)
                    buf[i] = fill == 1 ? '9' : fill == 2 ? '0'
                           : (char)('0' + (i * 7 + digits) % 10);
                for (i = digits; i < n; i++)
                    buf[i] = after[a];
                for (max = 0; max <= 19; max++) {
                    uint64_t v1 = 1, v2 = 2;
                    const char *e1 = digits_read(buf, buf + n, max, &v1);
                    const char *e2 = digits_read_word(buf, buf + n, max, &v2);

                    tried++;
                    if (e1 != e2 || v1 != v2)
                        wrong++;
                }
                free(buf);
            }
        }
    }
    UNIT_REPORT(wrong == 0, "digits_read_word: %zu of %zu reads differ from digits_read",
                wrong, tried);
    {
        const char *s = "100\r\nxxxxx", *t = "12345678 ";
        uint64_t v;

        CHECK(digits_read_word(s, s + strlen(s), 9, &v) == s + 3);
        CHECK_U64(v, 100u);
        CHECK(digits_read_word(t, t + strlen(t), 9, &v) == t + 8);
        CHECK_U64(v, 12345678u);
        CHECK(digits_read_word(t, t + strlen(t), 5, &v) == t + 5);
        CHECK_U64(v, 12345u);
    }
}

/* scan_same agrees with memcmp at every length and every differing place. */
static void
test_scan_same(void)
{
    size_t n, pos, tried = 0, wrong = 0;

    for (n = 0; n <= 40; n++) {
        char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
        size_t i;

        for (i = 0; i < n; i++)
            a[i] = b[i] = (char)('a' + i % 26);
        tried++;
        if (!scan_same(a, b, n))
            wrong++;
        for (pos = 0; pos < n; pos++) {
            b[pos] ^= 0x01;
            tried++;
            if (scan_same(a, b, n))
                wrong++;
            b[pos] ^= 0x01;
        }
        free(a);
        free(b);
    }
    UNIT_REPORT(wrong == 0, "scan_same: %zu of %zu answers wrong", wrong, tried);
}

int
main(void)
{
    test_key_run();
    test_digit_run();
    test_digits_read_word();
    test_scan_same();
    return UNIT_DONE();
}
