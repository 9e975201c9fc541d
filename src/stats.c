/*
 * stats.c: the `stats` command: proxy-wide counters summed over workers, in
 * memcached's "STAT name value" format, then one line group per server.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "buf.h"
#include "config.h"
#include "luagent.h"
#include "worker.h"

static time_t started;

void
stats_init(void)
{
    started = time(NULL);
}

static void
stat_u64(struct buf *out, const char *name, uint64_t v)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "STAT %s %" PRIu64 "\r\n", name, v);

    buf_append(out, line, (size_t)n);
}

static void
stat_str(struct buf *out, const char *name, const char *v)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "STAT %s %s\r\n", name, v);

    buf_append(out, line, (size_t)n);
}

/* Sum of one counter (by offset in struct stats) over all workers. */
static uint64_t
sum(size_t offset)
{
    uint64_t total = 0;
    int i;

    for (i = 0; i < nworkers; i++)
        total += __atomic_load_n((uint64_t *)((char *)&workers[i].stats + offset),
                                 __ATOMIC_RELAXED);
    return total;
}

#define SUM(field) sum(offsetof(struct stats, field))

/* Per server of the current policy, summed over workers (under the swap lock). */
static void
render_servers(struct buf *out, const struct config *cfg)
{
    char name[300];
    int i, j;

    for (i = 0; i < cfg->nservers; i++) {
        struct backend_stats t = { 0 };
        bool down = false;

        for (j = 0; j < nworkers; j++) {
            const struct wconfig *wc = workers[j].current;
            const struct backend_stats *s;

            if (wc->config->generation != cfg->generation)
                continue;       /* mid-swap: that worker still counts elsewhere */
            s = backend_stats(wc->backends[i]);
            t.requests += STAT_READ(s->requests);
            t.errors += STAT_READ(s->errors);
            t.timeouts += STAT_READ(s->timeouts);
            down |= backend_is_down(wc->backends[i]);
        }
        snprintf(name, sizeof(name), "server:%s:state", cfg->servers[i].label);
        stat_str(out, name, down ? "down" : "up");
        snprintf(name, sizeof(name), "server:%s:requests", cfg->servers[i].label);
        stat_u64(out, name, t.requests);
        snprintf(name, sizeof(name), "server:%s:errors", cfg->servers[i].label);
        stat_u64(out, name, t.errors);
        snprintf(name, sizeof(name), "server:%s:timeouts", cfg->servers[i].label);
        stat_u64(out, name, t.timeouts);
    }
}

uint64_t stats_reloads;
uint64_t stats_reload_failures;

void
stats_render(struct buf *out, const struct config *cfg)
{
    time_t now = time(NULL);
    char checksum[16];

    stat_u64(out, "pid", (uint64_t)getpid());
    stat_u64(out, "uptime", (uint64_t)(now - started));
    stat_u64(out, "time", (uint64_t)now);
    stat_str(out, "version", MEMCACHED_COMPAT_VERSION "-luagent-" LUAGENT_VERSION);
    stat_u64(out, "threads", (uint64_t)nworkers);
    stat_u64(out, "curr_connections", SUM(curr_connections));
    stat_u64(out, "total_connections", SUM(total_connections));
    stat_u64(out, "rejected_connections",
             __atomic_load_n(&stats_rejected_connections, __ATOMIC_RELAXED));
    stat_u64(out, "cmd_get", SUM(cmd[CMD_GET]) + SUM(cmd[CMD_GETS])
                             + SUM(cmd[CMD_GAT]) + SUM(cmd[CMD_GATS]));
    stat_u64(out, "cmd_set", SUM(cmd[CMD_SET]) + SUM(cmd[CMD_ADD]) + SUM(cmd[CMD_REPLACE])
                             + SUM(cmd[CMD_APPEND]) + SUM(cmd[CMD_PREPEND])
                             + SUM(cmd[CMD_CAS]));
    stat_u64(out, "cmd_delete", SUM(cmd[CMD_DELETE]));
    stat_u64(out, "cmd_incr", SUM(cmd[CMD_INCR]));
    stat_u64(out, "cmd_decr", SUM(cmd[CMD_DECR]));
    stat_u64(out, "cmd_touch", SUM(cmd[CMD_TOUCH]) + SUM(cmd[CMD_GAT]) + SUM(cmd[CMD_GATS]));
    stat_u64(out, "cmd_flush", SUM(cmd[CMD_FLUSH_ALL]));
    stat_u64(out, "get_hits", SUM(get_hits));
    stat_u64(out, "get_misses", SUM(get_misses));
    stat_u64(out, "client_errors", SUM(client_errors));
    stat_u64(out, "server_errors", SUM(server_errors));
    stat_u64(out, "hook_calls", SUM(hook_calls));
    stat_u64(out, "hook_errors", SUM(hook_errors));
    stat_u64(out, "hook_cache_hits", SUM(hook_cache_hits));
    stat_u64(out, "config_generation", cfg->generation);
    stat_u64(out, "reloads", __atomic_load_n(&stats_reloads, __ATOMIC_RELAXED));
    stat_u64(out, "reload_failures", __atomic_load_n(&stats_reload_failures, __ATOMIC_RELAXED));
    stat_str(out, "policy", cfg->source);
    snprintf(checksum, sizeof(checksum), "%08x", cfg->checksum);
    stat_str(out, "policy_checksum", checksum);
    worker_read_lock();
    render_servers(out, cfg);
    worker_read_unlock();
    buf_append(out, "END\r\n", 5);
}
