/*
 * ketama.h: server rings (pure): where a key hash lands in a pool.
 *
 * Two distributions: ketama (libketama/twemproxy/libmemcached-compatible
 * continuum of md5 points, weights honoured) and modula (magent's placement
 * without -k: hash modulo the number of servers). The ring only maps a 32-bit
 * key hash to a server index; hashing the key is hash.h's job.
 */
#ifndef KETAMA_H
#define KETAMA_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

enum dist {
    DIST_KETAMA,
    DIST_MODULA
};

struct ring_server {
    const char *host;           /* address as written, e.g. "127.0.0.1" */
    int         port;
    unsigned    weight;         /* >= 1 */
    const char *name;           /* hashed instead of host[:port] when set */
};

struct ring;

/*
 * Build a ring over n servers (n >= 1). Returns NULL and fills err on failure.
 * For ketama each server's points are md5("<id>-<i>"), where id is its name
 * when set, "host" when port is 11211, else "host:port".
 */
struct ring *ring_build(enum dist dist, const struct ring_server *servers, int n,
                        char *err, size_t errlen);

/* Server index (0..n-1) for a key hash. */
int ring_lookup(const struct ring *ring, uint32_t hash);

/*
 * Like ring_lookup, but passing over servers for which live() is false: for
 * ketama the next point on the continuum owned by a live server (the place a
 * ring rebuilt without the dead servers would give), for modula the next live
 * server in order. -1 when none is live.
 */
int ring_lookup_live(const struct ring *ring, uint32_t hash,
                     bool (*live)(int server, void *ctx), void *ctx);

/* Number of points (ketama) or servers (modula); for tests and stats. */
int ring_points(const struct ring *ring);

/*
 * The ring's layout, for comparing two rings (remap.h). Ketama: point i
 * (0 <= i < ring_points) in ascending order of value; returns its server
 * and sets *value. Modula: server i's slots are [*first, *end) of
 * ring_slots_total() slots.
 */
int ring_point(const struct ring *ring, int i, uint32_t *value);
void ring_slots(const struct ring *ring, int server, uint32_t *first, uint32_t *end);
uint32_t ring_slots_total(const struct ring *ring);

/* Number of servers the ring was built over. */
int ring_servers(const struct ring *ring);

/* An independent copy (NULL out of memory). */
struct ring *ring_copy(const struct ring *ring);

/* The ring's distribution, and its name as policies spell it ("ketama"). */
enum dist ring_dist(const struct ring *ring);
const char *dist_name(enum dist dist);

void ring_free(struct ring *ring);

#endif
