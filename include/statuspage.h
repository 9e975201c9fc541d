/*
 * statuspage.h: the status page the metrics port serves at "/".
 *
 * One self-contained HTML document (inline style and SVG, nothing fetched
 * from anywhere) that reloads itself: the policy being served (generation,
 * checksum, load time), the traffic and hit ratio, each server with the word
 * `up` or `down`, its error rate and latency, the pool and route counters,
 * and the hottest keys when settings.hotkeys_metrics lets them be shown. Formatting only: the figures come from a snapshot, so the page
 * agrees with `stats` and /metrics taken at the same moment.
 */
#ifndef STATUSPAGE_H
#define STATUSPAGE_H

#include <stdint.h>

struct buf;
struct snapshot;

#define STATUSPAGE_REFRESH_S 5      /* the page reloads itself this often */

/* One hot key as the page shows it: the key already hashed or cut to its first bytes. */
struct statuspage_hotkey {
    const char *key;
    const char *pool;
    const char *server;
    double      rate;               /* estimated reads a second */
};

/* What the page shows besides the snapshot. */
struct statuspage_context {
    int64_t  now;                   /* unix seconds */
    uint64_t uptime_s;
    int      threads;
    uint64_t reloads;
    uint64_t reload_failures;
    const struct statuspage_hotkey *hot;    /* the hottest first */
    int      nhot;
    int      hot_hidden;            /* settings.hotkeys_metrics is "off": keys may be private */
};

/* Append the page for snap to out (out of memory: buf_failed(out)). */
void statuspage_render(struct buf *out, const struct snapshot *snap,
                       const struct statuspage_context *ctx);

#endif
