/*
 * coalesce.h: request coalescing (lg.coalesce): one worker's table of the
 * gets in flight through coalesce nodes, so an identical get that arrives
 * while one is out waits for that one's reply instead of going to the
 * server again.
 *
 * An entry is made by the first get of a (node, command, key, listener
 * kind): the leader (near cache nodes use the table too, for their reads of
 * hot keys: see nearcache.h). Its route node sends the leader on alone;
 * identical gets that arrive meanwhile park as waiters on the entry. When the
 * leader's reply comes back, the entry leaves the table and every waiter
 * gets a copy of the reply (counted against its own client's memory bounds,
 * like any value), so waiters answer in the same loop pass as the leader.
 *
 * A request that may change the key (every request but a classic get or
 * gets: writes, deletes, arithmetic, touch, gat, meta and binary requests)
 * closes the entries of its key, in the same worker: the leader's reply
 * still answers the waiters that arrived before it, but the next get of the
 * key makes a new entry and goes to the server itself, after the write.
 *
 * Invariant: an entry lives exactly as long as its leader waits for its
 * reply; entries point at the leader's key and node, which outlive it. One
 * table per worker, touched only by its thread: no lock.
 */
#ifndef COALESCE_H
#define COALESCE_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "request.h"

struct coalesce_entry;

struct coalesce_table {
    struct coalesce_entry **buckets;    /* by key hash; NULL until first used */
    uint32_t                nbuckets;   /* a power of two */
    uint32_t                nentries;   /* entries whose leader waits */
    uint32_t                nopen;      /* of those, the ones gets may join */
    struct coalesce_entry  *free;       /* entries kept for reuse */
    uint32_t                nfree;
};

/* May this request share another's reply? Classic get and gets only. */
static inline bool
coalesce_shares(const struct request *req)
{
    return !req->meta && (req->cmd == CMD_GET || req->cmd == CMD_GETS);
}

/* What coalesce_join did with a call. */
enum coalesce_join {
    COALESCE_LEADS,     /* new entry: the caller sends the call on */
    COALESCE_WAITS,     /* parked behind an identical leader */
    COALESCE_ALONE      /* no memory for an entry: the caller sends it on, uncoalesced */
};

/*
 * Call c (a get or gets at coalesce node c->node) joins the open entry of
 * its (node, command, key, listener kind), or leads a new one.
 */
enum coalesce_join coalesce_join(struct coalesce_table *t, struct call *c, bool is_unix);

/*
 * The same, joining only an entry made with the same tag: a near cache tags
 * its reads with the key's write stamp as they leave, so a get that comes
 * after a change (a new stamp) never waits for a read that left before it.
 * Entries of coalesce_join have tag 0.
 */
enum coalesce_join coalesce_join_tagged(struct coalesce_table *t, struct call *c, bool is_unix,
                                        uint32_t tag);

/* Close the key's open entries: later gets of it lead entries of their own. */
void coalesce_close_key_slow(struct coalesce_table *t, const char *key, uint32_t klen);

/* The same, costing one compare while no entry is open (writes on every path call it). */
static inline void
coalesce_close_key(struct coalesce_table *t, const char *key, uint32_t klen)
{
    if (t->nopen != 0)
        coalesce_close_key_slow(t, key, klen);
}

/* Close every open entry (flush_all changes every key). */
void coalesce_close_all(struct coalesce_table *t);

/*
 * The leader's reply is in: its entry leaves the table. Returns its waiters,
 * linked by call->next, in arrival order (NULL: none).
 */
struct call *coalesce_leave(struct coalesce_table *t, const struct call *leader);

/*
 * Give each waiter of a list a copy of res and finish it. A value a waiter's
 * request may not hold (its client's bound, max_memory) answers that waiter
 * SERVER_ERROR out of memory, as a value from a server would.
 */
void coalesce_answer(struct request_cache *rq, struct call *waiters, const struct result *res);

/* Free the table's memory; it must hold no entry. */
void coalesce_table_free(struct coalesce_table *t);

#endif
