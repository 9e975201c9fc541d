/*
 * worker.h: worker threads: each runs its own event loop over its clients
 * and its backend connections, and takes new config generations between
 * requests.
 *
 * Everything a worker owns is touched only by its own thread; the only
 * cross-thread entry is the queue of accepted sockets and new generations,
 * woken by an eventfd. struct worker is private to worker.c: the modules
 * below it get their own per-thread state (client_ctx, backend_ctx and,
 * inside them, route_ctx and request_cache), and the stats readers above it
 * get read-only views under worker_read_lock.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct preview;
struct hotkey_view;
struct stats;
struct tls_conn;
struct wconfig;

/* Start n workers on config; returns 0 or -1. */
int worker_start_all(struct config *config, int n);

/*
 * Give an accepted socket (with its TLS state, or NULL, and its listener's
 * name) to the next worker (round robin).
 */
void worker_dispatch(int fd, bool is_unix, struct tls_conn *tls, const char *listener);

/*
 * Hand a new config generation to every worker (from the main thread). Each
 * worker swaps between requests; the config is freed once every worker has
 * drained the generation before it.
 */
void worker_publish_config(struct config *config);

/*
 * Hand a candidate policy to preview (preview.h) to every worker, each taking
 * a reference; NULL takes the preview away.
 */
void worker_publish_preview(struct preview *p);

/* Held for reading while another thread reads workers' state (stats). */
void worker_read_lock(void);
void worker_read_unlock(void);

/* Ask every worker to stop (after answering what is in flight) and wait. */
void worker_stop_all(void);

/* Bytes held in buffers by all workers, and in their free lists. */
uint64_t worker_memory_used(void);
uint64_t worker_memory_cached(void);

/*
 * The hot keys of all workers (as published in the last second), merged:
 * at most cap, highest rate first. Returns how many.
 */
int worker_hotkeys(struct hotkey_view *out, int cap);

/* Workers running. */
int worker_count(void);

/*
 * Worker i's current generation (its connections by server id, its route
 * counters by node id) and its counters. Read them under worker_read_lock.
 */
const struct wconfig *worker_generation(int i);
const struct stats *worker_stats(int i);

#endif
