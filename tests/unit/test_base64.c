/*
 * test_base64.c: unit tests for base64 (src/base64.c).
 *
 * Encodings are RFC 4648's test vectors. The decoder cases that are not
 * plain RFC 4648 (skipped bytes, padding rules) were checked against
 * memcached 1.6.18 with "ms <key> 1 b" / "mg <key> b k": accepted keys
 * decode to the bytes it stores, refused ones get "error decoding key".
 */
#include "base64.h"

#include <stdlib.h>

#include "unit.h"

static void
check_roundtrip(const char *plain, const char *encoded)
{
    size_t n = strlen(plain);
    char enc[64];
    unsigned char dec[64];
    size_t len;

    len = base64_encode((const unsigned char *)plain, n, enc);
    UNIT_REPORT(len == strlen(encoded) && memcmp(enc, encoded, len) == 0,
                "encode \"%s\": got \"%.*s\", want \"%s\"", plain, (int)len, enc, encoded);
    CHECK_EQ(len, BASE64_ENCODED_LEN(n));
    if (n == 0)
        return;
    len = base64_decode(encoded, strlen(encoded), dec, sizeof(dec));
    UNIT_REPORT(len == n && memcmp(dec, plain, n) == 0,
                "decode \"%s\": got %zu bytes", encoded, len);
}

/* Decoding s gives exactly want (want_len bytes), or fails when want is NULL. */
static void
check_decode(const char *s, const char *want, size_t want_len)
{
    unsigned char out[64];
    size_t len = base64_decode(s, strlen(s), out, sizeof(out));

    if (want == NULL) {
        UNIT_REPORT(len == 0, "decode \"%s\" should fail, got %zu bytes", s, len);
        return;
    }
    UNIT_REPORT(len == want_len && memcmp(out, want, want_len) == 0,
                "decode \"%s\": got %zu bytes", s, len);
}

static void
test_rfc4648(void)
{
    check_roundtrip("", "");
    check_roundtrip("f", "Zg==");
    check_roundtrip("fo", "Zm8=");
    check_roundtrip("foo", "Zm9v");
    check_roundtrip("foob", "Zm9vYg==");
    check_roundtrip("fooba", "Zm9vYmE=");
    check_roundtrip("foobar", "Zm9vYmFy");
}

static void
test_binary(void)
{
    static const unsigned char bytes[] = { 0x00, 0x01, 0x02, 0xfb, 0xff, 0x3e, 0x3f };
    char enc[16];
    unsigned char dec[16];
    size_t len;

    len = base64_encode(bytes, 3, enc);
    CHECK(len == 4 && memcmp(enc, "AAEC", 4) == 0);
    len = base64_encode(bytes + 3, 4, enc);
    CHECK(len == 8 && memcmp(enc, "+/8+Pw==", 8) == 0);
    len = base64_decode("+/8+Pw==", 8, dec, sizeof(dec));
    CHECK(len == 4 && memcmp(dec, bytes + 3, 4) == 0);
    CHECK_EQ(base64_decode("AAEC", 4, dec, sizeof(dec)), 3);
    CHECK(dec[0] == 0 && dec[1] == 1 && dec[2] == 2);
}

static void
test_memcached_rules(void)
{
    check_decode("Zm9", NULL, 0);               /* not a multiple of four */
    check_decode("Zm9vY", NULL, 0);
    check_decode("=", NULL, 0);
    check_decode("!!!!", NULL, 0);              /* nothing from the alphabet */
    check_decode("A===", NULL, 0);              /* three pads */
    check_decode("====", NULL, 0);
    check_decode("Zm9v!", "foo", 3);            /* bytes outside are skipped */
    check_decode("Zm\t9v", "foo", 3);
    check_decode("Zg==Zm9v", "f", 1);           /* stops after the padded group */
    check_decode("Zm8=", "fo", 2);
    check_decode("Z=g=", "d", 1);               /* '=' is a zero digit anywhere */
}

static void
test_capacity(void)
{
    unsigned char out[3];

    CHECK_EQ(base64_decode("Zm9v", 4, out, 3), 3);
    CHECK_EQ(base64_decode("Zm9vYmFy", 8, out, 3), 0);     /* does not fit */
    CHECK_EQ(BASE64_DECODED_MAX(8), 6);
    CHECK_EQ(BASE64_ENCODED_LEN(250), 336);
}

int
main(void)
{
    test_rfc4648();
    test_binary();
    test_memcached_rules();
    test_capacity();
    return UNIT_DONE();
}
