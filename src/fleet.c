/*
 * fleet.c: the background `stats` poller (see fleet.h).
 *
 * Invariants:
 * - Everything here runs on the main thread except fleet_enabled() and
 *   fleet_view(), which read the published part of a server (state, answer
 *   time, figures) under fleet_lock. The main thread takes the lock only to
 *   publish an outcome or to change the list of servers, never across I/O.
 * - At most one `stats` is out per server, and a tick finds it answered or
 *   fails it: a poll is bounded by the interval. A connection is kept open
 *   between polls, so the servers' total_connections does not grow with each
 *   poll (curr_connections includes this one connection per server).
 * - Every struct server pointed at belongs to the newest generation (see
 *   fleet_set_config), and the TLS context it names outlives it: an open SSL
 *   holds its own reference.
 * - Figures of a server are shown only while its last poll was answered: a
 *   server that stops answering is never summed as zeros, or with figures
 *   that are no longer true.
 */
#include "fleet.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "luagent.h"
#include "tls.h"

#define STATS_REQUEST   "stats\r\n"
#define ANSWER_MAX      (64 * 1024)     /* memcached 1.6.18 answers 2,203 bytes */

enum fleet_conn {
    FLEET_CLOSED,           /* no socket */
    FLEET_CONNECTING,       /* connect in progress */
    FLEET_HANDSHAKE,        /* TLS handshake in progress */
    FLEET_UP                /* connected: the request can go */
};

struct fleet_server {
    char                 *label;        /* host:port, the name readers look up */
    const struct server  *srv;          /* in the newest generation */
    enum fleet_conn       conn;
    int                   fd;
    struct tls_conn      *tls;          /* or NULL: plain TCP */
    bool                  read_wants_write;  /* TLS: a read waits for writability */
    bool                  write_wants_read;  /* TLS: a write waits for readability */
    struct event         *rev;          /* readable (persistent) */
    struct event         *wev;          /* writable / connected */
    bool                  asking;       /* a `stats` is out, its answer not complete */
    size_t                sent;         /* bytes of STATS_REQUEST written */
    char                 *in;           /* the answer so far */
    size_t                in_len, in_cap;
    /* Published: written under fleet_lock, read by fleet_view. */
    enum fleet_state      state;
    uint64_t              answered_ms;  /* monotonic clock at the last answer */
    struct server_figures fig;          /* the last answer */
};

static pthread_mutex_t fleet_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fleet_server **servers;   /* changed under fleet_lock */
static int nservers;
static int enabled;                     /* atomic: the poller runs */
static int interval_s;
static struct event_base *fleet_base;
static struct event *tick;

static void fleet_on_read(evutil_socket_t fd, short what, void *arg);
static void fleet_on_write(evutil_socket_t fd, short what, void *arg);

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *
fleet_state_name(enum fleet_state state)
{
    switch (state) {
    case FLEET_WAITING:     return "waiting";
    case FLEET_ANSWERED:    return "answered";
    case FLEET_UNANSWERED:  return "unanswered";
    }
    return "?";
}

bool
fleet_enabled(void)
{
    return __atomic_load_n(&enabled, __ATOMIC_ACQUIRE) != 0;
}

void
fleet_view(const char *label, struct fleet_view *out)
{
    uint64_t now = now_ms();
    int i;

    memset(out, 0, sizeof(*out));
    out->state = FLEET_WAITING;
    pthread_mutex_lock(&fleet_lock);
    for (i = 0; i < nservers; i++) {
        const struct fleet_server *fs = servers[i];

        if (strcmp(fs->label, label) != 0)
            continue;
        out->state = fs->state;
        if (fs->state == FLEET_ANSWERED) {
            out->age_s = (now - fs->answered_ms) / 1000;
            out->fig = fs->fig;
        }
        break;
    }
    pthread_mutex_unlock(&fleet_lock);
}

/* ---- connection ---- */

static void
fleet_close(struct fleet_server *fs)
{
    if (fs->rev != NULL) {
        event_free(fs->rev);
        event_free(fs->wev);
        fs->rev = fs->wev = NULL;
    }
    tls_conn_free(fs->tls);
    fs->tls = NULL;
    if (fs->fd >= 0)
        close(fs->fd);
    fs->fd = -1;
    fs->conn = FLEET_CLOSED;
    fs->read_wants_write = fs->write_wants_read = false;
    fs->asking = false;
    fs->in_len = 0;
}

/* Publish an outcome; log only changes, so a dead server logs once. */
static void
fleet_publish(struct fleet_server *fs, enum fleet_state state,
              const struct server_figures *fig)
{
    enum fleet_state was;

    pthread_mutex_lock(&fleet_lock);
    was = fs->state;
    fs->state = state;
    if (state == FLEET_ANSWERED) {
        fs->fig = *fig;
        fs->answered_ms = now_ms();
    }
    pthread_mutex_unlock(&fleet_lock);
    if (state == FLEET_ANSWERED && was == FLEET_UNANSWERED)
        log_info("stats poll %s: answered again", fs->label);
}

/* The poll failed: close, and show the server as unanswered. */
static void
fleet_failed(struct fleet_server *fs, const char *why)
{
    bool first = fs->state != FLEET_UNANSWERED;

    fleet_close(fs);
    fleet_publish(fs, FLEET_UNANSWERED, NULL);
    if (first)
        log_warn("stats poll %s: %s (its figures are left out until it answers)",
                 fs->label, why);
}

static void
fleet_write(struct fleet_server *fs)
{
    static const char req[] = STATS_REQUEST;

    while (fs->asking && fs->sent < sizeof(req) - 1) {
        ssize_t n = conn_write(fs->fd, fs->tls, req + fs->sent, sizeof(req) - 1 - fs->sent);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (fs->tls != NULL && !tls_wants_write(fs->tls))
                    fs->write_wants_read = true;    /* the read event is persistent */
                else
                    event_add(fs->wev, NULL);
                return;
            }
            fleet_failed(fs, conn_error(fs->tls));
            return;
        }
        fs->sent += (size_t)n;
    }
}

/* Is the whole answer in? Publish it; false if the connection failed. */
static bool
fleet_take_answer(struct fleet_server *fs)
{
    struct server_figures fig;
    char why[128], detail[160];
    size_t used = 0;

    switch (statsreply_parse(fs->in, fs->in_len, &fig, &used, why, sizeof(why))) {
    case STATSREPLY_NEED_MORE:
        return true;
    case STATSREPLY_BAD:
        snprintf(detail, sizeof(detail), "answered \"%s\" to stats", why);
        fleet_failed(fs, detail);
        return false;
    case STATSREPLY_DONE:
        break;
    }
    if (used != fs->in_len) {
        fleet_failed(fs, "sent more than its answer to stats");
        return false;
    }
    fs->asking = false;
    fs->in_len = 0;
    fleet_publish(fs, FLEET_ANSWERED, &fig);
    return true;
}

/* Room for one more read; false (after failing) past ANSWER_MAX. */
static bool
fleet_reserve(struct fleet_server *fs)
{
    char *grown;
    size_t cap;

    if (fs->in_len < fs->in_cap)
        return true;
    if (fs->in_cap >= ANSWER_MAX) {
        fleet_failed(fs, "answer to stats longer than 64 KiB");
        return false;
    }
    cap = fs->in_cap ? fs->in_cap * 2 : 4096;
    grown = realloc(fs->in, cap);
    if (grown == NULL) {
        fleet_failed(fs, "out of memory");
        return false;
    }
    fs->in = grown;
    fs->in_cap = cap;
    return true;
}

static void
fleet_read(struct fleet_server *fs)
{
    for (;;) {
        ssize_t n;

        if (!fleet_reserve(fs))
            return;
        n = conn_read(fs->fd, fs->tls, fs->in + fs->in_len, fs->in_cap - fs->in_len);
        if (n > 0 && !fs->asking) {
            fleet_failed(fs, "sent bytes nobody asked for");
            return;
        }
        if (n > 0) {
            fs->in_len += (size_t)n;
            if (!fleet_take_answer(fs))
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (fs->tls != NULL && tls_wants_write(fs->tls)) {
                fs->read_wants_write = true;
                event_add(fs->wev, NULL);
            }
            return;
        }
        if (n == 0 && !fs->asking) {
            fleet_close(fs);    /* idle and closed (a restart): the next tick reconnects */
            return;
        }
        fleet_failed(fs, n == 0 ? "connection closed" : conn_error(fs->tls));
        return;
    }
}

/* The connect has finished: 0, or -1 after failing. */
static int
fleet_connected(struct fleet_server *fs)
{
    char detail[160];
    socklen_t len = sizeof(int);
    int err = 0;

    if (getsockopt(fs->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        snprintf(detail, sizeof(detail), "connect: %s", strerror(err));
        fleet_failed(fs, detail);
        return -1;
    }
    return 0;
}

static void
fleet_handshake(struct fleet_server *fs)
{
    char detail[ERR_LEN];

    switch (tls_handshake(fs->tls)) {
    case 1:
        fs->conn = FLEET_UP;
        fleet_write(fs);
        return;
    case 0:
        if (tls_wants_write(fs->tls))
            event_add(fs->wev, NULL);
        return;
    default:
        snprintf(detail, sizeof(detail), "TLS handshake: %s", tls_error(fs->tls));
        fleet_failed(fs, detail);
        return;
    }
}

/* TCP is up: start TLS, or send the request. */
static void
fleet_established(struct fleet_server *fs)
{
    char err[ERR_LEN];

    if (fs->srv->tls == NULL) {
        fs->conn = FLEET_UP;
        fleet_write(fs);
        return;
    }
    fs->tls = tls_conn_connect(fs->srv->tls, fs->fd, fs->srv->host, err, sizeof(err));
    if (fs->tls == NULL) {
        fleet_failed(fs, err);
        return;
    }
    fs->conn = FLEET_HANDSHAKE;
    fleet_handshake(fs);
}

/*
 * An up connection became ready in one direction: first resume the other
 * direction's call if TLS left it waiting on this one (*waiting), then, if
 * the connection is still up, do this direction's own work.
 */
static void
fleet_up_ready(struct fleet_server *fs, bool *waiting,
               void (*resume)(struct fleet_server *), void (*own)(struct fleet_server *))
{
    if (*waiting) {
        *waiting = false;
        resume(fs);
        if (fs->conn != FLEET_UP)
            return;
    }
    own(fs);
}

static void
fleet_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct fleet_server *fs = arg;

    switch (fs->conn) {
    case FLEET_CONNECTING:
        if (fleet_connected(fs) == 0)
            fleet_established(fs);
        return;
    case FLEET_HANDSHAKE:
        fleet_handshake(fs);
        return;
    case FLEET_UP:
        fleet_up_ready(fs, &fs->read_wants_write, fleet_read, fleet_write);
        return;
    case FLEET_CLOSED:
        return;
    }
}

static void
fleet_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct fleet_server *fs = arg;

    switch (fs->conn) {
    case FLEET_CONNECTING:
        /* Readable before writable: the connect failed (or will be seen writable). */
        fleet_connected(fs);
        return;
    case FLEET_HANDSHAKE:
        fleet_handshake(fs);
        return;
    case FLEET_UP:
        fleet_up_ready(fs, &fs->write_wants_read, fleet_write, fleet_read);
        return;
    case FLEET_CLOSED:
        return;
    }
}

static int
fleet_connect(struct fleet_server *fs)
{
    const struct server *srv = fs->srv;
    int rc;

    fs->fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fs->fd < 0)
        return -1;
    fs->rev = event_new(fleet_base, fs->fd, EV_READ | EV_PERSIST, fleet_on_read, fs);
    fs->wev = event_new(fleet_base, fs->fd, EV_WRITE, fleet_on_write, fs);
    if (fs->rev == NULL || fs->wev == NULL) {
        errno = ENOMEM;
        return -1;
    }
    rc = connect(fs->fd, (const struct sockaddr *)&srv->addr, srv->addrlen);
    if (rc < 0 && errno != EINPROGRESS)
        return -1;
    fs->conn = FLEET_CONNECTING;
    event_add(fs->rev, NULL);
    event_add(fs->wev, NULL);   /* writable: connected (loopback may be at once) */
    return 0;
}

/* Ask one server for its stats (connecting first if need be). */
static void
fleet_ask(struct fleet_server *fs)
{
    char detail[160];

    fs->asking = true;
    fs->sent = 0;
    fs->in_len = 0;
    if (fs->conn == FLEET_CLOSED && fleet_connect(fs) < 0) {
        snprintf(detail, sizeof(detail), "connect: %s", strerror(errno));
        fleet_failed(fs, detail);
        return;
    }
    if (fs->conn == FLEET_UP)
        fleet_write(fs);
}

static void
fleet_on_tick(evutil_socket_t fd, short what, void *arg)
{
    char detail[64];
    int i;

    for (i = 0; i < nservers; i++) {
        struct fleet_server *fs = servers[i];

        if (fs->asking) {
            snprintf(detail, sizeof(detail), "no answer within %d s", interval_s);
            fleet_failed(fs, detail);
        }
        fleet_ask(fs);
    }
}

/* ---- the list of servers ---- */

static void
fleet_server_free(struct fleet_server *fs)
{
    fleet_close(fs);
    free(fs->in);
    free(fs->label);
    free(fs);
}

static struct fleet_server *
fleet_server_new(const struct server *srv)
{
    struct fleet_server *fs = calloc(1, sizeof(*fs));

    if (fs == NULL)
        return NULL;
    fs->label = strdup(srv->label);
    if (fs->label == NULL) {
        free(fs);
        return NULL;
    }
    fs->srv = srv;
    fs->fd = -1;
    fs->state = FLEET_WAITING;
    return fs;
}

/* The entry kept for srv out of old[] (taken out of it), or NULL. */
static struct fleet_server *
fleet_take_same(struct fleet_server **old, int nold, const struct server *srv)
{
    int i;

    for (i = 0; i < nold; i++) {
        struct fleet_server *fs = old[i];

        /* Kept only over the same transport, as worker connections are. */
        if (fs != NULL && strcmp(fs->label, srv->label) == 0
            && tls_client_same(fs->srv->tls, srv->tls)) {
            old[i] = NULL;
            return fs;
        }
    }
    return NULL;
}

void
fleet_set_config(const struct config *cfg)
{
    struct fleet_server **next, **old = servers;
    int i, nold = nservers, n = 0;
    bool *fresh;

    if (!fleet_enabled())
        return;
    next = calloc((size_t)cfg->nservers + 1, sizeof(*next));
    fresh = calloc((size_t)cfg->nservers + 1, sizeof(*fresh));
    if (next == NULL || fresh == NULL) {
        log_error("stats poll: out of memory taking generation %u (polling the one before)",
                  cfg->generation);
        free(next);
        free(fresh);
        return;
    }
    for (i = 0; i < cfg->nservers; i++) {
        const struct server *srv = &cfg->servers[i];
        struct fleet_server *fs = fleet_take_same(old, nold, srv);

        if (fs == NULL) {
            fs = fleet_server_new(srv);
            if (fs == NULL) {
                log_error("stats poll %s: out of memory (not polled)", srv->label);
                continue;
            }
            fresh[n] = true;
        }
        fs->srv = srv;
        next[n++] = fs;
    }
    pthread_mutex_lock(&fleet_lock);
    servers = next;
    nservers = n;
    pthread_mutex_unlock(&fleet_lock);
    for (i = 0; i < nold; i++)
        if (old[i] != NULL)
            fleet_server_free(old[i]);
    free(old);
    for (i = 0; i < n; i++)
        if (fresh[i])
            fleet_ask(servers[i]);    /* a new server need not wait for the tick */
    free(fresh);
}

int
fleet_start(struct event_base *base, int every_s, const struct config *cfg)
{
    struct timeval tv = { every_s, 0 };

    if (every_s == 0)
        return 0;
    fleet_base = base;
    interval_s = every_s;
    tick = event_new(base, -1, EV_PERSIST, fleet_on_tick, NULL);
    if (tick == NULL || event_add(tick, &tv) < 0)
        return -1;
    __atomic_store_n(&enabled, 1, __ATOMIC_RELEASE);
    fleet_set_config(cfg);
    return 0;
}

void
fleet_stop(void)
{
    struct fleet_server **old = servers;
    int i, n = nservers;

    if (tick != NULL) {
        event_free(tick);
        tick = NULL;
    }
    pthread_mutex_lock(&fleet_lock);
    servers = NULL;
    nservers = 0;
    pthread_mutex_unlock(&fleet_lock);
    for (i = 0; i < n; i++)
        fleet_server_free(old[i]);
    free(old);
}
