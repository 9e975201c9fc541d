/*
 * test_statuspage.c: unit tests for the status page's HTML
 * (src/statuspage.c), rendered from a snapshot built by hand.
 */
#include "statuspage.h"

#include <stdlib.h>

#include "buf.h"
#include "histogram.h"
#include "luagent.h"
#include "snapshot.h"
#include "unit.h"

#define US 1000ull

static struct snap_server servers[2];
static struct snap_pool pools[1];
static struct snap_route routes[1];

/* Two servers of one pool: the first up and answering, the second down. */
static struct snapshot
example(void)
{
    struct snapshot snap = { 0 };
    int i;

    memset(servers, 0, sizeof(servers));
    servers[0].label = "10.0.0.1:11211";
    servers[0].s.requests = 4;
    servers[0].s.errors = 1;
    for (i = 0; i < 3; i++)
        histogram_record(&servers[0].s.latency, 100 * US);
    servers[1].label = "10.0.0.2:11211";
    servers[1].down = true;
    servers[1].s.requests = 2;
    servers[1].s.errors = 5;            /* 3 of them refused while down */
    servers[1].s.timeouts = 1;
    servers[1].s.markdowns = 1;
    pools[0] = (struct snap_pool){ .name = "main", .servers = "10.0.0.1:11211,10.0.0.2:11211",
                                   .nservers = 2, .dist = "ketama", .hash = "md5",
                                   .requests = 6, .errors = 2 };
    routes[0] = (struct snap_route){ .label = "main", .type = "pool",
                                     .s = { .requests = 6, .errors = 2 } };
    snap.totals.get_hits = 3;
    snap.totals.get_misses = 1;
    snap.generation = 7;
    snap.source = "/etc/luagent/policy.lua";
    snap.checksum = 0xab;
    snap.load_time = 86400;             /* 1970-01-02 00:00:00 UTC */
    snap.servers = servers;
    snap.nservers = 2;
    snap.pools = pools;
    snap.npools = 1;
    snap.routes = routes;
    snap.nroutes = 1;
    return snap;
}

/* The page as a C string, with the hot keys of hot (the caller frees it). */
static char *
render_hot(const struct snapshot *snap, const struct statuspage_context *hot)
{
    struct statuspage_context ctx = { .now = 86400 + 90, .uptime_s = 3725, .threads = 2,
                                      .reloads = 6, .reload_failures = 1 };
    struct buf_cache cache = { 0 };
    struct buf *page = buf_get(&cache);
    char *text;

    if (hot != NULL) {
        ctx.hot = hot->hot;
        ctx.nhot = hot->nhot;
        ctx.hot_hidden = hot->hot_hidden;
    }
    statuspage_render(page, snap, &ctx);
    buf_append(page, "", 1);
    CHECK(!buf_failed(page));
    text = strdup(page->data);
    buf_put(&cache, page);
    buf_cache_free(&cache);
    return text;
}

static char *
render(const struct snapshot *snap)
{
    return render_hot(snap, NULL);
}

#define CHECK_HAS(page, text) \
    UNIT_REPORT(strstr((page), (text)) != NULL, "the page lacks %s", (text))

static void
test_servers_up_and_down(void)
{
    struct snapshot snap = example();
    char *page = render(&snap);

    CHECK_HAS(page, "<h2>Servers: 1 up, 1 down</h2>");
    /* Each row: label, state word, requests, share bar, error rate over the
     * requests that finished (replies + errors + timeouts). */
    CHECK_HAS(page, "<tr><td>10.0.0.1:11211</td><td class=\"up\">up</td><td>4</td>"
                    "<td><svg width=\"100\" height=\"10\" role=\"img\" aria-label=\"66.67%\">");
    CHECK_HAS(page, "</svg></td><td>25.00%</td><td>1</td><td>0</td><td>0</td>");
    CHECK_HAS(page, "<tr><td>10.0.0.2:11211</td><td class=\"down\">down</td><td>2</td>");
    CHECK_HAS(page, "</svg></td><td>100.00%</td><td>5</td><td>1</td><td>1</td><td>-</td>"
                    "<td>-</td><td>0</td></tr>");
    /* 100 us lands in the (64, 128] us bucket: the median is interpolated in it. */
    CHECK_HAS(page, "<td>96 &micro;s</td>");
    free(page);
}

static void
test_policy_and_traffic(void)
{
    struct snapshot snap = example();
    char *page = render(&snap);

    CHECK_HAS(page, "<h1>luagent " LUAGENT_VERSION "</h1>");
    CHECK_HAS(page, "up 1 h 02 min, 2 worker threads");
    CHECK_HAS(page, "<tr><th>generation</th><td>7</td></tr>");
    CHECK_HAS(page, "<tr><th>checksum</th><td>000000ab</td></tr>");
    CHECK_HAS(page, "<td>1970-01-02 00:00:00 UTC, 1 min ago</td>");
    CHECK_HAS(page, "<td>6 taken, 1 refused</td>");
    CHECK_HAS(page, "<tr><th>hit ratio</th><td>75.00% (3 hits, 1 misses) ");
    CHECK_HAS(page, "<tr><td>main</td><td>2</td><td>ketama</td><td>md5</td><td>6</td>"
                    "<td>2</td></tr>");
    CHECK_HAS(page, "<tr><td>main</td><td>pool</td><td>6</td><td>2</td><td>0</td>"
                    "<td>0</td></tr>");
    CHECK_HAS(page, "<meta http-equiv=\"refresh\" content=\"5\">");
    free(page);

    snap.totals.get_hits = snap.totals.get_misses = 0;
    page = render(&snap);
    CHECK_HAS(page, "<tr><th>hit ratio</th><td>- (0 hits, 0 misses) ");
    free(page);
}

static void
test_names_are_escaped(void)
{
    struct snapshot snap = example();
    char *page;

    pools[0].name = "a<b>&\"c'";
    routes[0].label = "<script>";
    snap.source = "/tmp/<x>.lua";
    page = render(&snap);
    CHECK_HAS(page, "<tr><td>a&lt;b&gt;&amp;&quot;c&#39;</td>");
    CHECK_HAS(page, "<tr><td>&lt;script&gt;</td>");
    CHECK_HAS(page, "<td>/tmp/&lt;x&gt;.lua</td>");
    CHECK(strstr(page, "<script") == NULL);
    CHECK(strstr(page, "<x>") == NULL);
    free(page);
}

/* Nothing to fetch: no scheme, no protocol-relative URL, no external tags. */
static void
test_nothing_external(void)
{
    struct snapshot snap = example();
    char *page = render(&snap);

    CHECK(strstr(page, "://") == NULL);
    CHECK(strstr(page, "\"//") == NULL);
    CHECK(strstr(page, "src=") == NULL);
    CHECK(strstr(page, "url(") == NULL);
    CHECK(strstr(page, "<link") == NULL);
    CHECK_HAS(page, "<a href=\"/metrics\">");
    free(page);
}

static void
test_hot_keys(void)
{
    struct snapshot snap = example();
    struct statuspage_hotkey keys[] = {
        { "cfg:flags", "main", "10.0.0.1:11211", 81234 },
        { "<b>", "main", "10.0.0.2:11211", 10 },
    };
    struct statuspage_context hidden = { .hot_hidden = 1 };
    struct statuspage_context none = { 0 };
    struct statuspage_context shown = { .hot = keys, .nhot = 2 };
    char *page;

    page = render_hot(&snap, &hidden);
    CHECK_HAS(page, "<h2>Hot keys</h2>\n<p>Hidden: keys may be private.");
    CHECK(strstr(page, "<th>reads/s</th>") == NULL);
    free(page);
    page = render_hot(&snap, &none);
    CHECK_HAS(page, "<p>None yet:");
    free(page);
    page = render_hot(&snap, &shown);
    CHECK_HAS(page, "<tr><td>1</td><td>cfg:flags</td><td>81234</td><td>main</td>"
                    "<td>10.0.0.1:11211</td></tr>");
    CHECK_HAS(page, "<tr><td>2</td><td>&lt;b&gt;</td><td>10</td>");
    free(page);
}

int
main(void)
{
    test_servers_up_and_down();
    test_policy_and_traffic();
    test_names_are_escaped();
    test_nothing_external();
    test_hot_keys();
    return UNIT_DONE();
}
