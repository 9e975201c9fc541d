/*
 * request.c: the lifetimes of client requests and calls (see request.h):
 * free lists, reference counts, the slots of a request, and the memory
 * bounds a request's values are held to.
 *
 * Invariant: a call holds a reference on its creq from call_new until it is
 * freed, so a creq outlives every call made for it, whoever finishes last.
 */
#include "request.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "luagent.h"

#define SLOTS_KEPT_MAX      128             /* multi-get slots a free request keeps */

/* ---- calls ---- */

struct call *
call_new_alloc(struct request_cache *rq, struct creq *creq, const struct route *node,
               uint32_t slot, call_done_fn *done)
{
    struct call *c = malloc(sizeof(*c));

    if (c != NULL)
        call_init(c, creq, node, slot, done);
    return c;
}

void
call_unref(struct request_cache *rq, struct call *c)
{
    while (c != NULL && --c->refs == 0) {
        struct call *parent = c->parent;

        result_clear(rq, &c->res);
        buf_put(&rq->bufs, c->keybuf);
        creq_release(rq, c->creq);
        c->next = rq->free_calls;
        rq->free_calls = c;
        rq->nfree_calls++;
        c = parent;
    }
}

void
call_finish(struct request_cache *rq, struct call *c)
{
    c->finished = true;
    c->done(rq, c);
    call_unref(rq, c);
}

void
call_fail(struct request_cache *rq, struct call *c, enum fail_reason why)
{
    result_clear(rq, &c->res);
    c->res.fail = why;
    call_finish(rq, c);
}

static uint64_t
call_trim_free(struct request_cache *rq)
{
    uint64_t bytes = 0;
    unsigned n = rq->low_free_calls;

    while (n-- > 0 && rq->free_calls != NULL) {
        struct call *c = rq->free_calls;

        rq->free_calls = c->next;
        rq->nfree_calls--;
        bytes += sizeof(*c);
        free(c);
    }
    rq->low_free_calls = rq->nfree_calls;
    return bytes;
}

/* ---- client requests ---- */

/* creq_alloc when the free list is empty: a new one from malloc. */
struct creq *
creq_alloc_new(struct request_cache *rq)
{
    struct creq *r = malloc(sizeof(*r));

    if (r == NULL)
        return NULL;
    r->spare = NULL;
    r->spare_cap = 0;
    creq_init(r);
    return r;
}

/* Every request counts against the generation it is routed by. */
void
creq_bind(struct creq *r, struct wconfig *wc)
{
    r->wcfg = wc;
    wc->inflight++;
}

void
creq_free(struct request_cache *rq, struct creq *r)
{
    uint32_t i;

    for (i = 0; i < r->nslots; i++)
        buf_put(&rq->bufs, r->slots[i].res.data);
    if (r->slots != &r->one && r->slots != r->spare)
        free(r->slots);
    buf_put(&rq->bufs, r->buf);
    buf_put(&rq->bufs, r->data);
    if (r->wcfg != NULL)
        r->wcfg->inflight--;    /* the worker drops a drained generation */
    r->next = rq->free_creqs;
    rq->free_creqs = r;
    rq->nfree_creqs++;
}

/* Let go of the free requests no request took since the last trim. */
static uint64_t
creq_trim_free(struct request_cache *rq)
{
    uint64_t bytes = 0;
    unsigned n = rq->low_free_creqs;

    while (n-- > 0 && rq->free_creqs != NULL) {
        struct creq *r = rq->free_creqs;

        rq->free_creqs = r->next;
        rq->nfree_creqs--;
        bytes += sizeof(*r) + (uint64_t)r->spare_cap * sizeof(struct slot);
        free(r->spare);
        free(r);
    }
    rq->low_free_creqs = rq->nfree_creqs;
    return bytes;
}

int
creq_slots_many(struct creq *r, uint32_t n)
{
    r->nslots = n;
    if (n > r->spare_cap && n <= SLOTS_KEPT_MAX) {
        struct slot *grown = realloc(r->spare, n * sizeof(*grown));

        if (grown != NULL) {
            r->spare = grown;
            r->spare_cap = n;
        }
    }
    if (n <= r->spare_cap) {
        r->slots = r->spare;
        memset(r->slots, 0, n * sizeof(*r->slots));
        return 0;
    }
    r->slots = calloc(n, sizeof(*r->slots));    /* a rare wide multi-get */
    return r->slots ? 0 : -1;
}

/*
 * The key a single-key request is routed by, when the client sent it in
 * base64 ("b"): its decoded bytes, so it lands where the same key sent in
 * plain text does, and hashing, prefixes and hooks see the real key. The
 * decoded key is kept after the request bytes in the creq's own buffer.
 */
void
creq_key_slot_decoded(struct creq *r)
{
    struct slot *s = &r->slots[0];
    char key[KEY_MAX];
    uint32_t off = r->buf->len, n = proto_meta_key(r->buf->data, &r->req, key);

    buf_append(r->buf, key, n);
    s->key = r->buf->data + off;
    s->klen = n;
}

/*
 * Answer r SERVER_ERROR out of memory; the replies it holds go at once, and
 * the keys whose values were let go to be asked again are not asked: the
 * request is complete once the calls still out are back.
 */
static void
creq_out_of_memory(struct request_cache *rq, struct creq *r)
{
    uint64_t freed = 0;
    uint32_t i;

    r->oom = true;
    STAT_INC(rq->stats.out_of_memory);
    for (i = 0; i < r->nslots; i++) {
        struct slot *s = &r->slots[i];

        freed += result_len(&s->res);
        result_clear(rq, &s->res);
        if (s->refetch_len != 0) {
            s->refetch_len = 0;
            s->done = true;
            r->ndone++;
        }
    }
    r->nrefetch = 0;
    r->held -= freed;
    if (r->owner != NULL)
        r->owner->held -= freed;
}

/* creq_may_hold past a bound's first look: which bound, if any, says no. */
static bool __attribute__((noinline))
creq_may_hold_near(struct request_cache *rq, struct creq *r, uint64_t n)
{
    if (n > rq->client_max_memory) {
        log_ratelimited(LOG_WARN, &rq->stats.out_of_memory, "client: request answered "
                        "SERVER_ERROR out of memory: a value of %llu bytes is larger than "
                        "client_max_memory (%llu bytes)", (unsigned long long)n,
                        (unsigned long long)rq->client_max_memory);
        creq_out_of_memory(rq, r);
        return false;
    }
    if (request_memory_over(rq)) {
        log_ratelimited(LOG_WARN, &rq->stats.out_of_memory, "client: request answered "
                        "SERVER_ERROR out of memory: buffers hold more than %llu bytes "
                        "(max_memory)", (unsigned long long)rq->max_memory);
        creq_out_of_memory(rq, r);
        return false;
    }
    return true;
}

bool
creq_may_hold(struct request_cache *rq, struct creq *r, uint64_t n)
{
    if (r->owner == NULL)
        return true;        /* a route node may still use it (warm-up copy) */
    if (r->oom)
        return false;
    /* The common case, far from both bounds, asks no other thread. */
    if (n > rq->client_max_memory
        || rq->bufs.used * (uint64_t)rq->nthreads > rq->max_memory)
        return creq_may_hold_near(rq, r, n);
    return true;
}

/* ---- clients that do not read ---- */

void
read_pause_start(struct read_pause *p, struct creq_owner *o)
{
    p->owner = o;
    p->next = o->waiting;
    o->waiting = p;
}

void
read_pause_cancel(struct read_pause *p)
{
    struct read_pause **at;

    if (p->owner == NULL)
        return;
    for (at = &p->owner->waiting; *at != NULL; at = &(*at)->next) {
        if (*at == p) {
            *at = p->next;
            break;
        }
    }
    p->owner = NULL;
    p->next = NULL;
}

void
creq_owner_resume(struct creq_owner *o)
{
    struct read_pause *p;

    while ((p = o->waiting) != NULL) {
        o->waiting = p->next;
        p->owner = NULL;
        p->next = NULL;
        p->resume(p);
    }
}

/* ---- the thread's cache ---- */

uint64_t
request_cache_trim(struct request_cache *rq)
{
    return buf_cache_trim(&rq->bufs) + call_trim_free(rq) + creq_trim_free(rq);
}

uint64_t
request_cache_bytes(const struct request_cache *rq)
{
    return rq->bufs.cached + (uint64_t)rq->nfree_calls * sizeof(struct call)
           + (uint64_t)rq->nfree_creqs * sizeof(struct creq);
}
