/*
 * hash.h: key hash functions (pure).
 *
 * Bit-identical to twemproxy's hashkit, so a twemproxy pool keeps its key
 * placement, plus md5 (ketama's default) and magent's DJB hash (the default of
 * dist = "modula"). Also twemproxy's hash_tag rule.
 */
#ifndef HASH_H
#define HASH_H

#include <stddef.h>
#include <stdint.h>

enum hash_kind {
    HASH_MD5,           /* first 4 digest bytes, little-endian (ketama) */
    HASH_FNV1A_64,      /* twemproxy's default */
    HASH_FNV1_64,
    HASH_FNV1A_32,
    HASH_FNV1_32,
    HASH_CRC32,         /* twemproxy's crc32 (libmemcached's variant) */
    HASH_CRC32A,        /* twemproxy's crc32a (full 32-bit) */
    HASH_MURMUR,
    HASH_JENKINS,
    HASH_ONE_AT_A_TIME,
    HASH_HSIEH,
    HASH_DJB,           /* magent: h = h * 33 + c from 5381, & 0x7fffffff */
    HASH_COUNT
};

/* Key hash by kind. */
uint32_t hash_key(enum hash_kind kind, const char *key, size_t len);

/*
 * How many values a kind can give: hashes fall in [0, hash_range). 2^32 for
 * most; 2^31 for djb (magent masks the top bit), 2^15 for twemproxy's crc32.
 */
uint64_t hash_range(enum hash_kind kind);

/* The kind for a policy name ("md5", "fnv1a_64", ... "djb"), or -1. */
int hash_by_name(const char *name);

/* The policy name of a kind. */
const char *hash_name(enum hash_kind kind);

/*
 * twemproxy's hash_tag: when tag is two characters ("{}") and the key holds
 * tag[0] followed later by tag[1] with at least one byte between, only that
 * part is hashed. Adjusts *key and *len in place; a NULL or empty tag does
 * nothing.
 */
void hash_tag_apply(const char *tag, const char **key, size_t *len);

/*
 * A pool's seed: its name hashed once at build time (FNV-1a), then mixed
 * into every key hash of the pool (hash_seeded). The mix is a bijection of
 * the 32-bit hash (an xor, then murmur3's finalizer), so a seeded pool
 * spreads keys as evenly as an unseeded one, over all 2^32 values whatever
 * the key hash's own range, and two seeds place the same keys apart.
 */
uint32_t hash_seed_of(const char *seed);
uint32_t hash_seeded(uint32_t h, uint32_t seed);

#endif
