/*
 * test_hash.c: known answers for md5 and every key hash, names, hash_tag.
 *
 * Where the expected values come from (none from our own code):
 * - md5: RFC 1321 appendix A.5, plus padding-boundary lengths and the
 *   one-million-'a' message computed with Python's hashlib.
 * - key hashes: libmemcached's hash fixture (26 keys per algorithm), which
 *   twemproxy's own src/test_all.c checks its hashkit against ("apple"),
 *   plus twemproxy's crc32a("apple") and ketama_hash("server1-8") answers;
 *   crc32a of the other keys from Python's zlib.crc32.
 * - bytes >= 0x80: twemproxy widens them as signed char on x86. The values
 *   below come from a Python model of that behaviour; test_ketama.c holds the
 *   independent proof (placements measured on a running nutcracker 0.5.0).
 * - djb: worked by hand (5381 * 33 + 'a' = 177670, ...), magent's rule.
 */
#include <stdlib.h>

#include "hash.h"
#include "md5.h"
#include "unit.h"

static void
hex16(const unsigned char d[16], char out[33])
{
    static const char digits[] = "0123456789abcdef";
    int i;

    for (i = 0; i < 16; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[32] = '\0';
}

static const char *
md5_hex(const void *data, size_t len)
{
    static char out[33];
    unsigned char d[16];

    md5_digest(data, len, d);
    hex16(d, out);
    return out;
}

/* The first four bytes of a hex digest as a little-endian word. */
static uint32_t
hex_first_word(const char *hex)
{
    uint32_t w = 0;
    int i;

    for (i = 3; i >= 0; i--) {
        unsigned byte = 0;

        sscanf(hex + 2 * i, "%2x", &byte);
        w = w << 8 | byte;
    }
    return w;
}

static void
test_md5_rfc1321(void)
{
    /* RFC 1321, A.5 "Test suite". */
    static const struct { const char *in, *hex; } v[] = {
        { "", "d41d8cd98f00b204e9800998ecf8427e" },
        { "a", "0cc175b9c0f1b6a831c399e269772661" },
        { "abc", "900150983cd24fb0d6963f7d28e17f72" },
        { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
        { "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
        { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
          "d174ab98d277d9f5a5611c2c9f419d9f" },
        { "1234567890123456789012345678901234567890"
          "1234567890123456789012345678901234567890",
          "57edf4a22be3c955ac49da2e2107b67a" },
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        CHECK_STR(md5_hex(v[i].in, strlen(v[i].in)), v[i].hex);
        CHECK_U64(md5_first_word(v[i].in, strlen(v[i].in)),
                  hex_first_word(v[i].hex));
    }
}

static void
test_md5_padding(void)
{
    /*
     * Runs of 'a' around the 56- and 64-byte padding edges, and around the
     * short-key path's length classes (11/12, 27/28 bytes) (hashlib).
     */
    static const struct { size_t n; const char *hex; } v[] = {
        { 11, "d57f21e6a273781dbf8b7657940f3b03" },
        { 12, "45e4812014d83dde5666ebdf5a8ed1ed" },
        { 27, "aaab9c59a88bf0bdfcb170546c5459d6" },
        { 28, "b0f0545856af1a340acdedce23c54b97" },
        { 40, "4697843037d962f62a5a429e611e0f5f" },
        { 55, "ef1772b6dff9a122358552954ad0df65" },
        { 56, "3b0c8ac703f828b04c6c197006d17218" },
        { 57, "652b906d60af96844ebd21b674f35e93" },
        { 63, "b06521f39153d618550606be297466d5" },
        { 64, "014842d480b571495a4a0363793f7367" },
        { 65, "c743a45e0d2e6a95cb859adae0248435" },
        { 119, "8a7bd0732ed6a28ce75f6dabc90e1613" },
        { 120, "5f61c0ccad4cac44c75ff505e1f1e537" },
        { 128, "e510683b3f5ffe4093d021808bc6ff70" },
    };
    char buf[128];
    size_t i;

    memset(buf, 'a', sizeof(buf));
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        CHECK_STR(md5_hex(buf, v[i].n), v[i].hex);
        CHECK_U64(md5_first_word(buf, v[i].n), hex_first_word(v[i].hex));
    }
}

/* The first digest word the long way: the streaming API, a byte at a time. */
static uint32_t
md5_first_word_streamed(const unsigned char *p, size_t len)
{
    struct md5_ctx ctx;
    unsigned char d[16];
    size_t i;

    md5_init(&ctx);
    for (i = 0; i < len; i++)
        md5_update(&ctx, p + i, 1);
    md5_final(&ctx, d);
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
           (uint32_t)d[3] << 24;
}

/* xorshift32: a fixed pseudo-random sequence, the same on every run. */
static uint32_t
next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/*
 * Count of lengths 0..max where md5_first_word, or md5_digest's first word,
 * differs from the long way.
 */
static size_t
first_word_mismatches(const unsigned char *p, size_t max)
{
    size_t len, bad = 0;

    for (len = 0; len <= max; len++) {
        uint32_t want = md5_first_word_streamed(p, len);
        uint32_t got = md5_first_word(p, len);

        if (got != want || hex_first_word(md5_hex(p, len)) != want) {
            if (bad++ < 5)
                printf("# md5_first_word(len %zu) = %08" PRIx32 ", want %08" PRIx32 "\n",
                       len, got, want);
        }
    }
    return bad;
}

static void
test_md5_first_word(void)
{
    unsigned char buf[301 + 3];
    uint32_t x = 2463534242u;
    size_t i, off, len, bad;
    int key;

    /* Every length 0..300 over all-0x00, all-0xff and random bytes, at each
     * alignment: the short-key classes, their edges and the long path. */
    memset(buf, 0x00, sizeof(buf));
    CHECK_EQ(first_word_mismatches(buf, 300), 0);
    memset(buf, 0xff, sizeof(buf));
    CHECK_EQ(first_word_mismatches(buf, 300), 0);
    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)next_random(&x);
    for (off = 0; off < 4; off++)
        CHECK_EQ(first_word_mismatches(buf + off, 300), 0);

    /* Many random keys of random length up to 80, bytes 0x00 and 0xff among
     * them; each one fresh, so no two share a prefix by construction. */
    bad = 0;
    for (key = 0; key < 20000; key++) {
        len = next_random(&x) % 81;
        for (i = 0; i < len; i++) {
            uint32_t r = next_random(&x);

            buf[i] = (unsigned char)(r % 8 == 0 ? 0x00 : r % 8 == 1 ? 0xff : r >> 8);
        }
        bad += md5_first_word(buf, len) != md5_first_word_streamed(buf, len);
    }
    CHECK_EQ(bad, 0);
}

static void
test_md5_incremental(void)
{
    const char *msg = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t len = strlen(msg), cut, bad = 0;
    struct md5_ctx ctx;
    unsigned char d[16];
    char hex[33];
    char *big;
    size_t i;

    /* Any split of the input gives the one-shot digest. */
    for (cut = 0; cut <= len; cut++) {
        md5_init(&ctx);
        md5_update(&ctx, msg, cut);
        md5_update(&ctx, msg + cut, len - cut);
        md5_final(&ctx, d);
        hex16(d, hex);
        bad += strcmp(hex, "d174ab98d277d9f5a5611c2c9f419d9f") != 0;
    }
    CHECK_EQ(bad, 0);

    /* One million 'a', fed in uneven pieces (hashlib). */
    big = malloc(1000000);
    CHECK(big != NULL);
    if (big == NULL) {
        return;
    }
    memset(big, 'a', 1000000);
    md5_init(&ctx);
    for (i = 0; i < 1000000; ) {
        size_t n = (i % 7 + 1) * 37;

        if (n > 1000000 - i) {
            n = 1000000 - i;
        }
        md5_update(&ctx, big + i, n);
        i += n;
    }
    md5_final(&ctx, d);
    hex16(d, hex);
    CHECK_STR(hex, "7707d6ae4e027c70eea2a935c2296f21");
    CHECK_STR(md5_hex(big, 1000000), "7707d6ae4e027c70eea2a935c2296f21");
    free(big);
}

static const char *const fixture_keys[26] = {
    "apple", "beat", "carrot", "daikon", "eggplant", "flower", "green",
    "hide", "ick", "jack", "kick", "lime", "mushrooms", "nectarine",
    "orange", "peach", "quant", "ripen", "strawberry", "tang", "up",
    "volumne", "when", "yellow", "zip",
    "The quick brown fox jumps over the lazy dog",
};

/* Expected values per algorithm, in fixture_keys order. */
static const struct {
    enum hash_kind kind;
    uint32_t       v[26];
} fixture[] = {
    { HASH_ONE_AT_A_TIME, {
      2297466611U, 3902465932U, 469785835U, 1937308741U,
      261917617U, 3785641677U, 1439605128U, 1649152283U,
      1493851484U, 1246520657U, 2221159044U, 1973511823U,
      384136800U, 214358653U, 2379473940U, 4269788650U,
      2864377005U, 2638630052U, 427683330U, 990491717U,
      1747111141U, 792127364U, 2599214128U, 2553037199U,
      2509838425U, 1369346549U } },
    { HASH_MD5, {
      3195025439U, 2556848621U, 3724893440U, 3332385401U,
      245758794U, 2550894432U, 121710495U, 3053817768U,
      1250994555U, 1862072655U, 2631955953U, 2951528551U,
      1451250070U, 2820856945U, 2060845566U, 3646985608U,
      2138080750U, 217675895U, 2230934345U, 1234361223U,
      3968582726U, 2455685270U, 1293568479U, 199067604U,
      2042482093U, 2642219166U } },
    { HASH_CRC32, {
      10542U, 22009U, 14526U, 19510U, 19432U, 10199U, 20634U,
      9369U, 11511U, 10362U, 7893U, 31289U, 11313U, 9354U,
      7621U, 30628U, 15218U, 25967U, 2695U, 9380U,
      17300U, 28156U, 9192U, 20484U, 16925U, 16719U } },
    { HASH_CRC32A, {
      2838417488U, 3589867164U, 3099497678U, 3426096493U,
      3421029968U, 2815934938U, 3499814433U, 2761542443U,
      754428169U, 2826627544U, 517332741U, 4198098741U,
      741427107U, 613084243U, 499495288U, 2007261434U,
      3144826071U, 3849275350U, 176645439U, 2762275602U,
      1133833840U, 1845282447U, 602410524U, 3489983647U,
      1109235014U, 1095738169U } },
    { HASH_FNV1_64, {
      473199127U, 4148981457U, 3971873300U, 3257986707U,
      1722477987U, 2991193800U, 4147007314U, 3633179701U,
      1805162104U, 3503289120U, 3395702895U, 3325073042U,
      2345265314U, 3340346032U, 2722964135U, 1173398992U,
      2815549194U, 2562818319U, 224996066U, 2680194749U,
      3035305390U, 246890365U, 2395624193U, 4145193337U,
      1801941682U, 2112060110U } },
    { HASH_FNV1A_64, {
      1488911807U, 2500855813U, 1510099634U, 1390325195U,
      3647689787U, 3241528582U, 1669328060U, 2604311949U,
      734810122U, 1516407546U, 560948863U, 1767346780U,
      561034892U, 4156330026U, 3716417003U, 3475297030U,
      1518272172U, 227211583U, 3938128828U, 126112909U,
      3043416448U, 3131561933U, 1328739897U, 2455664041U,
      2272238452U, 3890508048U } },
    { HASH_FNV1_32, {
      67176023U, 1190179409U, 2043204404U, 3221866419U,
      2567703427U, 3787535528U, 4147287986U, 3500475733U,
      344481048U, 3865235296U, 2181839183U, 119581266U,
      510234242U, 4248244304U, 1362796839U, 103389328U,
      1449620010U, 182962511U, 3554262370U, 3206747549U,
      1551306158U, 4127558461U, 1889140833U, 2774173721U,
      1180552018U, 3922226286U } },
    { HASH_FNV1A_32, {
      280767167U, 2421315013U, 3072375666U, 855001899U,
      459261019U, 3521085446U, 18738364U, 1625305005U,
      2162232970U, 777243802U, 3323728671U, 132336572U,
      3654473228U, 260679466U, 1169454059U, 2698319462U,
      1062177260U, 235516991U, 2218399068U, 405302637U,
      1128467232U, 3579622413U, 2138539289U, 96429129U,
      2877453236U, 76545936U } },
    { HASH_HSIEH, {
      3738850110U, 3636226060U, 3821074029U, 3489929160U,
      3485772682U, 80540287U, 1805464076U, 1895033657U,
      409795758U, 979934958U, 3634096985U, 1284445480U,
      2265380744U, 707972988U, 353823508U, 1549198350U,
      1327930172U, 9304163U, 4220749037U, 2493964934U,
      2777873870U, 2057831732U, 1510213931U, 2027828987U,
      3395453351U, 471461527U } },
    { HASH_MURMUR, {
      4142305122U, 734504955U, 3802834688U, 4076891445U,
      387802650U, 560515427U, 3274673488U, 3150339524U,
      1527441970U, 2728642900U, 3613992239U, 2938419259U,
      2321988328U, 1145154116U, 4038540960U, 2224541613U,
      264013145U, 3995512858U, 2400956718U, 2346666219U,
      926327338U, 442757446U, 1770805201U, 560483147U,
      3902279934U, 818385189U } },
    { HASH_JENKINS, {
      1442444624U, 4253821186U, 1885058256U, 2120131735U,
      3261968576U, 3515188778U, 4232909173U, 4288625128U,
      1812047395U, 3689182164U, 2502979932U, 1214050606U,
      2415988847U, 1494268927U, 1025545760U, 3920481083U,
      4153263658U, 3824871822U, 3072759809U, 798622255U,
      3065432577U, 1453328165U, 2691550971U, 3408888387U,
      2629893356U, 314054204U } },
};

static void
test_hash_fixture(void)
{
    size_t a, k;

    for (a = 0; a < sizeof(fixture) / sizeof(fixture[0]); a++) {
        for (k = 0; k < 26; k++) {
            const char *key = fixture_keys[k];
            uint32_t got = hash_key(fixture[a].kind, key, strlen(key));

            UNIT_REPORT(got == fixture[a].v[k], "%s(\"%s\") = %" PRIu32
                        ", want %" PRIu32, hash_name(fixture[a].kind), key,
                        got, fixture[a].v[k]);
        }
    }
}

static void
test_hash_twemproxy_answers(void)
{
    unsigned char d[16];

    /* twemproxy src/test_all.c: hash_crc32a("apple"), ketama_hash("server1-8"). */
    CHECK_U64(hash_key(HASH_CRC32A, "apple", 5), 2838417488U);
    md5_digest("server1-8", 9, d);
    CHECK_U64((uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
              (uint32_t)d[3] << 24, 3853726576U);
    CHECK_U64((uint32_t)d[12] | (uint32_t)d[13] << 8 | (uint32_t)d[14] << 16 |
              (uint32_t)d[15] << 24, 2667054752U);
}

static void
test_hash_high_bytes(void)
{
    /*
     * Bytes >= 0x80, widened as signed char where twemproxy/magent do so
     * (fnv*, one_at_a_time, hsieh's 3-byte tail, djb); Python model values.
     */
    static const struct {
        const char *key;
        uint32_t    v[HASH_COUNT];
    } v[] = {
        { "\351", {
          [HASH_MD5] = 1988560436U, [HASH_FNV1A_64] = 2046701220U,
          [HASH_FNV1_64] = 2046707766U, [HASH_FNV1A_32] = 3958606660U,
          [HASH_FNV1_32] = 4210270966U, [HASH_CRC32] = 3028U,
          [HASH_CRC32A] = 198489425U, [HASH_MURMUR] = 3710375128U,
          [HASH_JENKINS] = 120703460U, [HASH_ONE_AT_A_TIME] = 1083721983U,
          [HASH_HSIEH] = 1008785338U, [HASH_DJB] = 177550U } },
        { "caf\303\251", {
          [HASH_MD5] = 3833532679U, [HASH_FNV1A_64] = 3472276361U,
          [HASH_FNV1_64] = 2315714289U, [HASH_FNV1A_32] = 1970454601U,
          [HASH_FNV1_32] = 3598905713U, [HASH_CRC32] = 6317U,
          [HASH_CRC32A] = 2561491637U, [HASH_MURMUR] = 3658586143U,
          [HASH_JENKINS] = 3412207021U, [HASH_ONE_AT_A_TIME] = 3650908318U,
          [HASH_HSIEH] = 3728705621U, [HASH_DJB] = 255153275U } },
        { "\377\376\375", {
          [HASH_MD5] = 3259918217U, [HASH_FNV1A_64] = 2400096983U,
          [HASH_FNV1_64] = 2481844359U, [HASH_FNV1A_32] = 3211609367U,
          [HASH_FNV1_32] = 2437714183U, [HASH_CRC32] = 2282U,
          [HASH_CRC32A] = 149598061U, [HASH_MURMUR] = 3269769215U,
          [HASH_JENKINS] = 573299006U, [HASH_ONE_AT_A_TIME] = 1196771768U,
          [HASH_HSIEH] = 3649655134U, [HASH_DJB] = 193375839U } },
    };
    size_t i;
    int k;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        for (k = 0; k < HASH_COUNT; k++) {
            uint32_t got = hash_key((enum hash_kind)k, v[i].key,
                                    strlen(v[i].key));

            UNIT_REPORT(got == v[i].v[k], "%s(key %zu) = %" PRIu32
                        ", want %" PRIu32, hash_name((enum hash_kind)k), i,
                        got, v[i].v[k]);
        }
    }
}

static void
test_hash_djb(void)
{
    /* h = 5381; h = h * 33 + byte; h & 0x7fffffff (by hand for short keys). */
    CHECK_U64(hash_key(HASH_DJB, "", 0), 5381);
    CHECK_U64(hash_key(HASH_DJB, "a", 1), 177670);       /* 5381*33 + 97 */
    CHECK_U64(hash_key(HASH_DJB, "ab", 2), 5863208);     /* 177670*33 + 98 */
    CHECK_U64(hash_key(HASH_DJB, "\351", 1), 177550);    /* 5381*33 - 23 */
    CHECK_U64(hash_key(HASH_DJB, "key:0", 5), 264809144);
    CHECK_U64(hash_key(HASH_DJB, "key:1", 5), 264809145);
    CHECK_U64(hash_key(HASH_DJB, "apple", 5), 253337143);
    /* magent hashes C strings: a NUL ends the key. */
    CHECK_U64(hash_key(HASH_DJB, "ab\0cd", 5), 5863208);
    /* The top bit is always cleared. */
    CHECK_EQ(hash_key(HASH_DJB, fixture_keys[25], strlen(fixture_keys[25]))
             >> 31, 0);
}

static void
test_hash_empty_key(void)
{
    /* An empty key hashes to each algorithm's starting state. */
    CHECK_U64(hash_key(HASH_MD5, "", 0), 0xd98c1dd4U);   /* d41d8cd9 LE */
    CHECK_U64(hash_key(HASH_CRC32A, "", 0), 0);
    CHECK_U64(hash_key(HASH_HSIEH, "", 0), 0);
    CHECK_U64(hash_key(HASH_ONE_AT_A_TIME, "", 0), 0);
    CHECK_U64(hash_key(HASH_FNV1A_32, "", 0), 2166136261U);
    CHECK_U64(hash_key(HASH_JENKINS, "", 0), 0xdeadbeefU + 13);
}

static void
test_hash_names(void)
{
    static const char *const names[HASH_COUNT] = {
        "md5", "fnv1a_64", "fnv1_64", "fnv1a_32", "fnv1_32", "crc32",
        "crc32a", "murmur", "jenkins", "one_at_a_time", "hsieh", "djb",
    };
    int k;

    for (k = 0; k < HASH_COUNT; k++) {
        CHECK_EQ(hash_by_name(names[k]), k);
        CHECK_STR(hash_name((enum hash_kind)k), names[k]);
    }
    CHECK_EQ(hash_by_name("MD5"), -1);
    CHECK_EQ(hash_by_name("fnv1a"), -1);
    CHECK_EQ(hash_by_name("crc16"), -1);
    CHECK_EQ(hash_by_name(""), -1);
    CHECK_EQ(hash_by_name(NULL), -1);
    CHECK(hash_name(HASH_COUNT) == NULL);
}

/* Apply tag to key; return the hashed part as a new string. */
static const char *
tagged(const char *tag, const char *key)
{
    static char out[256];
    const char *k = key;
    size_t len = strlen(key);

    hash_tag_apply(tag, &k, &len);
    memcpy(out, k, len);
    out[len] = '\0';
    return out;
}

static void
test_hash_tag(void)
{
    const char *k = "abc";
    size_t len = 3;

    CHECK_STR(tagged("{}", "user:{42}:name"), "42");
    CHECK_STR(tagged("{}", "{a}"), "a");
    CHECK_STR(tagged("{}", "pre{user7}post"), "user7");
    CHECK_STR(tagged("{}", "plain"), "plain");
    CHECK_STR(tagged("{}", "{x"), "{x");              /* no closer */
    CHECK_STR(tagged("{}", "x}"), "x}");              /* no opener */
    CHECK_STR(tagged("{}", "a{}b"), "a{}b");          /* empty tag */
    /* Only the first opener counts: an empty first tag disables hashing it. */
    CHECK_STR(tagged("{}", "a{}b{c}"), "a{}b{c}");
    CHECK_STR(tagged("{}", "{{x}}"), "{x");           /* first closer after it */
    CHECK_STR(tagged("{}", "x}{y}"), "y");
    CHECK_STR(tagged("{}", "{a}{b}"), "a");
    CHECK_STR(tagged("$$", "a$bc$d"), "bc");          /* same char both ends */
    CHECK_STR(tagged("$$", "a$$d"), "a$$d");
    CHECK_STR(tagged("", "{a}"), "{a}");              /* no tag configured */
    CHECK_STR(tagged(NULL, "{a}"), "{a}");
    CHECK_STR(tagged("{", "{a}"), "{a}");             /* one character: not a tag */

    /* The length bounds the search: a closer past it is not seen. */
    hash_tag_apply("{}", &k, &len);
    CHECK(k[0] == 'a' && len == 3);
    k = "{ab}";
    len = 3;
    hash_tag_apply("{}", &k, &len);
    CHECK_EQ(len, 3);
    CHECK(k[0] == '{');
}

/*
 * A seed mixes the whole hash: seed 0 is murmur3's finalizer alone (known
 * answers from its definition), distinct inputs stay distinct, and two seeds
 * send a run of consecutive hashes to unrelated values.
 */
static void
test_hash_seeded(void)
{
    uint32_t a = hash_seed_of("gutter"), b = hash_seed_of("main"), i, same = 0;

    CHECK_U64(hash_seeded(0, 0), 0);
    CHECK_U64(hash_seeded(1, 0), 0x514e28b7u);
    CHECK_U64(hash_seed_of("gutter"), hash_key(HASH_FNV1A_32, "gutter", 6));
    CHECK(a != b);
    for (i = 0; i < 1000; i++) {
        CHECK(hash_seeded(i, a) != hash_seeded(i + 1, a));
        same += (hash_seeded(i, a) >> 30) == (hash_seeded(i, b) >> 30);
    }
    UNIT_REPORT(same > 150 && same < 350, "same quarter for %u of 1000 hashes", same);
}

int
main(void)
{
    test_md5_rfc1321();
    test_md5_padding();
    test_md5_incremental();
    test_md5_first_word();
    test_hash_fixture();
    test_hash_twemproxy_answers();
    test_hash_high_bytes();
    test_hash_djb();
    test_hash_empty_key();
    test_hash_names();
    test_hash_tag();
    test_hash_seeded();
    return UNIT_DONE();
}
