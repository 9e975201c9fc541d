/*
 * placement.c: pools' placement copied out of a config, and compared.
 *
 * A copy holds, per pool, its name, a copy of its ring, its key hash, hash
 * tag and seed, and the "host:port" of each ring index: all a comparison needs,
 * and nothing that belongs to the generation (no addresses, no TLS, no
 * route nodes), so the main thread can keep the serving generation's
 * placement however long the workers keep the generation itself.
 */
#include "placement.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

struct placed_pool {
    char           *name;
    struct ring    *ring;
    enum hash_kind  hash;
    char            hash_tag[3];
    char           *seed;           /* NULL: unseeded */
    uint32_t        seed_hash;
    int             nservers;
    char          **labels;         /* ring index -> "host:port" */
};

struct placement {
    struct placed_pool *pools;
    int                 npools;
};

void
placement_free(struct placement *p)
{
    int i, j;

    if (p == NULL)
        return;
    for (i = 0; i < p->npools; i++) {
        struct placed_pool *pp = &p->pools[i];

        for (j = 0; pp->labels != NULL && j < pp->nservers; j++)
            free(pp->labels[j]);
        free(pp->labels);
        ring_free(pp->ring);
        free(pp->name);
        free(pp->seed);
    }
    free(p->pools);
    free(p);
}

static int
placed_pool_copy(struct placed_pool *to, const struct config *cfg, const struct pool *from)
{
    int i;

    to->name = strdup(from->name);
    to->ring = ring_copy(from->ring);
    to->hash = from->hash;
    memcpy(to->hash_tag, from->hash_tag, sizeof(to->hash_tag));
    to->seed_hash = from->seed_hash;
    if (from->seed != NULL && (to->seed = strdup(from->seed)) == NULL)
        return -1;
    to->labels = calloc((size_t)from->nservers, sizeof(*to->labels));
    if (to->name == NULL || to->ring == NULL || to->labels == NULL)
        return -1;
    to->nservers = from->nservers;
    for (i = 0; i < from->nservers; i++)
        if ((to->labels[i] = strdup(cfg->servers[from->server_ids[i]].label)) == NULL)
            return -1;
    return 0;
}

struct placement *
placement_of(const struct config *cfg)
{
    struct placement *p = calloc(1, sizeof(*p));
    int i;

    if (p == NULL)
        return NULL;
    p->pools = calloc((size_t)cfg->npools + 1, sizeof(*p->pools));
    if (p->pools == NULL) {
        free(p);
        return NULL;
    }
    for (i = 0; i < cfg->npools; i++) {
        p->npools = i + 1;
        if (placed_pool_copy(&p->pools[i], cfg, cfg->pools[i]) < 0) {
            placement_free(p);
            return NULL;
        }
    }
    return p;
}

static const struct placed_pool *
find_pool(const struct placement *p, const char *name)
{
    int i;

    for (i = 0; i < p->npools; i++)
        if (strcmp(p->pools[i].name, name) == 0)
            return &p->pools[i];
    return NULL;
}

/*
 * Number the servers of both pools alike: old ring index i gets the index of
 * the first old label equal to its own; a new label the old pool lacks gets
 * a number past all old ones.
 */
static void
number_servers(const struct placed_pool *o, const struct placed_pool *n, int *oid, int *nid)
{
    int i, j;

    for (i = 0; i < o->nservers; i++)
        for (oid[i] = i, j = 0; j < i; j++)
            if (strcmp(o->labels[j], o->labels[i]) == 0) {
                oid[i] = j;
                break;
            }
    for (i = 0; i < n->nservers; i++)
        for (nid[i] = o->nservers + i, j = 0; j < o->nservers; j++)
            if (strcmp(o->labels[j], n->labels[i]) == 0) {
                nid[i] = j;
                break;
            }
}

static int
compare_kept(const struct placed_pool *o, const struct placed_pool *n, struct remap_share *out)
{
    int *ids = malloc(sizeof(*ids) * (size_t)(o->nservers + n->nservers));
    struct remap_side so, sn;

    if (ids == NULL)
        return -1;
    number_servers(o, n, ids, ids + o->nservers);
    so = (struct remap_side){ .ring = o->ring, .server = ids, .hash = o->hash,
                              .hash_tag = o->hash_tag, .seeded = o->seed != NULL,
                              .seed = o->seed_hash };
    sn = (struct remap_side){ .ring = n->ring, .server = ids + o->nservers, .hash = n->hash,
                              .hash_tag = n->hash_tag, .seeded = n->seed != NULL,
                              .seed = n->seed_hash };
    remap_compare(&so, &sn, out);
    free(ids);
    return 0;
}

static void
describe_side(const struct placed_pool *pp, const char **dist, const char **hash,
              char *const **labels, int *nservers)
{
    *dist = pp ? dist_name(ring_dist(pp->ring)) : NULL;
    *hash = pp ? hash_name(pp->hash) : NULL;
    *labels = pp ? pp->labels : NULL;
    *nservers = pp ? pp->nservers : 0;
}

static int
change_fill(struct pool_change *c, const struct placed_pool *o, const struct placed_pool *n)
{
    memset(c, 0, sizeof(*c));
    c->name = o ? o->name : n->name;
    c->kind = o && n ? POOL_KEPT : o ? POOL_REMOVED : POOL_ADDED;
    describe_side(o, &c->old_dist, &c->old_hash, &c->old_labels, &c->old_servers);
    describe_side(n, &c->new_dist, &c->new_hash, &c->new_labels, &c->new_servers);
    c->old_seed = o ? o->seed : NULL;
    c->new_seed = n ? n->seed : NULL;
    return c->kind == POOL_KEPT ? compare_kept(o, n, &c->share) : 0;
}

int
placement_compare(const struct placement *old, const struct placement *new,
                  struct pool_change **out)
{
    struct pool_change *c = calloc((size_t)(old->npools + new->npools) + 1, sizeof(*c));
    int i, n = 0;

    if (c == NULL)
        return -1;
    for (i = 0; i < old->npools; i++)
        if (change_fill(&c[n++], &old->pools[i], find_pool(new, old->pools[i].name)) < 0)
            goto fail;
    for (i = 0; i < new->npools; i++)
        if (find_pool(old, new->pools[i].name) == NULL
            && change_fill(&c[n++], NULL, &new->pools[i]) < 0)
            goto fail;
    *out = c;
    return n;
fail:
    free(c);
    return -1;
}

const struct pool_change *
placement_worst(const struct pool_change *changes, int n)
{
    const struct pool_change *worst = NULL;
    int i;

    for (i = 0; i < n; i++)
        if (changes[i].kind == POOL_KEPT
            && (worst == NULL || changes[i].share.share > worst->share.share))
            worst = &changes[i];
    return worst;
}
