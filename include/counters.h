/*
 * counters.h: the proxy's counters, as plain data (no module of ours below).
 *
 * Each worker keeps its own struct stats and route_stats, written only by its
 * thread; other threads read them with relaxed atomic loads, so no lock and
 * no locked instruction sits on the request path. The modules that count
 * (client, route, request, backend) write them; the renderers (stats.c,
 * metrics.c) read their sums from a snapshot (snapshot.h).
 */
#ifndef COUNTERS_H
#define COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

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
    uint64_t refetched_values;      /* values let go at a client's bound, asked again */
    uint64_t slow_requests;         /* slower than settings.log_slow_ms */
    uint64_t sampled_requests;      /* picked by settings.log_sample */
    uint64_t reqlog_suppressed;     /* slow/sampled lines over the per-second limit */
};

/*
 * Increment a counter owned by this thread. A function, so the counter's
 * address is worked out once: relaxed atomics may alias anything, and a
 * macro naming the field twice made the compiler reload counters[id].
 */
static inline void
stat_add(uint64_t *field, uint64_t n)
{
    __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

#define STAT_ADD(field, n) stat_add(&(field), (uint64_t)(n))
#define STAT_INC(field) STAT_ADD(field, 1)
#define STAT_DEC(field) STAT_ADD(field, (uint64_t)-1)
#define STAT_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* One route node's counters in one worker. */
struct route_stats {
    uint64_t requests;              /* calls that reached the node */
    uint64_t errors;                /* calls the node answered with an error */
    uint64_t hook_calls;            /* hook: Lua runs */
    uint64_t hook_cache_hits;       /* hook: decisions taken from the cache */
    uint64_t gutter_capped;         /* failover: calls past the first child with
                                     * their exptime capped at gutter_ttl */
    uint64_t hedges;                /* failover, all_fastest: children started
                                     * because the one before was slow (wait_ms) */
    uint64_t rate_over;             /* ratelimit: requests over the limit */
    uint64_t rate_limited;          /* ratelimit: ...of which refused (over = "error") */
    uint64_t skipped_down;          /* balance: picks that passed over a down child */
    uint64_t coalesced;             /* coalesce, nearcache: gets answered by another's reply */
    uint64_t leaders;               /* coalesce: gets sent on, others may wait for */
    uint64_t nearcache_hits;        /* nearcache: gets answered from the copy */
    uint64_t nearcache_misses;      /* nearcache: gets passed on */
    uint64_t nearcache_evictions;   /* nearcache: copies dropped for room */
    uint64_t nearcache_bytes;       /* nearcache: bytes held now (a gauge) */
};

/* What `stats <group>` renders. */
enum stats_group {
    STATS_GENERAL,      /* stats */
    STATS_POOLS,        /* stats pools */
    STATS_SERVERS,      /* stats servers */
    STATS_ROUTES,       /* stats routes */
    STATS_ROUTE,        /* stats route CMD KEY: where that request goes now */
    STATS_PREVIEW,      /* stats preview */
    STATS_HOTKEYS,      /* stats hotkeys */
    STATS_UNKNOWN       /* anything else: ERROR, as memcached answers */
};

/* The group named by `stats` arguments (len 0: the general group). */
enum stats_group stats_group_by_name(const char *args, size_t len);

/* Connections refused by -n (counted by the accepting thread). */
extern uint64_t stats_rejected_connections;

#endif
