/*
 * reqlog.h: the request log: requests slower than settings.log_slow_ms, and
 * a sample of all requests (settings.log_sample), one line each.
 *
 * Off (the default), it costs the request path one test of a config flag
 * when a request is made and one of a zero timestamp when its reply goes
 * out: no clock is read. On, each worker writes at most REQLOG_LINES_PER_S
 * lines a second; the lines over it are counted, and said with the next
 * line written.
 */
#ifndef REQLOG_H
#define REQLOG_H

#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "request.h"

#define REQLOG_LINES_PER_S  20      /* lines a worker writes a second, at most */
#define REQLOG_KEY_MAX      64      /* key bytes shown; more are cut, marked "..." */

/* One worker's request log state. */
struct reqlog {
    uint64_t    rng;            /* xorshift64 state, for the sample */
    uint64_t    window_s;       /* the second `lines` counts in */
    unsigned    lines;          /* lines written in window_s */
    uint64_t    suppressed;     /* lines not written since the last one was */
};

static inline uint64_t
reqlog_random(struct reqlog *rl)
{
    uint64_t x = rl->rng ? rl->rng : 0x9e3779b97f4a7c15u;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rl->rng = x;
}

/*
 * A request was parsed under cfg: time it if it may be logged. Call only when
 * cfg->reqlog is set (the test stays in the caller, inline and cheap).
 */
static inline void
reqlog_begin(struct reqlog *rl, struct creq *r, const struct config *cfg)
{
    r->log_sampled = cfg->log_sample > 0
                     && (uint32_t)(reqlog_random(rl) >> 32) <= cfg->log_sample;
    if (r->log_sampled || cfg->log_slow_ns > 0)
        r->log_start_ns = clock_ns();
}

/*
 * A timed request's reply is going out (r->log_start_ns is set): log it when
 * it was slow or sampled, counting in stats. vm is the thread's Lua VM (for
 * hooks on the way), listener and cn the client's.
 */
void reqlog_end(struct reqlog *rl, struct stats *stats, const struct creq *r, int vm,
                const char *listener, const char *cn);

/*
 * Where a logged request's first key is routed: the route nodes (labels
 * joined by '>'), the pool and the server, as `stats route` shows them (set
 * by main.c to routelive.c's walk; unset, they read "-").
 */
typedef void reqlog_where_fn(const struct config *cfg, int vm, const struct creq *r,
                             const char *listener, const char *cn,
                             char *route, char *pool, char *server, size_t len);
void reqlog_set_where(reqlog_where_fn *fn);

/*
 * Write key (len bytes) into out (outlen bytes) as the log shows it: at most
 * REQLOG_KEY_MAX bytes, bytes that are not printable ASCII (and '"', '\')
 * as \xNN. The line marks a cut key with "..." after its closing quote.
 * Returns out.
 */
char *reqlog_key(const char *key, uint32_t len, char *out, size_t outlen);

#endif
