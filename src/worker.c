/*
 * worker.c: worker threads.
 *
 * Each worker runs its own event loop and owns its clients, its backend
 * connections (one set per configured server), its free lists and its stats
 * shard; no lock is taken on the request path. The listener thread hands
 * accepted sockets over through a mutex-protected queue and an eventfd.
 *
 * Writes are deferred: backends and clients with something to send are put
 * on a list, and after each pass of the event loop (its I/O callbacks) the
 * worker writes them all. So keys from many clients bound for one
 * server leave in one write, and a client gets all its ready replies in one.
 *
 * Retirement waits for the same point: an old generation whose last request
 * was released during a pass, and the connections only it named, are freed
 * after the flush, when no callback of theirs can be on the stack.
 *
 * Free lists keep steady-state requests off malloc; once a second, the
 * spare objects no request took during the last second are freed, and once
 * the worker is quiet the allocator is asked to give the pages back, so a
 * burst does not pin its memory.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "buf.h"
#include "client.h"
#include "config.h"
#include "counters.h"
#include "clock.h"
#include "dcache.h"
#include "hotkeys.h"
#include "listener.h"
#include "log.h"
#include "preview.h"
#include "nearcache.h"
#include "luagent.h"
#include "request.h"
#include "route.h"
#include "timer.h"
#include "tls.h"

struct handoff {
    struct handoff *next;
    int             fd;         /* a client socket, or HANDOFF_STOP / HANDOFF_CONFIG */
    bool            is_unix;
    const char     *listener;   /* the listener's name (static) */
    struct tls_conn *tls;       /* a TLS client's state, or NULL */
    struct config  *config;     /* HANDOFF_CONFIG: the new generation */
    struct preview *preview;    /* HANDOFF_PREVIEW: the candidate, or NULL: none */
};

#define HANDOFF_STOP    (-1)
#define HANDOFF_CONFIG  (-2)
#define HANDOFF_PREVIEW (-3)

struct worker {
    struct client_ctx   cx;             /* its clients; inside, the route engine's
                                         * and the request layer's state */
    struct backend_ctx  bx;             /* what its server connections share */
    int                 id;
    pthread_t           thread;
    struct event_base  *base;
    struct timers      *timers;         /* every timer of its loop (timer.h) */
    struct wconfig     *draining;       /* older generations with requests left */
    struct preview_worker *preview;     /* a candidate policy previewed, or NULL */
    struct backend    **all_backends;   /* every live connection set, any generation */
    int                 nall_backends;
    bool                loop_done;      /* leave the event loop after this pass */
    struct timer       *stop_timer;     /* bound on the drain */

    /* Accepted sockets and new generations handed over by the main thread. */
    pthread_mutex_t     queue_lock;
    struct handoff     *queue;
    int                 notify_fd;      /* eventfd */
    struct event       *notify_ev;

    /* The hot-key sketch's top list, published once a second for stats. */
    pthread_mutex_t     hot_lock;
    struct hotkey_view  hot[HOTKEYS_PUBLISHED];
    int                 nhot;

    struct timer       *trim_timer;     /* lets go of free-list leftovers */
    uint64_t            trim_freed;     /* bytes freed since pages were last given back */
    uint64_t            cached_bytes;   /* free lists' bytes at the last trim (for stats) */
};

static struct worker *workers;
static int nworkers;

/* Swaps and drains change what stats may read from another thread. */
static pthread_rwlock_t swap_lock = PTHREAD_RWLOCK_INITIALIZER;

void
worker_read_lock(void)
{
    pthread_rwlock_rdlock(&swap_lock);
}

void
worker_read_unlock(void)
{
    pthread_rwlock_unlock(&swap_lock);
}

/* This worker's connection set for a server, shared by every generation. */
static struct backend *
worker_backend_for(struct worker *w, const struct server *srv)
{
    struct backend *be, **grown;
    int i;

    for (i = 0; i < w->nall_backends; i++) {
        const struct server *old = backend_server(w->all_backends[i]);

        /* Reused only over the same transport to the same address: a change
         * of TLS settings, or a DNS name's new address, opens new
         * connections and retires the old ones. */
        if (old->port == srv->port && strcmp(old->host, srv->host) == 0
            && tls_client_same(old->tls, srv->tls) && old->addrlen == srv->addrlen
            && memcmp(&old->addr, &srv->addr, srv->addrlen) == 0) {
            backend_set_server(w->all_backends[i], srv);
            return w->all_backends[i];
        }
    }
    be = backend_new(&w->bx, srv);
    grown = realloc(w->all_backends, sizeof(*grown) * (size_t)(w->nall_backends + 1));
    if (be == NULL || grown == NULL) {
        backend_free(be);
        return NULL;
    }
    w->all_backends = grown;
    w->all_backends[w->nall_backends++] = be;
    return be;
}

/*
 * A generation's near cache stores go: their buffers back to the worker,
 * their bytes out of the nodes' counters (shared with newer generations).
 */
static void
wconfig_free_nearcaches(struct worker *w, struct wconfig *wc)
{
    int i;

    for (i = 0; wc->nearcaches != NULL && i < wc->config->nnodes; i++) {
        if (wc->nearcaches[i] == NULL)
            continue;
        if (wc->routes[i] != NULL)
            STAT_ADD(wc->routes[i]->stats.nearcache_bytes,
                     -(int64_t)nearcache_counts(wc->nearcaches[i]).bytes);
        nearcache_free(wc->nearcaches[i], &w->cx.rt.rq.bufs);
    }
    free(wc->nearcaches);
    wc->nearcaches = NULL;
}

/* This worker's near cache store for every lg.nearcache node; 0 or -1. */
static int
wconfig_new_nearcaches(struct wconfig *wc)
{
    const struct config *config = wc->config;
    int i;

    if (config->nnearcaches == 0)
        return 0;
    wc->nearcaches = calloc((size_t)config->nnodes, sizeof(*wc->nearcaches));
    if (wc->nearcaches == NULL)
        return -1;
    for (i = 0; i < config->nnodes; i++) {
        const struct route *r = config->nodes[i];

        if (r->type != ROUTE_NEARCACHE)
            continue;
        wc->nearcaches[i] = nearcache_new(r->nc_max_items, r->nc_max_bytes, r->nc_ttl_ms);
        if (wc->nearcaches[i] == NULL)
            return -1;
    }
    return 0;
}

static void
wconfig_free(struct wconfig *wc)
{
    free(wc->backends);
    free(wc->routes);
    free(wc);
}

static struct wconfig *
wconfig_new(struct worker *w, struct config *config)
{
    struct wconfig *wc = calloc(1, sizeof(*wc));
    int i;

    if (wc == NULL)
        return NULL;
    wc->config = config;
    wc->reqlog = config->reqlog;
    wc->root = config->root;
    wc->backends = calloc((size_t)config->nservers + 1, sizeof(*wc->backends));
    wc->routes = calloc((size_t)config->nnodes + 1, sizeof(*wc->routes));
    if (wc->backends == NULL || wc->routes == NULL
        || route_counters_bind(&w->cx.rt, config, wc->routes) < 0) {
        wconfig_free(wc);
        return NULL;
    }
    if (wconfig_new_nearcaches(wc) < 0) {
        wconfig_free_nearcaches(w, wc);
        route_counters_release(&w->cx.rt, wc->routes, config->nnodes);
        wconfig_free(wc);
        return NULL;
    }
    for (i = 0; i < config->nservers; i++) {
        wc->backends[i] = worker_backend_for(w, &config->servers[i]);
        if (wc->backends[i] == NULL) {
            wconfig_free_nearcaches(w, wc);
            route_counters_release(&w->cx.rt, wc->routes, config->nnodes);
            wconfig_free(wc);
            return NULL;
        }
    }
    return wc;
}

/*
 * The server entry of the newest live generation that names be, or NULL when
 * none does. Current first, then the draining ones, newest first.
 */
static const struct server *
backend_live_server(const struct worker *w, const struct backend *be)
{
    const struct wconfig *wc;
    int i;

    const struct wconfig *current = w->cx.rt.current;

    for (wc = current; wc != NULL; wc = (wc == current) ? w->draining : wc->next)
        for (i = 0; i < wc->config->nservers; i++)
            if (wc->backends[i] == be)
                return &wc->config->servers[i];
    return NULL;
}

/*
 * A generation was dropped: close the connections no live generation names
 * any more. The others may have pointed at the dropped generation's server
 * entries (the last generation to name a server is not always the last to
 * drain): point them at a live one before that config is freed.
 */
static void
worker_retire_backends(struct worker *w)
{
    int i = 0;

    while (i < w->nall_backends) {
        struct backend *be = w->all_backends[i];
        const struct server *live = backend_live_server(w, be);

        if (live != NULL) {
            backend_set_server(be, live);
            i++;
            continue;
        }
        log_info("worker %d: closing connections to %s (no longer in the policy)",
                 w->id, backend_server(be)->label);
        backend_free(be);
        w->all_backends[i] = w->all_backends[--w->nall_backends];
    }
}

/* The last user of a config frees it (its VMs, rings and nodes). */
static void
config_unref(struct config *config)
{
    if (__atomic_sub_fetch(&config->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        log_info("generation %u retired", config->generation);
        config_free(config);
    }
}

/* An old generation has no request left: let it go. */
static void
worker_drop_generation(struct worker *w, struct wconfig *wc)
{
    struct wconfig **pp = &w->draining;
    struct config *config = wc->config;

    while (*pp != NULL && *pp != wc)
        pp = &(*pp)->next;
    if (*pp == NULL)
        return;
    pthread_rwlock_wrlock(&swap_lock);
    *pp = wc->next;
    worker_retire_backends(w);
    wconfig_free_nearcaches(w, wc);
    route_counters_release(&w->cx.rt, wc->routes, config->nnodes);
    pthread_rwlock_unlock(&swap_lock);
    wconfig_free(wc);
    config_unref(config);
}

/*
 * End of a loop pass: let go of the old generations that have drained. The
 * last request of an old generation is often released deep inside a
 * callback of one of the connections only that generation names (a late
 * shadow reply, a timeout): dropping the generation there would free the
 * connection under its own callback. So a generation goes here, when no
 * callback is running.
 */
static void
worker_retire_drained(struct worker *w)
{
    struct wconfig *wc = w->draining, *next;

    for (; wc != NULL; wc = next) {
        next = wc->next;
        if (wc->inflight == 0)
            worker_drop_generation(w, wc);
    }
}

/* The memory bounds requests are held to, from the current generation. */
static void
worker_take_bounds(struct worker *w, const struct config *config)
{
    w->cx.rt.rq.max_memory = config->max_memory;
    w->cx.rt.rq.client_max_memory = config->client_max_memory;
}

/* Take a new generation between requests. */
static void
worker_swap_config(struct worker *w, struct config *config)
{
    struct wconfig *wc = wconfig_new(w, config), *old = w->cx.rt.current;

    if (wc == NULL) {
        /* Cannot happen short of memory: keep serving the old generation.
         * Connections it opened or re-pointed at the new config go back. */
        log_error("worker %d: out of memory taking generation %u", w->id, config->generation);
        pthread_rwlock_wrlock(&swap_lock);
        worker_retire_backends(w);
        pthread_rwlock_unlock(&swap_lock);
        config_unref(config);
        return;
    }
    pthread_rwlock_wrlock(&swap_lock);
    w->cx.rt.current = wc;
    if (w->preview != NULL)
        preview_move(w->preview, old, wc);
    worker_take_bounds(w, config);
    old->next = w->draining;
    w->draining = old;
    pthread_rwlock_unlock(&swap_lock);
    if (dcache_capacity(w->cx.rt.dcache) != config->decision_cache_size) {
        struct dcache *dc = dcache_new(config->decision_cache_size);

        if (dc != NULL) {
            dcache_free(w->cx.rt.dcache);
            w->cx.rt.dcache = dc;
        }
    }
    dcache_clear(w->cx.rt.dcache);
    if (hotkeys_every(w->cx.rt.hotkeys) != config->hotkeys_sample) {
        struct hotkeys *hk = hotkeys_new(HOTKEYS_CAPACITY, config->hotkeys_sample, clock_ms());

        if (hk != NULL) {
            hotkeys_free(w->cx.rt.hotkeys);
            w->cx.rt.hotkeys = hk;
        }
    }
    log_debug("worker %d: now on generation %u", w->id, config->generation);
}

/* Put a preview in front of the current generation (NULL: take it away). */
static void
worker_take_preview(struct worker *w, struct preview *p)
{
    pthread_rwlock_wrlock(&swap_lock);
    if (w->preview != NULL)
        preview_detach(w->preview, &w->cx.rt, w->cx.rt.current);
    w->preview = NULL;
    if (p != NULL && (w->preview = preview_attach(p, &w->cx.rt, w->cx.rt.current)) == NULL) {
        log_error("worker %d: out of memory for the preview: it does not run here", w->id);
        preview_release(p);
    }
    pthread_rwlock_unlock(&swap_lock);
}

static int next_worker;

#define STOP_DRAIN_SECONDS 5     /* how long shutdown waits for replies owed */

/* Leave the loop after this pass (a flag: cheaper than asking libevent each pass). */
static void
worker_end_loop(struct worker *w)
{
    w->loop_done = true;
    event_base_loopbreak(w->base);
}

static void
worker_on_stop_timer(void *arg)
{
    struct worker *w = arg;

    log_warn("worker %d: stopping with requests still unanswered after %d s",
             w->id, STOP_DRAIN_SECONDS);
    worker_end_loop(w);
}

/* Shutting down and the last client has gone: end the loop. */
static void
worker_clients_gone(struct client_ctx *cx)
{
    worker_end_loop((struct worker *)((char *)cx - offsetof(struct worker, cx)));
}

/* SIGTERM: answer what is in flight, then end the loop (bounded in time). */
static void
worker_begin_stop(struct worker *w)
{
    w->cx.stopping = true;
    w->stop_timer = timer_new(w->timers, worker_on_stop_timer, w);
    if (w->stop_timer != NULL)
        timer_set_in(w->stop_timer, STOP_DRAIN_SECONDS * 1000);
    client_shutdown_all(&w->cx);
    if (w->cx.clients == NULL)
        worker_end_loop(w);
}

static void
worker_on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct handoff *h;
    eventfd_t wakeups;

    (void)eventfd_read(fd, &wakeups);   /* resets the counter */
    pthread_mutex_lock(&w->queue_lock);
    h = w->queue;
    w->queue = NULL;
    pthread_mutex_unlock(&w->queue_lock);

    /* The queue is LIFO; reverse it so clients start in accept order. */
    struct handoff *ordered = NULL;
    while (h != NULL) {
        struct handoff *next = h->next;

        h->next = ordered;
        ordered = h;
        h = next;
    }
    while ((h = ordered) != NULL) {
        ordered = h->next;
        if (h->fd == HANDOFF_STOP)
            worker_begin_stop(w);
        else if (h->fd == HANDOFF_CONFIG)
            worker_swap_config(w, h->config);
        else if (h->fd == HANDOFF_PREVIEW)
            worker_take_preview(w, h->preview);
        else
            client_accept(&w->cx, h->fd, h->is_unix, h->tls, h->listener);
        free(h);
    }
}

/* The writes queued by the callbacks of one loop pass. */
static void
worker_flush(struct worker *w)
{
    /*
     * A client flush can resume parsing and so mark backends: go round
     * until both lists are empty, or those requests would wait for an event
     * that never comes.
     */
    while (w->bx.ndirty > 0 || w->cx.ndirty > 0) {
        backend_flush_marked(&w->bx);
        client_flush_marked(&w->cx);
    }
}

static bool
worker_memory_over_all(uint64_t limit)
{
    return worker_memory_used() > limit;
}

uint64_t
worker_memory_used(void)
{
    uint64_t total = 0;
    int i;

    for (i = 0; i < nworkers; i++)
        total += __atomic_load_n(&workers[i].cx.rt.rq.bufs.used, __ATOMIC_RELAXED);
    return total;
}

uint64_t
worker_memory_cached(void)
{
    uint64_t total = 0;
    int i;

    for (i = 0; i < nworkers; i++)
        total += __atomic_load_n(&workers[i].cached_bytes, __ATOMIC_RELAXED);
    return total;
}

#define TRIM_INTERVAL_MS    1000
#define TRIM_QUIET_TAKES    64          /* buffers taken in a second by a quiet worker */
#define TRIM_RETURN_MIN     (1u << 20)  /* bytes freed before pages are given back */
#define ALLOC_MMAP_THRESHOLD (32 << 20) /* blocks past this get their own mmap
                                         * (glibc's largest allowed) */
#define ALLOC_TRIM_THRESHOLD (64 << 20) /* free bytes atop a heap before free()
                                         * gives them back by itself */
#define ALLOC_TRIM_QUIET    (128 << 10) /* the same while a quiet worker trims
                                         * (glibc's default) */
#define ALLOC_TRIM_NUDGE    (64 << 10)  /* a block whose free makes glibc look
                                         * at its heap's top */

/* Fill in the pool and server names a hot key's tag points at ("?" when gone). */
static void
worker_hot_names(const struct worker *w, struct hotkey_view *v)
{
    unsigned generation = (unsigned)(v->where >> 32);
    int node = (int)((v->where >> 16) & 0xffff), server = (int)(v->where & 0xffff) - 1;
    const struct wconfig *wc, *current = w->cx.rt.current;

    snprintf(v->pool, sizeof(v->pool), "?");
    snprintf(v->server, sizeof(v->server), "?");
    for (wc = current; wc != NULL; wc = (wc == current) ? w->draining : wc->next) {
        const struct config *cfg = wc->config;

        if (cfg->generation != generation || node >= cfg->nnodes || server < 0
            || server >= cfg->nservers || cfg->nodes[node]->pool == NULL)
            continue;
        snprintf(v->pool, sizeof(v->pool), "%s", cfg->nodes[node]->pool->name);
        snprintf(v->server, sizeof(v->server), "%s", cfg->servers[server].label);
        return;
    }
}

/*
 * Once a second: halve the hot-key counts and publish the top list, so
 * stats read it under a lock the request path never takes.
 */
static void
worker_publish_hotkeys(struct worker *w)
{
    struct hotkey_view top[HOTKEYS_PUBLISHED];
    uint64_t now = clock_ms();
    int i, n;

    hotkeys_decay(w->cx.rt.hotkeys, now);
    n = hotkeys_top(w->cx.rt.hotkeys, top, HOTKEYS_PUBLISHED, now);
    for (i = 0; i < n; i++)
        worker_hot_names(w, &top[i]);
    pthread_mutex_lock(&w->hot_lock);
    memcpy(w->hot, top, (size_t)n * sizeof(top[0]));
    w->nhot = n;
    pthread_mutex_unlock(&w->hot_lock);
}

int
worker_hotkeys(struct hotkey_view *out, int cap)
{
    int i, n = 0;

    for (i = 0; i < nworkers; i++) {
        pthread_mutex_lock(&workers[i].hot_lock);
        hotkeys_merge(out, &n, cap, workers[i].hot, workers[i].nhot);
        pthread_mutex_unlock(&workers[i].hot_lock);
    }
    return n;
}

/*
 * Give the allocator's free pages back to the system. malloc_trim does so
 * for the free chunks inside every heap, but not for the free top of a
 * worker thread's own heap, where a burst's large buffers end up when freed
 * last: glibc shrinks that only in free(), once the top is past the trim
 * threshold, which worker_tune_allocator put out of reach (a thread's heap
 * is at most 64 MiB). So, for a moment, the default threshold and a free
 * big enough for glibc to look at the top, in this thread's heap. The lock
 * keeps two quiet workers from putting the busy threshold back under each
 * other.
 */
static void
worker_give_back_pages(void)
{
#ifdef __GLIBC__
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    void *volatile nudge;       /* volatile: the pair must not be optimised away */

    pthread_mutex_lock(&lock);
    mallopt(M_TRIM_THRESHOLD, ALLOC_TRIM_QUIET);
    nudge = malloc(ALLOC_TRIM_NUDGE);
    free(nudge);
    malloc_trim(0);
    mallopt(M_TRIM_THRESHOLD, ALLOC_TRIM_THRESHOLD);
    pthread_mutex_unlock(&lock);
#endif
}

/*
 * Once a second: free what the free lists did not lend out during the last
 * second (a burst's leftovers; a steady load keeps what it uses), and a read
 * buffer grown for a large value. When the worker is quiet and at least
 * TRIM_RETURN_MIN bytes were freed since, ask the allocator to give free
 * pages back (glibc keeps them otherwise, in the middle of its heaps).
 */
static void
worker_on_trim(void *arg)
{
    struct worker *w = arg;
    struct request_cache *rq = &w->cx.rt.rq;
    bool quiet = rq->bufs.takes < TRIM_QUIET_TAKES;

    timer_set_in(w->trim_timer, TRIM_INTERVAL_MS);
    worker_publish_hotkeys(w);
    client_trim(&w->cx);
    w->trim_freed += request_cache_trim(rq);
    __atomic_store_n(&w->cached_bytes, request_cache_bytes(rq), __ATOMIC_RELAXED);
    if (quiet && w->trim_freed >= TRIM_RETURN_MIN) {
        worker_give_back_pages();
        w->trim_freed = 0;
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    /*
     * One pass of the loop at a time, then the writes its callbacks queued:
     * requests from many clients to one server leave in one write, and the
     * flush costs no event activation (an activated event per pass cost
     * about 300 instructions per request under callgrind).
     */
    for (;;) {
        w->bx.pass_ms = 0;
        if (event_base_loop(w->base, EVLOOP_ONCE) < 0)
            break;
        worker_flush(w);
        if (w->draining != NULL)
            worker_retire_drained(w);
        if (w->loop_done)
            break;
    }
    if (w->preview != NULL)
        worker_take_preview(w, NULL);
    return NULL;
}

/*
 * A worker's base holds no libevent timer (its timers are timer.h's, under
 * one timerfd) and caches no time: libevent then reads no clock in a loop
 * pass, where it read it three times (about 350 instructions a request).
 */
static struct event_base *
worker_base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static int
worker_init(struct worker *w, int id, int n, struct config *config)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cx.rt.vm = id;
    w->cx.rt.rq.nthreads = n;
    w->cx.rt.rq.memory_over_all = worker_memory_over_all;
    worker_take_bounds(w, config);
    w->cx.all_closed = worker_clients_gone;
    w->bx.rq = &w->cx.rt.rq;
    pthread_mutex_init(&w->queue_lock, NULL);
    pthread_mutex_init(&w->hot_lock, NULL);
    w->base = worker_base_new();
    w->cx.base = w->bx.base = w->base;
    /* An eventfd: one descriptor, and a burst of wake-ups is one counter. */
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->base == NULL || w->notify_fd < 0)
        return -1;
    w->timers = timers_new(w->base);
    w->cx.timers = w->bx.timers = w->timers;
    if (w->timers == NULL)
        return -1;
    w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST,
                             worker_on_notify, w);
    if (w->notify_ev == NULL || event_add(w->notify_ev, NULL) < 0)
        return -1;
    if (route_hedges_init(&w->cx.rt, w->timers) < 0)
        return -1;
    w->cx.rt.dcache = dcache_new(config->decision_cache_size);
    w->cx.rt.hotkeys = hotkeys_new(HOTKEYS_CAPACITY, config->hotkeys_sample, clock_ms());
    w->cx.rt.current = wconfig_new(w, config);
    w->trim_timer = timer_new(w->timers, worker_on_trim, w);
    if (w->cx.rt.current == NULL || w->cx.rt.dcache == NULL || w->trim_timer == NULL
        || w->cx.rt.hotkeys == NULL)
        return -1;
    timer_set_in(w->trim_timer, TRIM_INTERVAL_MS);
    return 0;
}

/*
 * A read buffer for a large value (up to item_max, past BUF_KEEP_MAX) is
 * malloc'd and freed per value. glibc's defaults serve such a block with a
 * fresh mmap, or give the top of its heap back once more than a little is
 * free there: either way the next value's buffer faults its pages in anew
 * (at 1 MiB values, tens of faults per request under load, each zeroing a
 * page). Keep those blocks in the heap instead; worker_on_trim gives the
 * pages back once a worker is quiet, so an idle proxy does not keep a
 * burst's memory.
 */
static void
worker_tune_allocator(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, ALLOC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, ALLOC_TRIM_THRESHOLD);
#endif
}

int
worker_start_all(struct config *config, int n)
{
    int i;

    worker_tune_allocator();
    config->refs = n;
    workers = calloc((size_t)n, sizeof(*workers));
    if (workers == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        if (worker_init(&workers[i], i, n, config) < 0)
            return -1;
        nworkers++;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            return -1;
    }
    return 0;
}

static void
worker_hand(struct worker *w, int fd, bool is_unix, struct tls_conn *tls,
            const char *listener, struct config *config, struct preview *preview)
{
    struct handoff *h = malloc(sizeof(*h));

    if (h == NULL) {
        if (fd >= 0) {
            tls_conn_free(tls);
            close(fd);
            listener_conn_closed();
        } else if (fd == HANDOFF_CONFIG) {
            config_unref(config);
        } else if (fd == HANDOFF_PREVIEW) {
            preview_release(preview);
        }
        return;
    }
    h->fd = fd;
    h->is_unix = is_unix;
    h->listener = listener;
    h->tls = tls;
    h->config = config;
    h->preview = preview;
    pthread_mutex_lock(&w->queue_lock);
    h->next = w->queue;
    w->queue = h;
    pthread_mutex_unlock(&w->queue_lock);
    if (eventfd_write(w->notify_fd, 1) < 0 && errno != EAGAIN)
        log_error("worker %d: wake-up eventfd: %s", w->id, strerror(errno));
}

void
worker_dispatch(int fd, bool is_unix, struct tls_conn *tls, const char *listener)
{
    struct worker *w = &workers[next_worker];

    next_worker = (next_worker + 1) % nworkers;
    worker_hand(w, fd, is_unix, tls, listener, NULL, NULL);
}

void
worker_publish_config(struct config *config)
{
    int i;

    config->refs = nworkers;
    for (i = 0; i < nworkers; i++)
        worker_hand(&workers[i], HANDOFF_CONFIG, false, NULL, NULL, config, NULL);
}

void
worker_publish_preview(struct preview *p)
{
    int i;

    for (i = 0; i < nworkers; i++) {
        if (p != NULL)
            preview_ref(p);
        worker_hand(&workers[i], HANDOFF_PREVIEW, false, NULL, NULL, NULL, p);
    }
}

void
worker_stop_all(void)
{
    int i;

    for (i = 0; i < nworkers; i++)
        worker_hand(&workers[i], HANDOFF_STOP, false, NULL, NULL, NULL, NULL);
    for (i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
}

int
worker_count(void)
{
    return nworkers;
}

const struct wconfig *
worker_generation(int i)
{
    return workers[i].cx.rt.current;
}

const struct stats *
worker_stats(int i)
{
    return &workers[i].cx.rt.rq.stats;
}
