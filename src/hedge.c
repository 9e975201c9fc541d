/*
 * hedge.c: the queue of calls waiting to hedge (see hedge.h).
 *
 * Invariant: the timer is pending while the queue is not empty, set for the
 * head's time or earlier (a removed head leaves it as it was: it then finds
 * nothing due and is set again). Waits of one node are equal, so a new call nearly
 * always goes at the tail; the walk back from the tail is for nodes with
 * different wait_ms sharing a thread.
 */
#include "hedge.h"

#include <stdbool.h>

#include "clock.h"
#include "request.h"
#include "timer.h"

static void
hedge_arm(struct hedge_queue *q)
{
    if (q->head == NULL) {
        timer_del(q->timer);
        return;
    }
    timer_set(q->timer, q->head->hedge_at_ms);
}

static void
hedge_on_timer(void *arg)
{
    struct hedge_queue *q = arg;
    uint64_t now = clock_ms();

    /* fire may queue calls again: each pass takes the head afresh */
    while (q->head != NULL && q->head->hedge_at_ms <= now) {
        struct call *c = q->head;

        hedge_remove(q, c);
        q->fire(q, c);
    }
    hedge_arm(q);
}

int
hedge_queue_init(struct hedge_queue *q, struct timers *timers, hedge_fire_fn *fire)
{
    q->head = q->tail = NULL;
    q->fire = fire;
    q->timer = timer_new(timers, hedge_on_timer, q);
    return q->timer != NULL ? 0 : -1;
}

void
hedge_queue_free(struct hedge_queue *q)
{
    timer_free(q->timer);
    q->timer = NULL;
}

void
hedge_add(struct hedge_queue *q, struct call *c, uint64_t at_ms)
{
    struct call *after = q->tail;

    while (after != NULL && after->hedge_at_ms > at_ms)
        after = after->hedge_prev;
    c->hedge_at_ms = at_ms;
    c->hedge_prev = after;
    c->next = after != NULL ? after->next : q->head;
    if (c->next != NULL)
        c->next->hedge_prev = c;
    else
        q->tail = c;
    if (after != NULL) {
        after->next = c;
    } else {
        q->head = c;
        hedge_arm(q);           /* a new earliest */
    }
}

void
hedge_remove(struct hedge_queue *q, struct call *c)
{
    if (c->hedge_prev != NULL)
        c->hedge_prev->next = c->next;
    else
        q->head = c->next;
    if (c->next != NULL)
        c->next->hedge_prev = c->hedge_prev;
    else
        q->tail = c->hedge_prev;
    c->hedge_prev = c->next = NULL;
    c->hedge_at_ms = 0;
}
