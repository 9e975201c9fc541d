/*
 * route.h: the engine that runs calls through the route nodes of one config
 * generation (the nodes themselves are data in config.h).
 *
 * A request key travels the tree as a struct call: each node type has a
 * start step (what to do with a call that reaches it) and a child step (what
 * to do when a child call it made has a result). Leaves are pools, which hand
 * the call to a backend connection, and error nodes, which answer at once.
 * Nodes never block and never call Lua unless the policy has a hook. A call
 * that leaves the engine ends through the callback its creator set
 * (request.h); the engine sets its own on the child calls it makes.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coalesce.h"
#include "config.h"
#include "counters.h"
#include "hedge.h"
#include "request.h"

struct buf;
struct dcache;
struct timers;
struct route_ctx;
struct hotkeys;

#define ROUTE_HOPS_MAX 64      /* steps one key may take through the tree */

/* What a hook (the policy's Lua, through config->script_ops) sees of a request. */
struct hook_request {
    const char *key;
    uint32_t    klen;
    enum cmd    cmd;
    bool        is_unix;
    const char *listener;       /* the client's listener name, or NULL (none) */
    const char *cn;             /* its certificate's common name, or NULL */
    unsigned    reads;          /* HOOK_READ_* bits: what fn looked at (out) */
};

/* Members of the client a hook's decision depended on (the decision cache). */
#define HOOK_READ_LISTENER  1u  /* req.listener or req.client */
#define HOOK_READ_CN        2u  /* req.cn */

/*
 * A worker's counters for one route label, shared by the generations naming
 * it: route counters belong to the worker, not to a generation, so a reload
 * that keeps a label keeps its counts (as backends, keyed by host:port, keep
 * theirs).
 */
struct route_counter {
    struct route_stats  stats;
    int64_t             outstanding; /* calls a balance node started here and
                                      * not yet ended (least_outstanding) */
    enum route_type     type;
    int                 users;      /* generations (wconfigs) pointing at it */
    uint64_t            rate_full_at; /* ratelimit, scope "worker": this worker's
                                     * bucket (ratelimit.h), kept across reloads */
    char                label[];    /* see route_label */
};

#define ROUTE_LABEL_MAX 256

/*
 * A live preview (preview.h): a node of type ROUTE_PREVIEW that a worker puts
 * in front of its current generation's root (wconfig->root, its id the slot
 * after the generation's nodes), so every key of a client request passes it
 * first: observe sees the call, which then goes on to the root unchanged.
 * Without a preview no request meets it, so it costs nothing.
 */
struct route_preview {
    struct route  node;
    void        (*observe)(struct route_preview *p, struct route_ctx *rt, const struct call *c);
};

/*
 * What the engine keeps per thread. Its request cache comes first: the
 * request layer calls the engine's completion callbacks with the cache, and
 * route_ctx_of finds the engine from it.
 */
struct route_ctx {
    struct request_cache  rq;
    struct wconfig       *current;      /* the generation new requests are routed by */
    struct dcache        *dcache;       /* hook decisions (current generation only) */
    struct hotkeys       *hotkeys;      /* this worker's hot-key sketch of reads */
    int                   vm;           /* this thread's Lua VM, for hooks */
    struct route_counter **counters;    /* every label a live generation names */
    int                   ncounters;
    struct hedge_queue    hedges;       /* calls waiting to hedge (wait_ms) */
    struct route_preview *preview;      /* the worker's live preview, or NULL */
    uint64_t              rng;          /* balance: xorshift state (0: not seeded) */
    struct coalesce_table coalesce;     /* gets in flight through coalesce nodes */
    bool                  simulated;    /* a simulation (sim.c): rate limits take no
                                         * tokens, so tests and previews show where a
                                         * request within the limit goes, and never
                                         * spend a live global bucket */
};

static inline struct route_ctx *
route_ctx_of(struct request_cache *rq)
{
    return (struct route_ctx *)((char *)rq - offsetof(struct route_ctx, rq));
}

/*
 * The common name of a client's verified certificate (mutual TLS), or NULL.
 * Read from the TLS state when first asked (only by_client nodes, hooks and
 * introspection ask), so the read path pays nothing for it; o may be NULL
 * (the proxy's own requests).
 */
const char *route_client_cn(struct creq_owner *o);

/* Set up the hedge timer on the thread's event base: 0, or -1. */
int route_hedges_init(struct route_ctx *rt, struct timers *timers);
/*
 * Where a read went, as the hot-key sketch records it (0 is "unknown"):
 * the generation, the pool's node and the server, so names can be looked
 * up later, and a tag of a generation gone names nothing.
 */
static inline uint64_t
route_hot_where(unsigned generation, int node_id, int server_id)
{
    return (uint64_t)generation << 32 | (uint64_t)(node_id & 0xffff) << 16
         | (uint64_t)((server_id + 1) & 0xffff);
}

/* Start a call at its node; it ends through its done callback. */
void route_start(struct route_ctx *rt, struct call *c);

/* What a call's reply makes stale in the near caches (call->nc_bump). */
enum nc_bump {
    NC_BUMP_NONE,       /* nothing: reads, or no near cache in the policy */
    NC_BUMP_KEY,        /* its key: a write, delete, arith or touch */
    NC_BUMP_ALL         /* every key: flush_all */
};

/* A change reached its server: copies read before its reply are stale. */
void route_nearcache_changed(const struct call *c);

/*
 * Count a call's error at the node it ended at. Every completion callback of
 * a routed call calls this first (flush_all's calls have no node). A change
 * that ends bumps its near cache stamps a second time (nearcache.h).
 */
static inline void
route_count_result(const struct call *c)
{
    if (c->nc_bump != NC_BUMP_NONE)
        route_nearcache_changed(c);
    if (c->node != NULL && result_is_error(&c->res))
        STAT_INC(c->creq->wcfg->routes[c->node->id]->stats.errors);
}

/*
 * A request of the proxy's own, with no client (warm-up copies, the delete
 * after a refused set): parse the request in buf (taken over), route it from
 * node by generation wcfg, forget the reply.
 */
void route_background(struct route_ctx *rt, struct wconfig *wcfg, const struct route *node,
                      struct buf *buf);

/*
 * A route node's name in stats and metrics: a pool node is its pool's name;
 * any other node is "<type>#<n>", n counting the nodes of that type from 1 in
 * the order the policy built them (so the same script gives the same labels).
 */
void route_label(const struct config *cfg, const struct route *r, char *out, size_t len);

/*
 * Fill slots[id] for every node of cfg with this thread's counter for its
 * label, creating missing ones. Returns 0, or -1 out of memory (then nothing
 * is held). Call under the worker swap lock when other threads may read.
 */
int route_counters_bind(struct route_ctx *rt, const struct config *cfg,
                        struct route_counter **slots);

/* A generation is gone: release its slots (freeing unnamed counters). */
void route_counters_release(struct route_ctx *rt, struct route_counter **slots, int n);

#endif
