/*
 * client.h: client connections.
 *
 * A client connection reads requests, parses them, makes a request
 * (request.h) with one call per key and keeps its requests in a FIFO;
 * replies are written strictly from the head of the FIFO, so pipelined
 * requests are answered in order whatever order the servers answer in.
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "counters.h"
#include "reqlog.h"
#include "request.h"
#include "route.h"

struct buf;
struct client;
struct config;
struct event_base;
struct timers;
struct tls_conn;

/*
 * What a thread's client connections share. The route engine's state comes
 * first: a client's requests are routed and answered with it.
 */
struct client_ctx {
    struct route_ctx     rt;
    struct reqlog        reqlog;        /* slow and sampled requests' lines */
    struct event_base   *base;
    struct timers       *timers;        /* the TLS handshake deadlines */
    struct client       *clients;       /* open connections */
    struct buf          *spare_rbuf;    /* read buffer lent to a reading client */
    struct client      **dirty;         /* to flush at the end of the loop pass */
    int                  ndirty;
    int                  cap_dirty;     /* room for every client struct (nstructs) */
    int                  nstructs;      /* allocated; freed by a flush at the latest */
    bool                 stopping;      /* shutting down (client_shutdown_all) */
    void               (*all_closed)(struct client_ctx *cx); /* stopping, and the last
                                         * client has gone */
};

/*
 * Hand an accepted socket (and its TLS state, or NULL) to this thread;
 * listener is its listener's name, which outlives the connection.
 */
void client_accept(struct client_ctx *cx, int fd, bool is_unix, struct tls_conn *tls,
                   const char *listener);

/* How long a TLS client may take over its handshake (set before serving). */
void client_set_tls_handshake_timeout(int ms);

/*
 * What writes the `stats` replies (stats.c, a floor above; set before
 * serving): STAT lines and END for the generation cfg.
 */
typedef void client_stats_fn(struct buf *out, const struct config *cfg,
                             enum stats_group group);
void client_set_stats_writer(client_stats_fn *fn);

/*
 * What answers `stats route CMD KEY` (routelive.c; set before serving): args
 * is what follows "stats ", vm this thread's Lua VM, listener and cn the
 * asking client's.
 */
typedef void client_route_fn(struct buf *out, const struct config *cfg, int vm,
                             const char *args, size_t len, const char *listener,
                             const char *cn);
void client_set_route_writer(client_route_fn *fn);

/*
 * Shutting down: read no more requests; close each client once the replies
 * it is owed are written (idle ones at once); all_closed is called when the
 * last one has gone.
 */
void client_shutdown_all(struct client_ctx *cx);

/* Write what is ready for the clients marked during this loop pass. */
void client_flush_marked(struct client_ctx *cx);

/* Let go of a spare read buffer grown for a large value. */
void client_trim(struct client_ctx *cx);

#endif
