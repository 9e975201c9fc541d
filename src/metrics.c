/*
 * metrics.c: GET /metrics in Prometheus text format 0.0.4, and GET / the
 * status page (statuspage.h), on the --metrics port.
 *
 * Names follow Prometheus' conventions: luagent_ prefix, counters end in
 * _total, durations are in seconds, and per-server latency is a real
 * histogram (cumulative _bucket{le=...} series, _sum and _count) built from
 * the same power-of-two buckets `stats servers` takes its quantiles from.
 * Every scrape formats one snapshot (snapshot.h), so the values of one scrape
 * are consistent with each other.
 */
#include "metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stddef.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "luagent.h"
#include "clock.h"
#include "preview.h"
#include "proto.h"
#include "buf.h"
#include "hotkeys.h"
#include "snapshot.h"
#include "stats.h"
#include "statuspage.h"
#include "worker.h"

#define METRICS_PATH            "/metrics"
#define METRICS_CONTENT_TYPE    "text/plain; version=0.0.4; charset=utf-8"
#define STATUS_PATH             "/"
#define ROUTE_PATH              "/route"
#define ROUTE_PARAM_MAX         512     /* bytes of one decoded query value */
/* The page loads nothing: the browser is told to refuse anything it would
 * fetch, so an escaping mistake cannot pull in a script either. */
#define STATUS_POLICY           "default-src 'none'; style-src 'unsafe-inline'; " \
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define METRICS_IO_TIMEOUT_S    10      /* a scraper that stalls is dropped */

static int listen_fd = -1;
static struct evhttp *http;
static metrics_route_fn *route_answer;      /* GET /route (routelive.c) */

void
metrics_set_route(metrics_route_fn *fn)
{
    route_answer = fn;
}

int
metrics_parse_addr(const char *text, char *host, size_t hostlen, int *port,
                   char *err, size_t errlen)
{
    const char *colon, *h = text, *h_end;
    char *end;
    long p;

    if (text[0] == '[') {                       /* [IPv6]:PORT */
        h = text + 1;
        h_end = strchr(h, ']');
        colon = h_end && h_end[1] == ':' ? h_end + 1 : NULL;
    } else {
        colon = strrchr(text, ':');
        h_end = colon;
    }
    if (colon == NULL || h_end == h) {
        snprintf(err, errlen, "bad --metrics address '%s': expected ADDR:PORT "
                 "(e.g. 127.0.0.1:9150)", text);
        return -1;
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < 1 || p > 65535) {
        snprintf(err, errlen, "bad --metrics address '%s': port must be 1-65535", text);
        return -1;
    }
    if ((size_t)(h_end - h) >= hostlen) {
        snprintf(err, errlen, "bad --metrics address '%s': host name too long", text);
        return -1;
    }
    memcpy(host, h, (size_t)(h_end - h));
    host[h_end - h] = '\0';
    *port = (int)p;
    return 0;
}

int
metrics_bind(const char *addr, char *err, size_t errlen)
{
    char host[METRICS_HOST_MAX], service[16];
    struct addrinfo hints, *res;
    int port, rc, fd, one = 1;

    if (metrics_parse_addr(addr, host, sizeof(host), &port, err, errlen) < 0)
        return -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--metrics %s: cannot resolve '%s': %s", addr, host,
                 gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
        || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "--metrics %s: cannot listen: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    listen_fd = fd;
    return 0;
}

/* ---- Prometheus text format ---- */

static void
family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped, as the format requires. */
static void
label_value(struct evbuffer *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

/* name{key="value"} v, or name v when key is NULL. */
static void
sample(struct evbuffer *out, const char *name, const char *key, const char *value,
       uint64_t v)
{
    evbuffer_add_printf(out, "%s", name);
    if (key != NULL) {
        evbuffer_add_printf(out, "{%s=\"", key);
        label_value(out, value);
        evbuffer_add(out, "\"}", 2);
    }
    evbuffer_add_printf(out, " %" PRIu64 "\n", v);
}

/* A whole family with one unlabelled sample. */
static void
single(struct evbuffer *out, const char *name, const char *type, const char *help,
       uint64_t v)
{
    family(out, name, type, help);
    sample(out, name, NULL, NULL, v);
}

/* Seconds from nanoseconds, without trailing zeros ("0.000128"). */
static void
seconds(char *buf, size_t len, uint64_t ns)
{
    size_t n = (size_t)snprintf(buf, len, "%" PRIu64 ".%09" PRIu64,
                                ns / 1000000000u, ns % 1000000000u);

    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '.')
        buf[--n] = '\0';
}

/* The serving policy: file and checksum as labels (compare a fleet), load time. */
static void
render_policy(struct evbuffer *out, const struct snapshot *snap)
{
    family(out, "luagent_policy_info", "gauge",
           "The policy being served, as labels (checksum: FNV-1a of its bytes); always 1.");
    evbuffer_add_printf(out, "luagent_policy_info{policy=\"");
    label_value(out, snap->source);
    evbuffer_add_printf(out, "\",checksum=\"%08x\"} 1\n", snap->checksum);
    single(out, "luagent_policy_load_time_seconds", "gauge",
           "When the policy being served was loaded, in unix seconds.",
           (uint64_t)snap->load_time);
}

/* One preview family, labelled by group (prefix or pool). */
static void
preview_groups(struct evbuffer *out, const char *name, const char *help, const char *key,
               const struct preview_group *groups, int n)
{
    int i;

    family(out, name, "counter", help);
    for (i = 0; i < n; i++)
        sample(out, name, key, groups[i].name, groups[i].differ);
}

/* The candidate policy previewed beside the serving one (stats preview). */
static void
render_preview(struct evbuffer *out)
{
    struct preview_view *v = malloc(sizeof(*v));

    if (v == NULL)
        return;
    preview_view(v);
    single(out, "luagent_preview_loaded", "gauge",
           "1 while a candidate policy is previewed (luagent --preview).", v->loaded);
    single(out, "luagent_preview_keys_total", "counter",
           "Keys placed by the previewed candidate as well (since it loaded or the last reload).",
           v->keys);
    single(out, "luagent_preview_differ_total", "counter",
           "Keys whose servers the previewed candidate would change.", v->differ);
    preview_groups(out, "luagent_preview_differ_prefix_total",
                   "Keys the candidate would move, by the key prefix the policies name (* for none).",
                   "prefix", v->prefixes, v->nprefixes);
    preview_groups(out, "luagent_preview_differ_pool_total",
                   "Keys the candidate would move, by the serving pools that hold them.",
                   "pool", v->pools, v->npools);
    free(v);
}

/* The unlabelled counters of struct stats, in the order they are rendered. */
static const struct {
    const char *name;
    const char *help;
    size_t offset;
} total_counters[] = {
    { "luagent_get_hits_total", "Keys found by retrieval commands.",
      offsetof(struct stats, get_hits) },
    { "luagent_get_misses_total", "Keys not found by retrieval commands.",
      offsetof(struct stats, get_misses) },
    { "luagent_client_errors_total", "Requests refused by luagent's parser.",
      offsetof(struct stats, client_errors) },
    { "luagent_binary_requests_total", "Requests in memcached's binary protocol.",
      offsetof(struct stats, binary_requests) },
    { "luagent_server_errors_total", "Replies carrying a backend failure line.",
      offsetof(struct stats, server_errors) },
    { "luagent_hook_calls_total", "Lua hook runs.", offsetof(struct stats, hook_calls) },
    { "luagent_hook_errors_total", "Lua hooks that failed.",
      offsetof(struct stats, hook_errors) },
    { "luagent_hook_cache_hits_total", "Hook decisions taken from the decision cache.",
      offsetof(struct stats, hook_cache_hits) },
    { "luagent_read_bytes_total", "Bytes read from clients.",
      offsetof(struct stats, bytes_read) },
    { "luagent_written_bytes_total", "Bytes written to clients.",
      offsetof(struct stats, bytes_written) },
    { "luagent_out_of_memory_errors_total", "Requests answered SERVER_ERROR out of memory.",
      offsetof(struct stats, out_of_memory) },
    { "luagent_memory_closed_connections_total",
      "Clients closed: out of memory, or replies never read.",
      offsetof(struct stats, memory_closes) },
    { "luagent_memory_paused_reads_total",
      "Times a client's reading paused at client_max_memory.",
      offsetof(struct stats, memory_pauses) },
    { "luagent_refetched_values_total",
      "Values let go at client_max_memory (waiting for an earlier key) and asked again.",
      offsetof(struct stats, refetched_values) },
    { "luagent_slow_requests_total", "Requests slower than settings.log_slow_ms.",
      offsetof(struct stats, slow_requests) },
    { "luagent_sampled_requests_total", "Requests picked by settings.log_sample.",
      offsetof(struct stats, sampled_requests) },
    { "luagent_slow_sampled_lines_suppressed_total",
      "Slow and sampled request lines not written: over the per-worker limit.",
      offsetof(struct stats, reqlog_suppressed) },
};

static void
render_proxy(struct evbuffer *out, const struct snapshot *snap)
{
    const struct stats *t = &snap->totals;
    int i;

    family(out, "luagent_build_info", "gauge", "luagent's version, as a label; always 1.");
    evbuffer_add_printf(out, "luagent_build_info{version=\"%s\"} 1\n", LUAGENT_VERSION);
    single(out, "luagent_uptime_seconds", "gauge", "Seconds since luagent started.",
           stats_uptime());
    single(out, "luagent_open_client_connections", "gauge", "Client connections open now.",
           t->curr_connections);
    single(out, "luagent_client_connections_total", "counter",
           "Client connections accepted.", t->total_connections);
    single(out, "luagent_rejected_connections_total", "counter",
           "Client connections turned away by -n.",
           __atomic_load_n(&stats_rejected_connections, __ATOMIC_RELAXED));
    family(out, "luagent_commands_total", "counter",
           "Requests by command; retrieval commands count each key.");
    for (i = 0; i < CMD_COUNT; i++)
        sample(out, "luagent_commands_total", "command", proto_cmd_name((enum cmd)i),
               t->cmd[i]);
    for (i = 0; i < (int)(sizeof(total_counters) / sizeof(total_counters[0])); i++)
        single(out, total_counters[i].name, "counter", total_counters[i].help,
               *(const uint64_t *)((const char *)t + total_counters[i].offset));
    single(out, "luagent_buffer_bytes", "gauge", "Bytes held in buffers now.",
           snap->buffer_bytes);
    single(out, "luagent_free_list_bytes", "gauge", "Bytes kept in free lists for reuse.",
           snap->free_list_bytes);
    single(out, "luagent_max_memory_bytes", "gauge", "settings.max_memory (or -m).",
           snap->max_memory);
    single(out, "luagent_client_max_memory_bytes", "gauge",
           "settings.client_max_memory (or --client-max-memory).", snap->client_max_memory);
    single(out, "luagent_config_generation", "gauge", "Policy generation being served.",
           snap->generation);
    single(out, "luagent_reloads_total", "counter", "Policy reloads that took effect.",
           __atomic_load_n(&stats_reloads, __ATOMIC_RELAXED));
    single(out, "luagent_reload_failures_total", "counter", "Policy reloads refused.",
           __atomic_load_n(&stats_reload_failures, __ATOMIC_RELAXED));
    single(out, "luagent_reload_refused_remap_total", "counter",
           "Policy reloads refused for moving more keys than settings.max_remap.",
           __atomic_load_n(&stats_reload_refused_remap, __ATOMIC_RELAXED));
    single(out, "luagent_discover_changes_total", "counter",
           "Server DNS names whose answer changed (each rebuilds the pools).",
           __atomic_load_n(&stats_discover_changes, __ATOMIC_RELAXED));
    single(out, "luagent_discover_failures_total", "counter",
           "DNS questions for server names that failed (the last answer kept).",
           __atomic_load_n(&stats_discover_failures, __ATOMIC_RELAXED));
    render_policy(out, snap);
    render_preview(out);
}

/* One per-server family: f picks the value. */
static void
server_family(struct evbuffer *out, const struct snapshot *snap, const char *name,
              const char *type, const char *help, size_t offset)
{
    int i;

    family(out, name, type, help);
    for (i = 0; i < snap->nservers; i++)
        sample(out, name, "server", snap->servers[i].label,
               *(const uint64_t *)((const char *)&snap->servers[i].s + offset));
}

#define SERVER_FAMILY(name, type, help, field) \
    server_family(out, snap, name, type, help, offsetof(struct backend_stats, field))

static void
render_latency(struct evbuffer *out, const struct snapshot *snap)
{
    const char *name = "luagent_server_request_duration_seconds";
    char le[32], sum[32];
    int i;
    unsigned b;

    family(out, name, "histogram",
           "Round trip of server requests, from their write to their reply.");
    for (i = 0; i < snap->nservers; i++) {
        const struct snap_server *ss = &snap->servers[i];
        uint64_t cumulative = 0;

        for (b = 0; b < HISTOGRAM_BUCKETS; b++) {
            cumulative += ss->s.latency.buckets[b];
            if (b == HISTOGRAM_BUCKETS - 1)
                snprintf(le, sizeof(le), "+Inf");
            else
                seconds(le, sizeof(le), histogram_bucket_bound_ns(b));
            evbuffer_add_printf(out, "%s_bucket{server=\"", name);
            label_value(out, ss->label);
            evbuffer_add_printf(out, "\",le=\"%s\"} %" PRIu64 "\n", le, cumulative);
        }
        seconds(sum, sizeof(sum), ss->s.latency.sum_ns);
        evbuffer_add_printf(out, "%s_sum{server=\"", name);
        label_value(out, ss->label);
        evbuffer_add_printf(out, "\"} %s\n", sum[0] ? sum : "0");
        /* The +Inf bucket, so _count and the buckets always agree. */
        sample(out, "luagent_server_request_duration_seconds_count", "server", ss->label,
               cumulative);
    }
}

static void
render_servers(struct evbuffer *out, const struct snapshot *snap)
{
    int i;

    family(out, "luagent_server_up", "gauge",
           "1 when the server is up, 0 while it is marked down.");
    for (i = 0; i < snap->nservers; i++)
        sample(out, "luagent_server_up", "server", snap->servers[i].label,
               snap->servers[i].down ? 0 : 1);
    SERVER_FAMILY("luagent_server_requests_total", "counter",
                  "Requests sent to the server (each key of a batched get counts).", requests);
    SERVER_FAMILY("luagent_server_errors_total", "counter",
                  "Requests failed other than by timeout, refusals while down included.",
                  errors);
    SERVER_FAMILY("luagent_server_timeouts_total", "counter",
                  "Requests failed by timeout.", timeouts);
    SERVER_FAMILY("luagent_server_retries_total", "counter",
                  "Probe requests sent when a mark-down expired.", retries);
    SERVER_FAMILY("luagent_server_markdowns_total", "counter",
                  "Times the server was marked down.", markdowns);
    SERVER_FAMILY("luagent_server_backoffs_total", "counter",
                  "Mark-downs made twice as long as the last one (a server still failing).",
                  backoffs);
    SERVER_FAMILY("luagent_server_rejoin_flushes_total", "counter",
                  "flush_all sent to a server before it could rejoin (rejoin = \"flush\").",
                  rejoin_flushes);
    SERVER_FAMILY("luagent_server_rejoins_total", "counter",
                  "Rejoin flush_all answered OK: the server serves again.", rejoins);
    SERVER_FAMILY("luagent_open_server_connections", "gauge",
                  "Connections to the server open now (one per worker at most).",
                  curr_connections);
    SERVER_FAMILY("luagent_server_connections_total", "counter",
                  "Connections to the server opened.", connects);
    render_latency(out, snap);
}

/* The servers' own figures, named as memcached's Prometheus exporter names them. */
static const struct {
    const char *name, *type, *help;
} figure_families[SERVER_STAT_COUNT] = {
    [SERVER_STAT_CURR_ITEMS] = { "luagent_memcached_current_items", "gauge",
        "Items the server holds (its curr_items)." },
    [SERVER_STAT_TOTAL_ITEMS] = { "luagent_memcached_items_total", "counter",
        "Items the server stored since it started (its total_items)." },
    [SERVER_STAT_BYTES] = { "luagent_memcached_current_bytes", "gauge",
        "Bytes the server's items take (its bytes)." },
    [SERVER_STAT_LIMIT_MAXBYTES] = { "luagent_memcached_limit_bytes", "gauge",
        "The server's memory limit for items (its limit_maxbytes)." },
    [SERVER_STAT_EVICTIONS] = { "luagent_memcached_items_evicted_total", "counter",
        "Items the server evicted to make room (its evictions)." },
    [SERVER_STAT_CURR_CONNECTIONS] = { "luagent_memcached_current_connections", "gauge",
        "Connections open to the server from all its clients (its curr_connections)." },
};

/*
 * The background poll's results: whether each server answered, and the
 * figures of those that did. A server without an answer has no figure
 * series, so a sum over servers never counts it as zeros.
 */
static void
render_figures(struct evbuffer *out, const struct snapshot *snap)
{
    int i, k;

    if (!snap->fleet_on)
        return;
    family(out, "luagent_memcached_stats_answered", "gauge",
           "1 when the server answered the last background stats, 0 otherwise.");
    for (i = 0; i < snap->nservers; i++)
        sample(out, "luagent_memcached_stats_answered", "server", snap->servers[i].label,
               snap->servers[i].fleet.state == FLEET_ANSWERED);
    family(out, "luagent_memcached_stats_age_seconds", "gauge",
           "Seconds since the server's figures were taken.");
    for (i = 0; i < snap->nservers; i++)
        if (snap->servers[i].fleet.state == FLEET_ANSWERED)
            sample(out, "luagent_memcached_stats_age_seconds", "server",
                   snap->servers[i].label, snap->servers[i].fleet.age_s);
    for (k = 0; k < SERVER_STAT_COUNT; k++) {
        family(out, figure_families[k].name, figure_families[k].type, figure_families[k].help);
        for (i = 0; i < snap->nservers; i++) {
            const struct fleet_view *v = &snap->servers[i].fleet;

            if (v->state == FLEET_ANSWERED && (v->fig.have & (1u << k)))
                sample(out, figure_families[k].name, "server", snap->servers[i].label,
                       v->fig.v[k]);
        }
    }
}

static void
render_pools(struct evbuffer *out, const struct snapshot *snap)
{
    int i;

    family(out, "luagent_pool_servers", "gauge", "Servers in the pool.");
    for (i = 0; i < snap->npools; i++)
        sample(out, "luagent_pool_servers", "pool", snap->pools[i].name,
               (uint64_t)snap->pools[i].nservers);
    family(out, "luagent_pool_requests_total", "counter", "Requests that reached the pool.");
    for (i = 0; i < snap->npools; i++)
        sample(out, "luagent_pool_requests_total", "pool", snap->pools[i].name,
               snap->pools[i].requests);
    family(out, "luagent_pool_errors_total", "counter",
           "Requests the pool answered with an error.");
    for (i = 0; i < snap->npools; i++)
        sample(out, "luagent_pool_errors_total", "pool", snap->pools[i].name,
               snap->pools[i].errors);
}

/* Is type one of the comma-separated names in types? */
static bool
type_listed(const char *types, const char *type)
{
    size_t n = strlen(type);
    const char *p = types;

    while ((p = strstr(p, type)) != NULL) {
        if ((p == types || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
        p += n;
    }
    return false;
}

/*
 * A family (kind "counter" or "gauge") over every route node, or (types set:
 * "failover,all_fastest") over those of the types listed.
 */
static void
route_family_of(struct evbuffer *out, const struct snapshot *snap, const char *name,
                const char *type, const char *help, size_t offset, const char *types)
{
    int i;

    family(out, name, type, help);
    for (i = 0; i < snap->nroutes; i++) {
        const struct snap_route *sr = &snap->routes[i];

        if (types != NULL && !type_listed(types, sr->type))
            continue;

        evbuffer_add_printf(out, "%s{route=\"", name);
        label_value(out, sr->label);
        evbuffer_add_printf(out, "\",type=\"%s\"} %" PRIu64 "\n", sr->type,
                            *(const uint64_t *)((const char *)&sr->s + offset));
    }
}

#define ROUTE_FAMILY(name, help, field) \
    route_family_of(out, snap, name, "counter", help, offsetof(struct route_stats, field), NULL)
#define ROUTE_FAMILY_OF(types, name, help, field) \
    route_family_of(out, snap, name, "counter", help, offsetof(struct route_stats, field), types)
#define NEARCACHE_FAMILY(name, type, help, field) \
    route_family_of(out, snap, name, type, help, offsetof(struct route_stats, field), "nearcache")

/*
 * The hottest keys of all workers, hottest first, at most max; NULL out of
 * memory (or none to show). Free the list.
 */
static struct hotkey_view *
hot_top(unsigned max, int *n)
{
    int cap = worker_count() * HOTKEYS_PUBLISHED;
    struct hotkey_view *top = calloc((size_t)cap + 1, sizeof(*top));

    *n = 0;
    if (top == NULL)
        return NULL;
    *n = worker_hotkeys(top, cap);
    if (*n > (int)max)
        *n = (int)max;
    return top;
}

/* A hot key as it may be shown (settings.hotkeys_metrics): its hash, or its first bytes. */
static void
hot_key_text(const struct snapshot *snap, const struct hotkey_view *h, char *key, size_t len)
{
    if (snap->hotkeys_metrics == HOTKEYS_EXPORT_HASH)
        snprintf(key, len, "%016" PRIx64, hotkeys_hash(h->key, h->klen));
    else
        hotkeys_printable(h->key, h->klen, snap->hotkeys_metrics_key_bytes, key, len);
}

/*
 * The hottest keys as a gauge of reads per second, only when the policy
 * asks (settings.hotkeys_metrics): keys may be private, so by default none
 * is shown, and when shown, as a hash or as their first bytes.
 */
static void
render_hotkeys(struct evbuffer *out, const struct snapshot *snap)
{
    struct hotkey_view *top;
    char key[4 * HOTKEYS_KEY_MAX + 1];
    int i, n;

    if (snap->hotkeys_metrics == HOTKEYS_EXPORT_OFF
        || (top = hot_top(snap->hotkeys_metrics_top, &n)) == NULL)
        return;
    family(out, "luagent_hotkey_requests_per_second", "gauge",
           "Estimated reads a second of the hottest keys (key hashed or truncated).");
    for (i = 0; i < n; i++) {
        hot_key_text(snap, &top[i], key, sizeof(key));
        evbuffer_add_printf(out, "luagent_hotkey_requests_per_second{rank=\"%d\",key=\"", i + 1);
        label_value(out, key);
        evbuffer_add_printf(out, "\",pool=\"");
        label_value(out, top[i].pool);
        evbuffer_add_printf(out, "\",server=\"");
        label_value(out, top[i].server);
        evbuffer_add_printf(out, "\"} %.0f\n", top[i].rate);
    }
    free(top);
}

static void
render_routes(struct evbuffer *out, const struct snapshot *snap)
{
    ROUTE_FAMILY("luagent_route_requests_total", "Requests that reached the route node.",
                 requests);
    ROUTE_FAMILY("luagent_route_errors_total", "Requests the route node answered with an error.",
                 errors);
    ROUTE_FAMILY("luagent_route_hook_calls_total", "Lua runs of a hook node.", hook_calls);
    ROUTE_FAMILY("luagent_route_hook_cache_hits_total",
                 "Decisions of a hook node taken from the decision cache.", hook_cache_hits);
    ROUTE_FAMILY("luagent_route_skipped_down_total",
                 "Choices of a balance node that passed over a down child.", skipped_down);
    ROUTE_FAMILY_OF("coalesce,nearcache", "luagent_route_coalesced_total",
                    "Gets a coalesce or near cache node answered with an identical get's "
                    "reply.", coalesced);
    ROUTE_FAMILY_OF("coalesce", "luagent_route_leaders_total",
                    "Gets a coalesce node sent on, that identical gets could wait for.", leaders);
    ROUTE_FAMILY_OF("failover", "luagent_route_gutter_capped_total",
                    "Calls a failover node sent past its first child with the exptime "
                    "capped at gutter_ttl.", gutter_capped);
    ROUTE_FAMILY_OF("failover,all_fastest", "luagent_route_hedges_total",
                    "Children started because the one before had not answered "
                    "within wait_ms.", hedges);
    ROUTE_FAMILY_OF("ratelimit", "luagent_route_rate_over_total",
                    "Requests over a rate limit node's limit.", rate_over);
    ROUTE_FAMILY_OF("ratelimit", "luagent_route_rate_limited_total",
                    "Requests a rate limit node refused (over = \"error\").", rate_limited);
    NEARCACHE_FAMILY("luagent_nearcache_hits_total", "counter",
                     "Gets a near cache answered from a worker's copy.", nearcache_hits);
    NEARCACHE_FAMILY("luagent_nearcache_misses_total", "counter",
                     "Gets a near cache passed on to its route.", nearcache_misses);
    NEARCACHE_FAMILY("luagent_nearcache_evictions_total", "counter",
                     "Copies a near cache dropped for room (max_items, max_bytes).",
                     nearcache_evictions);
    NEARCACHE_FAMILY("luagent_nearcache_bytes", "gauge",
                     "Bytes a near cache holds now, all workers.", nearcache_bytes);
}

/* ---- HTTP ---- */

static void
send_metrics(struct evhttp_request *req, const struct snapshot *snap)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    render_proxy(out, snap);
    render_servers(out, snap);
    render_figures(out, snap);
    render_pools(out, snap);
    render_routes(out, snap);
    render_hotkeys(out, snap);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      METRICS_CONTENT_TYPE);
    evhttp_send_reply(req, HTTP_OK, "OK", out);
}

/*
 * Move a body made in a buf (of its own cache) to the reply's output, and
 * let both go; out of memory (body NULL or short), answer 500 and say false.
 */
static bool
body_to_output(struct evhttp_request *req, struct buf_cache *cache, struct buf *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    bool ok = body != NULL && !buf_failed(body)
              && evbuffer_add(out, body->data, body->len) == 0;

    buf_put(cache, body);
    buf_cache_free(cache);
    if (!ok)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    return ok;
}

static void
send_status_page(struct evhttp_request *req, const struct snapshot *snap)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct statuspage_context ctx = {
        .now = clock_unix(),
        .uptime_s = stats_uptime(),
        .threads = worker_count(),
        .reloads = __atomic_load_n(&stats_reloads, __ATOMIC_RELAXED),
        .reload_failures = __atomic_load_n(&stats_reload_failures, __ATOMIC_RELAXED),
    };
    struct statuspage_hotkey hot[HOTKEYS_PUBLISHED];
    char keys[HOTKEYS_PUBLISHED][4 * HOTKEYS_KEY_MAX + 1];
    struct hotkey_view *top = NULL;
    struct buf_cache cache = { 0 };
    struct buf *page = buf_get(&cache);
    int i, n = 0;

    /* The page shows what /metrics may show: nothing while keys are private. */
    ctx.hot_hidden = snap->hotkeys_metrics == HOTKEYS_EXPORT_OFF;
    if (!ctx.hot_hidden && (top = hot_top(HOTKEYS_PUBLISHED, &n)) != NULL) {
        for (i = 0; i < n; i++) {
            hot_key_text(snap, &top[i], keys[i], sizeof(keys[i]));
            hot[i] = (struct statuspage_hotkey){ keys[i], top[i].pool, top[i].server,
                                                 top[i].rate };
        }
        ctx.hot = hot;
        ctx.nhot = n;
    }
    if (page != NULL)
        statuspage_render(page, snap, &ctx);
    free(top);
    if (!body_to_output(req, &cache, page))
        return;
    evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_add_header(headers, "Content-Security-Policy", STATUS_POLICY);
    evhttp_send_reply(req, HTTP_OK, "OK", out);
}

/* ---- GET /route?cmd=CMD&key=KEY[&listener=NAME][&cn=NAME] ---- */

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* URL-decode len bytes of in ('+' is a space) into out; -1 on a bad escape,
 * a NUL byte or a value too long. */
static int
url_decode(const char *in, size_t len, char *out, size_t outlen)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)in[i];

        if (c == '%') {
            int hi = i + 2 < len ? hex_digit(in[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;

            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0 || n + 1 >= outlen)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

struct route_query {
    char cmd[ROUTE_PARAM_MAX], key[ROUTE_PARAM_MAX];
    char listener[ROUTE_PARAM_MAX], cn[ROUTE_PARAM_MAX];
};

/* Fill q from the query string; -1 with why on anything unexpected. */
static int
route_query_parse(const char *query, struct route_query *q, const char **why)
{
    const char *p = query ? query : "";

    memset(q, 0, sizeof(*q));
    while (*p != '\0') {
        size_t len = strcspn(p, "&"), nlen = strcspn(p, "=&");
        char *slot = NULL;

        if (nlen == 3 && memcmp(p, "cmd", 3) == 0)
            slot = q->cmd;
        else if (nlen == 3 && memcmp(p, "key", 3) == 0)
            slot = q->key;
        else if (nlen == 8 && memcmp(p, "listener", 8) == 0)
            slot = q->listener;
        else if (nlen == 2 && memcmp(p, "cn", 2) == 0)
            slot = q->cn;
        if (slot == NULL || nlen == len || slot[0] != '\0') {
            *why = slot == NULL ? "unknown parameter (the parameters are cmd, key, listener, cn)"
                 : nlen == len ? "a parameter without a value" : "a parameter given twice";
            return -1;
        }
        if (url_decode(p + nlen + 1, len - nlen - 1, slot, ROUTE_PARAM_MAX) < 0
            || slot[0] == '\0') {
            *why = "a value that is empty, too long, or badly %-encoded";
            return -1;
        }
        p += len + (p[len] == '&');
    }
    if (q->cmd[0] == '\0' || q->key[0] == '\0') {
        *why = "cmd and key are required: /route?cmd=get&key=KEY";
        return -1;
    }
    return 0;
}

static void
send_route(struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *why;
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct buf_cache cache = { 0 };
    struct buf *body = buf_get(&cache);
    struct route_query *q = calloc(1, sizeof(*q));
    bool made = body != NULL && q != NULL;
    int status = 500;

    if (!made) {
        /* out of memory: answered by body_to_output */
    } else if (route_query_parse(query, q, &why) < 0) {
        status = 400;
        buf_append_str(body, "{\"error\":\"bad query: ");
        buf_append_str(body, why);
        buf_append_str(body, "\"}\n");
    } else {
        status = route_answer(body, q->cmd, q->key, q->listener[0] ? q->listener : NULL,
                              q->cn[0] ? q->cn : NULL);
    }
    free(q);
    if (!made) {
        buf_put(&cache, body);
        body = NULL;
    }
    if (!body_to_output(req, &cache, body))
        return;
    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, status, status == 200 ? "OK" : status == 400 ? "Bad Request"
                      : status == 409 ? "Conflict" : "Internal Server Error", out);
}

static void
metrics_on_request(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct snapshot snap;
    bool route = path != NULL && strcmp(path, ROUTE_PATH) == 0, page;

    if (route || (path != NULL && strcmp(path, METRICS_PATH) == 0)) {
        page = false;
    } else if (path != NULL && strcmp(path, STATUS_PATH) == 0) {
        page = true;
    } else {
        evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(out, "not found: the metrics are at " METRICS_PATH
                            ", the status page at " STATUS_PATH ", where a request goes at "
                            ROUTE_PATH "?cmd=CMD&key=KEY\n");
        evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", out);
        return;
    }
    if ((evhttp_request_get_command(req) & (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)) == 0) {
        evhttp_add_header(headers, "Allow", "GET, HEAD");
        evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
        return;
    }
    if (route) {
        send_route(req);
        return;
    }
    if (snapshot_take(&snap, NULL) < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    if (page)
        send_status_page(req, &snap);
    else
        send_metrics(req, &snap);
    snapshot_free(&snap);
}

int
metrics_start(struct event_base *base, char *err, size_t errlen)
{
    if (listen_fd < 0)
        return 0;
    http = evhttp_new(base);
    if (http == NULL) {
        snprintf(err, errlen, "--metrics: cannot start the HTTP server");
        return -1;
    }
    /* Other methods reach the callback, which answers 405 (libevent: 501). */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST
                                     | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_timeout(http, METRICS_IO_TIMEOUT_S);
    evhttp_set_max_headers_size(http, 16384);
    evhttp_set_max_body_size(http, 0);
    evhttp_set_gencb(http, metrics_on_request, NULL);
    if (evhttp_accept_socket_with_handle(http, listen_fd) == NULL) {
        snprintf(err, errlen, "--metrics: cannot accept on the socket: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void
metrics_stop(void)
{
    if (http != NULL) {
        evhttp_free(http);      /* closes the listening socket too */
        http = NULL;
        listen_fd = -1;
    } else if (listen_fd >= 0) {
        close(listen_fd);
        listen_fd = -1;
    }
}
