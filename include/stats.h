/*
 * stats.h: counters, kept per worker and summed by the `stats` commands and
 * the metrics endpoint.
 *
 * Each counter is written only by its worker thread; other threads read it
 * with relaxed atomic loads, so no lock and no locked instruction sits on the
 * request path. Route counters belong to the worker, not to a generation:
 * they are found by route label, so a reload that keeps a label keeps its
 * counts (as backends, keyed by host:port, keep theirs).
 */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>

#include "proto.h"
#include "route.h"

struct buf;
struct config;
struct worker;

struct stats {
    uint64_t curr_connections;
    uint64_t total_connections;
    uint64_t cmd[CMD_COUNT];        /* requests by command (get: keys) */
    uint64_t get_hits;
    uint64_t get_misses;
    uint64_t client_errors;         /* requests answered CLIENT_ERROR/ERROR */
    uint64_t binary_requests;       /* requests in the binary protocol */
    uint64_t server_errors;         /* requests answered SERVER_ERROR by us */
    uint64_t hook_calls;            /* Lua hook invocations */
    uint64_t hook_errors;           /* hooks that failed or chose no route */
    uint64_t hook_cache_hits;       /* decisions taken from the cache */
    uint64_t bytes_read;            /* from clients (after TLS decryption) */
    uint64_t bytes_written;         /* to clients (before TLS encryption) */
    uint64_t out_of_memory;         /* requests answered SERVER_ERROR out of memory */
    uint64_t memory_closes;         /* clients closed: out of memory, or never reading */
    uint64_t memory_pauses;         /* reads paused: a client's requests held its bound */
};

/* Increment a counter owned by this thread. */
#define STAT_ADD(field, n) \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), \
                     __ATOMIC_RELAXED)
#define STAT_INC(field) STAT_ADD(field, 1)
#define STAT_DEC(field) STAT_ADD(field, (uint64_t)-1)
#define STAT_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* One route node's counters in one worker. */
struct route_stats {
    uint64_t requests;              /* calls that reached the node */
    uint64_t errors;                /* calls the node answered with an error */
    uint64_t hook_calls;            /* hook: Lua runs */
    uint64_t hook_cache_hits;       /* hook: decisions taken from the cache */
};

/* A worker's counters for one route label, shared by the generations naming it. */
struct route_counter {
    struct route_stats  stats;
    enum route_type     type;
    int                 users;      /* generations (wconfigs) pointing at it */
    char                label[];    /* see stats_route_label */
};

#define ROUTE_LABEL_MAX 256

/*
 * A route node's name in stats and metrics: a pool node is its pool's name;
 * any other node is "<type>#<n>", n counting the nodes of that type from 1 in
 * the order the policy built them (so the same script gives the same labels).
 */
void stats_route_label(const struct config *cfg, const struct route *r,
                       char *out, size_t len);

/*
 * Fill slots[id] for every node of cfg with this worker's counter for its
 * label, creating missing ones. Returns 0, or -1 out of memory (then nothing
 * is held). Call under the worker swap lock when other threads may read.
 */
int stats_routes_bind(struct worker *w, const struct config *cfg,
                      struct route_counter **slots);

/* A generation is gone: release its slots (freeing unnamed counters). */
void stats_routes_release(struct worker *w, struct route_counter **slots, int n);

/* What `stats <group>` renders. */
enum stats_group {
    STATS_GENERAL,      /* stats */
    STATS_POOLS,        /* stats pools */
    STATS_SERVERS,      /* stats servers */
    STATS_ROUTES,       /* stats routes */
    STATS_UNKNOWN       /* anything else: ERROR, as memcached answers */
};

/* The group named by `stats` arguments (len 0: the general group). */
enum stats_group stats_group_by_name(const char *args, size_t len);

/* Append a `stats` reply (STAT lines and END); cfg is the caller's generation. */
void stats_render(struct buf *out, const struct config *cfg, enum stats_group group);

/* Policy reloads that took effect / that were refused (main thread). */
extern uint64_t stats_reloads;
extern uint64_t stats_reload_failures;

/* Connections refused by -n (counted by the accepting thread). */
extern uint64_t stats_rejected_connections;



/* Remember the start time (uptime is measured from here). */
void stats_init(void);

/* Seconds since stats_init. */
uint64_t stats_uptime(void);
#endif
