/*
 * worker.c: worker threads.
 *
 * Each worker runs its own event loop and owns its clients, its backend
 * connections (one set per configured server), its free lists and its stats
 * shard; no lock is taken on the request path. The listener thread hands
 * accepted sockets over through a mutex-protected queue and a wake-up pipe.
 *
 * Writes are deferred: backends and clients with something to send are put
 * on a list, and one flush event, activated behind the I/O callbacks of the
 * current loop pass, writes them all. So keys from many clients bound for one
 * server leave in one write, and a client gets all its ready replies in one.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "client.h"
#include "config.h"
#include "dcache.h"
#include "listener.h"
#include "log.h"

struct handoff {
    struct handoff *next;
    int             fd;         /* -1: stop the worker */
    bool            is_unix;
};

struct worker *workers;
int nworkers;
static int next_worker;

uint64_t
worker_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
worker_on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct handoff *h;
    char drain[64];

    while (read(fd, drain, sizeof(drain)) > 0)
        ;
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
        if (h->fd < 0)
            event_base_loopbreak(w->base);
        else
            client_accept(w, h->fd, h->is_unix);
        free(h);
    }
}

static void
worker_on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    int i;

    w->flush_scheduled = false;
    /* Index loops: a flush may add entries, which are then handled too. */
    for (i = 0; i < w->ndirty_backends; i++)
        backend_flush(w->dirty_backends[i]);
    w->ndirty_backends = 0;
    for (i = 0; i < w->ndirty_clients; i++)
        client_flush(w, w->dirty_clients[i]);
    w->ndirty_clients = 0;
}

static void
worker_schedule_flush(struct worker *w)
{
    if (!w->flush_scheduled) {
        w->flush_scheduled = true;
        event_active(w->flush_ev, 0, 0);
    }
}

static void
push(void ***list, int *n, int *cap, void *item)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        void **grown = realloc(*list, sizeof(void *) * (size_t)ncap);

        if (grown == NULL)
            abort();
        *list = grown;
        *cap = ncap;
    }
    (*list)[(*n)++] = item;
}

void
worker_mark_backend(struct worker *w, struct backend *be)
{
    push((void ***)&w->dirty_backends, &w->ndirty_backends, &w->cap_dirty_backends, be);
    worker_schedule_flush(w);
}

void
worker_mark_client(struct worker *w, struct client *c)
{
    push((void ***)&w->dirty_clients, &w->ndirty_clients, &w->cap_dirty_clients, c);
    worker_schedule_flush(w);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

static int
worker_init(struct worker *w, int id, struct config *config)
{
    int i;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->config = config;
    pthread_mutex_init(&w->queue_lock, NULL);
    w->base = event_base_new();
    if (w->base == NULL || pipe2(w->notify_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    w->notify_ev = event_new(w->base, w->notify_pipe[0], EV_READ | EV_PERSIST,
                             worker_on_notify, w);
    w->flush_ev = event_new(w->base, -1, 0, worker_on_flush, w);
    if (w->notify_ev == NULL || w->flush_ev == NULL || event_add(w->notify_ev, NULL) < 0)
        return -1;
    w->dcache = dcache_new(config->decision_cache_size);
    w->backends = calloc((size_t)config->nservers, sizeof(*w->backends));
    if (w->backends == NULL || w->dcache == NULL)
        return -1;
    for (i = 0; i < config->nservers; i++) {
        w->backends[i] = backend_new(w, &config->servers[i]);
        if (w->backends[i] == NULL)
            return -1;
    }
    return 0;
}

int
worker_start_all(struct config *config, int n)
{
    int i;

    workers = calloc((size_t)n, sizeof(*workers));
    if (workers == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        if (worker_init(&workers[i], i, config) < 0)
            return -1;
        nworkers++;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            return -1;
    }
    return 0;
}

static void
worker_hand(struct worker *w, int fd, bool is_unix)
{
    struct handoff *h = malloc(sizeof(*h));

    if (h == NULL) {
        if (fd >= 0) {
            close(fd);
            listener_conn_closed();
        }
        return;
    }
    h->fd = fd;
    h->is_unix = is_unix;
    pthread_mutex_lock(&w->queue_lock);
    h->next = w->queue;
    w->queue = h;
    pthread_mutex_unlock(&w->queue_lock);
    if (write(w->notify_pipe[1], "", 1) < 0 && errno != EAGAIN)
        log_error("worker %d: wake-up pipe: %s", w->id, strerror(errno));
}

void
worker_dispatch(int fd, bool is_unix)
{
    struct worker *w = &workers[next_worker];

    next_worker = (next_worker + 1) % nworkers;
    worker_hand(w, fd, is_unix);
}

void
worker_stop_all(void)
{
    int i;

    for (i = 0; i < nworkers; i++)
        worker_hand(&workers[i], -1, false);
    for (i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
}
