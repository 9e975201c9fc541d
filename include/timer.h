/*
 * timer.h: one loop's timers, kept by us and woken by one timerfd.
 *
 * A worker's event base holds no libevent timer at all: with its timer heap
 * empty and the time cache off, a loop pass reads no clock (libevent reads it
 * three times a pass otherwise, about 350 instructions a request). The set
 * keeps its timers in a heap of their own, by clock_ms deadline, and sets
 * the timerfd only when the earliest deadline moves earlier; a timer
 * deleted or moved later lets the timerfd fire for nothing once.
 *
 * A set made without a base is never driven: its timers wait for ever
 * (the simulation's hedge waits, which it ends by itself).
 */
#ifndef TIMER_H
#define TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct timers;
struct timer;

typedef void timer_fn(void *arg);

/* A set on base (or NULL: never driven), or NULL when out of memory or descriptors. */
struct timers *timers_new(struct event_base *base);
void timers_free(struct timers *ts);

/* Call the timers due at now_ms (clock_ms), earliest first; the timerfd's
 * callback does this. A timer set again for now_ms from its own call waits
 * for the next run. */
void timers_run(struct timers *ts, uint64_t now_ms);

/* A timer of ts calling fn(arg) when due; NULL when out of memory. Not pending. */
struct timer *timer_new(struct timers *ts, timer_fn *fn, void *arg);
void timer_free(struct timer *t);

/* Due at at_ms (clock_ms), replacing any earlier setting. Never fails. */
void timer_set(struct timer *t, uint64_t at_ms);

/* Due in_ms milliseconds from now. */
void timer_set_in(struct timer *t, uint64_t in_ms);

void timer_del(struct timer *t);
bool timer_pending(const struct timer *t);

#endif
