/*
 * stats.h: counters, kept per worker and summed by the `stats` command.
 *
 * Each counter is written only by its worker thread; other threads read it
 * with relaxed atomic loads, so no lock and no locked instruction sits on the
 * request path.
 */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>

#include "proto.h"

struct buf;
struct worker;

struct stats {
    uint64_t curr_connections;
    uint64_t total_connections;
    uint64_t cmd[CMD_COUNT];        /* requests by command (get: keys) */
    uint64_t get_hits;
    uint64_t get_misses;
    uint64_t client_errors;         /* requests answered CLIENT_ERROR/ERROR */
    uint64_t server_errors;         /* requests answered SERVER_ERROR by us */
    uint64_t hook_calls;            /* Lua hook invocations */
    uint64_t hook_errors;           /* hooks that failed or chose no route */
    uint64_t hook_cache_hits;       /* decisions taken from the cache */
};

/* Increment a counter owned by this thread. */
#define STAT_ADD(field, n) \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), \
                     __ATOMIC_RELAXED)
#define STAT_INC(field) STAT_ADD(field, 1)
#define STAT_DEC(field) STAT_ADD(field, (uint64_t)-1)
#define STAT_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct config;

/* Append the `stats` reply (STAT lines and END); cfg is the caller's generation. */
void stats_render(struct buf *out, const struct config *cfg);

/* Policy reloads that took effect / that were refused (main thread). */
extern uint64_t stats_reloads;
extern uint64_t stats_reload_failures;

/* Connections refused by -n (counted by the accepting thread). */
extern uint64_t stats_rejected_connections;



/* Remember the start time (uptime is measured from here). */
void stats_init(void);
#endif
