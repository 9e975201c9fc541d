/*
 * timer.c: one loop's timers under one timerfd (see timer.h).
 *
 * Deadlines are clock_ms values, the coarse clock: it lags the precise one
 * by up to a tick. The timerfd is set on the precise clock a tick after the
 * deadline, so that when it fires the coarse clock has reached the deadline
 * and the timer is due (no wake-up finds its timer early and spins).
 *
 * The heap has room for every timer of the set, taken when the timer is
 * made: setting a timer never allocates.
 */
#include "timer.h"

#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"

struct timer {
    struct timers  *set;
    timer_fn       *fn;
    void           *arg;
    uint64_t        at_ms;      /* deadline while pending */
    int             slot;       /* index in the heap, -1 when not pending */
};

struct timers {
    struct timer  **heap;       /* earliest at_ms first */
    int             n, cap;     /* pending; room (every timer of the set) */
    int             ntimers;
    int             fd;         /* the timerfd, -1 for a set nothing drives */
    struct event   *ev;
    uint64_t        armed_ns;   /* when the timerfd fires (precise clock), 0: not set */
    uint64_t        tick_ns;    /* the coarse clock's resolution */
};

static void timers_on_fire(evutil_socket_t fd, short what, void *arg);

struct timers *
timers_new(struct event_base *base)
{
    struct timers *ts = calloc(1, sizeof(*ts));
    struct timespec res;

    if (ts == NULL)
        return NULL;
    ts->fd = -1;
    ts->tick_ns = 4000000;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        ts->tick_ns = (uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec;
    if (base == NULL)
        return ts;
    ts->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ts->fd >= 0)
        ts->ev = event_new(base, ts->fd, EV_READ | EV_PERSIST, timers_on_fire, ts);
    if (ts->ev == NULL || event_add(ts->ev, NULL) < 0) {
        timers_free(ts);
        return NULL;
    }
    return ts;
}

void
timers_free(struct timers *ts)
{
    if (ts == NULL)
        return;
    if (ts->ev != NULL)
        event_free(ts->ev);
    if (ts->fd >= 0)
        close(ts->fd);
    free(ts->heap);
    free(ts);
}

static void
heap_place(struct timers *ts, struct timer *t, int i)
{
    ts->heap[i] = t;
    t->slot = i;
}

static void
heap_up(struct timers *ts, int i)
{
    struct timer *t = ts->heap[i];

    while (i > 0) {
        int parent = (i - 1) / 2;

        if (ts->heap[parent]->at_ms <= t->at_ms)
            break;
        heap_place(ts, ts->heap[parent], i);
        i = parent;
    }
    heap_place(ts, t, i);
}

static void
heap_down(struct timers *ts, int i)
{
    struct timer *t = ts->heap[i];

    for (;;) {
        int child = 2 * i + 1;

        if (child >= ts->n)
            break;
        if (child + 1 < ts->n && ts->heap[child + 1]->at_ms < ts->heap[child]->at_ms)
            child++;
        if (t->at_ms <= ts->heap[child]->at_ms)
            break;
        heap_place(ts, ts->heap[child], i);
        i = child;
    }
    heap_place(ts, t, i);
}

static void
heap_remove(struct timers *ts, struct timer *t)
{
    int i = t->slot;
    struct timer *last = ts->heap[--ts->n];

    t->slot = -1;
    if (last == t)
        return;
    heap_place(ts, last, i);
    heap_up(ts, i);
    heap_down(ts, last->slot);
}

/* The timerfd's time for a deadline: a tick late, so the coarse clock is there. */
static uint64_t
timers_expiry_ns(const struct timers *ts, uint64_t at_ms)
{
    return at_ms * 1000000u + ts->tick_ns;
}

static void
timers_arm(struct timers *ts, uint64_t at_ns)
{
    struct itimerspec its = { { 0, 0 }, { 0, 0 } };

    its.it_value.tv_sec = (time_t)(at_ns / 1000000000u);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000u);
    if (timerfd_settime(ts->fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        ts->armed_ns = at_ns;
}

/* Set the timerfd for the earliest timer, unless it fires sooner already. */
static void
timers_arm_earliest(struct timers *ts)
{
    uint64_t at_ns;

    if (ts->n == 0 || ts->fd < 0)
        return;
    at_ns = timers_expiry_ns(ts, ts->heap[0]->at_ms);
    if (ts->armed_ns == 0 || at_ns < ts->armed_ns)
        timers_arm(ts, at_ns);
}

void
timers_run(struct timers *ts, uint64_t now_ms)
{
    int budget = ts->n;     /* a timer set again for now waits for the next pass */

    while (ts->n > 0 && ts->heap[0]->at_ms <= now_ms && budget-- > 0) {
        struct timer *t = ts->heap[0];

        heap_remove(ts, t);
        t->fn(t->arg);
    }
}

static void
timers_on_fire(evutil_socket_t fd, short what, void *arg)
{
    struct timers *ts = arg;
    uint64_t expirations, now = clock_ms();
    ssize_t got;

    (void)what;
    got = read(fd, &expirations, sizeof(expirations));
    (void)got;              /* EAGAIN: set again since it fired; nothing to take */
    ts->armed_ns = 0;
    timers_run(ts, now);
    if (ts->n > 0 && ts->heap[0]->at_ms > now) {
        uint64_t soonest = clock_ns() + ts->tick_ns;
        uint64_t at_ns = timers_expiry_ns(ts, ts->heap[0]->at_ms);

        /* The coarse clock lagged more than its tick: wait a tick, not a spin. */
        timers_arm(ts, at_ns > soonest ? at_ns : soonest);
        return;
    }
    timers_arm_earliest(ts);
}

struct timer *
timer_new(struct timers *ts, timer_fn *fn, void *arg)
{
    struct timer *t;

    if (ts->ntimers == ts->cap) {
        int cap = ts->cap ? ts->cap * 2 : 16;
        struct timer **grown = realloc(ts->heap, sizeof(*grown) * (size_t)cap);

        if (grown == NULL)
            return NULL;
        ts->heap = grown;
        ts->cap = cap;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->set = ts;
    t->fn = fn;
    t->arg = arg;
    t->slot = -1;
    ts->ntimers++;
    return t;
}

void
timer_free(struct timer *t)
{
    if (t == NULL)
        return;
    timer_del(t);
    t->set->ntimers--;
    free(t);
}

void
timer_set(struct timer *t, uint64_t at_ms)
{
    struct timers *ts = t->set;

    if (t->slot >= 0) {
        t->at_ms = at_ms;
        heap_up(ts, t->slot);
        heap_down(ts, t->slot);
    } else {
        t->at_ms = at_ms;
        ts->heap[ts->n] = t;
        t->slot = ts->n++;
        heap_up(ts, t->slot);
    }
    if (t->slot == 0)
        timers_arm_earliest(ts);
}

void
timer_set_in(struct timer *t, uint64_t in_ms)
{
    timer_set(t, clock_ms() + in_ms);
}

void
timer_del(struct timer *t)
{
    if (t->slot >= 0)
        heap_remove(t->set, t);
}

bool
timer_pending(const struct timer *t)
{
    return t->slot >= 0;
}
