/*
 * route.c: the route engine: how a call moves through route nodes.
 *
 * A call holds one reference for itself until it finishes, plus one per live
 * child call; it is freed when the count reaches zero. So a fan-out node can
 * answer early (all_initial) while its other children finish in the
 * background, and nothing a child reports to is ever freed under it.
 */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "buf.h"
#include "client.h"
#include "config.h"
#include "worker.h"

static const char *const fail_lines[FAIL_COUNT] = {
    [FAIL_NONE]        = "SERVER_ERROR luagent: no reply",
    [FAIL_UNAVAILABLE] = "SERVER_ERROR backend unavailable",
    [FAIL_TIMEOUT]     = "SERVER_ERROR backend timeout",
    [FAIL_CLOSED]      = "SERVER_ERROR backend closed connection",
    [FAIL_PROTOCOL]    = "SERVER_ERROR backend protocol error",
};

const char *
fail_reason_line(enum fail_reason why)
{
    return fail_lines[why];
}

struct call *
call_new(struct worker *w, struct creq *creq, const struct route *node,
         uint32_t slot, const char *key, uint32_t klen)
{
    struct call *c = w->free_calls;

    if (c != NULL)
        w->free_calls = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL)
        abort();
    memset(c, 0, sizeof(*c));
    c->creq = creq;
    c->node = node;
    c->slot = slot;
    c->key = key;
    c->klen = klen;
    c->refs = 1;
    creq->refs++;
    return c;
}

static void
result_clear(struct worker *w, struct result *res)
{
    buf_put(&w->bufs, res->data);
    res->data = NULL;
}

/* Move a result; the source is left empty. */
static void
result_move(struct worker *w, struct result *to, struct result *from)
{
    result_clear(w, to);
    *to = *from;
    from->data = NULL;
}

static void
call_unref(struct worker *w, struct call *c)
{
    while (c != NULL && --c->refs == 0) {
        struct call *parent = c->parent;

        result_clear(w, &c->res);
        creq_release(w, c->creq);
        c->next = w->free_calls;
        w->free_calls = c;
        c = parent;
    }
}

static struct call *
call_child(struct worker *w, struct call *parent, const struct route *node)
{
    struct call *c = call_new(w, parent->creq, node, parent->slot,
                              parent->key, parent->klen);

    c->parent = parent;
    parent->refs++;
    parent->pending++;
    return c;
}

void
call_fail(struct worker *w, struct call *c, enum fail_reason why)
{
    result_clear(w, &c->res);
    c->res.fail = why;
    call_finish(w, c);
}

static void
node_pool(struct worker *w, struct call *c)
{
    const struct pool *pool = c->node->pool;
    int id = pool_server_for_key(pool, c->key, c->klen);

    backend_submit(w->backends[id], c, pool->timeout_ms);
}

static void
node_error(struct worker *w, struct call *c)
{
    struct buf *b = buf_get(&w->bufs);

    buf_append_str(b, c->node->error_line);
    result_clear(w, &c->res);
    c->res.kind = REPLY_SERVER_ERROR;
    c->res.fail = FAIL_NONE;
    c->res.data = b;
    call_finish(w, c);
}

static bool
is_read(const struct call *c)
{
    return proto_cmd_op(c->creq->req.cmd) == OP_READ;
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
    if (res->kind == REPLY_END && r->on_miss && is_read(child))
        return true;
    return false;
}

static void
failover_try(struct worker *w, struct call *c)
{
    struct call *child = call_child(w, c, c->node->children[c->child]);

    route_start(w, child);
}

static void
node_fanout(struct worker *w, struct call *c)
{
    int i, n = c->node->nchildren;

    /* Children start only after all exist, so an answer that comes back at
     * once cannot finish the parent before its siblings are counted. */
    struct call *children[n];

    for (i = 0; i < n; i++)
        children[i] = call_child(w, c, c->node->children[i]);
    c->child = 0;
    for (i = 0; i < n; i++) {
        children[i]->index = i;
        route_start(w, children[i]);
    }
}

void
route_start(struct worker *w, struct call *c)
{
    for (;;) {
        const struct route *r = c->node;

        switch (r->type) {
        case ROUTE_POOL:
            node_pool(w, c);
            return;
        case ROUTE_BY_OP: {
            const struct route *next = r->by_op[proto_cmd_op(c->creq->req.cmd)];

            c->node = next ? next : r->by_op_default;
            continue;       /* a pure choice: the same call goes on */
        }
        case ROUTE_FAILOVER:
            c->child = 0;
            if (!r->failover_writes && !is_read(c)) {
                c->node = r->children[0];
                continue;
            }
            failover_try(w, c);
            return;
        case ROUTE_ALL_INITIAL:
        case ROUTE_ALL_SYNC:
            node_fanout(w, c);
            return;
        case ROUTE_ERROR:
            node_error(w, c);
            return;
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
        return 1;
    default:
        return 0;
    }
}

/* A child call has its result; the parent decides what happens next. */
static void
child_done(struct worker *w, struct call *parent, struct call *child)
{
    const struct route *r = parent->node;

    parent->pending--;
    if (parent->finished)
        return;         /* answered already: this one ran in the background */
    switch (r->type) {
    case ROUTE_FAILOVER:
        if (failover_wanted(r, child) && parent->child + 1 < r->nchildren) {
            parent->child++;
            failover_try(w, parent);
            return;
        }
        result_move(w, &parent->res, &child->res);
        call_finish(w, parent);
        return;
    case ROUTE_ALL_INITIAL:
        if (child->index == 0) {
            result_move(w, &parent->res, &child->res);
            call_finish(w, parent);
        }
        return;
    case ROUTE_ALL_SYNC:
        if (parent->child == 0 || badness(&child->res) > badness(&parent->res))
            result_move(w, &parent->res, &child->res);
        parent->child++;
        if (parent->pending == 0)
            call_finish(w, parent);
        return;
    default:
        return;
    }
}

void
call_finish(struct worker *w, struct call *c)
{
    c->finished = true;
    if (c->parent != NULL)
        child_done(w, c->parent, c);
    else
        creq_slot_done(w, c->creq, c->slot, &c->res);
    call_unref(w, c);
}

struct route *
route_new(enum route_type type, const char *name)
{
    struct route *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->type = type;
    r->name = strdup(name);
    if (r->name == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void
route_free(struct route *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->children);
    free(r->error_line);
    free(r);
}
