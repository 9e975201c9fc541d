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
#include "config.h"
#include "counters.h"
#include "fleet.h"

struct config;

struct snap_server {
    char                *label;         /* "host:port" */
    bool                 down;          /* marked down in any worker */
    struct backend_stats s;             /* summed; latency merged */
    struct fleet_view    fleet;         /* the server's own figures (if fleet_on) */
};

struct snap_route {
    char                *label;         /* route_label */
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

/* The servers' own figures summed over the servers that answered, each once. */
struct snap_fleet {
    uint64_t             sum[SERVER_STAT_COUNT];
    int                  answered;      /* servers whose figures are in the sums */
    int                  unanswered;    /* servers without figures now */
    uint64_t             age_s;         /* the oldest figure in the sums (0: none) */
};

struct snapshot {
    struct stats         totals;        /* proxy-wide counters, summed */
    bool                 fleet_on;      /* the poller runs: fleet and servers[].fleet are set */
    struct snap_fleet    fleet;
    unsigned             generation;
    uint64_t             buffer_bytes;  /* held in buffers by all workers now */
    uint64_t             free_list_bytes; /* kept in the workers' free lists */
    uint64_t             max_memory;    /* the generation's bounds */
    uint64_t             client_max_memory;
    enum hotkeys_export  hotkeys_metrics; /* the generation's hot-key settings */
    unsigned             hotkeys_metrics_top;
    unsigned             hotkeys_metrics_key_bytes;
    char                *source;        /* policy file */
    uint32_t             checksum;
    int64_t              load_time;     /* unix seconds */
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

/*
 * down[i] = is server i of cfg marked down in any worker now. Call under
 * worker_read_lock.
 */
void snapshot_servers_down(const struct config *cfg, bool *down);

#endif
