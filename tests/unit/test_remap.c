/*
 * test_remap.c: the share of keys that change server between two rings.
 *
 * Three kinds of check: (1) against a count of every hash value, on ranges
 * small enough to count (the computation takes the range as a parameter);
 * (2) against the runtime lookup (ring_lookup) evaluated once per piece of
 * the merged point set, over the full 32-bit range; (3) against a count of
 * real keys, 1,000,000 of them, within sampling error: adding a fifth
 * server to a four-server ketama pool moves about 1/5 of the keys.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "ketama.h"
#include "remap.h"
#include "unit.h"

#define MAX_SERVERS 128

/* A ring over 127.0.0.1:<base>.. with identities = port numbers. */
struct side {
    struct ring_server specs[MAX_SERVERS];
    int                ids[MAX_SERVERS];
    struct ring       *ring;
    struct remap_side  side;
};

static void
side_build(struct side *s, enum dist dist, enum hash_kind hash, const int *ports,
           const unsigned *weights, int n)
{
    char err[128];
    int i;

    for (i = 0; i < n; i++) {
        s->specs[i] = (struct ring_server){ .host = "127.0.0.1", .port = ports[i],
                                            .weight = weights ? weights[i] : 1 };
        s->ids[i] = ports[i];
    }
    s->ring = ring_build(dist, s->specs, n, err, sizeof(err));
    if (s->ring == NULL) {
        fprintf(stderr, "ring_build: %s\n", err);
        exit(1);
    }
    s->side = (struct remap_side){ .ring = s->ring, .server = s->ids, .hash = hash };
}

static void
ports_from(int *ports, int base, int n)
{
    int i;

    for (i = 0; i < n; i++)
        ports[i] = base + i;
}

/* Two equal-weight rings over consecutive ports from base_a and base_b. */
static void
two_sides(struct side *a, struct side *b, enum dist dist, enum hash_kind hash,
          int base_a, int na, int base_b, int nb)
{
    int pa[MAX_SERVERS], pb[MAX_SERVERS];

    ports_from(pa, base_a, na);
    ports_from(pb, base_b, nb);
    side_build(a, dist, hash, pa, NULL, na);
    side_build(b, dist, hash, pb, NULL, nb);
}

static int
owner(const struct side *s, uint32_t h)
{
    return s->ids[ring_lookup(s->ring, h)];
}

/* Every hash value in [0, range), looked up in both rings. */
static uint64_t
count_every_value(const struct side *a, const struct side *b, uint64_t range)
{
    uint64_t h, moved = 0;

    for (h = 0; h < range; h++)
        moved += owner(a, (uint32_t)h) != owner(b, (uint32_t)h);
    return moved;
}

static int
cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

    return (a > b) - (a < b);
}

/*
 * Ketama against ketama over all 2^32 values: between consecutive points of
 * the union, both owners are those of the piece's last value, so one
 * ring_lookup per piece and ring gives the exact count.
 */
static uint64_t
count_by_lookup(const struct side *a, const struct side *b)
{
    int na = ring_points(a->ring), nb = ring_points(b->ring), i, n = 0;
    uint32_t *v = malloc(sizeof(*v) * (size_t)(na + nb + 1));
    uint64_t lo = 0, moved = 0;

    for (i = 0; i < na; i++)
        ring_point(a->ring, i, &v[n++]);
    for (i = 0; i < nb; i++)
        ring_point(b->ring, i, &v[n++]);
    v[n++] = UINT32_MAX;
    qsort(v, (size_t)n, sizeof(*v), cmp_u32);
    for (i = 0; i < n; i++) {
        if ((uint64_t)v[i] < lo)
            continue;           /* a value already covered */
        if (owner(a, v[i]) != owner(b, v[i]))
            moved += (uint64_t)v[i] - lo + 1;
        lo = (uint64_t)v[i] + 1;
    }
    free(v);
    return moved;
}

static void
test_ketama_add_one_server(void)
{
    struct side four, five;
    struct remap_share r;
    char key[32];
    int i, moved = 0, nkeys = 1000000;
    double sigma, seen;

    two_sides(&four, &five, DIST_KETAMA, HASH_MD5, 21211, 4, 21211, 5);
    remap_compare(&four.side, &five.side, &r);
    CHECK(r.exact);
    CHECK_U64(r.range, (uint64_t)1 << 32);
    CHECK_U64(r.moved, count_by_lookup(&four, &five));
    /* About 1/5: the new server's arcs, taken from the other four. */
    CHECK(r.share > 0.15 && r.share < 0.25);

    for (i = 0; i < nkeys; i++) {
        int len = snprintf(key, sizeof(key), "key:%d", i);
        uint32_t h = hash_key(HASH_MD5, key, (size_t)len);

        moved += owner(&four, h) != owner(&five, h);
    }
    seen = (double)moved / nkeys;
    sigma = sqrt(r.share * (1 - r.share) / nkeys);
    printf("# ketama 4 -> 5 servers: exact %.6f (%.2f%%), counted %.6f over %d keys, "
           "sigma %.6f\n", r.share, 100 * r.share, seen, nkeys, sigma);
    UNIT_REPORT(fabs(seen - r.share) < 5 * sigma, "counted %.6f vs exact %.6f", seen, r.share);

    /* The same in the other direction: removing a server moves the same keys. */
    {
        struct remap_share back;

        remap_compare(&five.side, &four.side, &back);
        CHECK_U64(back.moved, r.moved);
    }
    ring_free(four.ring);
    ring_free(five.ring);
}

static void
test_ketama_against_every_value(void)
{
    static int pa[100], pb[100];
    unsigned wb[100];
    struct side a, b;
    uint64_t range = (uint64_t)1 << 22;
    int i;

    /* Many points, so that the counted range holds several arcs. */
    ports_from(pa, 30000, 100);
    ports_from(pb, 30000, 100);
    pb[7] = 40007;                      /* one server replaced */
    for (i = 0; i < 100; i++)
        wb[i] = i == 3 ? 3 : 1;         /* and one weighted up */
    side_build(&a, DIST_KETAMA, HASH_MD5, pa, NULL, 100);
    side_build(&b, DIST_KETAMA, HASH_MD5, pb, wb, 100);
    CHECK_U64(remap_moved_below(&a.side, &b.side, range), count_every_value(&a, &b, range));
    CHECK_U64(remap_moved_below(&a.side, &b.side, (uint64_t)1 << 32), count_by_lookup(&a, &b));
    CHECK_U64(remap_moved_below(&a.side, &a.side, (uint64_t)1 << 32), 0);
    ring_free(a.ring);
    ring_free(b.ring);
}

static void
test_modula_against_every_value(void)
{
    static const int pa[] = { 1, 2, 4 }, pb[] = { 2, 1, 3, 4 };
    static const unsigned wa[] = { 1, 2, 3 }, wb[] = { 2, 1, 3, 1 };
    static const uint64_t ranges[] = { 1, 5, 1000, 4099, 100003 };
    struct side a, b;
    size_t i;

    side_build(&a, DIST_MODULA, HASH_DJB, pa, wa, 3);
    side_build(&b, DIST_MODULA, HASH_DJB, pb, wb, 4);
    for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        CHECK_U64(remap_moved_below(&a.side, &b.side, ranges[i]),
                  count_every_value(&a, &b, ranges[i]));
        CHECK_U64(remap_moved_below(&b.side, &a.side, ranges[i]),
                  count_every_value(&a, &b, ranges[i]));
    }
    ring_free(a.ring);
    ring_free(b.ring);
}

static void
test_modula_add_one_server(void)
{
    struct side four, five;
    struct remap_share r;

    two_sides(&four, &five, DIST_MODULA, HASH_DJB, 21211, 4, 21211, 5);
    remap_compare(&four.side, &five.side, &r);
    /* A key stays only when h mod 4 == h mod 5, i.e. h mod 20 < 4: of the
     * 2^31 DJB values, 107374182 whole periods of 20 and 8 more, so
     * 107374182 * 4 + 4 stay. */
    CHECK(r.exact);
    CHECK_U64(r.range, (uint64_t)1 << 31);
    CHECK_U64(r.moved, ((uint64_t)1 << 31) - (107374182ull * 4 + 4));
    printf("# modula 4 -> 5 servers: %.2f%% of keys move\n", 100 * r.share);
    ring_free(four.ring);
    ring_free(five.ring);
}

static void
test_ketama_against_modula(void)
{
    static int pk[100], pm[100];
    static unsigned wm[100];
    struct side k, m;
    uint64_t range = (uint64_t)1 << 22;
    int i;

    /* The same servers, so every arc in the counted range has its owner
     * among the modula slots. */
    ports_from(pk, 30000, 100);
    ports_from(pm, 30000, 100);
    for (i = 0; i < 100; i++)
        wm[i] = 1 + i % 3;
    side_build(&k, DIST_KETAMA, HASH_MD5, pk, NULL, 100);
    side_build(&m, DIST_MODULA, HASH_MD5, pm, wm, 100);
    CHECK_U64(remap_moved_below(&k.side, &m.side, range), count_every_value(&k, &m, range));
    CHECK_U64(remap_moved_below(&m.side, &k.side, range), count_every_value(&k, &m, range));
    ring_free(k.ring);
    ring_free(m.ring);
}

/*
 * Each server's whole share of a ketama ring, wrap arc included: against a
 * one-server pool, exactly the keys of the other servers move. The owned
 * values are counted with ring_lookup once per piece between points.
 */
static void
test_ketama_against_one_server(void)
{
    int ports[5], i, p;
    struct side ring, one;
    uint64_t owned[5] = { 0 }, lo = 0, total = 0;

    ports_from(ports, 21211, 5);
    side_build(&ring, DIST_KETAMA, HASH_MD5, ports, NULL, 5);
    for (p = 0; p <= ring_points(ring.ring); p++) {
        uint32_t v = UINT32_MAX;

        if (p < ring_points(ring.ring))
            ring_point(ring.ring, p, &v);
        if ((uint64_t)v < lo)
            continue;
        owned[ring_lookup(ring.ring, v)] += (uint64_t)v - lo + 1;
        lo = (uint64_t)v + 1;
    }
    for (i = 0; i < 5; i++) {
        side_build(&one, DIST_MODULA, HASH_MD5, &ports[i], NULL, 1);
        CHECK_U64(remap_moved_below(&ring.side, &one.side, (uint64_t)1 << 32),
                  ((uint64_t)1 << 32) - owned[i]);
        CHECK_U64(remap_moved_below(&one.side, &ring.side, (uint64_t)1 << 32),
                  ((uint64_t)1 << 32) - owned[i]);
        total += owned[i];
        ring_free(one.ring);
    }
    CHECK_U64(total, (uint64_t)1 << 32);
    ring_free(ring.ring);
}

static void
test_other_servers_move_everything(void)
{
    struct side a, b;
    struct remap_share r;

    two_sides(&a, &b, DIST_KETAMA, HASH_MD5, 21211, 3, 31211, 3);
    remap_compare(&a.side, &b.side, &r);
    CHECK(r.exact);
    CHECK_U64(r.moved, r.range);
    remap_compare(&a.side, &a.side, &r);
    CHECK_U64(r.moved, 0);
    ring_free(a.ring);
    ring_free(b.ring);
}

/* A new key hash on the same servers: estimated as independent placements. */
static void
test_hash_change_is_estimated(void)
{
    int ports[4];
    struct side md5, fnv;
    struct remap_share r;
    char key[32];
    int i, moved = 0, nkeys = 200000;
    double sigma, seen;

    ports_from(ports, 21211, 4);
    side_build(&md5, DIST_KETAMA, HASH_MD5, ports, NULL, 4);
    side_build(&fnv, DIST_KETAMA, HASH_FNV1A_64, ports, NULL, 4);
    remap_compare(&md5.side, &fnv.side, &r);
    CHECK(!r.exact);
    CHECK(r.share > 0.70 && r.share < 0.80);       /* about 1 - 4 * (1/4)^2 */
    for (i = 0; i < nkeys; i++) {
        int len = snprintf(key, sizeof(key), "user:%d", i);

        moved += owner(&md5, hash_key(HASH_MD5, key, (size_t)len))
              != owner(&fnv, hash_key(HASH_FNV1A_64, key, (size_t)len));
    }
    seen = (double)moved / nkeys;
    sigma = sqrt(r.share * (1 - r.share) / nkeys);
    UNIT_REPORT(fabs(seen - r.share) < 5 * sigma, "counted %.6f vs estimate %.6f", seen, r.share);

    /* A hash tag appearing is a change of key hash too. */
    {
        struct remap_side tagged = md5.side;

        tagged.hash_tag = "{}";
        remap_compare(&md5.side, &tagged, &r);
        CHECK(!r.exact);
        tagged.hash_tag = "";
        remap_compare(&md5.side, &tagged, &r);
        CHECK(r.exact && r.moved == 0);
    }
    /* So is a seed appearing or changing; the same seed on both sides is
     * exact over all 2^32 values (a seed mixes the hash over 32 bits). */
    {
        struct remap_side seeded = md5.side, other;

        seeded.seeded = true;
        seeded.seed = hash_seed_of("gutter");
        other = seeded;
        other.seed = hash_seed_of("gutter2");
        remap_compare(&md5.side, &seeded, &r);
        CHECK(!r.exact);
        CHECK(r.share > 0.70 && r.share < 0.80);
        remap_compare(&seeded, &other, &r);
        CHECK(!r.exact);
        remap_compare(&seeded, &seeded, &r);
        CHECK(r.exact && r.moved == 0);
        CHECK_U64(r.range, (uint64_t)1 << 32);
    }
    ring_free(md5.ring);
    ring_free(fnv.ring);
}

/* crc32 keeps 15 bits: only the arcs below 2^15 hold keys. */
static void
test_short_hash_range(void)
{
    struct side a, b;
    struct remap_share r;

    two_sides(&a, &b, DIST_KETAMA, HASH_CRC32, 30000, 100, 30000, 101);
    remap_compare(&a.side, &b.side, &r);
    CHECK_U64(r.range, (uint64_t)1 << 15);
    CHECK_U64(r.moved, count_every_value(&a, &b, (uint64_t)1 << 15));
    ring_free(a.ring);
    ring_free(b.ring);
}

static void
test_ring_copy(void)
{
    int ports[4];
    struct side a;
    struct ring *c;
    struct remap_side cs;

    ports_from(ports, 21211, 4);
    side_build(&a, DIST_KETAMA, HASH_MD5, ports, NULL, 4);
    c = ring_copy(a.ring);
    CHECK(c != NULL);
    cs = a.side;
    cs.ring = c;
    ring_free(a.ring);          /* the copy stands alone */
    CHECK_EQ(ring_points(c), 160 * 4);
    CHECK_U64(remap_moved_below(&cs, &cs, (uint64_t)1 << 32), 0);
    ring_free(c);
}

int
main(void)
{
    test_ketama_add_one_server();
    test_ketama_against_every_value();
    test_modula_against_every_value();
    test_modula_add_one_server();
    test_ketama_against_modula();
    test_ketama_against_one_server();
    test_other_servers_move_everything();
    test_hash_change_is_estimated();
    test_short_hash_range();
    test_ring_copy();
    return UNIT_DONE();
}
