/*
 * route.h: route nodes and the engine that runs requests through them.
 *
 * A policy compiles into a tree of nodes. A request key travels the tree as a
 * struct call: each node type has a start step (what to do with a call that
 * reaches it) and a child step (what to do when a child call it made has a
 * result). Leaves are pools, which hand the call to a backend connection, and
 * error nodes, which answer at once. Nodes never block and never call Lua
 * unless the policy has a hook.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "proto.h"
#include "reply.h"

struct buf;
struct creq;
struct pool;
struct worker;

#define ROUTE_HOPS_MAX 64      /* steps one key may take through the tree */

/* What a hook (the policy's Lua, through config->script_ops) sees of a request. */
struct hook_request {
    const char *key;
    uint32_t    klen;
    enum cmd    cmd;
    bool        is_unix;
};

/* Why the proxy itself could not get a reply from a server. */
enum fail_reason {
    FAIL_NONE,
    FAIL_UNAVAILABLE,   /* cannot connect, or marked down */
    FAIL_TIMEOUT,       /* no reply within the pool's timeout */
    FAIL_CLOSED,        /* connection closed or reset before the reply */
    FAIL_PROTOCOL,      /* the server sent something that is not a reply */
    FAIL_NOMEM,         /* luagent could not get the memory to go on */
    FAIL_COUNT
};

/*
 * What a call got. kind is the server's reply kind: for retrievals
 * REPLY_VALUE (hit: data holds " <flags> <bytes> [<cas>]\r\n<data>\r\n") or
 * REPLY_END (miss); otherwise data holds the whole reply line. When fail is
 * set, kind and data are meaningless.
 */
struct result {
    enum reply_kind  kind;
    enum fail_reason fail;
    struct buf      *data;
    bool             key_base64;    /* "ME <key>": the server wrote the key in
                                     * base64 (an item stored with "b") */
};

struct call {
    struct call         *next;          /* backend FIFO / free list */
    struct call         *parent;        /* fan-out or failover node's call */
    struct creq         *creq;          /* the client request it serves */
    const struct route  *node;
    const char          *key;           /* key as the server sees it */
    struct buf          *keybuf;        /* owns key after a rewrite, or NULL */
    uint32_t             klen;
    uint32_t             slot;          /* key index in the client request */
    int                  refs;          /* 1 until finished + live children */
    int                  child;         /* failover: child being tried; all_sync: results seen */
    int                  index;         /* position among the parent's children */
    int                  hops;          /* route steps taken (loop guard) */
    int                  pending;       /* children without a result yet */
    uint64_t             deadline_ms;   /* backend: when a reply is overdue */
    uint64_t             sent_ns;       /* backend: when it was flushed (latency) */
    bool                 batch_end;     /* backend: last key of a get batch */
    bool                 in_batch;      /* backend: part of a multi-key get */
    bool                 finished;
    struct result        res;
};

/* Start a call at its node; the result arrives through call_finish. */
void route_start(struct worker *w, struct call *c);

/* A call has its result: hand it to its parent or its client request. */
void call_finish(struct worker *w, struct call *c);

/* Fail a call with a reason and finish it. */
void call_fail(struct worker *w, struct call *c, enum fail_reason why);

/* A new call for one key of a client request, or NULL out of memory. */
struct call *call_new(struct worker *w, struct creq *creq, const struct route *node,
                      uint32_t slot, const char *key, uint32_t klen);

/* Free the spare calls none took since the last trim; returns the bytes. */
uint64_t call_trim_free(struct worker *w);

/* The client's text for a failure: "SERVER_ERROR backend timeout" etc. */
const char *fail_reason_line(enum fail_reason why);

/*
 * A worker's counters for one route label, shared by the generations naming
 * it: route counters belong to the worker, not to a generation, so a reload
 * that keeps a label keeps its counts (as backends, keyed by host:port, keep
 * theirs).
 */
struct route_counter {
    struct route_stats  stats;
    enum route_type     type;
    int                 users;      /* generations (wconfigs) pointing at it */
    char                label[];    /* see route_label */
};

#define ROUTE_LABEL_MAX 256

/*
 * A route node's name in stats and metrics: a pool node is its pool's name;
 * any other node is "<type>#<n>", n counting the nodes of that type from 1 in
 * the order the policy built them (so the same script gives the same labels).
 */
void route_label(const struct config *cfg, const struct route *r,
                       char *out, size_t len);

/*
 * Fill slots[id] for every node of cfg with this worker's counter for its
 * label, creating missing ones. Returns 0, or -1 out of memory (then nothing
 * is held). Call under the worker swap lock when other threads may read.
 */
int route_counters_bind(struct worker *w, const struct config *cfg,
                      struct route_counter **slots);

/* A generation is gone: release its slots (freeing unnamed counters). */
void route_counters_release(struct worker *w, struct route_counter **slots, int n);

#endif
