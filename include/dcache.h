/*
 * dcache.h: the hook decision cache (pure): remembers which route a hook
 * chose for a key prefix (and operation, and the client's listener when the
 * hook looked at it), so Lua runs once per distinct prefix. One cache per
 * worker; cleared when the config changes.
 */
#ifndef DCACHE_H
#define DCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCACHE_PREFIX_MAX 64    /* longer prefixes are not cached */
#define DCACHE_LISTENER_MAX 32  /* bytes of a listener name (LISTEN_NAME_MAX) */

struct dcache;

/* A cache of at most `capacity` decisions (0: caching off). */
struct dcache *dcache_new(unsigned capacity);
void dcache_free(struct dcache *dc);

/*
 * The decision for (hook, op, prefix) for a client of `listener` ("" for a
 * request of no client), or -1. has_delim distinguishes "no delimiter in the
 * key" from an empty prefix. op is -1 when the hook caches by prefix only.
 */
int dcache_get(const struct dcache *dc, int hook, int op, bool has_delim,
               const char *prefix, size_t len, const char *listener);

/*
 * Remember a decision, for clients of `listener` only ("" for no client),
 * or for every client when listener is NULL (the decision did not look at
 * it). Does nothing when full or the prefix or name is too long.
 */
void dcache_put(struct dcache *dc, int hook, int op, bool has_delim,
                const char *prefix, size_t len, const char *listener, int route_id);

void dcache_clear(struct dcache *dc);

/* Entries it may hold. */
unsigned dcache_capacity(const struct dcache *dc);

/* Entries held now. */
unsigned dcache_count(const struct dcache *dc);

#endif
