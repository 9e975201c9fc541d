/*
 * hedge.h: calls waiting to hedge (wait_ms on lg.failover and
 * lg.all_fastest): one thread's list of route-node calls, ordered by when
 * their wait ends, under one timer for the earliest.
 *
 * The queue only orders and wakes; what a call holds while it waits (a
 * reference, so it outlives its answer) and what happens when its wait ends
 * are its node's business (route.c), through the fire callback.
 */
#ifndef HEDGE_H
#define HEDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "request.h"

struct hedge_queue;
struct timer;
struct timers;

/* A call's wait ended (it is off the queue already). */
typedef void hedge_fire_fn(struct hedge_queue *q, struct call *c);

struct hedge_queue {
    struct timer    *timer;         /* set for the head's time */
    struct call     *head, *tail;   /* by hedge_at_ms, earliest first, linked by next */
    hedge_fire_fn   *fire;
};

/* 0, or -1 (no timer could be made). */
int hedge_queue_init(struct hedge_queue *q, struct timers *timers, hedge_fire_fn *fire);
void hedge_queue_free(struct hedge_queue *q);

/* Wake c at at_ms (clock_ms) through fire, unless removed before. */
void hedge_add(struct hedge_queue *q, struct call *c, uint64_t at_ms);

/* Take c off the queue (it must be on it: hedge_queued). */
void hedge_remove(struct hedge_queue *q, struct call *c);

/* Is c on a hedge queue? (Only for calls of hedging nodes: see struct call.) */
static inline bool
hedge_queued(const struct call *c)
{
    return c->hedge_at_ms != 0;
}

#endif
