/*
 * coalesce.c: one worker's table of gets in flight through coalesce nodes
 * (see coalesce.h), and a leader's reply shared with its waiters.
 *
 * A chained hash table keyed by the key's bytes; the node, command and
 * listener kind are compared on the chain, so closing a key (a write) walks
 * one chain whatever node the write came through. A closed entry stays in
 * the table, unseen by joins, until its leader's reply: coalesce_leave finds
 * it by its leader. The table grows when it holds more entries than
 * buckets; it never shrinks (its size follows the worker's peak of distinct
 * keys in flight, one pointer each).
 */
#include "coalesce.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hash.h"

#define BUCKETS_FIRST   64
#define FREE_KEPT_MAX   256         /* entries kept for reuse */

struct coalesce_entry {
    struct coalesce_entry *next;        /* bucket chain / free list */
    const struct call     *leader;      /* the call sent on; owns key */
    const void            *node;        /* the coalesce node (its generation's) */
    const char            *key;         /* the leader's key */
    uint32_t               klen;
    uint32_t               hash;
    uint32_t               tag;         /* joins need the same (coalesce_join_tagged) */
    enum cmd               cmd;
    bool                   is_unix;     /* hooks may route by listener kind */
    bool                   open;        /* false once a write passed: no joins */
    struct call           *waiters;     /* linked by call->next */
    struct call          **tail;
};

static uint32_t
key_hash(const char *key, uint32_t klen)
{
    return hash_key(HASH_FNV1A_32, key, klen);
}

static bool
same_key(const struct coalesce_entry *e, uint32_t hash, const char *key, uint32_t klen)
{
    return e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0;
}

/* Double the buckets (or make the first); -1 out of memory. */
static int
table_grow(struct coalesce_table *t)
{
    uint32_t n = t->nbuckets ? t->nbuckets * 2 : BUCKETS_FIRST, i;
    struct coalesce_entry **grown = calloc(n, sizeof(*grown));

    if (grown == NULL)
        return t->nbuckets ? 0 : -1;    /* longer chains still work */
    for (i = 0; i < t->nbuckets; i++) {
        struct coalesce_entry *e = t->buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            e->next = grown[e->hash & (n - 1)];
            grown[e->hash & (n - 1)] = e;
        }
    }
    free(t->buckets);
    t->buckets = grown;
    t->nbuckets = n;
    return 0;
}

static struct coalesce_entry *
entry_new(struct coalesce_table *t)
{
    struct coalesce_entry *e = t->free;

    if (e != NULL) {
        t->free = e->next;
        t->nfree--;
        return e;
    }
    return malloc(sizeof(*e));
}

static void
entry_free(struct coalesce_table *t, struct coalesce_entry *e)
{
    if (t->nfree >= FREE_KEPT_MAX) {
        free(e);
        return;
    }
    e->next = t->free;
    t->free = e;
    t->nfree++;
}

enum coalesce_join
coalesce_join(struct coalesce_table *t, struct call *c, bool is_unix)
{
    return coalesce_join_tagged(t, c, is_unix, 0);
}

enum coalesce_join
coalesce_join_tagged(struct coalesce_table *t, struct call *c, bool is_unix, uint32_t tag)
{
    uint32_t hash = key_hash(c->key, c->klen);
    enum cmd cmd = c->creq->req.cmd;
    struct coalesce_entry *e;

    if (t->nbuckets != 0) {
        for (e = t->buckets[hash & (t->nbuckets - 1)]; e != NULL; e = e->next) {
            if (e->open && e->node == c->node && e->cmd == cmd && e->is_unix == is_unix
                && e->tag == tag && same_key(e, hash, c->key, c->klen)) {
                c->next = NULL;
                *e->tail = c;
                e->tail = &c->next;
                return COALESCE_WAITS;
            }
        }
    }
    if ((t->nentries >= t->nbuckets && table_grow(t) < 0) || (e = entry_new(t)) == NULL)
        return COALESCE_ALONE;
    *e = (struct coalesce_entry){
        .leader = c, .node = c->node, .key = c->key, .klen = c->klen, .hash = hash,
        .tag = tag, .cmd = cmd, .is_unix = is_unix, .open = true,
    };
    e->tail = &e->waiters;
    e->next = t->buckets[hash & (t->nbuckets - 1)];
    t->buckets[hash & (t->nbuckets - 1)] = e;
    t->nentries++;
    t->nopen++;
    return COALESCE_LEADS;
}

void
coalesce_close_key_slow(struct coalesce_table *t, const char *key, uint32_t klen)
{
    uint32_t hash = key_hash(key, klen);
    struct coalesce_entry *e;

    for (e = t->buckets[hash & (t->nbuckets - 1)]; e != NULL; e = e->next) {
        if (e->open && same_key(e, hash, key, klen)) {
            e->open = false;
            t->nopen--;
        }
    }
}

void
coalesce_close_all(struct coalesce_table *t)
{
    uint32_t i;
    struct coalesce_entry *e;

    for (i = 0; t->nopen != 0 && i < t->nbuckets; i++) {
        for (e = t->buckets[i]; e != NULL; e = e->next) {
            if (e->open) {
                e->open = false;
                t->nopen--;
            }
        }
    }
}

struct call *
coalesce_leave(struct coalesce_table *t, const struct call *leader)
{
    uint32_t hash = key_hash(leader->key, leader->klen);
    struct coalesce_entry **at, *e;
    struct call *waiters;

    if (t->nbuckets == 0)
        return NULL;
    for (at = &t->buckets[hash & (t->nbuckets - 1)]; (e = *at) != NULL; at = &e->next) {
        if (e->leader == leader) {
            *at = e->next;
            waiters = e->waiters;
            t->nentries--;
            if (e->open)
                t->nopen--;
            entry_free(t, e);
            return waiters;
        }
    }
    return NULL;
}

/* Give waiter w res's bytes (shared, not copied), within w's request's memory bounds. */
static void
waiter_take_copy(struct request_cache *rq, struct call *w, const struct result *res)
{
    uint32_t len = result_len(res);

    result_clear(rq, &w->res);
    w->res.kind = res->kind;
    w->res.fail = res->fail;
    w->res.key_base64 = res->key_base64;
    if (res->fail != FAIL_NONE || len == 0)
        return;
    /* A request whose client has gone still gets the value while the worker
     * is under max_memory: a node above it (warm-up) may use the value. */
    if (res->kind == REPLY_VALUE
        && (w->creq->owner != NULL ? !creq_may_hold(rq, w->creq, len) : request_memory_over(rq))) {
        w->res.fail = FAIL_NOMEM;
        return;
    }
    w->res.data = buf_share(res->data);
    w->res.bytes = res->bytes;
    w->res.len = len;
}

void
coalesce_answer(struct request_cache *rq, struct call *waiters, const struct result *res)
{
    while (waiters != NULL) {
        struct call *w = waiters;

        waiters = w->next;      /* finishing w may reuse its link */
        w->next = NULL;
        waiter_take_copy(rq, w, res);
        call_finish(rq, w);
    }
}

void
coalesce_table_free(struct coalesce_table *t)
{
    struct coalesce_entry *e;

    while ((e = t->free) != NULL) {
        t->free = e->next;
        free(e);
    }
    t->nfree = 0;
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
}
