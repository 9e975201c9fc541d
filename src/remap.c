/*
 * remap.c: the exact share of hash values whose server changes between two
 * placements of a pool.
 *
 * Every placement is a function from a hash value h in [0, R) to a server,
 * and the answer is the number of h where the two functions differ, out of
 * R (R = hash_range of the key hash). Nothing is sampled:
 *
 * - ketama: h goes to the first point at or above it (wrapping to the first
 *   point), so the ring is a list of arcs (previous point, point], each
 *   owned by one server, plus the wrap arc above the last point, owned by
 *   the first point's server. Two rings are compared by walking both arc
 *   lists at once: between two consecutive points of the merged set both
 *   owners are fixed, so each piece is added whole when they differ.
 * - modula: h goes to the server whose run of slots holds h mod W (W = the
 *   total weight). Within one ketama arc [lo, hi], the values whose slot is
 *   in [a, b) are counted in closed form (whole periods of W plus the
 *   partial one). Two modula rings with totals W1 and W2: for each slot s of
 *   the first, the values h = s + W1 t (t = 0, 1, ...) below R land in the
 *   second's slot (s + W1 t) mod W2, and how many of those fall in a run
 *   [a, b) is a floor sum, computed in O(log W) steps (the Euclid-like
 *   reduction of sum floor((a i + b) / m)). So the cost is the number of
 *   slots of the smaller ring times log, however large R is.
 *
 * Invariant: all counts are exact integers; wrapping arithmetic modulo 2^64
 * is used only in sums whose true value is below 2^64, and divisions only
 * see values that did not wrap.
 */
#include "remap.h"

#include <stdlib.h>
#include <string.h>

/* ---- ketama arcs --------------------------------------------------------- */

/* Walks a ketama ring's arcs in ascending order. */
struct arcs {
    const struct remap_side *side;
    int                      next;      /* next point index */
    int                      npoints;
    bool                     wrapped;   /* the wrap arc was given */
};

static void
arcs_init(struct arcs *a, const struct remap_side *side)
{
    a->side = side;
    a->next = 0;
    a->npoints = ring_points(side->ring);
    a->wrapped = false;
}

/*
 * The next arc: hash values up to *end (inclusive) go to server *owner.
 * A point at the same value as the one before owns nothing (a lookup stops
 * at the first of equal points). False once the arcs reach 2^32 - 1.
 */
static bool
arcs_next(struct arcs *a, uint64_t *end, int *owner)
{
    const struct ring *ring = a->side->ring;
    uint32_t v, prev;
    int i, srv;

    while (a->next < a->npoints) {
        i = a->next++;
        srv = ring_point(ring, i, &v);
        if (i > 0) {
            ring_point(ring, i - 1, &prev);
            if (prev == v)
                continue;
        }
        *end = v;
        *owner = a->side->server[srv];
        return true;
    }
    if (a->wrapped)
        return false;
    a->wrapped = true;
    ring_point(ring, a->npoints - 1, &v);
    if (v == UINT32_MAX)
        return false;
    *end = UINT32_MAX;
    *owner = a->side->server[ring_point(ring, 0, &v)];
    return true;
}

static uint64_t
ketama_vs_ketama(const struct remap_side *x, const struct remap_side *y, uint64_t range)
{
    struct arcs ax, ay;
    uint64_t pos = 0, ex = 0, ey = 0, end, moved = 0;
    int ox = -1, oy = -1;

    arcs_init(&ax, x);
    arcs_init(&ay, y);
    arcs_next(&ax, &ex, &ox);
    arcs_next(&ay, &ey, &oy);
    while (pos < range) {
        end = ex < ey ? ex : ey;
        if (end > range - 1)
            end = range - 1;
        if (ox != oy)
            moved += end - pos + 1;
        pos = end + 1;
        if (ex < pos && pos < range)
            arcs_next(&ax, &ex, &ox);
        if (ey < pos && pos < range)
            arcs_next(&ay, &ey, &oy);
    }
    return moved;
}

/* ---- modula slots -------------------------------------------------------- */

/* How many h in [0, x) have h mod w in [a, b). */
static uint64_t
count_slots_below(uint64_t x, uint64_t w, uint64_t a, uint64_t b)
{
    uint64_t rest = x % w, part = rest > a ? (rest < b ? rest : b) - a : 0;

    return (x / w) * (b - a) + part;
}

/* Values in [lo, hi] that a modula side sends to server identity owner. */
static uint64_t
modula_same_in(const struct remap_side *m, uint64_t lo, uint64_t hi, int owner)
{
    uint64_t total = ring_slots_total(m->ring), same = 0;
    uint32_t first, end;
    int i;

    for (i = 0; i < ring_servers(m->ring); i++) {
        if (m->server[i] != owner)
            continue;
        ring_slots(m->ring, i, &first, &end);
        same += count_slots_below(hi + 1, total, first, end)
              - count_slots_below(lo, total, first, end);
    }
    return same;
}

static uint64_t
ketama_vs_modula(const struct remap_side *k, const struct remap_side *m, uint64_t range)
{
    struct arcs ak;
    uint64_t pos = 0, end, hi, moved = 0;
    int owner;

    arcs_init(&ak, k);
    while (pos < range && arcs_next(&ak, &end, &owner)) {
        hi = end < range - 1 ? end : range - 1;
        moved += (hi - pos + 1) - modula_same_in(m, pos, hi, owner);
        pos = hi + 1;
    }
    return moved;
}

/*
 * sum_{i=0}^{n-1} floor((a i + b) / m), modulo 2^64 (callers take
 * differences whose true value is small). n <= 2^32 and m <= 2^32: then
 * a n + b, once a and b are reduced below m, is below 2^64, and n only
 * shrinks from one step to the next.
 */
static uint64_t
floor_sum(uint64_t n, uint64_t m, uint64_t a, uint64_t b)
{
    uint64_t sum = 0, y, t;

    for (;;) {
        if (a >= m) {
            sum += (n * (n - 1) / 2) * (a / m);
            a %= m;
        }
        if (b >= m) {
            sum += n * (b / m);
            b %= m;
        }
        y = a * n + b;
        if (y < m)
            return sum;
        n = y / m;
        b = y % m;
        t = m;
        m = a;
        a = t;
    }
}

/* How many t in [0, n) have (c + d t) mod m < x (0 <= c < m, 0 <= x <= m). */
static uint64_t
count_progression_below(uint64_t n, uint64_t c, uint64_t d, uint64_t m, uint64_t x)
{
    if (x == 0 || n == 0)
        return 0;
    if (x >= m)
        return n;
    /* (y mod m) < x exactly when floor(y / m) - floor((y - x) / m) is 1. */
    return floor_sum(n, m, d, c) - floor_sum(n, m, d, c + m - x) + n;
}

static uint64_t
modula_vs_modula(const struct remap_side *x, const struct remap_side *y, uint64_t range)
{
    uint64_t wx = ring_slots_total(x->ring), wy = ring_slots_total(y->ring);
    uint64_t same = 0, s, n;
    uint32_t xf, xe, yf, ye;
    int i, j;

    for (i = 0; i < ring_servers(x->ring); i++) {
        ring_slots(x->ring, i, &xf, &xe);
        for (j = 0; j < ring_servers(y->ring); j++) {
            if (y->server[j] != x->server[i])
                continue;
            ring_slots(y->ring, j, &yf, &ye);
            for (s = xf; s < xe && s < range; s++) {
                n = (range - s + wx - 1) / wx;          /* h = s + wx t below range */
                same += count_progression_below(n, s % wy, wx % wy, wy, ye)
                      - count_progression_below(n, s % wy, wx % wy, wy, yf);
            }
        }
    }
    return range - same;
}

uint64_t
remap_moved_below(const struct remap_side *old, const struct remap_side *new, uint64_t range)
{
    bool ko = ring_dist(old->ring) == DIST_KETAMA, kn = ring_dist(new->ring) == DIST_KETAMA;

    if (range == 0)
        return 0;
    if (ko && kn)
        return ketama_vs_ketama(old, new, range);
    if (ko)
        return ketama_vs_modula(old, new, range);
    if (kn)
        return ketama_vs_modula(new, old, range);
    /* The count is symmetric: walk the slots of the smaller ring. */
    if (ring_slots_total(old->ring) <= ring_slots_total(new->ring))
        return modula_vs_modula(old, new, range);
    return modula_vs_modula(new, old, range);
}

/* ---- estimate for placements that hash keys differently ------------------ */

/* The hash values a side's keys take: a seed mixes them over all 32 bits. */
static uint64_t
side_range(const struct remap_side *side)
{
    return side->seeded ? (uint64_t)1 << 32 : hash_range(side->hash);
}

/* Each ring index's share of the side's own hash range, into share[]. */
static void
side_shares(const struct remap_side *side, double *share)
{
    uint64_t range = side_range(side), pos = 0, end, hi;
    int n = ring_servers(side->ring), i;

    for (i = 0; i < n; i++)
        share[i] = 0;
    if (ring_dist(side->ring) == DIST_MODULA) {
        uint64_t total = ring_slots_total(side->ring);
        uint32_t first, last;

        for (i = 0; i < n; i++) {
            ring_slots(side->ring, i, &first, &last);
            share[i] = (double)count_slots_below(range, total, first, last) / (double)range;
        }
        return;
    }
    /* Ketama: arcs by point, so owners are looked up by point, not identity. */
    for (i = 0; i < ring_points(side->ring) && pos < range; i++) {
        uint32_t v;
        int srv = ring_point(side->ring, i, &v);

        end = v;
        if (end < pos)
            continue;
        hi = end < range - 1 ? end : range - 1;
        share[srv] += (double)(hi - pos + 1) / (double)range;
        pos = hi + 1;
    }
    if (pos < range) {
        uint32_t v;

        share[ring_point(side->ring, 0, &v)] += (double)(range - pos) / (double)range;
    }
}

static double
estimate_moved(const struct remap_side *old, const struct remap_side *new)
{
    int no = ring_servers(old->ring), nn = ring_servers(new->ring), i, j;
    double *so = calloc((size_t)no + (size_t)nn, sizeof(double)), stay = 0;

    if (so == NULL)
        return 1.0;     /* cannot tell: say everything moves, the safe side */
    side_shares(old, so);
    side_shares(new, so + no);
    for (i = 0; i < no; i++)
        for (j = 0; j < nn; j++)
            if (old->server[i] == new->server[j])
                stay += so[i] * so[no + j];
    free(so);
    return stay >= 1.0 ? 0.0 : 1.0 - stay;
}

static bool
same_tag(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

void
remap_compare(const struct remap_side *old, const struct remap_side *new,
              struct remap_share *out)
{
    memset(out, 0, sizeof(*out));
    if (old->hash != new->hash || !same_tag(old->hash_tag, new->hash_tag)
        || old->seeded != new->seeded || (old->seeded && old->seed != new->seed)) {
        out->share = estimate_moved(old, new);
        return;
    }
    out->exact = true;
    out->range = side_range(old);
    out->moved = remap_moved_below(old, new, out->range);
    out->share = (double)out->moved / (double)out->range;
}
