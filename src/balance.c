/*
 * balance.c: how lg.balance chooses one child per request.
 *
 * - random: a child drawn from the worker's xorshift generator; when it is
 *   down, one drawn from the live ones.
 * - key: rendezvous hashing: each child scores hash_seeded(key hash, its
 *   own seed) and the highest live score wins. A key keeps its child while
 *   that child is up; when it is down, its keys spread evenly over the
 *   others, and come back to it, and only they, when it returns.
 * - least_outstanding: the live child with the fewest calls this worker's
 *   balance nodes started there and have not seen end (route_counter's
 *   outstanding), ties broken from a random starting child so that an idle
 *   set of replicas is still shared. The route engine keeps those counts
 *   (with its per-worker counters) and passes them in.
 *
 * Invariant: nothing here allocates, logs or changes a call; a choice costs
 * one down test per child at most (one for random while all are up).
 */
#include "balance.h"

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "hash.h"
#include "request.h"

#define DOWN_DEPTH_MAX 64       /* nodes followed below a child (trees are acyclic) */

static uint64_t
balance_random(uint64_t *rng)
{
    uint64_t x = *rng;

    if (x == 0)     /* first use in this worker: any seed but zero */
        x = (clock_ns() ^ (uint64_t)(uintptr_t)rng) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static bool child_down(const struct call *c, const struct route *r, int depth);

/* The key's server in this pool is marked down (with eject: all are). */
static bool
pool_down(const struct call *c, const struct pool *pool)
{
    struct backend **backends = c->creq->wcfg->backends;
    int i;

    if (!backend_is_down(backends[pool_server_for_key(pool, c->key, c->klen)]))
        return false;
    for (i = 0; pool->eject && i < pool->nservers; i++)
        if (!backend_is_down(backends[pool->server_ids[i]]))
            return false;
    return true;
}

/* Are children [0, n) of r all down? */
static bool
all_down(const struct call *c, const struct route *r, int n, int depth)
{
    int i;

    for (i = 0; i < n; i++)
        if (!child_down(c, r->children[i], depth + 1))
            return false;
    return true;
}

static bool
child_down(const struct call *c, const struct route *r, int depth)
{
    bool read = proto_cmd_op(c->creq->req.cmd) == OP_READ;

    if (depth > DOWN_DEPTH_MAX)
        return false;
    switch (r->type) {
    case ROUTE_POOL:
        return pool_down(c, r->pool);
    case ROUTE_FAILOVER:
        if (!r->failover_writes && !read)
            return child_down(c, r->children[0], depth + 1);
        return all_down(c, r, route_failover_tries(r), depth);
    case ROUTE_BALANCE:
        return all_down(c, r, r->nchildren, depth);
    case ROUTE_COALESCE:        /* answers from its one child */
        return child_down(c, r->children[0], depth + 1);
    default:
        return false;
    }
}

static int
pick_random(uint64_t *rng, const struct call *c, const struct route *r, bool *skipped)
{
    int live[BALANCE_CHILDREN_MAX], nlive = 0, i;
    int first = (int)(balance_random(rng) % (uint64_t)r->nchildren);

    if (!child_down(c, r->children[first], 0))
        return first;
    for (i = 0; i < r->nchildren; i++)
        if (i != first && !child_down(c, r->children[i], 0))
            live[nlive++] = i;
    if (nlive == 0)
        return first;
    *skipped = true;
    return live[balance_random(rng) % (uint64_t)nlive];
}

/* Child i's rendezvous score for a key hash. */
static uint32_t
key_score(uint32_t h, int i)
{
    return hash_seeded(h, (uint32_t)(i + 1) * 0x9e3779b9u);
}

/* The best-scoring child not in tried (a bit per child), or -1. */
static int
key_best(const struct route *r, uint32_t h, uint64_t tried)
{
    uint32_t best_score = 0;
    int best = -1, i;

    for (i = 0; i < r->nchildren; i++) {
        uint32_t s = key_score(h, i);

        if (!(tried & ((uint64_t)1 << i)) && (best < 0 || s > best_score)) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

int
balance_key_child(const struct route *r, const char *key, uint32_t klen)
{
    return key_best(r, hash_key(HASH_FNV1A_32, key, klen), 0);
}

static int
pick_by_key(const struct call *c, const struct route *r, bool *skipped)
{
    uint32_t h = hash_key(HASH_FNV1A_32, c->key, c->klen);
    int first = key_best(r, h, 0), i = first;
    uint64_t tried = 0;

    while (i >= 0 && child_down(c, r->children[i], 0)) {
        tried |= (uint64_t)1 << i;
        i = key_best(r, h, tried);
    }
    if (i < 0)
        return first;
    *skipped = i != first;
    return i;
}

static int
pick_least(uint64_t *rng, const struct call *c, const struct route *r,
           const int64_t *outstanding, bool *skipped)
{
    int n = r->nchildren, start = (int)(balance_random(rng) % (uint64_t)n);
    int best_any = -1, best = -1, k;

    for (k = 0; k < n; k++) {
        int i = (start + k) % n;

        if (best_any < 0 || outstanding[i] < outstanding[best_any])
            best_any = i;
        if (child_down(c, r->children[i], 0))
            continue;
        if (best < 0 || outstanding[i] < outstanding[best])
            best = i;
    }
    if (best < 0)
        return best_any;
    *skipped = best != best_any;
    return best;
}

int
balance_pick(uint64_t *rng, const struct call *c, const int64_t *outstanding, bool *skipped)
{
    const struct route *r = c->node;

    *skipped = false;
    switch (r->balance_by) {
    case BALANCE_KEY:
        return pick_by_key(c, r, skipped);
    case BALANCE_LEAST:
        return pick_least(rng, c, r, outstanding, skipped);
    case BALANCE_RANDOM:
        break;
    }
    return pick_random(rng, c, r, skipped);
}
