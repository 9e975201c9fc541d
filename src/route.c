/*
 * route.c: the route engine: how a call moves through route nodes.
 *
 * The child calls a node makes end through route_child_done, which hands
 * them to the parent's node. A call holds a reference on its parent until it
 * is freed (request.h), so a fan-out node can answer early (all_initial)
 * while its other children finish in the background, and nothing a child
 * reports to is ever freed under it.
 *
 * Each node a call reaches counts a request in this worker's counters for
 * that node; the node a call finishes at counts its error, if it is one.
 */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "balance.h"
#include "base64.h"
#include "buf.h"
#include "clock.h"
#include "coalesce.h"
#include "clock.h"
#include "config.h"
#include "dcache.h"
#include "hash.h"
#include "hotkeys.h"
#include "log.h"
#include "tls.h"
#include "ketama.h"
#include "luagent.h"
#include "ratelimit.h"
#include "ttl.h"
#include "nearcache.h"

/* This worker's counters for node r (of the call's generation). */
static inline struct route_stats *
node_stats(const struct call *c, const struct route *r)
{
    return &c->creq->wcfg->routes[r->id]->stats;
}

static void child_done(struct route_ctx *rt, struct call *parent, struct call *child);

/* A child call ended: its parent's node takes the result. */
static void
route_child_done(struct request_cache *rq, struct call *c)
{
    route_count_result(c);
    child_done(route_ctx_of(rq), c->parent, c);
}

static struct call *
call_child(struct route_ctx *rt, struct call *parent, const struct route *node)
{
    struct call *c = call_new(&rt->rq, parent->creq, node, parent->slot, route_child_done);

    if (c == NULL)
        return NULL;
    c->key = parent->key;           /* the key as the parent has it (rewritten) */
    c->klen = parent->klen;
    c->parent = parent;
    c->hops = parent->hops;
    c->ttl = parent->ttl;
    parent->refs++;
    parent->pending++;
    return c;
}

struct live_ctx {
    const struct pool  *pool;
    struct backend    **backends;
};

static bool
server_live(int ring_index, void *arg)
{
    const struct live_ctx *lc = arg;

    return !backend_is_down(lc->backends[lc->pool->server_ids[ring_index]]);
}

static bool is_read(const struct call *c);

/*
 * May this request change what a near cache holds for its key? Writes,
 * deletes, arith and touches; gat/gats touch; an mg's flags may touch,
 * vivify or invalidate, so every mg counts.
 */
static bool
changes_value(const struct call *c)
{
    enum cmd cmd = c->creq->req.cmd;

    return !is_read(c) || cmd == CMD_GAT || cmd == CMD_GATS || cmd == CMD_MG;
}

void
route_nearcache_changed(const struct call *c)
{
    if (c->nc_bump == NC_BUMP_ALL)
        nearcache_invalidate_all();
    else
        nearcache_invalidate(hotkeys_hash(c->key, c->klen));
}

/* A sampled read reaches a server: count it in the hot-key sketch. */
static void __attribute__((noinline))
hot_count(struct route_ctx *rt, const struct call *c, int server_id)
{
    hotkeys_count(rt->hotkeys, hotkeys_hash(c->key, c->klen), c->key, c->klen,
                  route_hot_where(c->creq->wcfg->config->generation, c->node->id, server_id));
}

static void
node_pool(struct route_ctx *rt, struct call *c)
{
    const struct pool *pool = c->node->pool;
    struct backend **backends = c->creq->wcfg->backends;
    int id = pool_server_for_key(pool, c->key, c->klen);

    /* A write on any path closes the key's coalesced gets in this worker
     * (one compare while none is open). */
    if (rt->coalesce.nopen != 0 && !coalesce_shares(&c->creq->req))
        coalesce_close_key_slow(&rt->coalesce, c->key, c->klen);
    if (pool->eject && backend_is_down(backends[id])) {
        /* eject = true: a down server's keys go to the next live server. */
        struct live_ctx lc = { pool, backends };
        int idx = ring_lookup_live(pool->ring, pool_key_hash(pool, c->key, c->klen),
                                   server_live, &lc);

        if (idx >= 0)
            id = pool->server_ids[idx];
    }
    if (is_read(c) && hotkeys_sampled(rt->hotkeys))
        hot_count(rt, c, id);
    if (c->creq->wcfg->config->nnearcaches > 0 && changes_value(c)) {
        c->nc_bump = NC_BUMP_KEY;
        route_nearcache_changed(c);
    }
    backend_submit(backends[id], c, pool->timeout_ms);
}

static bool
is_read(const struct call *c)
{
    return proto_cmd_op(c->creq->req.cmd) == OP_READ;
}

/* A read that found nothing (a quiet mg's miss is the server's silence). */
static bool
is_miss(const struct call *c)
{
    enum reply_kind kind = c->res.kind;

    return kind == REPLY_END || kind == REPLY_META_EN
        || (kind == REPLY_META_MN && c->creq->req.cmd == CMD_MG);
}

/* Does this result send a failover node on to its next child? */
static bool
failover_wanted(const struct route *r, const struct call *child)
{
    const struct result *res = &child->res;

    if (res->fail == FAIL_TIMEOUT)
        return r->on_timeout;
    if (res->fail != FAIL_NONE)
        return r->on_error;
    if (res->kind == REPLY_SERVER_ERROR)
        return r->on_server_error;
    if (r->on_miss && is_read(child) && is_miss(child))
        return true;
    return false;
}

/* Start child number c->child; false when out of memory (c is failed). */
static bool
failover_try(struct route_ctx *rt, struct call *c)
{
    struct call *child = call_child(rt, c, c->node->children[c->child]);

    if (child == NULL) {
        call_fail(&rt->rq, c, FAIL_NOMEM);
        return false;
    }
    if (c->child > 0 && c->node->gutter_ttl != 0) {
        /* Past the first child: what is stored there lives gutter_ttl at most. */
        child->ttl = ttl_compose(child->ttl, c->node->gutter_ttl);
        STAT_INC(node_stats(c, c->node)->gutter_capped);
    }
    route_start(rt, child);
    return true;
}

/*
 * Does this call hedge? Reads through a node with wait_ms: a write sent to a
 * second child because the first was slow could land twice.
 */
static bool
hedging(const struct route *r, const struct call *c)
{
    return r->wait_ms > 0 && route_failover_tries(r) > 1 && is_read(c);
}

/*
 * Hedging: the first child now; each wait_ms without an answer, the next
 * (route_hedge_fire). The queue holds a reference on the call while it waits.
 */
static void
hedge_start(struct route_ctx *rt, struct call *c)
{
    c->child = 0;
    c->refs += 2;               /* the queue's, and ours until the child has started */
    hedge_add(&rt->hedges, c, clock_ms() + (uint64_t)c->node->wait_ms);
    failover_try(rt, c);
    if (hedge_queued(c) && c->finished) {
        /* failed at once, out of memory: node_answer did not see it */
        hedge_remove(&rt->hedges, c);
        call_unref(&rt->rq, c);
    }
    call_unref(&rt->rq, c);
}

/* A hedging call waited wait_ms for its latest child: start the next one too. */
static void
route_hedge_fire(struct hedge_queue *q, struct call *c)
{
    struct route_ctx *rt = (struct route_ctx *)((char *)q - offsetof(struct route_ctx, hedges));
    const struct route *r = c->node;

    if (!c->finished && c->child + 1 < route_failover_tries(r)) {
        c->child++;
        STAT_INC(node_stats(c, r)->hedges);
        failover_try(rt, c);
        if (!c->finished && c->child + 1 < route_failover_tries(r)) {
            hedge_add(q, c, clock_ms() + (uint64_t)r->wait_ms);   /* keeps the reference */
            return;
        }
    }
    call_unref(&rt->rq, c);
}

int
route_hedges_init(struct route_ctx *rt, struct timers *timers)
{
    return hedge_queue_init(&rt->hedges, timers, route_hedge_fire);
}

/* Answer a call with a fixed line of this kind. */
static void
call_answer_bytes(struct route_ctx *rt, struct call *c, enum reply_kind kind, const char *p,
                  size_t len)
{
    struct buf *b = buf_get(&rt->rq.bufs);

    if (b != NULL)
        buf_append(b, p, len);
    if (b == NULL || buf_failed(b)) {
        buf_put(&rt->rq.bufs, b);
        call_fail(&rt->rq, c, FAIL_NOMEM);
        return;
    }
    result_clear(&rt->rq, &c->res);
    c->res.kind = kind;
    c->res.fail = FAIL_NONE;
    result_set_buf(&c->res, b);
    call_finish(&rt->rq, c);
}

static void
call_answer(struct route_ctx *rt, struct call *c, enum reply_kind kind, const char *line)
{
    call_answer_bytes(rt, c, kind, line, strlen(line));
}

/* all_async: the reply a write would have had, given at once. */
static const char *
async_reply(const struct request *rq)
{
    enum op op = proto_cmd_op(rq->cmd);

    if (rq->meta)       /* ms, md: success without flags; ma waits */
        return op == OP_WRITE || op == OP_DELETE ? "HD\r\n" : NULL;
    switch (op) {
    case OP_WRITE:  return "STORED\r\n";
    case OP_DELETE: return "DELETED\r\n";
    case OP_TOUCH:  return "TOUCHED\r\n";
    default:        return NULL;    /* reads and arith wait for the first child */
    }
}

/* Start a call on children [0, n) of its node. */
static void
node_fanout(struct route_ctx *rt, struct call *c, int n)
{
    struct call *children[n];
    int i;

    /* Children start only after all exist, so an answer that comes back at
     * once cannot finish the parent before its siblings are counted. */
    for (i = 0; i < n; i++) {
        children[i] = call_child(rt, c, c->node->children[i]);
        if (children[i] == NULL) {
            /* Out of memory: none starts; the ones made are let go. */
            while (i-- > 0) {
                c->pending--;
                call_unref(&rt->rq, children[i]);
            }
            call_fail(&rt->rq, c, FAIL_NOMEM);
            return;
        }
    }
    c->child = 0;
    for (i = 0; i < n; i++) {
        children[i]->index = i;
        route_start(rt, children[i]);
    }
    if (c->node->type == ROUTE_ALL_ASYNC && !c->finished) {
        const struct request *rq = &c->creq->req;
        const char *line = async_reply(rq);

        /* quiet: HD is what memcached leaves out for ms and md */
        if (line != NULL && rq->quiet)
            call_answer(rt, c, REPLY_META_MN, "");
        else if (line != NULL)
            call_answer(rt, c, rq->meta ? REPLY_META_HD : REPLY_STORED, line);
    }
}

/* Give the call a new key: strip/add (rewrite) or the hook's key. */
static bool
call_set_key(struct route_ctx *rt, struct call *c, const char *add, uint32_t add_len,
             const char *rest, uint32_t rest_len)
{
    /* A meta key sent in base64 goes on in base64: any byte may be in it,
     * and its encoded form is what must fit in KEY_MAX. */
    bool binary = c->creq->req.meta && c->creq->req.base64;
    size_t len = (size_t)add_len + rest_len;
    struct buf *b;
    uint32_t i;

    if ((binary ? BASE64_ENCODED_LEN(len) : len) > KEY_MAX) {
        call_answer(rt, c, REPLY_CLIENT_ERROR, "CLIENT_ERROR key too long after rewrite\r\n");
        return false;
    }
    /* A key the server would misread (empty, spaces, control bytes) must
     * never reach it: a "\r\n" in a key would be a second command. */
    for (i = 0; !binary && i < rest_len && key_byte_ok((unsigned char)rest[i]); i++)
        ;
    if (len == 0 || (!binary && i < rest_len)) {
        call_answer(rt, c, REPLY_SERVER_ERROR, "SERVER_ERROR luagent: bad key after rewrite\r\n");
        return false;
    }
    b = buf_get(&rt->rq.bufs);
    if (b != NULL) {
        buf_append(b, add, add_len);
        buf_append(b, rest, rest_len);
    }
    if (b == NULL || buf_failed(b)) {
        buf_put(&rt->rq.bufs, b);
        call_fail(&rt->rq, c, FAIL_NOMEM);
        return false;
    }
    buf_put(&rt->rq.bufs, c->keybuf);
    c->keybuf = b;
    c->key = b->data;
    c->klen = b->len;
    return true;
}

static bool
node_rewrite(struct route_ctx *rt, struct call *c)
{
    const struct route *r = c->node;
    const char *rest = c->key;
    uint32_t rest_len = c->klen;

    if (r->strip_len > 0 && rest_len >= r->strip_len
        && memcmp(rest, r->strip, r->strip_len) == 0) {
        rest += r->strip_len;
        rest_len -= r->strip_len;
    }
    return call_set_key(rt, c, r->add, r->add_len, rest, rest_len);
}

static const struct route *
node_prefix(const struct route *r, const struct call *c)
{
    int i;

    for (i = 0; i < r->nprefixes; i++) {
        const struct prefix_entry *e = &r->prefixes[i];

        if (e->len <= c->klen && memcmp(c->key, e->prefix, e->len) == 0)
            return e->route;
    }
    return r->default_route;
}

static const struct route *
node_by_op(const struct route *r, const struct call *c)
{
    enum cmd cmd = c->creq->req.cmd;
    const struct route *next = r->by_cmd[cmd];

    if (next == NULL)
        next = r->by_op[proto_cmd_op(cmd)];
    return next ? next : r->default_route;
}

/* Did c's request come through the unix socket (not for the proxy's own)? */
static inline bool
call_is_unix(const struct call *c)
{
    return c->creq->owner != NULL && c->creq->owner->is_unix;
}

/* Longest certificate CN kept (RFC 5280 allows 64; some CAs write more). */
#define OWNER_CN_MAX    255

const char *
route_client_cn(struct creq_owner *o)
{
    char cn[OWNER_CN_MAX + 2];

    if (o == NULL)
        return NULL;
    if (!o->cn_known && o->tls != NULL && tls_conn_peer_cn(o->tls, cn, sizeof(cn)) >= 0)
        o->cn = strdup(cn);     /* out of memory: routed as without one */
    o->cn_known = true;
    return o->cn;
}

/*
 * by_client: a certificate CN entry first, then the listener's name, then
 * the default. The proxy's own requests (no client) take the default.
 */
static const struct route *
node_by_client(const struct route *r, const struct call *c)
{
    struct creq_owner *o = c->creq->owner;

    return config_by_client(r, o ? o->listener : NULL, route_client_cn(o));
}

/*
 * FNV-1a, then a final avalanche (murmur3's, as a seeded pool mixes its
 * seed), so keys that differ only in their last bytes still spread over the
 * whole range: a fraction of keys must mean that fraction of any key set,
 * and balance's replicas must each get their share.
 */
static uint32_t
key_spread_hash(const char *key, uint32_t len)
{
    return hash_seeded(hash_key(HASH_FNV1A_32, key, len), 0);
}

/* Is this key in the shadowed share? The same keys always are. */
static bool
node_shadowed(const struct route *r, const struct call *c)
{
    enum op op = proto_cmd_op(c->creq->req.cmd);

    if (r->shadow_op == OP_READ && op != OP_READ)
        return false;
    if (r->shadow_op == OP_WRITE && op == OP_READ)
        return false;
    return r->fraction == UINT32_MAX || key_spread_hash(c->key, c->klen) <= r->fraction;
}

/*
 * balance: pick a child. random and key are pure choices (the same call goes
 * on, true); least_outstanding starts a child call, so that its end is seen
 * and the child's count of calls in flight goes down again (false).
 */
static bool
node_balance(struct route_ctx *rt, struct call *c)
{
    const struct route *r = c->node;
    struct route_counter *load;
    int64_t outstanding[BALANCE_CHILDREN_MAX];
    bool skipped;
    int i;

    for (i = 0; r->balance_by == BALANCE_LEAST && i < r->nchildren; i++)
        outstanding[i] = c->creq->wcfg->routes[r->children[i]->id]->outstanding;
    i = balance_pick(&rt->rng, c, outstanding, &skipped);

    if (skipped)
        STAT_INC(node_stats(c, r)->skipped_down);
    if (r->balance_by != BALANCE_LEAST) {
        c->node = r->children[i];
        return true;
    }
    /* Counted before the start: the child may end at once (a down server). */
    load = c->creq->wcfg->routes[r->children[i]->id];
    load->outstanding++;
    c->child = i;
    if (!failover_try(rt, c))
        load->outstanding--;
    return false;
}

/* ---- the near cache ---- */

/* Move a store's change of evictions and bytes into the node's counters. */
static void
nearcache_publish(struct route_stats *st, const struct nearcache *nc,
                  struct nearcache_counts before)
{
    struct nearcache_counts now = nearcache_counts(nc);

    STAT_ADD(st->nearcache_evictions, now.evictions - before.evictions);
    STAT_ADD(st->nearcache_bytes, now.bytes - before.bytes);
}

/* Answer a call with a near-cache hit: the entry's bytes by reference, as
 * a server's reply is (the entry may go while its client still writes them). */
static void
nearcache_answer(struct request_cache *rq, struct call *c, const struct nearcache_hit *hit)
{
    result_clear(rq, &c->res);
    c->res.kind = REPLY_VALUE;
    c->res.fail = FAIL_NONE;
    c->res.data = buf_share(hit->data);
    c->res.bytes = hit->bytes;          /* as the server sent it */
    c->res.len = hit->len;
    call_finish(rq, c);
}

/* A hit, or a get that waits for a read out, never reaches a pool: the
 * sketch counts it here (or a key whose gets all wait would cool down and
 * lose its coalescing). */
static void
nearcache_count_read(struct route_ctx *rt, uint64_t hash, const struct call *c)
{
    if (hotkeys_sampled(rt->hotkeys))
        hotkeys_count(rt->hotkeys, hash, c->key, c->klen, 0);
}

/*
 * A get reaches a near cache: answered from this worker's copy when it has
 * a fresh one (false: the call is done), else passed on. A hot key's read
 * (a miss, or the one read that refreshes an entry near its end) goes
 * through a child call, so its value can be kept when it comes back (false
 * too), and leads an entry of the coalesce table, so that a get of the key
 * that finds no copy meanwhile waits for its reply instead of reaching the
 * server as well (false); any other request goes straight on to the child
 * (true).
 */
static bool
node_nearcache(struct route_ctx *rt, struct call *c)
{
    const struct route *r = c->node;
    struct nearcache *nc = c->creq->wcfg->nearcaches ? c->creq->wcfg->nearcaches[r->id] : NULL;
    struct route_stats *st = node_stats(c, r);
    struct nearcache_counts before;
    struct nearcache_hit hit;
    enum nearcache_find found;
    uint64_t hash, now;
    uint32_t stamp;
    bool is_unix;
    struct call *child;

    /* gets (a cas unique), gat/gats (a touch), meta and binary requests
     * (flags the server must answer) and every change go to the server. */
    if (c->creq->req.cmd != CMD_GET || c->creq->req.meta || nc == NULL)
        return true;
    hash = hotkeys_hash(c->key, c->klen);
    now = clock_ms();
    before = nearcache_counts(nc);
    found = nearcache_get(nc, &rt->rq.bufs, hash, c->key, c->klen, now, &hit);
    if (found == NEARCACHE_HIT) {
        STAT_INC(st->nearcache_hits);
        nearcache_count_read(rt, hash, c);
        nearcache_answer(&rt->rq, c, &hit);
        return false;
    }
    nearcache_publish(st, nc, before);      /* a stale entry may have gone */
    /* The stamp as the read leaves: a change after it makes the value stale. */
    stamp = nearcache_stamp(hash);
    if (hotkeys_rate(rt->hotkeys, hash, c->key, c->klen, now) < r->nc_hot_qps) {
        if (found == NEARCACHE_REFRESH)
            nearcache_refresh_over(nc, hash, c->key, c->klen, stamp);
        STAT_INC(st->nearcache_misses);
        return true;            /* not hot (any more): not kept */
    }
    /* One read of the key out per worker: a get with no copy waits for it. */
    is_unix = call_is_unix(c);
    if (coalesce_join_tagged(&rt->coalesce, c, is_unix, stamp) == COALESCE_WAITS) {
        STAT_INC(st->coalesced);
        nearcache_count_read(rt, hash, c);
        return false;
    }
    STAT_INC(st->nearcache_misses);
    child = call_child(rt, c, r->children[0]);
    if (child == NULL) {
        coalesce_leave(&rt->coalesce, c);       /* no waiter yet: it was just made */
        if (found == NEARCACHE_REFRESH)
            nearcache_refresh_over(nc, hash, c->key, c->klen, stamp);
        return true;
    }
    c->child = (int)stamp;
    route_start(rt, child);
    return false;
}

/* A hot key's read is back: keep its value (a hit, for the same key), or
 * end the grace of the copy it was to refresh. */
static void
nearcache_fill(struct route_ctx *rt, struct call *parent, const struct call *child)
{
    const struct route *r = parent->node;
    struct nearcache *nc = parent->creq->wcfg->nearcaches[r->id];
    struct route_stats *st = node_stats(parent, r);
    const struct result *res = &child->res;
    struct nearcache_counts before = nearcache_counts(nc);
    uint64_t hash = hotkeys_hash(parent->key, parent->klen);
    uint32_t stamp = (uint32_t)parent->child;

    if (res->fail != FAIL_NONE || res->kind != REPLY_VALUE || res->data == NULL
        || child->klen != parent->klen || memcmp(child->key, parent->key, parent->klen) != 0
        || request_memory_over(&rt->rq)
        || nearcache_put(nc, &rt->rq.bufs, hash, parent->key, parent->klen, res->bytes,
                         res->len, stamp, clock_ms()) != 0)
        nearcache_refresh_over(nc, hash, parent->key, parent->klen, stamp);
    nearcache_publish(st, nc, before);
}

/*
 * coalesce: a get or gets joins an identical one in flight, or leads and
 * goes on as a child call. False when the call is not coalesced and simply
 * moves on to the node's child (a write closes the key's entries first).
 */
static bool
node_coalesce(struct route_ctx *rt, struct call *c)
{
    const struct route *r = c->node;
    bool is_unix = call_is_unix(c);
    struct call *child;

    if (!coalesce_shares(&c->creq->req)) {
        coalesce_close_key(&rt->coalesce, c->key, c->klen);
        return false;
    }
    switch (coalesce_join(&rt->coalesce, c, is_unix)) {
    case COALESCE_WAITS:
        STAT_INC(node_stats(c, r)->coalesced);
        return true;
    case COALESCE_ALONE:
        return false;
    case COALESCE_LEADS:
        break;
    }
    child = call_child(rt, c, r->children[0]);
    if (child == NULL) {
        coalesce_leave(&rt->coalesce, c);     /* no waiter yet: it was just made */
        call_fail(&rt->rq, c, FAIL_NOMEM);
        return true;
    }
    STAT_INC(node_stats(c, r)->leaders);
    route_start(rt, child);
    return true;
}

/* coalesce: the leader's reply answers its waiters (copies), then the leader. */
static void
coalesce_child_done(struct route_ctx *rt, struct call *parent, struct call *child)
{
    /* Out of the table first: a waiter's completion may route the same key
     * again, and must not join an entry whose reply is already given out. */
    struct call *waiters = coalesce_leave(&rt->coalesce, parent);

    coalesce_answer(&rt->rq, waiters, &child->res);
    result_move(&rt->rq, &parent->res, &child->res);
    call_finish(&rt->rq, parent);
}

/* Ask the policy's Lua hook; false when the call was answered instead. */
static bool
node_hook(struct route_ctx *rt, struct call *c)
{
    struct config *cfg = c->creq->wcfg->config;
    const struct route *r = c->node, *next = NULL;
    struct hook_request req = {
        .key = c->key, .klen = c->klen, .cmd = c->creq->req.cmd,
        .is_unix = call_is_unix(c),
        .listener = c->creq->owner != NULL ? c->creq->owner->listener : NULL,
        .cn = route_client_cn(c->creq->owner),
    };
    const char *newkey, *delim = NULL;
    const char *listener = req.listener != NULL ? req.listener : "";   /* the cache's name */
    uint32_t newklen;
    int op = -1, cached;

    /* The cache holds decisions of the current generation only. */
    bool cacheable = r->hook_cache != HOOK_CACHE_NONE && cfg == rt->current->config;

    if (cacheable) {
        delim = memchr(c->key, r->delim, c->klen);
        if (r->hook_cache == HOOK_CACHE_PREFIX_OP)
            op = (int)proto_cmd_op(req.cmd);
        cached = dcache_get(rt->dcache, r->hook_index, op, delim != NULL, c->key,
                            delim ? (size_t)(delim - c->key) : 0, listener);
        if (cached >= 0) {
            STAT_INC(rt->rq.stats.hook_cache_hits);
            STAT_INC(node_stats(c, r)->hook_cache_hits);
            c->node = cfg->nodes[cached];
            return true;
        }
    }
    STAT_INC(rt->rq.stats.hook_calls);
    STAT_INC(node_stats(c, r)->hook_calls);
    if (cfg->script_ops->hook_call(cfg, rt->vm, r, &req, &next, &newkey, &newklen) < 0) {
        STAT_INC(rt->rq.stats.hook_errors);
        if (cfg->fallback == NULL) {
            call_answer(rt, c, REPLY_SERVER_ERROR, "SERVER_ERROR luagent: route hook failed\r\n");
            return false;
        }
        next = cfg->fallback;
    } else if (newkey != NULL) {
        /* A new key is per request: never cached. */
        if (!call_set_key(rt, c, "", 0, newkey, newklen))
            return false;
    } else if (cacheable && !(req.reads & HOOK_READ_CN)) {
        /* A decision by certificate is per client: not cached. One by
         * listener holds for that listener's clients only. */
        dcache_put(rt->dcache, r->hook_index, op, delim != NULL, c->key,
                   delim ? (size_t)(delim - c->key) : 0,
                   req.reads & HOOK_READ_LISTENER ? listener : NULL, next->id);
    }
    c->node = next;
    return true;
}

/* Take a token; false when the call was refused (answered) instead. */
static bool
node_ratelimit(struct route_ctx *rt, struct call *c)
{
    const struct route *r = c->node;
    struct route_counter *rc = c->creq->wcfg->routes[r->id];
    uint64_t now;
    bool took;

    if (rt->simulated)
        return true;
    now = clock_ns();
    took = r->rate_shared != NULL ? rate_take_shared(&r->rate, r->rate_shared, now)
                                  : rate_take(&r->rate, &rc->rate_full_at, now);
    if (took)
        return true;
    STAT_INC(rc->stats.rate_over);
    if (r->rate_pass)
        return true;            /* a dry run: counted only */
    STAT_INC(rc->stats.rate_limited);
    call_answer(rt, c, REPLY_SERVER_ERROR, "SERVER_ERROR rate limited\r\n");
    return false;
}

void
route_start(struct route_ctx *rt, struct call *c)
{
    struct route_counter *const *counters = c->creq->wcfg->routes;

    for (;;) {
        const struct route *r = c->node;

        STAT_INC(counters[r->id]->stats.requests);
        /* Trees are acyclic, but a hook may return a route above itself. */
        if (++c->hops > ROUTE_HOPS_MAX) {
            log_ratelimited(LOG_WARN, r, "route %s: more than %d steps: a hook returned "
                            "a route that leads back to it?", r->name, ROUTE_HOPS_MAX);
            call_answer(rt, c, REPLY_SERVER_ERROR, "SERVER_ERROR luagent: route loop\r\n");
            return;
        }

        /* Every call ends at a pool: the leaf is tested before the switch,
         * which takes a few more instructions per node as node types grow. */
        if (r->type == ROUTE_POOL) {
            node_pool(rt, c);
            return;
        }
        switch (r->type) {
        case ROUTE_POOL:        /* above */
        case ROUTE_TYPE_COUNT:
            call_fail(&rt->rq, c, FAIL_PROTOCOL);
            return;
        case ROUTE_PREFIX:
            c->node = node_prefix(r, c);
            continue;       /* a pure choice: the same call goes on */
        case ROUTE_BY_OP:
            c->node = node_by_op(r, c);
            continue;
        case ROUTE_BY_CLIENT:
            c->node = node_by_client(r, c);
            continue;
        case ROUTE_REWRITE:
            if (!node_rewrite(rt, c))
                return;
            c->node = r->children[0];
            continue;
        case ROUTE_HOOK:
            if (!node_hook(rt, c))
                return;
            continue;
        case ROUTE_BALANCE:
            if (!node_balance(rt, c))
                return;
            continue;
        case ROUTE_FAILOVER:
            c->child = 0;
            if (!r->failover_writes && !is_read(c)) {
                c->node = r->children[0];
                continue;
            }
            if (hedging(r, c))
                hedge_start(rt, c);
            else
                failover_try(rt, c);
            return;
        case ROUTE_ALL_FASTEST:
            if (hedging(r, c)) {
                hedge_start(rt, c);
                return;
            }
            node_fanout(rt, c, r->nchildren);
            return;
        case ROUTE_ALL_SYNC:
        case ROUTE_ALL_INITIAL:
        case ROUTE_ALL_ASYNC:
            node_fanout(rt, c, r->nchildren);
            return;
        case ROUTE_SHADOW:
            if (!node_shadowed(r, c)) {
                c->node = r->children[0];
                continue;
            }
            node_fanout(rt, c, 2);
            return;
        case ROUTE_WARMUP:
            if (c->creq->req.meta && proto_cmd_op(c->creq->req.cmd) != OP_DELETE) {
                /* The copy into cold is a classic "add" made from a VALUE;
                 * meta requests go to cold alone (md: both, as delete). */
                c->node = r->children[0];
                continue;
            }
            if (is_read(c)) {
                c->child = 0;
                failover_try(rt, c);         /* cold first */
            } else if (proto_cmd_op(c->creq->req.cmd) == OP_DELETE && r->delete_warm) {
                node_fanout(rt, c, 2);       /* both, worst reply wins */
            } else {
                c->node = r->children[0];
                continue;
            }
            return;
        case ROUTE_ERROR:
            call_answer(rt, c, REPLY_SERVER_ERROR, r->error_line);
            return;
        case ROUTE_NEARCACHE:
            if (!node_nearcache(rt, c))
                return;
            c->node = r->children[0];
            continue;
        case ROUTE_COALESCE:
            if (node_coalesce(rt, c))
                return;
            c->node = r->children[0];
            continue;
        case ROUTE_RATELIMIT:
            if (!node_ratelimit(rt, c))
                return;
            c->node = r->children[0];
            continue;
        case ROUTE_TTL:
            /* Nodes above applied theirs first; the backend rewrites the line. */
            c->ttl = ttl_compose(c->ttl, r->ttl_rule);
            c->node = r->children[0];
            continue;
        case ROUTE_PREVIEW:
            /* The candidate's placement of this key is noted; the key goes
             * on to the live root as if the preview were not there. */
            rt->preview->observe(rt->preview, rt, c);
            c->node = r->children[0];
            continue;
        }
    }
}

/* Rank of a result for all_sync's "worst reply wins". */
static int
badness(const struct result *res)
{
    if (res->fail != FAIL_NONE)
        return 3;
    switch (res->kind) {
    case REPLY_SERVER_ERROR:
    case REPLY_ERROR:
        return 3;
    case REPLY_CLIENT_ERROR:
        return 2;
    case REPLY_NOT_STORED:
    case REPLY_EXISTS:
    case REPLY_NOT_FOUND:
    case REPLY_END:
    case REPLY_META_EN:
    case REPLY_META_NF:
    case REPLY_META_NS:
    case REPLY_META_EX:
        return 1;
    default:
        return 0;
    }
}

/*
 * warmup: a hit in warm is copied into cold with `add` (never overwriting
 * what cold got meanwhile), in the background.
 */
static void
warmup_copy(struct route_ctx *rt, const struct call *c, const struct result *hit)
{
    const char *rest = hit->bytes, *eol = memchr(rest, '\n', hit->len);
    unsigned long flags, bytes;
    char line[64 + KEY_MAX];
    struct buf *req;
    int n;

    if (eol == NULL || sscanf(rest, " %lu %lu", &flags, &bytes) != 2)
        return;
    n = snprintf(line, sizeof(line), " %lu %d %lu\r\n", flags, c->node->exptime, bytes);
    req = buf_get(&rt->rq.bufs);
    if (req == NULL)
        return;                 /* out of memory: cold is not warmed this time */
    buf_append(req, "add ", 4);
    buf_append(req, c->key, c->klen);
    buf_append(req, line, (size_t)n);
    buf_append(req, eol + 1, hit->len - (size_t)(eol + 1 - rest));
    if (buf_failed(req)) {
        buf_put(&rt->rq.bufs, req);
        return;
    }
    route_background(rt, c->creq->wcfg, c->node->children[0], req);
}

static void
warmup_child_done(struct route_ctx *rt, struct call *parent, struct call *child)
{
    bool missed = child->res.fail != FAIL_NONE || child->res.kind != REPLY_VALUE;

    if (parent->child == 0 && missed) {
        parent->child = 1;
        failover_try(rt, parent);            /* now warm */
        return;
    }
    if (parent->child == 1 && !missed)
        warmup_copy(rt, parent, &child->res);
    result_move(&rt->rq, &parent->res, &child->res);
    call_finish(&rt->rq, parent);
}

/*
 * A failover or all_fastest node answers with a child's result. A call still
 * waiting to hedge leaves the queue first: the queue's reference keeps it
 * alive through its finish.
 */
static void
node_answer(struct route_ctx *rt, struct call *parent, struct call *child)
{
    bool queued = hedge_queued(parent);

    if (queued)
        hedge_remove(&rt->hedges, parent);
    result_move(&rt->rq, &parent->res, &child->res);
    call_finish(&rt->rq, parent);
    if (queued)
        call_unref(&rt->rq, parent);
}

/* A child call has its result; the parent decides what happens next. */
static void
child_done(struct route_ctx *rt, struct call *parent, struct call *child)
{
    const struct route *r = parent->node;

    parent->pending--;
    if (parent->finished)
        return;         /* answered already: this one ran in the background */
    switch (r->type) {
    case ROUTE_FAILOVER:
        if (failover_wanted(r, child)) {
            if (parent->child + 1 < route_failover_tries(r)) {
                parent->child++;
                failover_try(rt, parent);
                return;
            }
            if (parent->pending > 0) {
                /* A hedged child is still out, and may do better: this
                 * answer stands only if it does not. */
                result_move(&rt->rq, &parent->res, &child->res);
                return;
            }
        }
        node_answer(rt, parent, child);
        return;
    case ROUTE_WARMUP:
        if (proto_cmd_is_retrieval(parent->creq->req.cmd)) {
            warmup_child_done(rt, parent, child);
            return;
        }
        /* deletes: like all_sync */
        /* fall through */
    case ROUTE_ALL_SYNC:
        if (r->reply_first ? child->index == 0
                           : parent->child == 0 || badness(&child->res) > badness(&parent->res))
            result_move(&rt->rq, &parent->res, &child->res);
        parent->child++;
        if (parent->pending == 0)
            call_finish(&rt->rq, parent);
        return;
    case ROUTE_ALL_FASTEST:
        if (result_is_error(&child->res) && hedging(r, parent)
            && parent->child + 1 < r->nchildren) {
            parent->child++;            /* hedged: the next one now, not after the wait */
            failover_try(rt, parent);
            return;
        }
        if (!result_is_error(&child->res) || parent->pending == 0)
            node_answer(rt, parent, child);
        return;
    case ROUTE_NEARCACHE:
        nearcache_fill(rt, parent, child);      /* keeps a copy; routes nothing */
        coalesce_child_done(rt, parent, child);
        return;
    case ROUTE_BALANCE:         /* least_outstanding: its one child */
        parent->creq->wcfg->routes[r->children[parent->child]->id]->outstanding--;
        result_move(&rt->rq, &parent->res, &child->res);
        call_finish(&rt->rq, parent);
        return;
    case ROUTE_COALESCE:
        coalesce_child_done(rt, parent, child);
        return;
    case ROUTE_ALL_INITIAL:
    case ROUTE_ALL_ASYNC:
    case ROUTE_SHADOW:
        if (child->index == 0) {
            result_move(&rt->rq, &parent->res, &child->res);
            call_finish(&rt->rq, parent);
        }
        return;
    default:
        return;
    }
}

/* A background request's call ended: nobody reads the reply. */
static void
background_done(struct request_cache *rq, struct call *c)
{
    route_count_result(c);
}

void
route_background(struct route_ctx *rt, struct wconfig *wcfg, const struct route *node,
                 struct buf *buf)
{
    struct creq *r = creq_alloc(&rt->rq);
    struct proto_error err;
    struct call *call;

    if (r == NULL) {
        buf_put(&rt->rq.bufs, buf);     /* out of memory: the copy is not made */
        return;
    }
    r->buf = buf;
    creq_bind(r, wcfg);
    if (proto_parse(buf->data, buf->len, UINT32_MAX, &r->req, &err) != PROTO_OK
        || r->req.nkeys != 1) {
        creq_release(&rt->rq, r);
        return;
    }
    r->req.noreply = true;          /* nobody reads the reply */
    creq_slots(r, 1);
    creq_key_slot(r);
    call = call_new(&rt->rq, r, node, 0, background_done);
    if (call != NULL)
        route_start(rt, call);
    creq_release(&rt->rq, r);
}

/* ---- route labels and the per-worker counters behind them ---- */

void
route_label(const struct config *cfg, const struct route *r, char *out, size_t len)
{
    int i, n = 1;

    if (r->type == ROUTE_POOL) {
        snprintf(out, len, "%s", r->name);
        return;
    }
    for (i = 0; i < r->id && i < cfg->nnodes; i++)
        if (cfg->nodes[i]->type == r->type)
            n++;
    snprintf(out, len, "%s#%d", r->name, n);
}

/* This worker's counter for (type, label), created when new. */
static struct route_counter *
route_counter_for(struct route_ctx *rt, enum route_type type, const char *label)
{
    struct route_counter *rc, **grown;
    size_t len = strlen(label) + 1;
    int i;

    for (i = 0; i < rt->ncounters; i++) {
        rc = rt->counters[i];
        if (rc->type == type && strcmp(rc->label, label) == 0)
            return rc;
    }
    rc = calloc(1, sizeof(*rc) + len);
    grown = realloc(rt->counters, sizeof(*grown) * (size_t)(rt->ncounters + 1));
    if (rc == NULL || grown == NULL) {
        free(rc);
        return NULL;
    }
    rc->type = type;
    memcpy(rc->label, label, len);
    rt->counters = grown;
    rt->counters[rt->ncounters++] = rc;
    return rc;
}

int
route_counters_bind(struct route_ctx *rt, const struct config *cfg, struct route_counter **slots)
{
    char label[ROUTE_LABEL_MAX];
    int i;

    for (i = 0; i < cfg->nnodes; i++) {
        route_label(cfg, cfg->nodes[i], label, sizeof(label));
        slots[i] = route_counter_for(rt, cfg->nodes[i]->type, label);
        if (slots[i] == NULL) {
            route_counters_release(rt, slots, i);
            return -1;
        }
        slots[i]->users++;
    }
    return 0;
}

void
route_counters_release(struct route_ctx *rt, struct route_counter **slots, int n)
{
    int i, j;

    for (i = 0; i < n; i++) {
        if (slots[i] == NULL || --slots[i]->users > 0)
            continue;
        for (j = 0; j < rt->ncounters; j++) {
            if (rt->counters[j] == slots[i]) {
                rt->counters[j] = rt->counters[--rt->ncounters];
                break;
            }
        }
        free(slots[i]);
        slots[i] = NULL;
    }
}
