/*
 * statuspage.c: the HTML status page of the metrics port (GET /).
 *
 * The page is for a person at a browser during an incident: which servers
 * are down, which fail or are slow, whether the hit ratio fell, which policy
 * is live. It carries its own style and draws its bars as inline SVG, so it
 * loads nothing from anywhere (the metrics port may be reachable only
 * through a tunnel, and a status page must not depend on a CDN), and it
 * reloads itself with a meta refresh, so it works without JavaScript.
 * Every name from the policy (pools, servers, the file name) is escaped.
 */
#include "statuspage.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "histogram.h"
#include "luagent.h"
#include "snapshot.h"

#define BAR_WIDTH 100               /* pixels of a full bar */

static void
put(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct buf *out, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        buf_append(out, small, (size_t)n);
        return;
    }
    if (buf_reserve(out, (size_t)n + 1) < 0) {
        out->failed = true;     /* as an append that cannot grow does */
        return;
    }
    va_start(ap, fmt);
    vsnprintf(out->data + out->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    out->len += (uint32_t)n;
}

/* Text from the policy or the network, safe in an element or an attribute. */
static void
put_text(struct buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':  buf_append_str(out, "&amp;"); break;
        case '<':  buf_append_str(out, "&lt;"); break;
        case '>':  buf_append_str(out, "&gt;"); break;
        case '"':  buf_append_str(out, "&quot;"); break;
        case '\'': buf_append_str(out, "&#39;"); break;
        default:   buf_append(out, s, 1); break;
        }
    }
}

/* A share as a percentage with two decimals; "-" when there is nothing to divide. */
static void
put_share(struct buf *out, uint64_t part, uint64_t whole)
{
    if (whole == 0)
        buf_append_str(out, "-");
    else
        put(out, "%.2f%%", 100.0 * (double)part / (double)whole);
}

/* A horizontal bar filled to part/whole, labelled for screen readers. */
static void
put_bar(struct buf *out, uint64_t part, uint64_t whole, const char *colour)
{
    unsigned fill = whole ? (unsigned)((double)BAR_WIDTH * (double)part / (double)whole + 0.5) : 0;

    put(out, "<svg width=\"%d\" height=\"10\" role=\"img\" aria-label=\"", BAR_WIDTH);
    put_share(out, part, whole);
    put(out, "\"><rect width=\"%d\" height=\"10\" fill=\"#e6e6e6\"/>"
        "<rect width=\"%u\" height=\"10\" fill=\"%s\"/></svg>", BAR_WIDTH, fill, colour);
}

/* "42 s", "7 min", "3 h 05 min", "2 d 4 h". */
static void
put_duration(struct buf *out, uint64_t s)
{
    if (s < 60)
        put(out, "%" PRIu64 " s", s);
    else if (s < 3600)
        put(out, "%" PRIu64 " min", s / 60);
    else if (s < 86400)
        put(out, "%" PRIu64 " h %02" PRIu64 " min", s / 3600, s / 60 % 60);
    else
        put(out, "%" PRIu64 " d %" PRIu64 " h", s / 86400, s / 3600 % 24);
}

/* A latency in microseconds or milliseconds; "-" before the first reply. */
static void
put_latency(struct buf *out, uint64_t ns, bool any)
{
    if (!any)
        buf_append_str(out, "-");
    else if (ns < 1000000)
        put(out, "%" PRIu64 " &micro;s", ns / 1000);
    else
        put(out, "%.1f ms", (double)ns / 1e6);
}

static void
put_utc(struct buf *out, int64_t when)
{
    time_t t = (time_t)when;
    char text[32];
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm) == 0)
        put(out, "%" PRId64, when);
    else
        put(out, "%s UTC", text);
}

static void
render_head(struct buf *out)
{
    put(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"refresh\" content=\"%d\">\n"
        "<title>luagent status</title>\n", STATUSPAGE_REFRESH_S);
    buf_append_str(out,
        "<style>\n"
        "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1d}\n"
        "h1{font-size:1.4em;margin:0}\n"
        "h2{font-size:1.1em;margin:1.4em 0 .4em}\n"
        "table{border-collapse:collapse}\n"
        "th,td{padding:.2em .7em;text-align:right;border-bottom:1px solid #ddd}\n"
        "th:first-child,td:first-child{text-align:left}\n"
        "thead th{background:#f2f2f2}\n"
        ".up{color:#17702a;font-weight:bold}\n"
        ".down{color:#fff;background:#b3261e;font-weight:bold}\n"
        ".note{color:#666}\n"
        "</style>\n</head>\n<body>\n");
}

static void
render_title(struct buf *out, const struct statuspage_context *ctx)
{
    put(out, "<h1>luagent %s</h1>\n<p class=\"note\">up ", LUAGENT_VERSION);
    put_duration(out, ctx->uptime_s);
    put(out, ", %d worker thread%s; the page reloads every %d s; "
        "<a href=\"/metrics\">metrics</a></p>\n",
        ctx->threads, ctx->threads == 1 ? "" : "s", STATUSPAGE_REFRESH_S);
}

static void
render_policy(struct buf *out, const struct snapshot *snap, const struct statuspage_context *ctx)
{
    buf_append_str(out, "<h2>Policy</h2>\n<table>\n<tr><th>file</th><td>");
    put_text(out, snap->source);
    put(out, "</td></tr>\n<tr><th>generation</th><td>%u</td></tr>\n"
        "<tr><th>checksum</th><td>%08x</td></tr>\n<tr><th>loaded</th><td>",
        snap->generation, snap->checksum);
    put_utc(out, snap->load_time);
    buf_append_str(out, ", ");
    put_duration(out, ctx->now > snap->load_time ? (uint64_t)(ctx->now - snap->load_time) : 0);
    put(out, " ago</td></tr>\n<tr><th>reloads</th><td>%" PRIu64 " taken, %" PRIu64
        " refused</td></tr>\n</table>\n", ctx->reloads, ctx->reload_failures);
}

static void
render_traffic(struct buf *out, const struct snapshot *snap)
{
    const struct stats *t = &snap->totals;
    uint64_t requests = 0, lookups = t->get_hits + t->get_misses;
    int i;

    for (i = 0; i < CMD_COUNT; i++)
        requests += t->cmd[i];
    buf_append_str(out, "<h2>Traffic</h2>\n<table>\n<tr><th>hit ratio</th><td>");
    put_share(out, t->get_hits, lookups);
    put(out, " (%" PRIu64 " hits, %" PRIu64 " misses) ", t->get_hits, t->get_misses);
    put_bar(out, t->get_hits, lookups, "#2e7d32");
    put(out, "</td></tr>\n<tr><th>requests</th><td>%" PRIu64 "</td></tr>\n"
        "<tr><th>client connections</th><td>%" PRIu64 " open, %" PRIu64 " accepted</td></tr>\n"
        "<tr><th>errors answered</th><td>%" PRIu64 " client, %" PRIu64 " server</td></tr>\n"
        "</table>\n", requests, t->curr_connections, t->total_connections,
        t->client_errors, t->server_errors);
}

static void
render_server_row(struct buf *out, const struct snap_server *ss, uint64_t all_requests)
{
    const struct backend_stats *s = &ss->s;
    uint64_t replies = histogram_count(&s->latency);
    uint64_t failed = s->errors + s->timeouts;

    buf_append_str(out, "<tr><td>");
    put_text(out, ss->label);
    put(out, "</td><td class=\"%s\">%s</td><td>%" PRIu64 "</td><td>",
        ss->down ? "down" : "up", ss->down ? "down" : "up", s->requests);
    put_bar(out, s->requests, all_requests, "#1565c0");
    buf_append_str(out, "</td><td>");
    /* Failed among the requests that finished: refusals while down count
     * as errors but not as requests, so requests is not the divisor. */
    put_share(out, failed, replies + failed);
    put(out, "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>",
        s->errors, s->timeouts, s->markdowns);
    put_latency(out, histogram_quantile(&s->latency, 0.50), replies > 0);
    buf_append_str(out, "</td><td>");
    put_latency(out, histogram_quantile(&s->latency, 0.99), replies > 0);
    put(out, "</td><td>%" PRIu64 "</td></tr>\n", s->curr_connections);
}

static void
render_servers(struct buf *out, const struct snapshot *snap)
{
    uint64_t all_requests = 0;
    int i, down = 0;

    for (i = 0; i < snap->nservers; i++) {
        all_requests += snap->servers[i].s.requests;
        down += snap->servers[i].down;
    }
    put(out, "<h2>Servers: %d up, %d down</h2>\n<table>\n<thead><tr><th>server</th>"
        "<th>state</th><th>requests</th><th>share</th><th>error rate</th><th>errors</th>"
        "<th>timeouts</th><th>mark-downs</th><th>p50</th><th>p99</th>"
        "<th>connections</th></tr></thead>\n<tbody>\n", snap->nservers - down, down);
    for (i = 0; i < snap->nservers; i++)
        render_server_row(out, &snap->servers[i], all_requests);
    buf_append_str(out, "</tbody>\n</table>\n");
}

static void
render_pools(struct buf *out, const struct snapshot *snap)
{
    int i;

    buf_append_str(out, "<h2>Pools</h2>\n<table>\n<thead><tr><th>pool</th><th>servers</th>"
                   "<th>distribution</th><th>hash</th><th>requests</th><th>errors</th>"
                   "</tr></thead>\n<tbody>\n");
    for (i = 0; i < snap->npools; i++) {
        const struct snap_pool *sp = &snap->pools[i];

        buf_append_str(out, "<tr><td>");
        put_text(out, sp->name);
        put(out, "</td><td>%d</td><td>%s</td><td>%s</td><td>%" PRIu64 "</td><td>%" PRIu64
            "</td></tr>\n", sp->nservers, sp->dist, sp->hash, sp->requests, sp->errors);
    }
    buf_append_str(out, "</tbody>\n</table>\n");
}

static void
render_routes(struct buf *out, const struct snapshot *snap)
{
    int i;

    buf_append_str(out, "<h2>Routes</h2>\n<table>\n<thead><tr><th>route</th><th>type</th>"
                   "<th>requests</th><th>errors</th><th>hook calls</th>"
                   "<th>hook cache hits</th></tr></thead>\n<tbody>\n");
    for (i = 0; i < snap->nroutes; i++) {
        const struct snap_route *sr = &snap->routes[i];

        buf_append_str(out, "<tr><td>");
        put_text(out, sr->label);
        put(out, "</td><td>%s</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
            "</td><td>%" PRIu64 "</td></tr>\n", sr->type, sr->s.requests, sr->s.errors,
            sr->s.hook_calls, sr->s.hook_cache_hits);
    }
    buf_append_str(out, "</tbody>\n</table>\n");
}

static void
render_hotkeys(struct buf *out, const struct statuspage_context *ctx)
{
    int i;

    buf_append_str(out, "<h2>Hot keys</h2>\n");
    if (ctx->hot_hidden) {
        buf_append_str(out, "<p>Hidden: keys may be private. Set <code>settings.hotkeys_metrics"
                       "</code> to <code>\"hash\"</code> or <code>\"truncate\"</code> to show "
                       "them here and in /metrics.</p>\n");
        return;
    }
    if (ctx->nhot == 0) {
        buf_append_str(out, "<p>None yet: no key is read often enough to stand out.</p>\n");
        return;
    }
    buf_append_str(out, "<table>\n<thead><tr><th>rank</th><th>key</th><th>reads/s</th>"
                   "<th>pool</th><th>server</th></tr></thead>\n<tbody>\n");
    for (i = 0; i < ctx->nhot; i++) {
        const struct statuspage_hotkey *h = &ctx->hot[i];

        put(out, "<tr><td>%d</td><td>", i + 1);
        put_text(out, h->key);
        put(out, "</td><td>%.0f</td><td>", h->rate);
        put_text(out, h->pool);
        buf_append_str(out, "</td><td>");
        put_text(out, h->server);
        buf_append_str(out, "</td></tr>\n");
    }
    buf_append_str(out, "</tbody>\n</table>\n");
}

void
statuspage_render(struct buf *out, const struct snapshot *snap,
                  const struct statuspage_context *ctx)
{
    render_head(out);
    render_title(out, ctx);
    render_policy(out, snap, ctx);
    render_traffic(out, snap);
    render_servers(out, snap);
    render_pools(out, snap);
    render_routes(out, snap);
    render_hotkeys(out, ctx);
    buf_append_str(out, "</body>\n</html>\n");
}
