/*
 * stats.c: the `stats` commands (memcached's "STAT name value" lines, then
 * END) and the per-worker route counters they report.
 *
 * `stats` gives the proxy-wide counters, the servers' own figures summed
 * (fleet.h; under memcached's names, so tools that add up memcached's stats
 * read them), then the server lines; `stats
 * pools`, `stats servers` and `stats routes` give one group each, as
 * "STAT <group>:<name>:<field> <value>" (the name may hold colons, as
 * host:port does: the field is what follows the last one). Anything else
 * answers ERROR, as memcached does for a `stats` group it does not know.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "fleet.h"
#include "hotkeys.h"
#include "luagent.h"
#include "preview.h"
#include "clock.h"
#include "snapshot.h"
#include "worker.h"

static time_t started;

void
stats_init(void)
{
    started = (time_t)clock_unix();
}

uint64_t
stats_uptime(void)
{
    return (uint64_t)(clock_unix() - started);
}

uint64_t stats_reloads;
uint64_t stats_reload_failures;
uint64_t stats_reload_refused_remap;
uint64_t stats_discover_changes;
uint64_t stats_discover_failures;

/* ---- rendering ---- */

static void
stat_u64(struct buf *out, const char *name, uint64_t v)
{
    char line[ROUTE_LABEL_MAX + 128];
    int n = snprintf(line, sizeof(line), "STAT %s %" PRIu64 "\r\n", name, v);

    buf_append(out, line, (size_t)n);
}

static void
stat_str(struct buf *out, const char *name, const char *v)
{
    buf_append_str(out, "STAT ");
    buf_append_str(out, name);
    buf_append(out, " ", 1);
    buf_append_str(out, v);
    buf_append(out, "\r\n", 2);
}

void
stats_line(struct buf *out, const char *name, const char *value)
{
    stat_str(out, name, value);
}

/* "STAT <group>:<name>:<field> <value>" */
static void
group_u64(struct buf *out, const char *group, const char *name, const char *field,
          uint64_t v)
{
    char key[ROUTE_LABEL_MAX + 64];

    snprintf(key, sizeof(key), "%s:%s:%s", group, name, field);
    stat_u64(out, key, v);
}

static void
group_str(struct buf *out, const char *group, const char *name, const char *field,
          const char *v)
{
    char key[ROUTE_LABEL_MAX + 64];

    snprintf(key, sizeof(key), "%s:%s:%s", group, name, field);
    stat_str(out, key, v);
}

/*
 * Where a server's own figure is shown. memcached's names, except its
 * curr_connections: luagent's own curr_connections (clients, and per server
 * its connections to that server) keeps memcached's meaning for luagent.
 */
static const char *
server_stat_field(enum server_stat stat, bool summed)
{
    if (stat == SERVER_STAT_CURR_CONNECTIONS)
        return summed ? "servers_curr_connections" : "server_curr_connections";
    return statsreply_name(stat);
}

/* The poller's lines for one server: its state, then its figures if it answered. */
static void
render_server_figures(struct buf *out, const char *name, const struct fleet_view *v)
{
    int k;

    group_str(out, "server", name, "stats_poll", fleet_state_name(v->state));
    if (v->state != FLEET_ANSWERED)
        return;
    group_u64(out, "server", name, "stats_age_s", v->age_s);
    for (k = 0; k < SERVER_STAT_COUNT; k++)
        if (v->fig.have & (1u << k))
            group_u64(out, "server", name, server_stat_field((enum server_stat)k, false),
                      v->fig.v[k]);
}

/* The servers' figures summed, under the names tools read from memcached. */
static void
render_fleet_sums(struct buf *out, const struct snapshot *snap)
{
    int k;

    for (k = 0; k < SERVER_STAT_COUNT; k++)
        stat_u64(out, server_stat_field((enum server_stat)k, true), snap->fleet.sum[k]);
    stat_u64(out, "servers_stats_answered", (uint64_t)snap->fleet.answered);
    stat_u64(out, "servers_stats_unanswered", (uint64_t)snap->fleet.unanswered);
    stat_u64(out, "servers_stats_age_s", snap->fleet.age_s);
}

static void
render_servers(struct buf *out, const struct snapshot *snap)
{
    int i;

    for (i = 0; i < snap->nservers; i++) {
        const struct snap_server *ss = &snap->servers[i];
        const char *name = ss->label;

        group_str(out, "server", name, "state", ss->down ? "down" : "up");
        group_u64(out, "server", name, "requests", ss->s.requests);
        group_u64(out, "server", name, "errors", ss->s.errors);
        group_u64(out, "server", name, "timeouts", ss->s.timeouts);
        group_u64(out, "server", name, "retries", ss->s.retries);
        group_u64(out, "server", name, "markdowns", ss->s.markdowns);
        group_u64(out, "server", name, "backoffs", ss->s.backoffs);
        group_u64(out, "server", name, "rejoin_flushes", ss->s.rejoin_flushes);
        group_u64(out, "server", name, "rejoins", ss->s.rejoins);
        group_u64(out, "server", name, "curr_connections", ss->s.curr_connections);
        group_u64(out, "server", name, "total_connections", ss->s.connects);
        group_u64(out, "server", name, "replies", histogram_count(&ss->s.latency));
        group_u64(out, "server", name, "latency_p50_us",
                  histogram_quantile(&ss->s.latency, 0.50) / 1000);
        group_u64(out, "server", name, "latency_p99_us",
                  histogram_quantile(&ss->s.latency, 0.99) / 1000);
        if (snap->fleet_on)
            render_server_figures(out, name, &ss->fleet);
    }
}

static void
render_pools(struct buf *out, const struct snapshot *snap)
{
    int i;

    for (i = 0; i < snap->npools; i++) {
        const struct snap_pool *sp = &snap->pools[i];

        group_str(out, "pool", sp->name, "servers", sp->servers);
        group_u64(out, "pool", sp->name, "nservers", (uint64_t)sp->nservers);
        group_str(out, "pool", sp->name, "distribution", sp->dist);
        group_str(out, "pool", sp->name, "hash", sp->hash);
        group_u64(out, "pool", sp->name, "requests", sp->requests);
        group_u64(out, "pool", sp->name, "errors", sp->errors);
    }
}

/* The counters only some node types have, for those types. */
static void
render_route_extras(struct buf *out, const struct snap_route *sr)
{
    bool failover = strcmp(sr->type, "failover") == 0;

    if (failover)
        group_u64(out, "route", sr->label, "gutter_capped", sr->s.gutter_capped);
    if (failover || strcmp(sr->type, "all_fastest") == 0)
        group_u64(out, "route", sr->label, "hedges", sr->s.hedges);
    if (strcmp(sr->type, "ratelimit") == 0) {
        group_u64(out, "route", sr->label, "rate_over", sr->s.rate_over);
        group_u64(out, "route", sr->label, "rate_limited", sr->s.rate_limited);
    }
    if (strcmp(sr->type, "coalesce") == 0) {
        group_u64(out, "route", sr->label, "coalesced", sr->s.coalesced);
        group_u64(out, "route", sr->label, "leaders", sr->s.leaders);
    }
    if (strcmp(sr->type, "nearcache") == 0) {
        group_u64(out, "route", sr->label, "hits", sr->s.nearcache_hits);
        group_u64(out, "route", sr->label, "misses", sr->s.nearcache_misses);
        group_u64(out, "route", sr->label, "coalesced", sr->s.coalesced);
        group_u64(out, "route", sr->label, "evictions", sr->s.nearcache_evictions);
        group_u64(out, "route", sr->label, "bytes", sr->s.nearcache_bytes);
    }
}

static void
render_routes(struct buf *out, const struct snapshot *snap)
{
    int i;

    for (i = 0; i < snap->nroutes; i++) {
        const struct snap_route *sr = &snap->routes[i];

        group_str(out, "route", sr->label, "type", sr->type);
        group_u64(out, "route", sr->label, "requests", sr->s.requests);
        group_u64(out, "route", sr->label, "errors", sr->s.errors);
        group_u64(out, "route", sr->label, "hook_calls", sr->s.hook_calls);
        group_u64(out, "route", sr->label, "hook_cache_hits", sr->s.hook_cache_hits);
        if (strcmp(sr->type, "balance") == 0)     /* its own figure */
            group_u64(out, "route", sr->label, "skipped_down", sr->s.skipped_down);
        render_route_extras(out, sr);
    }
}

/*
 * The hottest keys of all workers, as published in the last second:
 * "STAT hotkey:<rank>:<field> <value>", rank 1 the hottest.
 */
static void
render_hotkeys(struct buf *out)
{
    int cap = worker_count() * HOTKEYS_PUBLISHED, i, n;
    struct hotkey_view *top = calloc((size_t)cap + 1, sizeof(*top));
    char rank[16], key[4 * HOTKEYS_KEY_MAX + 1];

    if (top == NULL)
        return;
    n = worker_hotkeys(top, cap);
    for (i = 0; i < n && i < HOTKEYS_PUBLISHED; i++) {
        snprintf(rank, sizeof(rank), "%d", i + 1);
        hotkeys_printable(top[i].key, top[i].klen, HOTKEYS_KEY_MAX, key, sizeof(key));
        group_str(out, "hotkey", rank, "key", key);
        group_u64(out, "hotkey", rank, "requests_per_second", (uint64_t)(top[i].rate + 0.5));
        group_str(out, "hotkey", rank, "pool", top[i].pool);
        group_str(out, "hotkey", rank, "server", top[i].server);
    }
    free(top);
}

static void
render_general(struct buf *out, const struct snapshot *snap)
{
    const struct stats *t = &snap->totals;
    time_t now = (time_t)clock_unix();
    char checksum[16];

    stat_u64(out, "pid", (uint64_t)getpid());
    stat_u64(out, "uptime", stats_uptime());
    stat_u64(out, "time", (uint64_t)now);
    stat_str(out, "version", VERSION_TEXT);
    stat_u64(out, "threads", (uint64_t)worker_count());
    stat_u64(out, "curr_connections", t->curr_connections);
    stat_u64(out, "total_connections", t->total_connections);
    stat_u64(out, "rejected_connections",
             __atomic_load_n(&stats_rejected_connections, __ATOMIC_RELAXED));
    /* Meta requests count where memcached counts them: mg as a get, ms as a
     * set, md as a delete (ma, whose direction is a flag, in neither). */
    stat_u64(out, "cmd_get", t->cmd[CMD_GET] + t->cmd[CMD_GETS] + t->cmd[CMD_GAT]
                             + t->cmd[CMD_GATS] + t->cmd[CMD_MG]);
    stat_u64(out, "cmd_set", t->cmd[CMD_SET] + t->cmd[CMD_ADD] + t->cmd[CMD_REPLACE]
                             + t->cmd[CMD_APPEND] + t->cmd[CMD_PREPEND] + t->cmd[CMD_CAS]
                             + t->cmd[CMD_MS]);
    stat_u64(out, "cmd_delete", t->cmd[CMD_DELETE] + t->cmd[CMD_MD]);
    stat_u64(out, "cmd_incr", t->cmd[CMD_INCR]);
    stat_u64(out, "cmd_decr", t->cmd[CMD_DECR]);
    stat_u64(out, "cmd_touch", t->cmd[CMD_TOUCH] + t->cmd[CMD_GAT] + t->cmd[CMD_GATS]);
    stat_u64(out, "cmd_flush", t->cmd[CMD_FLUSH_ALL]);
    stat_u64(out, "get_hits", t->get_hits);
    stat_u64(out, "get_misses", t->get_misses);
    stat_u64(out, "client_errors", t->client_errors);
    stat_u64(out, "binary_requests", t->binary_requests);
    stat_u64(out, "server_errors", t->server_errors);
    stat_u64(out, "hook_calls", t->hook_calls);
    stat_u64(out, "hook_errors", t->hook_errors);
    stat_u64(out, "hook_cache_hits", t->hook_cache_hits);
    stat_u64(out, "bytes_read", t->bytes_read);
    stat_u64(out, "bytes_written", t->bytes_written);
    stat_u64(out, "out_of_memory_errors", t->out_of_memory);
    stat_u64(out, "memory_closed_connections", t->memory_closes);
    stat_u64(out, "memory_paused_reads", t->memory_pauses);
    stat_u64(out, "refetched_values", t->refetched_values);
    stat_u64(out, "slow_requests", t->slow_requests);
    stat_u64(out, "sampled_requests", t->sampled_requests);
    stat_u64(out, "slow_sampled_lines_suppressed", t->reqlog_suppressed);
    stat_u64(out, "buffer_bytes", snap->buffer_bytes);
    stat_u64(out, "free_list_bytes", snap->free_list_bytes);
    stat_u64(out, "max_memory", snap->max_memory);
    stat_u64(out, "client_max_memory", snap->client_max_memory);
    stat_u64(out, "config_generation", snap->generation);
    stat_u64(out, "reloads", __atomic_load_n(&stats_reloads, __ATOMIC_RELAXED));
    stat_u64(out, "reload_failures", __atomic_load_n(&stats_reload_failures, __ATOMIC_RELAXED));
    stat_u64(out, "reload_refused_remap",
             __atomic_load_n(&stats_reload_refused_remap, __ATOMIC_RELAXED));
    stat_u64(out, "discover_changes", __atomic_load_n(&stats_discover_changes, __ATOMIC_RELAXED));
    stat_u64(out, "discover_failures",
             __atomic_load_n(&stats_discover_failures, __ATOMIC_RELAXED));
    stat_str(out, "policy", snap->source);
    snprintf(checksum, sizeof(checksum), "%08x", snap->checksum);
    stat_str(out, "policy_checksum", checksum);
    stat_u64(out, "policy_load_time", (uint64_t)snap->load_time);
    if (snap->fleet_on)
        render_fleet_sums(out, snap);
    render_servers(out, snap);
}

/* stats preview: the candidate beside the live policy, and the keys that would move. */
static void
render_preview(struct buf *out)
{
    struct preview_view *v = malloc(sizeof(*v));
    char name[PREVIEW_NAME_MAX + 32], checksum[16];
    int i;

    stat_u64(out, "preview_loads", __atomic_load_n(&preview_loads, __ATOMIC_RELAXED));
    stat_u64(out, "preview_failures", __atomic_load_n(&preview_failures, __ATOMIC_RELAXED));
    if (v == NULL)
        return;
    preview_view(v);
    stat_u64(out, "preview_loaded", v->loaded);
    if (v->loaded) {
        stat_str(out, "preview_file", v->file);
        snprintf(checksum, sizeof(checksum), "%08x", v->checksum);
        stat_str(out, "preview_checksum", checksum);
        stat_u64(out, "preview_load_time", (uint64_t)v->load_time);
        stat_u64(out, "preview_keys", v->keys);
        stat_u64(out, "preview_differ", v->differ);
        stat_u64(out, "preview_skipped", v->skipped);
        for (i = 0; i < v->nprefixes; i++) {
            group_u64(out, "prefix", v->prefixes[i].name, "keys", v->prefixes[i].keys);
            group_u64(out, "prefix", v->prefixes[i].name, "differ", v->prefixes[i].differ);
        }
        for (i = 0; i < v->npools; i++) {
            group_u64(out, "pool", v->pools[i].name, "keys", v->pools[i].keys);
            group_u64(out, "pool", v->pools[i].name, "differ", v->pools[i].differ);
        }
        for (i = 0; i < v->nsamples; i++) {
            snprintf(name, sizeof(name), "sample:%d", i + 1);
            stat_str(out, name, v->samples[i]);
        }
    }
    free(v);
}

void
stats_render(struct buf *out, const struct config *cfg, enum stats_group group)
{
    struct snapshot snap;

    if (snapshot_take(&snap, cfg) < 0) {
        buf_append_str(out, "SERVER_ERROR out of memory\r\n");
        return;
    }
    switch (group) {
    case STATS_GENERAL: render_general(out, &snap); break;
    case STATS_POOLS:   render_pools(out, &snap); break;
    case STATS_SERVERS: render_servers(out, &snap); break;
    case STATS_ROUTES:  render_routes(out, &snap); break;
    case STATS_PREVIEW: render_preview(out); break;
    case STATS_HOTKEYS: render_hotkeys(out); break;
    case STATS_ROUTE:   /* answered by the route writer (routelive.c) */
    case STATS_UNKNOWN: break;
    }
    snapshot_free(&snap);
    buf_append(out, "END\r\n", 5);
}
