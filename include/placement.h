/*
 * placement.h: a policy's key placement (each pool's ring, key hash and
 * servers), copied out of a config so that it outlives the generation, and
 * the share of each pool's keys that changes server between two policies.
 *
 * Pools are matched by name; servers by "host:port" (a server's ketama
 * `name` moves its points, which the rings already show, but the keys still
 * reach the same memcached).
 */
#ifndef PLACEMENT_H
#define PLACEMENT_H

#include "remap.h"

struct config;
struct placement;

/* A copy of cfg's pools' placement; NULL out of memory. */
struct placement *placement_of(const struct config *cfg);

void placement_free(struct placement *p);

enum pool_change_kind {
    POOL_KEPT,          /* named in both: share says what moves */
    POOL_ADDED,         /* only in the new policy */
    POOL_REMOVED        /* only in the old policy */
};

struct pool_change {
    const char            *name;        /* points into the placements */
    enum pool_change_kind  kind;
    struct remap_share     share;       /* POOL_KEPT only */
    const char            *old_dist;    /* "ketama"/"modula", NULL if absent */
    const char            *new_dist;
    const char            *old_hash;    /* key hash names, NULL if absent */
    const char            *new_hash;
    const char            *old_seed;    /* pool seeds, NULL if none or absent */
    const char            *new_seed;
    char *const           *old_labels;  /* "host:port" in ring order */
    char *const           *new_labels;
    int                    old_servers; /* 0 if absent */
    int                    new_servers;
};

/*
 * One entry per pool named in either placement: the old policy's pools in
 * its order, then the pools only the new one has. *out is malloc'd (free
 * it); returns the count, or -1 out of memory.
 */
int placement_compare(const struct placement *old, const struct placement *new,
                      struct pool_change **out);

/* The kept pool that moves the largest share of its keys, or NULL. */
const struct pool_change *placement_worst(const struct pool_change *changes, int n);

#endif
