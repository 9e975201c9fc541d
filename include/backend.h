/*
 * backend.h: this worker's connection to one memcached server.
 *
 * Calls are written to the server in order and kept in a FIFO; replies arrive
 * in the same order, so the first call still waiting owns the next reply. Keys
 * of retrieval calls that arrive together are sent as one multi-key get, whose
 * results are handed on only once its reply is complete. One timer per
 * connection watches the earliest deadline of its calls. A connection that
 * errors, times out or sends garbage fails every call queued on it and is
 * closed; the next call opens a new one. Failures with no reply completed in
 * between mark the server down for retry_after_ms, during which calls fail at
 * once. A server that keeps failing is marked down for twice as long each
 * time, up to retry_max_ms; once up for retry_max_ms without a mark-down, it
 * starts over. With rejoin = "flush", a server down for rejoin_after_ms or
 * longer is sent flush_all when its mark-down ends, and serves again only
 * once that answered OK.
 */
#ifndef BACKEND_H
#define BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "histogram.h"

struct call;
struct event_base;
struct request_cache;
struct server;
struct timers;

/* Written by the owning worker only (STAT_INC), read by stats renderers. */
struct backend_stats {
    uint64_t requests;      /* calls sent */
    uint64_t errors;        /* calls failed other than by timeout */
    uint64_t timeouts;      /* calls failed by timeout */
    uint64_t retries;       /* probes sent after a mark-down expired */
    uint64_t connects;      /* connections established */
    uint64_t curr_connections; /* established and open now (0 or 1 per worker) */
    uint64_t markdowns;     /* times marked down */
    uint64_t backoffs;      /* mark-downs made longer than the last (flap backoff) */
    uint64_t rejoin_flushes; /* flush_all sent before a server could rejoin */
    uint64_t rejoins;       /* ...answered OK: the server serves again */
    struct histogram latency; /* round trip of answered calls */
};

struct backend;

/* What a thread's server connections share. */
struct backend_ctx {
    struct event_base    *base;
    struct timers        *timers;       /* the call deadlines' timers */
    uint64_t              pass_ms;      /* clock_ms for deadlines, read once a loop
                                         * pass (0: not yet; the worker clears it) */
    struct request_cache *rq;           /* the thread's requests and buffers */
    struct backend      **dirty;        /* output to write at the end of the pass */
    int                   ndirty, cap_dirty;
};

struct backend *backend_new(struct backend_ctx *bx, const struct server *server);

/*
 * A simulated server (sim.h): calls submitted to it go to sim->submit, which
 * must finish them (at once or later); backend_is_down asks sim->is_down.
 * It has no thread context, socket or timer; backend_free frees it.
 */
struct backend_sim {
    void  (*submit)(void *arg, const struct server *server, struct call *c);
    bool  (*is_down)(void *arg, const struct server *server);
    void   *arg;
};

struct backend *backend_new_simulated(const struct server *server, const struct backend_sim *sim);
void backend_free(struct backend *be);

/* Queue a call (its key, request and deadline are set). */
void backend_submit(struct backend *be, struct call *c, int timeout_ms);

/* Write what the connections queued since the last flush (once per loop pass). */
void backend_flush_marked(struct backend_ctx *bx);

const struct backend_stats *backend_stats(const struct backend *be);
/* Marked down, or waiting for its rejoin flush_all to answer. */
bool backend_is_down(const struct backend *be);
const struct server *backend_server(const struct backend *be);

/* A new generation names the same server: take its (possibly new) settings. */
void backend_set_server(struct backend *be, const struct server *server);

#endif
