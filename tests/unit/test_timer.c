/*
 * test_timer.c: one loop's timers (timer.h): the order they fire in, moving
 * and deleting them, a timer set again from its own call, and the timerfd
 * driving a set through a real event base.
 */
#include "timer.h"

#include <event2/event.h>

#include "clock.h"
#include "unit.h"

#define NTIMERS 64

static int fired[NTIMERS * 4];
static int nfired;

struct again {
    struct timer *t;
    uint64_t      at_ms;
    int           runs;
};

static void
on_fire(void *arg)
{
    fired[nfired++] = (int)(long)arg;
}

static void
on_fire_again(void *arg)
{
    struct again *a = arg;

    a->runs++;
    timer_set(a->t, a->at_ms);      /* due again at once */
}

static void
test_order(void)
{
    struct timers *ts = timers_new(NULL);
    struct timer *t[NTIMERS];
    int i;

    nfired = 0;
    for (i = 0; i < NTIMERS; i++) {
        t[i] = timer_new(ts, on_fire, (void *)(long)i);
        CHECK(t[i] != NULL);
        CHECK(!timer_pending(t[i]));
    }
    /* Deadlines in a scrambled order: 1000 + (i * 37) % 64. */
    for (i = 0; i < NTIMERS; i++)
        timer_set(t[i], 1000 + (uint64_t)((i * 37) % NTIMERS));
    timers_run(ts, 999);
    CHECK_EQ(nfired, 0);
    timers_run(ts, 1000 + NTIMERS / 2 - 1);
    CHECK_EQ(nfired, NTIMERS / 2);
    for (i = 1; i < nfired; i++)
        CHECK((fired[i - 1] * 37) % NTIMERS < (fired[i] * 37) % NTIMERS);
    timers_run(ts, 5000);
    CHECK_EQ(nfired, NTIMERS);
    for (i = 0; i < NTIMERS; i++) {
        CHECK(!timer_pending(t[i]));
        timer_free(t[i]);
    }
    timers_free(ts);
}

static void
test_move_and_delete(void)
{
    struct timers *ts = timers_new(NULL);
    struct timer *a = timer_new(ts, on_fire, (void *)1L);
    struct timer *b = timer_new(ts, on_fire, (void *)2L);
    struct timer *c = timer_new(ts, on_fire, (void *)3L);

    nfired = 0;
    timer_set(a, 10);
    timer_set(b, 20);
    timer_set(c, 30);
    timer_set(c, 5);                /* moved earlier */
    timer_set(a, 40);               /* moved later */
    timer_del(b);
    timer_del(b);                   /* twice: nothing */
    CHECK(timer_pending(a));
    CHECK(!timer_pending(b));
    timers_run(ts, 25);
    CHECK_EQ(nfired, 1);
    CHECK_EQ(fired[0], 3);
    timer_free(a);                  /* pending when freed */
    timers_run(ts, 100);
    CHECK_EQ(nfired, 1);
    timer_free(b);
    timer_free(c);
    timers_free(ts);
}

/* A timer set for a time already due from its own call waits for the next run. */
static void
test_set_again_from_its_call(void)
{
    struct timers *ts = timers_new(NULL);
    struct again a = { NULL, 50, 0 };

    a.t = timer_new(ts, on_fire_again, &a);
    timer_set(a.t, 50);
    timers_run(ts, 60);
    CHECK_EQ(a.runs, 1);
    CHECK(timer_pending(a.t));
    timers_run(ts, 60);
    CHECK_EQ(a.runs, 2);
    timer_free(a.t);
    timers_free(ts);
}

/* Driven by its timerfd: the later timer, then a deleted one never, fire. */
static void
test_driven_by_a_base(void)
{
    struct event_base *base = event_base_new();
    struct timers *ts = timers_new(base);
    struct timer *near, *gone;
    uint64_t start = clock_ms();
    int passes;

    CHECK(ts != NULL);
    nfired = 0;
    near = timer_new(ts, on_fire, (void *)7L);
    gone = timer_new(ts, on_fire, (void *)8L);
    timer_set_in(gone, 5);          /* the timerfd is set for it... */
    timer_set_in(near, 20);
    timer_del(gone);                /* ...and fires for nothing once */
    for (passes = 0; passes < 1000 && nfired == 0; passes++)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK_EQ(nfired, 1);
    CHECK_EQ(fired[0], 7);
    CHECK(clock_ms() >= start + 20);
    CHECK(!timer_pending(near));
    timer_free(near);
    timer_free(gone);
    timers_free(ts);
    event_base_free(base);
}

int
main(void)
{
    test_order();
    test_move_and_delete();
    test_set_again_from_its_call();
    test_driven_by_a_base();
    return UNIT_DONE();
}
