/*
 * worker.h: a worker thread: its event loop, its clients and backend
 * connections, its free lists and its stats shard.
 *
 * Everything a worker owns is touched only by its own thread; the only
 * cross-thread entry is the queue of accepted sockets, woken by a pipe.
 */
#ifndef WORKER_H
#define WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "stats.h"

struct backend;
struct call;
struct client;
struct config;
struct creq;
struct dcache;
struct event;
struct event_base;

struct worker {
    int                 id;
    pthread_t           thread;
    struct event_base  *base;
    struct config      *config;         /* current generation */
    struct backend    **backends;       /* by config server id */
    struct stats        stats;
    struct dcache      *dcache;         /* hook decisions for this config */

    /* Accepted sockets handed over by the listener thread. */
    pthread_mutex_t     queue_lock;
    struct handoff     *queue;
    int                 notify_pipe[2];
    struct event       *notify_ev;

    /* Deferred writes: run once after the callbacks of a loop pass. */
    struct event       *flush_ev;
    bool                flush_scheduled;
    struct backend    **dirty_backends;
    int                 ndirty_backends, cap_dirty_backends;
    struct client     **dirty_clients;
    int                 ndirty_clients, cap_dirty_clients;

    /* Free lists. */
    struct buf_cache    bufs;
    struct call        *free_calls;
    struct creq        *free_creqs;
    struct buf         *spare_rbuf;     /* read buffer lent to a reading client */
};

extern struct worker *workers;
extern int nworkers;

/* Start n workers on config; returns 0 or -1. */
int worker_start_all(struct config *config, int n);

/* Give an accepted socket to the next worker (round robin). */
void worker_dispatch(int fd, bool is_unix);

/* Ask every worker to stop and wait for them. */
void worker_stop_all(void);

/* Schedule a backend or client for the end-of-pass flush. */
void worker_mark_backend(struct worker *w, struct backend *be);
void worker_mark_client(struct worker *w, struct client *c);

/* Milliseconds on a monotonic clock (cheap, coarse). */
uint64_t worker_now_ms(void);

#endif
