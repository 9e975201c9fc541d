/*
 * hash.c: key hash functions, bit-identical to twemproxy's hashkit.
 *
 * A pool migrated from twemproxy keeps its placement only if every hash gives
 * the very same 32 bits, quirks included: crc32 keeps 15 bits, the "64-bit"
 * FNV variants are truncated to 32 bits, and several functions widen key
 * bytes as signed char (twemproxy passes keys as `const char *`, and x86
 * compilers make char signed), so bytes >= 0x80 are sign-extended. We spell
 * that widening out with key_sbyte() so the result does not depend on the
 * platform's char signedness. magent's DJB hash does the same.
 *
 * Pure: no allocation, no I/O.
 */
#include "hash.h"

#include <string.h>

#include "md5.h"

static const char *const hash_names[HASH_COUNT] = {
    [HASH_MD5]           = "md5",
    [HASH_FNV1A_64]      = "fnv1a_64",
    [HASH_FNV1_64]       = "fnv1_64",
    [HASH_FNV1A_32]      = "fnv1a_32",
    [HASH_FNV1_32]       = "fnv1_32",
    [HASH_CRC32]         = "crc32",
    [HASH_CRC32A]        = "crc32a",
    [HASH_MURMUR]        = "murmur",
    [HASH_JENKINS]       = "jenkins",
    [HASH_ONE_AT_A_TIME] = "one_at_a_time",
    [HASH_HSIEH]         = "hsieh",
    [HASH_DJB]           = "djb",
};

/* A key byte widened as x86 widens a plain (signed) char. */
static uint32_t
key_sbyte(const char *key, size_t i)
{
    return (uint32_t)(int32_t)(signed char)key[i];
}

/* A key byte widened as unsigned. */
static uint32_t
key_ubyte(const char *key, size_t i)
{
    return (uint32_t)(unsigned char)key[i];
}

static uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t
load_le16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t
rotl32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

/* ketama's key hash: the first four digest bytes, little-endian. */
static uint32_t
hash_md5(const char *key, size_t len)
{
    return md5_first_word(key, len);
}

/*
 * FNV: 32-bit basis 2166136261, prime 16777619; 64-bit basis
 * 0xcbf29ce484222325, prime 0x100000001b3. twemproxy returns only the low
 * 32 bits of the 64-bit variants; since the low half of a product depends
 * only on the low halves of its factors, fnv1a_64 is computed in 32 bits.
 */
#define FNV32_BASIS 2166136261u
#define FNV32_PRIME 16777619u
#define FNV64_BASIS UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME UINT64_C(0x100000001b3)

static uint32_t
hash_fnv1_64(const char *key, size_t len)
{
    uint64_t h = FNV64_BASIS;
    size_t i;

    for (i = 0; i < len; i++) {
        h *= FNV64_PRIME;
        h ^= (uint64_t)(int64_t)(signed char)key[i];
    }
    return (uint32_t)h;
}

static uint32_t
hash_fnv1a_64(const char *key, size_t len)
{
    uint32_t h = (uint32_t)FNV64_BASIS;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= key_sbyte(key, i);
        h *= (uint32_t)FNV64_PRIME;
    }
    return h;
}

static uint32_t
hash_fnv1_32(const char *key, size_t len)
{
    uint32_t h = FNV32_BASIS;
    size_t i;

    for (i = 0; i < len; i++) {
        h *= FNV32_PRIME;
        h ^= key_sbyte(key, i);
    }
    return h;
}

static uint32_t
hash_fnv1a_32(const char *key, size_t len)
{
    uint32_t h = FNV32_BASIS;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= key_sbyte(key, i);
        h *= FNV32_PRIME;
    }
    return h;
}

/*
 * Reflected CRC-32 (polynomial 0xedb88320): crc32_table[i] is the CRC
 * register after shifting byte i through eight rounds. A constant table keeps
 * the hash free of any lazy, racy initialisation.
 */
static const uint32_t crc32_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba,
    0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
    0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
    0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de,
    0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec,
    0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
    0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
    0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940,
    0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116,
    0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
    0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
    0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a,
    0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818,
    0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
    0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
    0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c,
    0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2,
    0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
    0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
    0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086,
    0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4,
    0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
    0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
    0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8,
    0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe,
    0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
    0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
    0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252,
    0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60,
    0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
    0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
    0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04,
    0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a,
    0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
    0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
    0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e,
    0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c,
    0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
    0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
    0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0,
    0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6,
    0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
    0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

static uint32_t
crc32_full(const char *key, size_t len)
{
    uint32_t crc = 0xffffffffu;
    size_t i;

    for (i = 0; i < len; i++) {
        crc = crc32_table[(crc ^ key_ubyte(key, i)) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

/* libmemcached's crc32 keeps only bits 16..30 of the real CRC. */
static uint32_t
hash_crc32(const char *key, size_t len)
{
    return (crc32_full(key, len) >> 16) & 0x7fff;
}

static uint32_t
hash_crc32a(const char *key, size_t len)
{
    return crc32_full(key, len);
}

/* MurmurHash2 with libmemcached's seed: 0xdeadbeef * length. */
static uint32_t
hash_murmur(const char *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const unsigned char *p = (const unsigned char *)key;
    uint32_t h, k;

    h = (0xdeadbeefu * (uint32_t)len) ^ (uint32_t)len;

    while (len >= 4) {
        k = load_le32(p);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        len -= 4;
    }

    switch (len) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= m;
        break;
    default:
        break;
    }

    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/*
 * Bob Jenkins' lookup3 hashlittle() with initval 13. twemproxy's word-wise
 * fast paths give the same result as this byte-wise form on little-endian
 * hosts, which is what we reproduce.
 */
#define JENKINS_MIX(a, b, c) do {                   \
    a -= c; a ^= rotl32(c, 4);  c += b;             \
    b -= a; b ^= rotl32(a, 6);  a += c;             \
    c -= b; c ^= rotl32(b, 8);  b += a;             \
    a -= c; a ^= rotl32(c, 16); c += b;             \
    b -= a; b ^= rotl32(a, 19); a += c;             \
    c -= b; c ^= rotl32(b, 4);  b += a;             \
} while (0)

#define JENKINS_FINAL(a, b, c) do {                 \
    c ^= b; c -= rotl32(b, 14);                     \
    a ^= c; a -= rotl32(c, 11);                     \
    b ^= a; b -= rotl32(a, 25);                     \
    c ^= b; c -= rotl32(b, 16);                     \
    a ^= c; a -= rotl32(c, 4);                      \
    b ^= a; b -= rotl32(a, 14);                     \
    c ^= b; c -= rotl32(b, 24);                     \
} while (0)

/* Up to 4 bytes as a little-endian word, missing bytes zero. */
static uint32_t
load_le_partial(const unsigned char *p, size_t n)
{
    uint32_t v = 0;
    size_t i;

    for (i = 0; i < n && i < 4; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}

static uint32_t
hash_jenkins(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t a, b, c;

    a = b = c = 0xdeadbeefu + (uint32_t)len + 13;

    while (len > 12) {
        a += load_le32(p);
        b += load_le32(p + 4);
        c += load_le32(p + 8);
        JENKINS_MIX(a, b, c);
        p += 12;
        len -= 12;
    }

    /* The last block (1..12 bytes) skips the mix; an empty key skips all. */
    if (len == 0) {
        return c;
    }
    a += load_le_partial(p, len);
    if (len > 4) {
        b += load_le_partial(p + 4, len - 4);
    }
    if (len > 8) {
        c += load_le_partial(p + 8, len - 8);
    }
    JENKINS_FINAL(a, b, c);
    return c;
}

static uint32_t
hash_one_at_a_time(const char *key, size_t len)
{
    uint32_t h = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        h += key_sbyte(key, i);
        h += h << 10;
        h ^= h >> 6;
    }
    h += h << 3;
    h ^= h >> 11;
    h += h << 15;
    return h;
}

/* Paul Hsieh's SuperFastHash; the 3-byte tail's last byte is sign-widened. */
static uint32_t
hash_hsieh(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    size_t rem = len & 3, n;
    uint32_t h = 0, tmp;

    if (len == 0) {
        return 0;
    }

    for (n = len >> 2; n > 0; n--) {
        h += load_le16(p);
        tmp = (load_le16(p + 2) << 11) ^ h;
        h = (h << 16) ^ tmp;
        p += 4;
        h += h >> 11;
    }

    switch (rem) {
    case 3:
        h += load_le16(p);
        h ^= h << 16;
        h ^= key_sbyte((const char *)p, 2) << 18;
        h += h >> 11;
        break;
    case 2:
        h += load_le16(p);
        h ^= h << 11;
        h += h >> 17;
        break;
    case 1:
        h += p[0];
        h ^= h << 10;
        h += h >> 1;
        break;
    default:
        break;
    }

    h ^= h << 3;
    h += h >> 5;
    h ^= h << 4;
    h += h >> 17;
    h ^= h << 25;
    h += h >> 6;
    return h;
}

/* magent's placement hash (its keys are C strings, so it stops at a NUL). */
static uint32_t
hash_djb(const char *key, size_t len)
{
    uint32_t h = 5381;
    size_t i;

    for (i = 0; i < len && key[i] != '\0'; i++) {
        h = h * 33 + key_sbyte(key, i);
    }
    return h & 0x7fffffffu;
}

uint32_t
hash_key(enum hash_kind kind, const char *key, size_t len)
{
    /* ketama's default, tested before the jump table: a key's one branch. */
    if (kind == HASH_MD5)
        return hash_md5(key, len);
    switch (kind) {
    case HASH_MD5:           return hash_md5(key, len);
    case HASH_FNV1A_64:      return hash_fnv1a_64(key, len);
    case HASH_FNV1_64:       return hash_fnv1_64(key, len);
    case HASH_FNV1A_32:      return hash_fnv1a_32(key, len);
    case HASH_FNV1_32:       return hash_fnv1_32(key, len);
    case HASH_CRC32:         return hash_crc32(key, len);
    case HASH_CRC32A:        return hash_crc32a(key, len);
    case HASH_MURMUR:        return hash_murmur(key, len);
    case HASH_JENKINS:       return hash_jenkins(key, len);
    case HASH_ONE_AT_A_TIME: return hash_one_at_a_time(key, len);
    case HASH_HSIEH:         return hash_hsieh(key, len);
    case HASH_DJB:           return hash_djb(key, len);
    case HASH_COUNT:         break;
    }
    return 0;
}

uint64_t
hash_range(enum hash_kind kind)
{
    switch (kind) {
    case HASH_CRC32: return (uint64_t)1 << 15;
    case HASH_DJB:   return (uint64_t)1 << 31;
    default:         return (uint64_t)1 << 32;
    }
}

int
hash_by_name(const char *name)
{
    int i;

    if (name == NULL) {
        return -1;
    }
    for (i = 0; i < HASH_COUNT; i++) {
        if (strcmp(name, hash_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *
hash_name(enum hash_kind kind)
{
    if ((int)kind < 0 || kind >= HASH_COUNT) {
        return NULL;
    }
    return hash_names[kind];
}

void
hash_tag_apply(const char *tag, const char **key, size_t *len)
{
    const char *open, *close;

    if (tag == NULL || tag[0] == '\0' || tag[1] == '\0' || *len == 0) {
        return;
    }

    /* First opener, then the first closer after it; an empty tag is ignored. */
    open = memchr(*key, tag[0], *len);
    if (open == NULL) {
        return;
    }
    close = memchr(open + 1, tag[1], (size_t)(*key + *len - (open + 1)));
    if (close == NULL || close - open < 2) {
        return;
    }
    *key = open + 1;
    *len = (size_t)(close - open - 1);
}

uint32_t
hash_seed_of(const char *seed)
{
    return hash_fnv1a_32(seed, strlen(seed));
}

uint32_t
hash_seeded(uint32_t h, uint32_t seed)
{
    h ^= seed;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}
