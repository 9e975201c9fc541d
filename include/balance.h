/*
 * balance.h: lg.balance's choice of one child per request (the route engine
 * starts the child; this module only chooses).
 *
 * A child is down, for this choice, when the request would meet a server
 * this worker has marked down at its first step: a pool child when the
 * key's server is down (with eject, only when every server of the pool is);
 * a failover child when every child it would try is down; a balance child
 * when all of its children are. Other node types are never down: they
 * answer for themselves. When every child is down, the first choice is
 * taken all the same, and answers as a down server does.
 */
#ifndef BALANCE_H
#define BALANCE_H

#include <stdbool.h>
#include <stdint.h>

struct call;
struct route;

/*
 * The index of the child of c's node (a balance) that call c goes to. rng is
 * the worker's generator state (0 at first); outstanding[i] the calls in
 * flight at child i (read by least_outstanding only, may be NULL for the
 * others). *skipped is set when the first choice was down and a live child
 * was taken instead.
 */
int balance_pick(uint64_t *rng, const struct call *c, const int64_t *outstanding,
                 bool *skipped);

/* by = "key": the key's child with every child up (self-tests, --route). */
int balance_key_child(const struct route *r, const char *key, uint32_t klen);

#endif
