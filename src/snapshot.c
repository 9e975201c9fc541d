/*
 * snapshot.c: summing the workers' counters into one struct snapshot.
 *
 * Servers and routes are matched across workers by name (host:port, route
 * label), not by index: while a reload is being taken, workers can briefly
 * serve different generations, and a server or route both name is still one
 * line with every worker's counts.
 */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "request.h"
#include "route.h"
#include "worker.h"

_Static_assert(sizeof(struct stats) % sizeof(uint64_t) == 0,
               "struct stats holds only uint64_t counters");

/* Add every counter of a worker's shard (all uint64_t) into sum. */
static void
sum_stats(struct stats *sum, const struct stats *shard)
{
    uint64_t *to = (uint64_t *)sum;
    const uint64_t *from = (const uint64_t *)shard;
    size_t i;

    for (i = 0; i < sizeof(*sum) / sizeof(uint64_t); i++)
        to[i] += __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

static void
sum_backend(struct backend_stats *sum, const struct backend_stats *s)
{
    sum->requests += STAT_READ(s->requests);
    sum->errors += STAT_READ(s->errors);
    sum->timeouts += STAT_READ(s->timeouts);
    sum->retries += STAT_READ(s->retries);
    sum->connects += STAT_READ(s->connects);
    sum->curr_connections += STAT_READ(s->curr_connections);
    sum->markdowns += STAT_READ(s->markdowns);
    sum->backoffs += STAT_READ(s->backoffs);
    sum->rejoin_flushes += STAT_READ(s->rejoin_flushes);
    sum->rejoins += STAT_READ(s->rejoins);
    histogram_merge(&sum->latency, &s->latency);
}

static void
sum_route(struct route_stats *sum, const struct route_stats *s)
{
    sum->requests += STAT_READ(s->requests);
    sum->errors += STAT_READ(s->errors);
    sum->hook_calls += STAT_READ(s->hook_calls);
    sum->hook_cache_hits += STAT_READ(s->hook_cache_hits);
    sum->gutter_capped += STAT_READ(s->gutter_capped);
    sum->hedges += STAT_READ(s->hedges);
    sum->rate_over += STAT_READ(s->rate_over);
    sum->rate_limited += STAT_READ(s->rate_limited);
    sum->skipped_down += STAT_READ(s->skipped_down);
    sum->coalesced += STAT_READ(s->coalesced);
    sum->leaders += STAT_READ(s->leaders);
    sum->nearcache_hits += STAT_READ(s->nearcache_hits);
    sum->nearcache_misses += STAT_READ(s->nearcache_misses);
    sum->nearcache_evictions += STAT_READ(s->nearcache_evictions);
    sum->nearcache_bytes += STAT_READ(s->nearcache_bytes);
}

/* This worker's connection set for srv, or NULL if its generation lacks it. */
static const struct backend *
worker_backend(const struct wconfig *wc, const struct server *srv)
{
    const struct config *c = wc->config;
    int i;

    if (srv->id < c->nservers && c->servers[srv->id].port == srv->port
        && strcmp(c->servers[srv->id].host, srv->host) == 0)
        return wc->backends[srv->id];
    for (i = 0; i < c->nservers; i++)
        if (c->servers[i].port == srv->port && strcmp(c->servers[i].host, srv->host) == 0)
            return wc->backends[i];
    return NULL;
}

/* This worker's counters for a route label, or NULL if its generation lacks it. */
static const struct route_counter *
worker_route(const struct wconfig *wc, int id, enum route_type type, const char *label)
{
    const struct route_counter *rc;
    int i;

    if (id < wc->config->nnodes) {
        rc = wc->routes[id];
        if (rc->type == type && strcmp(rc->label, label) == 0)
            return rc;
    }
    for (i = 0; i < wc->config->nnodes; i++) {
        rc = wc->routes[i];
        if (rc->type == type && strcmp(rc->label, label) == 0)
            return rc;
    }
    return NULL;
}

static int
take_servers(struct snapshot *snap, const struct config *cfg)
{
    int i, j;

    snap->servers = calloc((size_t)cfg->nservers + 1, sizeof(*snap->servers));
    if (snap->servers == NULL)
        return -1;
    snap->nservers = cfg->nservers;
    for (i = 0; i < cfg->nservers; i++) {
        struct snap_server *ss = &snap->servers[i];

        ss->label = strdup(cfg->servers[i].label);
        if (ss->label == NULL)
            return -1;
        for (j = 0; j < worker_count(); j++) {
            const struct backend *be = worker_backend(worker_generation(j), &cfg->servers[i]);

            if (be == NULL)
                continue;
            sum_backend(&ss->s, backend_stats(be));
            ss->down |= backend_is_down(be);
        }
    }
    return 0;
}

static int
take_routes(struct snapshot *snap, const struct config *cfg)
{
    char label[ROUTE_LABEL_MAX];
    int i, j;

    snap->routes = calloc((size_t)cfg->nnodes + 1, sizeof(*snap->routes));
    if (snap->routes == NULL)
        return -1;
    snap->nroutes = cfg->nnodes;
    for (i = 0; i < cfg->nnodes; i++) {
        const struct route *r = cfg->nodes[i];
        struct snap_route *sr = &snap->routes[i];

        route_label(cfg, r, label, sizeof(label));
        sr->label = strdup(label);
        sr->type = r->type == ROUTE_POOL ? "pool" : r->name;
        if (sr->label == NULL)
            return -1;
        for (j = 0; j < worker_count(); j++) {
            const struct route_counter *rc = worker_route(worker_generation(j), i, r->type, label);

            if (rc != NULL)
                sum_route(&sr->s, &rc->stats);
        }
    }
    return 0;
}

/* "host:port,host:port" for a pool's servers. */
static char *
pool_servers(const struct config *cfg, const struct pool *p)
{
    size_t len = 1, at = 0;
    char *out;
    int i;

    for (i = 0; i < p->nservers; i++)
        len += strlen(cfg->servers[p->server_ids[i]].label) + 1;
    out = malloc(len);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (i = 0; i < p->nservers; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%s", i ? "," : "",
                               cfg->servers[p->server_ids[i]].label);
    return out;
}

/* Pools take their counts from their route node (taken first). */
static int
take_pools(struct snapshot *snap, const struct config *cfg)
{
    int i, j;

    snap->pools = calloc((size_t)cfg->npools + 1, sizeof(*snap->pools));
    if (snap->pools == NULL)
        return -1;
    snap->npools = cfg->npools;
    for (i = 0; i < cfg->npools; i++) {
        const struct pool *p = cfg->pools[i];
        struct snap_pool *sp = &snap->pools[i];

        sp->name = strdup(p->name);
        sp->servers = pool_servers(cfg, p);
        if (sp->name == NULL || sp->servers == NULL)
            return -1;
        sp->nservers = p->nservers;
        sp->dist = dist_name(ring_dist(p->ring));
        sp->hash = hash_name(p->hash);
        for (j = 0; j < cfg->nnodes; j++) {
            if (cfg->nodes[j]->type == ROUTE_POOL && cfg->nodes[j]->pool == p) {
                sp->requests += snap->routes[j].s.requests;
                sp->errors += snap->routes[j].s.errors;
            }
        }
    }
    return 0;
}

/*
 * The poller's view of each server, and the sums. Taken after the workers'
 * counters, outside their lock: the poller has its own.
 */
static void
take_fleet(struct snapshot *snap)
{
    int i, k;

    snap->fleet_on = fleet_enabled();
    if (!snap->fleet_on)
        return;
    for (i = 0; i < snap->nservers; i++) {
        struct fleet_view *v = &snap->servers[i].fleet;

        fleet_view(snap->servers[i].label, v);
        if (v->state != FLEET_ANSWERED) {
            snap->fleet.unanswered++;
            continue;
        }
        snap->fleet.answered++;
        if (v->age_s > snap->fleet.age_s)
            snap->fleet.age_s = v->age_s;
        for (k = 0; k < SERVER_STAT_COUNT; k++)
            if (v->fig.have & (1u << k))
                snap->fleet.sum[k] += v->fig.v[k];
    }
}

int
snapshot_take(struct snapshot *snap, const struct config *cfg)
{
    int i, rc = -1;

    memset(snap, 0, sizeof(*snap));
    worker_read_lock();
    if (cfg == NULL)
        cfg = worker_generation(0)->config; /* alive while it is current */
    snap->generation = cfg->generation;
    snap->max_memory = cfg->max_memory;
    snap->client_max_memory = cfg->client_max_memory;
    snap->hotkeys_metrics = cfg->hotkeys_metrics;
    snap->hotkeys_metrics_top = cfg->hotkeys_metrics_top;
    snap->hotkeys_metrics_key_bytes = cfg->hotkeys_metrics_key_bytes;
    snap->buffer_bytes = worker_memory_used();
    snap->free_list_bytes = worker_memory_cached();
    snap->checksum = cfg->checksum;
    snap->load_time = cfg->load_time;
    snap->source = strdup(cfg->source);
    for (i = 0; i < worker_count(); i++)
        sum_stats(&snap->totals, worker_stats(i));
    if (snap->source != NULL && take_servers(snap, cfg) == 0
        && take_routes(snap, cfg) == 0 && take_pools(snap, cfg) == 0)
        rc = 0;
    worker_read_unlock();
    if (rc < 0)
        snapshot_free(snap);
    else
        take_fleet(snap);
    return rc;
}

void
snapshot_servers_down(const struct config *cfg, bool *down)
{
    int i, j;

    for (i = 0; i < cfg->nservers; i++) {
        down[i] = false;
        for (j = 0; j < worker_count(); j++) {
            const struct backend *be = worker_backend(worker_generation(j), &cfg->servers[i]);

            down[i] |= be != NULL && backend_is_down(be);
        }
    }
}

void
snapshot_free(struct snapshot *snap)
{
    int i;

    for (i = 0; i < snap->nservers && snap->servers; i++)
        free(snap->servers[i].label);
    for (i = 0; i < snap->nroutes && snap->routes; i++)
        free(snap->routes[i].label);
    for (i = 0; i < snap->npools && snap->pools; i++) {
        free(snap->pools[i].name);
        free(snap->pools[i].servers);
    }
    free(snap->servers);
    free(snap->routes);
    free(snap->pools);
    free(snap->source);
    memset(snap, 0, sizeof(*snap));
}
