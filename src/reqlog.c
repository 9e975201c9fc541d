/*
 * reqlog.c: the request log's lines (reqlog.h).
 *
 * A line names the request first, then what it took and how long:
 *   request slow: get "user:42" route main server 127.0.0.1:11211: 312.4 ms
 *   request sampled: get "k" (+2 keys) route main server 127.0.0.1:11212: 0.3 ms
 *   request sampled: get "<its first 64 bytes>"... route main server ...: 0.1 ms
 * The route, pool and server are where its first key is routed when the line
 * is written, as `stats route` would say (routelive.c's walk: nothing is
 * added to the request path to remember them). After a failover that a
 * timeout caused, not a mark-down, they name the primary. A slow request
 * that was also sampled is logged once, as slow.
 */
#include "reqlog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "counters.h"
#include "log.h"
#include "proto.h"
#include "route.h"

/* Room for a shown key: every byte escaped (4 each), and its NUL. */
#define KEY_TEXT_MAX    (4 * REQLOG_KEY_MAX + 8)

static reqlog_where_fn *where_fn;

void
reqlog_set_where(reqlog_where_fn *fn)
{
    where_fn = fn;
}

char *
reqlog_key(const char *key, uint32_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    uint32_t i, shown = len > REQLOG_KEY_MAX ? REQLOG_KEY_MAX : len;
    size_t n = 0;

    for (i = 0; i < shown && n + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)key[i];

        if (ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
    return out;
}

/* Is this line within the worker's lines for this second? Says what was held back. */
static bool
reqlog_allowed(struct reqlog *rl, struct stats *stats, uint64_t now_ns)
{
    uint64_t second = now_ns / 1000000000u;

    if (second != rl->window_s) {
        if (rl->suppressed > 0)
            log_write(LOG_WARN, "request log: %" PRIu64 " line(s) suppressed (at most %d "
                      "a second per worker)", rl->suppressed, REQLOG_LINES_PER_S);
        rl->window_s = second;
        rl->lines = 0;
        rl->suppressed = 0;
    }
    if (rl->lines >= REQLOG_LINES_PER_S) {
        rl->suppressed++;
        STAT_INC(stats->reqlog_suppressed);
        return false;
    }
    rl->lines++;
    return true;
}

void
reqlog_end(struct reqlog *rl, struct stats *stats, const struct creq *r, int vm,
           const char *listener, const char *cn)
{
    const struct config *cfg = r->wcfg->config;
    uint64_t now = clock_ns(), took = now - r->log_start_ns;
    bool slow = cfg->log_slow_ns > 0 && took >= cfg->log_slow_ns;
    char key[KEY_TEXT_MAX], route[256] = "-", pool[256] = "-", server[256] = "-", more[24] = "";
    bool cut = r->nslots > 0 && r->slots[0].klen > REQLOG_KEY_MAX;

    if (slow)
        STAT_INC(stats->slow_requests);
    else if (r->log_sampled)
        STAT_INC(stats->sampled_requests);
    else
        return;
    if (!reqlog_allowed(rl, stats, now))
        return;
    if (r->nslots > 0)
        reqlog_key(r->slots[0].key, r->slots[0].klen, key, sizeof(key));
    else
        snprintf(key, sizeof(key), "-");
    if (r->nslots > 1)
        snprintf(more, sizeof(more), " (+%u keys)", r->nslots - 1);
    if (where_fn != NULL && r->nslots > 0)
        where_fn(cfg, vm, r, listener, cn, route, pool, server, sizeof(route));
    log_write(LOG_WARN, "request %s: %s \"%s\"%s%s route %s pool %s server %s: %.1f ms",
              slow ? "slow" : "sampled", proto_cmd_name(r->req.cmd), key, cut ? "..." : "",
              more, route, pool, server, (double)took / 1e6);
}
