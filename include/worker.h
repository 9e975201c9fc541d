/*
 * worker.h: a worker thread: its event loop, its clients and backend
 * connections, its free lists and its stats shard.
 *
 * Everything a worker owns is touched only by its own thread; the only
 * cross-thread entry is the queue of accepted sockets, woken by an eventfd.
 */
#ifndef WORKER_H
#define WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "counters.h"

struct backend;
struct call;
struct client;
struct config;
struct creq;
struct dcache;
struct event;
struct event_base;
struct tls_conn;

/*
 * A worker's view of one config generation. Requests keep the generation
 * they started on; an old one is dropped at the end of the loop pass in
 * which its last request was freed.
 */
struct wconfig {
    struct config      *config;
    struct backend    **backends;       /* by this config's server id */
    struct route_counter **routes;      /* by this config's node id */
    uint64_t            inflight;       /* requests started on it, not yet freed */
    struct wconfig     *next;           /* older generations still draining */
};

struct worker {
    int                 id;
    pthread_t           thread;
    struct event_base  *base;
    struct config      *config;         /* current generation (current->config) */
    struct wconfig     *current;
    uint64_t            max_memory;     /* current->config->max_memory */
    struct wconfig     *draining;       /* older generations with requests left */
    struct backend    **all_backends;   /* every live connection set, any generation */
    int                 nall_backends;
    struct stats        stats;
    struct route_counter **route_counters; /* every label any live generation names */
    int                 nroute_counters;
    struct dcache      *dcache;         /* hook decisions for this config */

    struct client      *clients;        /* open client connections */
    bool                stopping;       /* draining for shutdown */
    bool                loop_done;      /* leave the event loop after this pass */
    bool                retire_due;     /* an old generation drained during this pass */
    struct event       *stop_timer;     /* bound on the drain */

    /* Accepted sockets handed over by the listener thread. */
    pthread_mutex_t     queue_lock;
    struct handoff     *queue;
    int                 notify_fd;      /* eventfd */
    struct event       *notify_ev;

    struct event       *trim_timer;     /* lets go of free-list leftovers */
    uint64_t            trim_freed;     /* bytes freed since pages were last given back */
    uint64_t            cached_bytes;   /* free lists' bytes at the last trim (for stats) */

    /* Deferred writes: made once after the callbacks of a loop pass. */
    struct backend    **dirty_backends;
    int                 ndirty_backends, cap_dirty_backends;
    struct client     **dirty_clients;
    int                 ndirty_clients, cap_dirty_clients;
    int                 nclient_structs; /* allocated, freed by a flush at the latest */

    /* Free lists; low_* is the fewest held since the last trim (never used). */
    struct buf_cache    bufs;
    struct call        *free_calls;
    unsigned            nfree_calls, low_free_calls;
    struct creq        *free_creqs;
    unsigned            nfree_creqs, low_free_creqs;
    struct buf         *spare_rbuf;     /* read buffer lent to a reading client */
};

extern struct worker *workers;
extern int nworkers;

/* Start n workers on config; returns 0 or -1. */
int worker_start_all(struct config *config, int n);

/* Give an accepted socket (with its TLS state, or NULL) to the next worker (round robin). */
void worker_dispatch(int fd, bool is_unix, struct tls_conn *tls);

/*
 * Hand a new config generation to every worker (from the main thread). Each
 * worker swaps between requests; the config is freed once every worker has
 * drained the generation before it.
 */
void worker_publish_config(struct config *config);

/* A request started on wc was freed (inflight bookkeeping). */
void worker_request_done(struct worker *w, struct wconfig *wc);

/* Held for reading while another thread reads workers' backends (stats). */
void worker_read_lock(void);
void worker_read_unlock(void);

/* Shutting down and the last client has gone: end the loop. */
void worker_clients_gone(struct worker *w);

/* Ask every worker to stop (after answering what is in flight) and wait. */
void worker_stop_all(void);

/* Schedule a backend or client for the end-of-pass flush (-1: out of memory). */
int worker_mark_backend(struct worker *w, struct backend *be);
int worker_mark_client(struct worker *w, struct client *c);

/*
 * A client struct is made (+1) or freed (-1). The flush list keeps room for
 * every client struct, so marking a client never fails: a closed client must
 * always reach the flush that frees it. Returns -1 when that room cannot be
 * had (the new client is then refused).
 */
int worker_client_structs(struct worker *w, int delta);

/* Bytes held in buffers by all workers, and in their free lists. */
uint64_t worker_memory_used(void);
uint64_t worker_memory_cached(void);

/* The part of worker_memory_over that reads the other workers' counts. */
bool worker_memory_over_all(uint64_t limit);

/*
 * Do the buffers of all workers hold more than max_memory? Inline and cheap
 * while this worker holds less than its share; only then are the others'
 * counts read.
 */
static inline bool
worker_memory_over(const struct worker *w)
{
    return w->bufs.used * (uint64_t)nworkers > w->max_memory
        && worker_memory_over_all(w->max_memory);
}

#endif
