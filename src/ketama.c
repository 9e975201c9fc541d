/*
 * ketama.c: server rings: map a 32-bit key hash to a server index.
 *
 * DIST_KETAMA is the libketama continuum as twemproxy builds it: each server
 * gets points in proportion to its weight share (160 per server at equal
 * weights), four points per md5 digest of "<id>-<i>"; a hash goes to the
 * first point at or above it, wrapping to the first point. DIST_MODULA gives
 * each server `weight` consecutive slots and picks slot hash % total_weight
 * (magent's hash % nservers when all weights are 1).
 *
 * Invariant: a built ring is immutable; points are sorted by value (ties by
 * server index) and cum[] is strictly increasing, so lookups need no lock.
 * Pure: no I/O, no logging; errors go to the caller's buffer.
 */
#include "ketama.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "md5.h"

#define KETAMA_POINTS_PER_SERVER 160
#define KETAMA_POINTS_PER_DIGEST 4
#define KETAMA_DEFAULT_PORT      11211  /* port left out of the point id */

struct ring_point {
    uint32_t value;             /* position on the continuum */
    int      server;            /* index into the caller's server array */
};

struct ring {
    enum dist          dist;
    int                nservers;
    int                npoints;  /* ketama: entries in points */
    struct ring_point *points;   /* ketama: sorted ascending by value */
    int               *first;    /* ketama: first[b], the first point at or above
                                  * b << shift (npoints past the last): a lookup
                                  * searches one bucket's few points, not all */
    int                shift;
    uint32_t          *cum;      /* modula: cum[i] = weights of servers 0..i */
};

static void
ring_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
ring_validate(const struct ring_server *servers, int n, uint32_t *total,
              char *err, size_t errlen)
{
    uint64_t sum = 0;
    int i;

    if (servers == NULL || n < 1) {
        ring_error(err, errlen, "ring needs at least one server");
        return -1;
    }
    for (i = 0; i < n; i++) {
        const struct ring_server *s = &servers[i];

        if (s->host == NULL || s->host[0] == '\0') {
            ring_error(err, errlen, "server %d: empty host", i + 1);
            return -1;
        }
        if (s->port < 0 || s->port > 65535) {
            ring_error(err, errlen, "server %d (%s): port %d out of range",
                       i + 1, s->host, s->port);
            return -1;
        }
        if (s->weight < 1) {
            ring_error(err, errlen, "server %d (%s:%d): weight must be >= 1",
                       i + 1, s->host, s->port);
            return -1;
        }
        sum += s->weight;
    }
    if (sum > UINT32_MAX) {
        ring_error(err, errlen, "total server weight %llu is too large",
                   (unsigned long long)sum);
        return -1;
    }
    *total = (uint32_t)sum;
    return 0;
}

/*
 * Points for one server, computed step by step in float exactly as twemproxy
 * does: the rounding of weight/total in single precision decides whether a
 * share like 3 * 1/6 floors to 19 or 20 groups, and a ring that must match
 * twemproxy's has to round the same way.
 */
static int
ketama_server_points(unsigned weight, uint32_t total, int nservers)
{
    float pct, groups;
    double nudged;

    pct = (float)weight / (float)total;
    groups = pct * (float)KETAMA_POINTS_PER_SERVER;
    groups = groups / (float)KETAMA_POINTS_PER_DIGEST;
    groups = groups * (float)nservers;
    nudged = (double)groups + 0.0000000001;
    groups = floorf((float)nudged);
    return (int)groups * KETAMA_POINTS_PER_DIGEST;
}

/* The string a server's points are hashed from, before "-<i>". */
static int
ketama_server_id(const struct ring_server *s, char *buf, size_t size)
{
    if (s->name != NULL && s->name[0] != '\0') {
        return snprintf(buf, size, "%s", s->name);
    }
    if (s->port == KETAMA_DEFAULT_PORT) {
        return snprintf(buf, size, "%s", s->host);
    }
    return snprintf(buf, size, "%s:%d", s->host, s->port);
}

/* Append npoints points of server idx to out[]; returns 0 or -1 (no memory). */
static int
ketama_add_server(const struct ring_server *s, int idx, int npoints,
                  struct ring_point *out)
{
    unsigned char digest[16];
    char *label;
    size_t cap;
    int idlen, i, h, len, k = 0;

    idlen = ketama_server_id(s, NULL, 0);
    cap = (size_t)idlen + 16;   /* room for "-" and a decimal int */
    label = malloc(cap);
    if (label == NULL) {
        return -1;
    }
    ketama_server_id(s, label, cap);

    for (i = 0; i < npoints / KETAMA_POINTS_PER_DIGEST; i++) {
        len = idlen + snprintf(label + idlen, cap - (size_t)idlen, "-%d", i);
        md5_digest(label, (size_t)len, digest);
        for (h = 0; h < KETAMA_POINTS_PER_DIGEST; h++) {
            const unsigned char *b = digest + 4 * h;

            out[k].value = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
                           (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            out[k].server = idx;
            k++;
        }
    }
    free(label);
    return 0;
}

static int
ketama_point_cmp(const void *pa, const void *pb)
{
    const struct ring_point *a = pa, *b = pb;

    if (a->value != b->value) {
        return a->value < b->value ? -1 : 1;
    }
    /* Equal values: keep server order, as a stable sort of the build would. */
    return (a->server > b->server) - (a->server < b->server);
}

/*
 * The bucket index: about one bucket per point (at most 2^KETAMA_INDEX_BITS),
 * buckets by the hash's top bits. A lookup then searches about one point
 * instead of log2(npoints) (ten steps for four servers).
 */
#define KETAMA_INDEX_BITS 14

static int
ketama_index(struct ring *ring)
{
    int bits = 1, b, i = 0, nb;

    while (bits < KETAMA_INDEX_BITS && (1 << bits) < ring->npoints)
        bits++;
    nb = 1 << bits;
    ring->shift = 32 - bits;
    ring->first = malloc(sizeof(*ring->first) * (size_t)(nb + 1));
    if (ring->first == NULL)
        return -1;
    for (b = 0; b < nb; b++) {
        uint32_t from = (uint32_t)b << ring->shift;

        while (i < ring->npoints && ring->points[i].value < from)
            i++;
        ring->first[b] = i;
    }
    ring->first[nb] = ring->npoints;
    return 0;
}

static int
ketama_build(struct ring *ring, const struct ring_server *servers, int n,
             uint32_t total, char *err, size_t errlen)
{
    int i, count, npoints = 0;
    int *per;

    per = malloc(sizeof(*per) * (size_t)n);
    if (per == NULL) {
        ring_error(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        per[i] = ketama_server_points(servers[i].weight, total, n);
        npoints += per[i];
    }

    /* Some server always holds at least the average share, so npoints > 0. */
    ring->points = malloc(sizeof(*ring->points) * (size_t)npoints);
    if (ring->points == NULL) {
        free(per);
        ring_error(err, errlen, "out of memory");
        return -1;
    }

    count = 0;
    for (i = 0; i < n; i++) {
        if (ketama_add_server(&servers[i], i, per[i],
                              ring->points + count) != 0) {
            free(per);
            ring_error(err, errlen, "out of memory");
            return -1;
        }
        count += per[i];
    }
    free(per);

    qsort(ring->points, (size_t)npoints, sizeof(*ring->points),
          ketama_point_cmp);
    ring->npoints = npoints;
    if (ketama_index(ring) != 0) {
        ring_error(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int
modula_build(struct ring *ring, const struct ring_server *servers, int n,
             char *err, size_t errlen)
{
    uint32_t sum = 0;
    int i;

    ring->cum = malloc(sizeof(*ring->cum) * (size_t)n);
    if (ring->cum == NULL) {
        ring_error(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        sum += servers[i].weight;
        ring->cum[i] = sum;
    }
    return 0;
}

struct ring *
ring_build(enum dist dist, const struct ring_server *servers, int n,
           char *err, size_t errlen)
{
    struct ring *ring;
    uint32_t total;
    int rc;

    if (dist != DIST_KETAMA && dist != DIST_MODULA) {
        ring_error(err, errlen, "unknown distribution %d", (int)dist);
        return NULL;
    }
    if (ring_validate(servers, n, &total, err, errlen) != 0) {
        return NULL;
    }

    ring = calloc(1, sizeof(*ring));
    if (ring == NULL) {
        ring_error(err, errlen, "out of memory");
        return NULL;
    }
    ring->dist = dist;
    ring->nservers = n;

    if (dist == DIST_KETAMA) {
        rc = ketama_build(ring, servers, n, total, err, errlen);
    } else {
        rc = modula_build(ring, servers, n, err, errlen);
    }
    if (rc != 0) {
        ring_free(ring);
        return NULL;
    }
    return ring;
}

/*
 * Index of the first point at or above hash, wrapping to the first point.
 * Inlined into ring_lookup, which takes it for every key.
 */
static inline __attribute__((always_inline)) int
ketama_point(const struct ring *ring, uint32_t hash)
{
    uint32_t b = hash >> ring->shift;
    int lo = ring->first[b], hi = ring->first[b + 1];

    /* The answer is in the bucket, or the next bucket's first point. A
     * bucket holds about one point, more only past 2^KETAMA_INDEX_BITS
     * points (five on average at 512 servers), so a scan beats a binary
     * search. */
    while (lo < hi && ring->points[lo].value < hash)
        lo++;
    if (lo == ring->npoints) {
        lo = 0;
    }
    return lo;
}

static int
ketama_lookup(const struct ring *ring, uint32_t hash)
{
    return ring->points[ketama_point(ring, hash)].server;
}

/* The server whose run of slots holds slot hash % total_weight. */
static int
modula_lookup(const struct ring *ring, uint32_t hash)
{
    uint32_t slot = hash % ring->cum[ring->nservers - 1];
    int lo = 0, hi = ring->nservers - 1, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (ring->cum[mid] <= slot) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int
ring_lookup(const struct ring *ring, uint32_t hash)
{
    if (ring->dist == DIST_KETAMA) {
        return ketama_lookup(ring, hash);
    }
    return modula_lookup(ring, hash);
}

int
ring_lookup_live(const struct ring *ring, uint32_t hash,
                 bool (*live)(int server, void *ctx), void *ctx)
{
    int i, start;

    if (ring->dist == DIST_KETAMA) {
        /* Walking on is what a ring rebuilt without the dead servers gives. */
        start = ketama_point(ring, hash);
        for (i = 0; i < ring->npoints; i++) {
            int server = ring->points[(start + i) % ring->npoints].server;

            if (live(server, ctx))
                return server;
        }
        return -1;
    }
    start = modula_lookup(ring, hash);
    for (i = 0; i < ring->nservers; i++)
        if (live((start + i) % ring->nservers, ctx))
            return (start + i) % ring->nservers;
    return -1;
}

int
ring_points(const struct ring *ring)
{
    return ring->dist == DIST_KETAMA ? ring->npoints : ring->nservers;
}

int
ring_point(const struct ring *ring, int i, uint32_t *value)
{
    *value = ring->points[i].value;
    return ring->points[i].server;
}

void
ring_slots(const struct ring *ring, int server, uint32_t *first, uint32_t *end)
{
    *first = server > 0 ? ring->cum[server - 1] : 0;
    *end = ring->cum[server];
}

uint32_t
ring_slots_total(const struct ring *ring)
{
    return ring->cum[ring->nservers - 1];
}

int
ring_servers(const struct ring *ring)
{
    return ring->nservers;
}

static void *
copy_of(const void *from, size_t size)
{
    void *to = malloc(size);

    if (to != NULL)
        memcpy(to, from, size);
    return to;
}

struct ring *
ring_copy(const struct ring *ring)
{
    struct ring *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    *c = *ring;
    c->points = NULL;
    c->first = NULL;
    c->cum = NULL;
    if (ring->points != NULL)
        c->points = copy_of(ring->points, sizeof(*ring->points) * (size_t)ring->npoints);
    if (ring->first != NULL)
        c->first = copy_of(ring->first, sizeof(*ring->first) * ((1u << (32 - ring->shift)) + 1));
    if (ring->cum != NULL)
        c->cum = copy_of(ring->cum, sizeof(*ring->cum) * (size_t)ring->nservers);
    if ((ring->points != NULL && c->points == NULL) || (ring->first != NULL && c->first == NULL)
        || (ring->cum != NULL && c->cum == NULL)) {
        ring_free(c);
        return NULL;
    }
    return c;
}

enum dist
ring_dist(const struct ring *ring)
{
    return ring->dist;
}

const char *
dist_name(enum dist dist)
{
    return dist == DIST_MODULA ? "modula" : "ketama";
}

void
ring_free(struct ring *ring)
{
    if (ring == NULL) {
        return;
    }
    free(ring->points);
    free(ring->first);
    free(ring->cum);
    free(ring);
}
