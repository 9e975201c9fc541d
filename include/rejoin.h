/*
 * rejoin.h: the process-wide side of a server's rejoin (rejoin = "flush").
 *
 * Health is per worker, but a returning server is flushed once for the
 * whole process: the first worker to let it rejoin claims the flush, every
 * worker holds the server out while that flush_all is out, and a worker
 * whose own mark-down began before the flush was answered OK takes that
 * flush as its own. One record per server name (host:port), shared by every
 * worker's connection to it and kept across reloads while one refers to it.
 */
#ifndef REJOIN_H
#define REJOIN_H

#include <stdbool.h>

struct rejoin {
    int               flushing;     /* 1 while a worker's rejoin flush_all is out (atomic) */
    unsigned          flushes;      /* rejoin flush_all answered OK so far (atomic) */
    /* The registry's (under its lock). */
    char             *label;
    int               refs;
    struct rejoin    *next;
};

/* The record of server `label`, made on first use; NULL out of memory. */
struct rejoin *rejoin_get(const char *label);

/* Let go of a record from rejoin_get. */
void rejoin_put(struct rejoin *rj);

/* Is a rejoin flush_all of the server out? Then no worker lets it serve. */
static inline bool
rejoin_held(const struct rejoin *rj)
{
    return __atomic_load_n(&rj->flushing, __ATOMIC_ACQUIRE) != 0;
}

/* Take the flush on: false when another worker's is already out. */
bool rejoin_claim(struct rejoin *rj);

/* The claimed flush ended, answered OK or not. */
void rejoin_release(struct rejoin *rj, bool ok);

/*
 * Which rejoin flush the server is at: a worker notes it when it marks the
 * server down, and a later one answered OK (rejoin_flushed_since) came after
 * that mark-down in every worker's order of events, whatever the clocks say.
 */
unsigned rejoin_epoch(const struct rejoin *rj);
bool rejoin_flushed_since(const struct rejoin *rj, unsigned epoch);

#endif
