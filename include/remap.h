/*
 * remap.h: the share of keys whose server changes between two placements
 * of one pool (pure: no I/O, no allocation beyond the call).
 *
 * A placement sends a key to a server in two steps: the key hash (hash.h,
 * after the hash tag) gives a value h in [0, hash_range), and the ring
 * (ketama.h) maps h to a server. When both placements hash keys alike, the
 * share is computed exactly over every hash value, from the rings' layout:
 * ketama arcs are compared over the merged set of points of both rings,
 * modula slots through the arithmetic of h mod W (see remap.c); a seeded
 * pool's hash values span all 2^32 whatever its key hash. The share of
 * keys equals that share of hash values when the key hash spreads keys
 * evenly over its range, which is what a key hash is for. When the key hash,
 * hash tag or seed differs, no key's hash is shared between the two, and the
 * share is estimated as for independent placements: a key stays when both
 * pick the same server, sum over servers of old share times new share.
 */
#ifndef REMAP_H
#define REMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "hash.h"
#include "ketama.h"

/* One side of the comparison: a pool's placement. */
struct remap_side {
    const struct ring *ring;
    const int         *server;      /* ring index -> server identity; both
                                     * sides number servers alike (the same
                                     * host:port is the same number) */
    enum hash_kind     hash;
    const char        *hash_tag;    /* NULL or "" for none, else two characters */
    bool               seeded;      /* the pool's key hashes are mixed with... */
    uint32_t           seed;        /* ...this (hash.h: hash_seeded) */
};

struct remap_share {
    uint64_t moved;     /* hash values whose server changes (exact only) */
    uint64_t range;     /* hash values in all (exact only) */
    double   share;     /* fraction of keys that change server, 0..1 */
    bool     exact;     /* false: the key hash differs, share is the estimate */
};

/* Compare two placements of one pool. */
void remap_compare(const struct remap_side *old, const struct remap_side *new,
                   struct remap_share *out);

/*
 * The number of hash values h in [0, range) whose server differs, for two
 * sides hashing keys alike (range <= 2^32). remap_compare uses the key
 * hash's own range; tests use small ones to check against a count of every
 * value.
 */
uint64_t remap_moved_below(const struct remap_side *old, const struct remap_side *new,
                           uint64_t range);

#endif
