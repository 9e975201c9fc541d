/*
 * snapshot.h: every counter summed over the workers at one moment, for the
 * `stats` replies and the metrics endpoint.
 *
 * Taking a snapshot reads the workers' counters with relaxed atomic loads
 * under the workers' swap lock (held for reading, so only a worker swapping
 * generations can wait on it, and only for the copy). The snapshot owns
 * copies of every name it holds, so it can be formatted after the lock is
 * released and outlives the generation it describes.
 */
#ifndef SNAPSHOT_H
#define SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "stats.h"

struct config;

struct snap_server {
    char                *label;         /* "host:port" */
    bool                 down;          /* marked down in any worker */
    struct backend_stats s;             /* summed; latency merged */
};

struct snap_route {
    char                *label;         /* stats_route_label */
    const char          *type;          /* "pool", "failover", ... (static) */
    struct route_stats   s;
};

struct snap_pool {
    char                *name;
    char                *servers;       /* "host:port,host:port" in pool order */
    int                  nservers;
    const char          *dist;          /* static */
    const char          *hash;          /* static */
    uint64_t             requests;      /* its route node's counters */
    uint64_t             errors;
};

struct snapshot {
    struct stats         totals;        /* proxy-wide counters, summed */
    unsigned             generation;
    uint64_t             buffer_bytes;  /* held in buffers by all workers now */
    uint64_t             free_list_bytes; /* kept in the workers' free lists */
    uint64_t             max_memory;    /* the generation's bounds */
    uint64_t             client_max_memory;
    char                *source;        /* policy file */
    uint32_t             checksum;
    struct snap_server  *servers;
    int                  nservers;
    struct snap_route   *routes;
    int                  nroutes;
    struct snap_pool    *pools;
    int                  npools;
};

/*
 * Fill snap for cfg, or, when cfg is NULL, for the generation the first
 * worker serves. Returns 0, or -1 out of memory (snap then holds nothing).
 */
int snapshot_take(struct snapshot *snap, const struct config *cfg);

void snapshot_free(struct snapshot *snap);

#endif
