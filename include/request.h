/*
 * request.h: a request's life, from parse to the write of its reply.
 *
 * A client request (struct creq) has one slot per key. Each key travels the
 * route tree as a struct call; a node that sends it several ways (failover,
 * all_*, shadow, warmup) makes child calls, and a pool hands a call to a
 * server connection. What a call gets back is a struct result: the server's
 * reply, or why luagent could not get one (enum fail_reason).
 *
 * A call ends through the completion callback (call_done_fn) its creator set:
 * a client's slot (client.c), a parent route node or a background request
 * (route.c). So a server connection finishes calls without knowing who
 * waits for them, and the route engine answers to no client.
 *
 * Lifetimes, by reference counts:
 * - A call holds one reference for itself until it finishes, plus one per
 *   live child. At zero it is freed and drops its reference on its parent:
 *   a fan-out node can answer early while its other children finish in the
 *   background, and nothing a child reports to is freed under it.
 * - A creq holds one reference until it is written (or its client has gone),
 *   plus one per live call. At zero it is freed, and the generation it was
 *   routed by has one request fewer in flight.
 * - A result holds its bytes by a reference on the buffer they are in:
 *   usually the read buffer of the server connection they came from, shared
 *   (buf_share) rather than copied, until the result is moved on or cleared.
 *   A client's output takes its own reference for a large value.
 * - A large storage command's data block is held the same way, by a
 *   reference on the client's read buffer (creq_share_data) until the
 *   request is freed; each server connection it is written to takes its
 *   own reference until the bytes are written.
 *
 * Calls and creqs come from free lists kept per thread (struct
 * request_cache), which also carries the thread's buffers, its counters and
 * the memory bounds that requests are held to.
 */
#ifndef REQUEST_H
#define REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binreply.h"
#include "buf.h"
#include "counters.h"
#include "proto.h"
#include "reply.h"

struct backend;
struct call;
struct tls_conn;
struct config;
struct nearcache;
struct route;
struct route_counter;
struct read_pause;

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
 * REPLY_VALUE (hit: bytes are " <flags> <bytes> [<cas>]\r\n<data>\r\n") or
 * REPLY_END (miss); otherwise bytes are the whole reply line. bytes/len lie
 * inside data, which the result holds a reference on (see buf_share). When
 * fail is set, kind and the bytes are meaningless. Only request.c and
 * respond.c look at the bytes; everyone else moves results whole
 * (result_move) or asks result_len.
 */
struct result {
    enum reply_kind  kind;
    enum fail_reason fail;
    struct buf      *data;          /* holds bytes, or NULL (no bytes) */
    const char      *bytes;
    uint32_t         len;
    bool             key_base64;    /* "ME <key>": the server wrote the key in
                                     * base64 (an item stored with "b") */
};

/*
 * A worker's view of one config generation. Requests keep the generation
 * they started on; the worker drops an old one at the end of the loop pass
 * in which its last request was freed (inflight 0).
 */
struct wconfig {
    struct config      *config;
    const struct route *root;           /* where requests start: config->root, or the
                                         * worker's preview node in front of it */
    struct backend    **backends;       /* by this config's server id */
    struct route_counter **routes;      /* by this config's node id */
    struct nearcache  **nearcaches;     /* by node id: this worker's near cache
                                         * stores, or NULL when the config has none */
    uint64_t            inflight;       /* requests routed by it, not yet freed */
    bool                reqlog;         /* config->reqlog, one load nearer the client */
    struct wconfig     *next;           /* older generations still draining */
};

/*
 * The client connection a request answers to, as far as requests need to
 * know it: the bytes its queued requests hold (their held, summed) and how
 * it came in. client.c's struct client begins with one.
 */
struct creq_owner {
    uint64_t            held;
    uint64_t            unsent;         /* its output not yet written (as of its last flush) */
    struct read_pause  *waiting;        /* server connections paused until it reads */
    void              (*stalled)(struct creq_owner *o); /* it has not read for a
                                         * server's timeout while one waits: close it */
    bool                is_unix;        /* through the unix socket */
    const char         *listener;       /* its listener's name ("tcp", "unix", ...) */
    struct tls_conn    *tls;            /* its TLS state, or NULL: plain */
    char               *cn;             /* route_client_cn's answer, once asked */
    bool                cn_known;       /* ...it was asked */
};

/*
 * A server connection that stopped reading because a client's unwritten
 * output passed client_max_memory (it is the client not reading, so the
 * server's bytes stay in the kernel rather than in luagent). resume is
 * called, from the client's side, once that output has drained to half the
 * bound or the client has gone; it must not run any request (it schedules).
 */
struct read_pause {
    struct read_pause  *next;
    struct creq_owner  *owner;          /* NULL: not paused */
    void              (*resume)(struct read_pause *p);
};

/* One key's reply slot in a client request. */
struct slot {
    const char    *key;         /* the client's key (in creq->req) */
    uint32_t       klen;
    bool           done;
    uint32_t       refetch_len; /* not 0: its value (this long) came while its
                                 * client held its bound, and was let go; the
                                 * key is asked again when its turn comes */
    struct result  res;
};

/*
 * One client request, from parse to the write of its reply. creq_init clears
 * it in pieces (see there): a field added between nslots and data_at is
 * cleared with them; one added elsewhere needs a line there.
 */
struct creq {
    struct creq     *next;      /* client FIFO / free list */
    struct creq_owner *owner;   /* its client; NULL once the client has gone,
                                 * and for the proxy's own requests */
    struct wconfig  *wcfg;      /* the config generation it is routed by */
    struct request   req;       /* parsed line; offsets into buf */
    struct buf      *buf;       /* request line (+ data block), owned */
    const char      *local;     /* reply decided locally (error), or NULL */
    struct slot     *slots;     /* nslots entries */
    struct slot      one;       /* storage for a single slot */
    struct slot     *spare;     /* multi-key slot storage, kept across reuse */
    uint32_t         spare_cap;
    uint32_t         nslots;
    uint32_t         ndone;
    uint32_t         nwritten;  /* multi-get: slots already written (streamed) */
    uint32_t         nrefetch;  /* slots whose value was let go (refetch_len) */
    int              refs;      /* 1 until written or orphaned + live calls */
    uint64_t         held;      /* bytes counted against its client (copy, replies) */
    bool             stats;     /* answer with the stats, rendered when written */
    uint8_t          stats_group; /* which stats (enum stats_group) */
    bool             oom;       /* answered SERVER_ERROR out of memory */
    bool             close_after; /* close the connection after this reply */
    bool             binary;    /* binary protocol: bin says how to reply */
    bool             log_sampled; /* request log: picked by settings.log_sample */
    struct bin_ctx   bin;
    uint64_t         log_start_ns; /* request log: when it was parsed; 0: not timed */
    struct buf      *data;      /* the data block by reference (creq_share_data):
                                 * the client's read buffer, or NULL (set by
                                 * creq_init): the block follows the line in buf */
    const char      *data_at;   /* ...its first byte, inside data */
    bool             data_crlf; /* ...followed there by its "\r\n" (text) */
};

struct request_cache;

/* A call has its result: its creator takes it from here (see call_finish). */
typedef void call_done_fn(struct request_cache *rq, struct call *c);

/*
 * call_new clears it in pieces (see there): a field added before creq, or
 * from child on, is cleared with them; one added between needs a line there.
 */
struct call {
    struct call         *next;          /* backend FIFO / hedge queue / free list */
    struct call         *parent;        /* fan-out or failover node's call */
    struct creq         *creq;          /* the client request it serves */
    call_done_fn        *done;          /* set by its creator */
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
    int32_t              ttl;           /* exptime rule for the server (ttl.h), 0: none */
    bool                 batch_end;     /* backend: last key of a get batch */
    bool                 in_batch;      /* backend: part of a multi-key get */
    bool                 finished;
    uint8_t              nc_bump;       /* near cache: what its reply makes stale
                                         * (enum in route.h), 0: nothing */
    /*
     * A call waits at a server connection (a pool's call) or on its thread's
     * hedge queue (a hedging node's own call, never submitted), never both:
     * the two share their fields, and the queue links through `next`.
     */
    union {
        struct {
            uint64_t     deadline_ms;   /* backend: when a reply is overdue */
            uint64_t     sent_ns;       /* backend: when it was flushed (latency) */
        };
        struct {
            uint64_t     hedge_at_ms;   /* hedge queue: when its wait ends; 0: not on it */
            struct call *hedge_prev;    /* hedge queue: the call before it */
        };
    };
    struct result        res;
};

/*
 * What requests need of the thread they run on. A worker keeps one (inside
 * its route and client state); only its thread touches it, except bufs.used,
 * which the others read for the total memory bound.
 */
struct request_cache {
    struct buf_cache    bufs;           /* every buffer a request moves */
    struct stats        stats;          /* this thread's share of the counters */
    uint64_t            max_memory;     /* all threads' buffers may hold this... */
    uint64_t            client_max_memory; /* ...and one client's requests this */
    int                 nthreads;       /* threads sharing max_memory */
    bool              (*memory_over_all)(uint64_t limit); /* all threads' buffers past limit? */
    /* Free lists; low_* is the fewest held since the last trim (never used). */
    struct call        *free_calls;
    unsigned            nfree_calls, low_free_calls;
    struct creq        *free_creqs;
    unsigned            nfree_creqs, low_free_creqs;
};

/* ---- results ---- */

/* Let go of a result's bytes. */
static inline void
result_clear(struct request_cache *rq, struct result *res)
{
    buf_put(&rq->bufs, res->data);
    res->data = NULL;
    res->bytes = NULL;
    res->len = 0;
}

/* Move a result; the source is left empty. */
static inline void
result_move(struct request_cache *rq, struct result *to, struct result *from)
{
    result_clear(rq, to);
    *to = *from;
    from->data = NULL;
    from->bytes = NULL;
    from->len = 0;
}

/* The result's bytes are all of b's (which it now owns). */
static inline void
result_set_buf(struct result *res, struct buf *b)
{
    res->data = b;
    res->bytes = b->data;
    res->len = b->len;
}

/* Bytes a result holds. */
static inline uint32_t
result_len(const struct result *res)
{
    return res->len;
}

/* An error: luagent's own, or ERROR / CLIENT_ERROR / SERVER_ERROR from a server. */
static inline bool
result_is_error(const struct result *res)
{
    return res->fail != FAIL_NONE || res->kind == REPLY_ERROR
        || res->kind == REPLY_CLIENT_ERROR || res->kind == REPLY_SERVER_ERROR;
}

/* ---- calls ---- */

/* call_new's fields. Cleared in two pieces around the fields set here: a
 * clear of the whole struct is a `rep stos` of 18 words, these are a few
 * stores. */
static inline void
call_init(struct call *c, struct creq *creq, const struct route *node, uint32_t slot,
          call_done_fn *done)
{
    memset(c, 0, offsetof(struct call, creq));
    c->keybuf = NULL;
    memset(&c->child, 0, sizeof(*c) - offsetof(struct call, child));
    c->creq = creq;
    c->done = done;
    c->node = node;
    c->slot = slot;
    c->key = creq->slots[slot].key;
    c->klen = creq->slots[slot].klen;
    c->refs = 1;
    creq->refs++;
}

/* call_new when the free list is empty: a new one from malloc. */
struct call *call_new_alloc(struct request_cache *rq, struct creq *creq,
                            const struct route *node, uint32_t slot, call_done_fn *done);

/*
 * A new call for the key of slot `slot` of a client request, starting at
 * node and ending through done; NULL out of memory. It holds a reference on
 * creq. Inline: once per key, where the common case takes one from the free
 * list. (Six arguments at most: a seventh would go on the stack.)
 */
static inline struct call *
call_new(struct request_cache *rq, struct creq *creq, const struct route *node,
         uint32_t slot, call_done_fn *done)
{
    struct call *c = rq->free_calls;

    if (__builtin_expect(c == NULL, 0))
        return call_new_alloc(rq, creq, node, slot, done);
    rq->free_calls = c->next;
    if (--rq->nfree_calls < rq->low_free_calls)
        rq->low_free_calls = rq->nfree_calls;
    call_init(c, creq, node, slot, done);
    return c;
}

/*
 * A call has its result: its creator's callback takes it (or moves it on),
 * then the call drops its own reference.
 */
void call_finish(struct request_cache *rq, struct call *c);

/* Fail a call with a reason and finish it. */
void call_fail(struct request_cache *rq, struct call *c, enum fail_reason why);

/* Drop a reference to a call (and up its parents, as they reach zero). */
void call_unref(struct request_cache *rq, struct call *c);

/* ---- client requests ---- */

/*
 * A request's fields, cleared in pieces of at most 80 bytes, which the
 * compiler writes as a few stores (a longer clear is a `rep stos`, a word
 * at a time): all but the slot inside (creq_slots clears the slots it hands
 * out) and the kept slot storage.
 */
static inline void
creq_init(struct creq *r)
{
    memset(r, 0, offsetof(struct creq, buf));
    r->buf = NULL;
    r->local = NULL;
    r->slots = NULL;
    memset(&r->nslots, 0, offsetof(struct creq, data_at) - offsetof(struct creq, nslots));
    r->refs = 1;
}

/* creq_alloc when the free list is empty: a new one from malloc. */
struct creq *creq_alloc_new(struct request_cache *rq);

/*
 * A cleared request (one reference) from the free list, or NULL out of
 * memory. Inline: once per request, where the common case takes one from
 * the free list (which keeps its multi-key slot storage).
 */
static inline struct creq *
creq_alloc(struct request_cache *rq)
{
    struct creq *r = rq->free_creqs;

    if (__builtin_expect(r == NULL, 0))
        return creq_alloc_new(rq);
    rq->free_creqs = r->next;
    if (--rq->nfree_creqs < rq->low_free_creqs)
        rq->low_free_creqs = rq->nfree_creqs;
    creq_init(r);
    return r;
}

/* The request is routed by wc (and keeps it alive until freed). */
void creq_bind(struct creq *r, struct wconfig *wc);

/* creq_slots past one slot: kept storage, grown if need be. */
int creq_slots_many(struct creq *r, uint32_t n);

/*
 * Room for n cleared slots (0 or 1: the one inside); 0, or -1 out of
 * memory. Inline: the one-key case is a few stores on the request path.
 */
static inline int
creq_slots(struct creq *r, uint32_t n)
{
    if (n > 1)
        return creq_slots_many(r, n);
    r->nslots = n;      /* 0: flush_all through a policy with no server */
    memset(&r->one, 0, sizeof(r->one));
    r->slots = &r->one;
    return 0;
}

/*
 * Data blocks at least this long go to servers by reference, not copied: as
 * for the values of gets (RESPOND_SHARE_MIN), a smaller copy costs less than
 * one more piece to write.
 */
#define CREQ_SHARE_MIN      1024
#define CREQ_SHARE_CAP_MAX  (32 * 1024)    /* a block in a buffer up to this size is
                                            * shared; past it, only one that is a
                                            * quarter of the buffer or more */

/*
 * Hold r's data block (r->req.data_len bytes at p, inside the client's read
 * buffer in, then "\r\n" when crlf) by a reference on in, when it is large
 * enough and would not pin a much larger buffer. False: the caller copies it.
 * While shared, in's bytes must not change (see buf_share): the client reads
 * into another buffer.
 */
static inline bool
creq_share_data(struct creq *r, struct buf *in, const char *p, bool crlf)
{
    uint32_t n = r->req.data_len;

    if (n < CREQ_SHARE_MIN || (in->cap > CREQ_SHARE_CAP_MAX && n < in->cap / 4))
        return false;
    r->data = buf_share(in);
    r->data_at = p;
    r->data_crlf = crlf;
    return true;
}

/* creq_key_slot for a meta key in base64: routed by its decoded bytes. */
void creq_key_slot_decoded(struct creq *r);

/* Fill slot 0 with the key of a single-key request (the first key of a
 * multi-get). */
static inline void
creq_key_slot(struct creq *r)
{
    if (__builtin_expect(r->req.meta && r->req.base64, 0)) {
        creq_key_slot_decoded(r);
        return;
    }
    r->slots[0].key = r->buf->data + r->req.key.off;
    r->slots[0].klen = r->req.key.len;
}

/*
 * May a value of n bytes be held for this request at all? Not one larger
 * than its client's bound (client_max_memory), nor any while all buffers
 * hold more than max_memory. When not, the request is answered SERVER_ERROR
 * out of memory at once and the value must be let go. (Values that only
 * pile up past the bound, waiting for an earlier key, are let go and asked
 * again instead: see client.c. Many requests of one client are bounded by
 * its reads pausing.)
 */
bool creq_may_hold(struct request_cache *rq, struct creq *r, uint64_t n);

/* creq_release's last reference: its bytes go back and it is freed. */
void creq_free(struct request_cache *rq, struct creq *r);

/* Drop a reference to a request; frees it at zero. */
static inline void
creq_release(struct request_cache *rq, struct creq *r)
{
    if (--r->refs == 0)
        creq_free(rq, r);
}

/* ---- clients that do not read ---- */

/* Has o so much output unwritten that a server connection should stop
 * reading for it? */
static inline bool
creq_owner_over(const struct request_cache *rq, const struct creq_owner *o)
{
    return o->unsent > rq->client_max_memory;
}

/* Pause p until o reads (p->resume is called then). */
void read_pause_start(struct read_pause *p, struct creq_owner *o);

/* p stops waiting (its connection closed): unlinked, resume not called. */
void read_pause_cancel(struct read_pause *p);

/* o's output drained, or o has gone: resume every connection paused for it. */
void creq_owner_resume(struct creq_owner *o);

/* ---- the thread's cache ---- */

/*
 * Do the buffers of all threads hold more than max_memory? Inline and cheap
 * while this thread holds less than its share; only then are the others'
 * counts read.
 */
static inline bool
request_memory_over(const struct request_cache *rq)
{
    return rq->bufs.used * (uint64_t)rq->nthreads > rq->max_memory
        && rq->memory_over_all(rq->max_memory);
}

/* Free what the free lists did not lend out since the last trim; returns the bytes. */
uint64_t request_cache_trim(struct request_cache *rq);

/* Bytes the free lists keep now (as of the last trim, for buffers). */
uint64_t request_cache_bytes(const struct request_cache *rq);

#endif
