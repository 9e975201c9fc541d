/*
 * client.h: client connections and the requests they wait on.
 *
 * A client connection reads requests, parses them, starts one call per key
 * and keeps its requests in a FIFO; replies are written strictly from the
 * head of the FIFO, so pipelined requests are answered in order whatever
 * order the servers answer in.
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "binreply.h"
#include "proto.h"
#include "route.h"

struct buf;
struct client;
struct tls_conn;
struct worker;
struct wconfig;

/* One key's reply slot in a client request. */
struct slot {
    const char    *key;         /* the client's key (in creq->req) */
    uint32_t       klen;
    bool           done;
    struct result  res;
};

/* One client request, from parse to the write of its reply. */
struct creq {
    struct creq     *next;      /* client FIFO / free list */
    struct client   *client;    /* NULL once the client has gone */
    struct wconfig  *wcfg;      /* the config generation it is routed by */
    struct request   req;       /* parsed line; offsets into buf */
    struct buf      *buf;       /* request line (+ data block), owned */
    const char      *local;     /* reply decided locally (error), or NULL */
    bool             stats;     /* answer with the stats, rendered when written */
    uint8_t          stats_group; /* which stats (enum stats_group) */
    struct slot     *slots;     /* nslots entries */
    struct slot      one;       /* storage for a single slot */
    struct slot     *spare;     /* multi-key slot storage, kept across reuse */
    uint32_t         spare_cap;
    uint32_t         nslots;
    uint32_t         ndone;
    int              refs;      /* 1 until written or orphaned + live calls */
    uint64_t         held;      /* bytes counted against its client (copy, replies) */
    uint64_t         in_calls;  /* value bytes its calls hold at a server
                                 * connection, until their batch ends */
    bool             oom;       /* answered SERVER_ERROR out of memory */
    bool             close_after; /* close the connection after this reply */
    bool             binary;    /* binary protocol: bin says how to reply */
    struct bin_ctx   bin;
};

/* Hand an accepted socket (and its TLS state, or NULL) to this worker. */
void client_accept(struct worker *w, int fd, bool is_unix, struct tls_conn *tls);

/* How long a TLS client may take over its handshake (set before serving). */
void client_set_tls_handshake_timeout(int ms);

/* A slot of a request has its result (called by the route engine). */
void creq_slot_done(struct worker *w, struct creq *creq, uint32_t slot,
                    struct result *res);

/*
 * May n more bytes of values be held for this request? One request's values
 * may not pass its client's bound (client_max_memory), nor may any request's
 * while all buffers hold more than max_memory. When not, the request is
 * answered SERVER_ERROR out of memory at once and the value must be let go.
 * (Many requests of one client are bounded by its reads pausing instead.)
 */
bool creq_may_hold(struct worker *w, struct creq *r, uint64_t n);

/* Drop a reference to a request; frees it at zero. */
void creq_release(struct worker *w, struct creq *creq);

/* Free the spare requests none took since the last trim; returns the bytes. */
uint64_t creq_trim_free(struct worker *w);

/*
 * A request of the proxy's own, with no client (warm-up copies): parse the
 * request in buf (taken over), route it from node, forget the reply.
 */
void creq_background(struct worker *w, struct wconfig *wcfg, const struct route *node,
                     struct buf *buf);

/*
 * For a protocol front end (binclient.c): a new request at the tail of the
 * client's FIFO, routed by the worker's current generation; once its req
 * and buf are set, start it (count it, answer it or route it); or, for a
 * reply decided at once (local set), mark it ready.
 */
struct creq *client_request_new(struct client *c);   /* NULL: client closed */
void client_request_start(struct client *c, struct creq *r);
void client_request_ready(struct client *c, struct creq *r);

/* Are new requests refused now (buffers past max_memory)? Counts and logs it. */
bool client_memory_refused(struct client *c);

/* Did this client come through the unix socket? */
bool client_is_unix(const struct client *c);

/*
 * Shutting down: read no more requests; close each client once the replies
 * it is owed are written (idle ones at once).
 */
void client_shutdown_all(struct worker *w);

/* Write what is ready for a client that was marked for flushing. */
void client_flush(struct worker *w, struct client *c);

#endif
