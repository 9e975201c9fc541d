/*
 * client.c: client connections: read, parse, route, wait, write.
 *
 * Invariants:
 * - Requests are kept in a FIFO in arrival order and replies are written only
 *   from its head, so pipelined requests are answered in order even when
 *   their servers answer out of order. Errors found while parsing go through
 *   the same FIFO.
 * - A connection holds a read buffer only while it has unparsed bytes; an
 *   idle connection holds none.
 * - A request outlives its client when calls are still out (the client
 *   closed, or a fan-out answered early): refs counts those.
 * - A TLS client differs only in its I/O: conn_read/conn_write go through
 *   OpenSSL, its events have their own callbacks (which also retry the other
 *   direction when OpenSSL needed the opposite readiness), and a timer closes
 *   it when its handshake does not finish in time. The plain path pays one
 *   branch per read and per write.
 */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "base64.h"
#include "binclient.h"
#include "binproto.h"
#include "buf.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "luagent.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define READ_CHUNK          16384
#define MAX_PENDING         1024            /* requests in flight per client */
#define OUT_PAUSE           (4u << 20)      /* unwritten output that stops reading */
#define SLOTS_KEPT_MAX      128             /* multi-get slots a free request keeps */

struct client {
    struct worker   *w;
    int              fd;
    struct tls_conn *tls;           /* TLS state, or NULL for plain TCP / unix */
    struct event    *rev;
    struct event    *wev;
    struct event    *handshake_timer; /* TLS: until the handshake is done */
    struct buf      *rbuf;          /* unparsed input, borrowed while non-empty */
    struct buf      *obuf;          /* output not yet written */
    struct creq     *head, *tail;   /* requests in arrival order */
    uint32_t         npending;
    uint64_t         held;          /* bytes its queued requests hold (creq->held) */
    uint32_t         swallow;       /* bytes of a refused data block still to drop */
    bool             is_unix;
    bool             closing;       /* read no more requests */
    bool             close_when_written; /* a closing reply is in obuf */
    bool             closed;        /* socket closed; struct freed by flush */
    bool             dirty;         /* on the worker's flush list */
    bool             read_paused;   /* too many requests in flight, or bytes held */
    bool             close_when_idle; /* shutting down: close once all is answered */
    bool             read_wants_write; /* TLS: a read waits for writability */
    bool             write_wants_read; /* TLS: a write waits for readability */
    bool             tls_sniffed;   /* TLS: the first byte was looked at */
    uint8_t          proto;         /* enum client_proto: chosen by the first byte */
    struct client   *prev, *next;   /* the worker's clients */
};

/* Which protocol a connection speaks, as memcached decides: by its first byte. */
enum client_proto {
    CLIENT_PROTO_UNKNOWN,   /* nothing read yet */
    CLIENT_PROTO_TEXT,      /* text and meta commands */
    CLIENT_PROTO_BINARY     /* first byte 0x80: binclient.c */
};

static void client_on_read(evutil_socket_t fd, short what, void *arg);
static void client_on_write(evutil_socket_t fd, short what, void *arg);
static void client_tls_on_read(evutil_socket_t fd, short what, void *arg);
static void client_tls_on_write(evutil_socket_t fd, short what, void *arg);
static void client_tls_on_timeout(evutil_socket_t fd, short what, void *arg);
static bool client_write(struct client *c);
static void client_mark(struct client *c);

static int tls_handshake_timeout_ms = DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;

void
client_set_tls_handshake_timeout(int ms)
{
    tls_handshake_timeout_ms = ms;
}

static void
client_free(struct client *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->handshake_timer)
        event_free(c->handshake_timer);
    worker_client_structs(c->w, -1);
    free(c);
}

/* Events (and for TLS the handshake deadline) for a new connection. */
static int
client_events(struct client *c)
{
    struct event_base *base = c->w->base;
    struct timeval tv;

    if (c->tls == NULL) {
        c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_on_read, c);
        c->wev = event_new(base, c->fd, EV_WRITE, client_on_write, c);
        return c->rev && c->wev ? event_add(c->rev, NULL) : -1;
    }
    c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_tls_on_read, c);
    c->wev = event_new(base, c->fd, EV_WRITE, client_tls_on_write, c);
    c->handshake_timer = evtimer_new(base, client_tls_on_timeout, c);
    if (c->rev == NULL || c->wev == NULL || c->handshake_timer == NULL)
        return -1;
    tv.tv_sec = tls_handshake_timeout_ms / 1000;
    tv.tv_usec = (tls_handshake_timeout_ms % 1000) * 1000;
    return event_add(c->handshake_timer, &tv) == 0 ? event_add(c->rev, NULL) : -1;
}

void
client_accept(struct worker *w, int fd, bool is_unix, struct tls_conn *tls)
{
    struct client *c = NULL;

    if (worker_client_structs(w, +1) == 0 && (c = calloc(1, sizeof(*c))) == NULL)
        worker_client_structs(w, -1);
    if (c != NULL) {
        c->w = w;
        c->fd = fd;
        c->is_unix = is_unix;
        c->tls = tls;
    }
    if (c == NULL || client_events(c) < 0) {
        if (c != NULL)
            client_free(c);
        tls_conn_free(tls);
        close(fd);
        listener_conn_closed();
        return;
    }
    STAT_INC(w->stats.curr_connections);
    STAT_INC(w->stats.total_connections);
    c->next = w->clients;
    if (w->clients != NULL)
        w->clients->prev = c;
    w->clients = c;
}

static void
client_mark(struct client *c)
{
    if (!c->dirty && worker_mark_client(c->w, c) == 0)
        c->dirty = true;
}

/*
 * The struct itself is freed by the flush at the end of the loop pass: the
 * close may come from deep inside client_read or client_write (a buffer that
 * cannot grow while parsing), which still look at the client afterwards.
 */
static void
client_close(struct client *c)
{
    struct worker *w = c->w;
    struct creq *r = c->head;

    if (c->closed)
        return;
    c->closed = true;
    event_del(c->rev);
    event_del(c->wev);
    if (c->tls != NULL) {
        if (c->handshake_timer != NULL)
            event_del(c->handshake_timer);
        tls_conn_free(c->tls);
        c->tls = NULL;
    }
    close(c->fd);
    c->fd = -1;
    while (r != NULL) {
        struct creq *next = r->next;

        r->client = NULL;
        r->next = NULL;
        creq_release(w, r);
        r = next;
    }
    c->head = c->tail = NULL;
    buf_put(&w->bufs, c->rbuf);
    buf_put(&w->bufs, c->obuf);
    c->rbuf = c->obuf = NULL;
    STAT_DEC(w->stats.curr_connections);
    listener_conn_closed();
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    /* Freed by the flush at the end of this pass, never under a caller that
     * may still look at c->closed (a parse that closed from inside a read).
     * The flush list has room for every client struct (client_accept). */
    client_mark(c);
    if (w->clients == NULL && w->stopping)
        worker_clients_gone(w);
}

void
client_shutdown_all(struct worker *w)
{
    struct client *c = w->clients, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        c->closing = true;
        c->close_when_idle = true;
        event_del(c->rev);
        if (c->head == NULL && (c->obuf == NULL || buf_avail(c->obuf) == 0))
            client_close(c);
    }
}

/* Every request counts against the generation it is routed by. */
static void
creq_bind(struct worker *w, struct creq *r, struct wconfig *wc)
{
    r->wcfg = wc;
    wc->inflight++;
}

/* A cleared request from the free list; its multi-key slot storage stays. */
static struct creq *
creq_alloc(struct worker *w)
{
    struct creq *r = w->free_creqs;
    struct slot *spare = NULL;
    uint32_t spare_cap = 0;

    if (r != NULL) {
        w->free_creqs = r->next;
        if (--w->nfree_creqs < w->low_free_creqs)
            w->low_free_creqs = w->nfree_creqs;
        spare = r->spare;
        spare_cap = r->spare_cap;
    } else if ((r = malloc(sizeof(*r))) == NULL) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->spare = spare;
    r->spare_cap = spare_cap;
    r->refs = 1;
    return r;
}

static struct creq *
creq_new(struct worker *w, struct client *c)
{
    struct creq *r = creq_alloc(w);

    if (r == NULL)
        return NULL;
    r->client = c;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
    return r;
}

void
creq_release(struct worker *w, struct creq *r)
{
    uint32_t i;

    if (--r->refs > 0)
        return;
    for (i = 0; i < r->nslots; i++)
        buf_put(&w->bufs, r->slots[i].res.data);
    if (r->slots != &r->one && r->slots != r->spare)
        free(r->slots);
    buf_put(&w->bufs, r->buf);
    if (r->wcfg != NULL)
        worker_request_done(w, r->wcfg);
    r->next = w->free_creqs;
    w->free_creqs = r;
    w->nfree_creqs++;
}

/* Let go of the free requests no request took since the last trim. */
uint64_t
creq_trim_free(struct worker *w)
{
    uint64_t bytes = 0;
    unsigned n = w->low_free_creqs;

    while (n-- > 0 && w->free_creqs != NULL) {
        struct creq *r = w->free_creqs;

        w->free_creqs = r->next;
        w->nfree_creqs--;
        bytes += sizeof(*r) + (uint64_t)r->spare_cap * sizeof(struct slot);
        free(r->spare);
        free(r);
    }
    w->low_free_creqs = w->nfree_creqs;
    return bytes;
}

/* Bytes a client holds: its queued requests' copies and replies, and the
 * output it has not read yet. */
static uint64_t
client_bytes(const struct client *c)
{
    return c->held + (c->obuf != NULL ? buf_avail(c->obuf) : 0);
}

/* The bound on client_bytes: past it, reading stops and replies are refused. */
static uint64_t
client_limit(const struct worker *w)
{
    return w->config->client_max_memory;
}

/* Answer r SERVER_ERROR out of memory; the replies it holds go at once. */
static void
creq_out_of_memory(struct worker *w, struct creq *r, const char *bound, uint64_t limit)
{
    uint64_t freed = 0;
    uint32_t i;

    log_ratelimited(LOG_WARN, &w->stats.out_of_memory, "client: request answered "
                    "SERVER_ERROR out of memory: its values would pass %s (%llu bytes)",
                    bound, (unsigned long long)limit);
    r->oom = true;
    STAT_INC(w->stats.out_of_memory);
    for (i = 0; i < r->nslots; i++) {
        struct buf *data = r->slots[i].res.data;

        if (data != NULL) {
            freed += data->len;
            buf_put(&w->bufs, data);
            r->slots[i].res.data = NULL;
        }
    }
    r->held -= freed;
    if (r->client != NULL)
        r->client->held -= freed;
}

bool
creq_may_hold(struct worker *w, struct creq *r, uint64_t n)
{
    struct client *c = r->client;

    if (c == NULL)
        return true;        /* a route node may still use it (warm-up copy) */
    if (r->oom)
        return false;
    if (r->held + r->in_calls + n > client_limit(w)) {
        creq_out_of_memory(w, r, "client_max_memory", client_limit(w));
        return false;
    }
    if (worker_memory_over(w)) {
        creq_out_of_memory(w, r, "max_memory", w->max_memory);
        return false;
    }
    return true;
}

/*
 * A reply arrived: its bytes are held until written. A value is held only
 * within the client's bound and the total one; past either, the bytes are
 * let go at once and the whole request is answered SERVER_ERROR out of
 * memory. A line (STORED, an error) is at most a few KiB per request, and
 * refusing it would hide what the server did: it is always held.
 */
static void
creq_hold(struct worker *w, struct creq *r, struct slot *s)
{
    struct client *c = r->client;
    uint64_t n = s->res.data->len;

    if (c != NULL && !r->oom
        && (s->res.kind == REPLY_VALUE || s->res.kind == REPLY_META_VA))
        creq_may_hold(w, r, n);     /* answers it out of memory when not */
    if (c == NULL || r->oom) {
        /* Nobody will read these bytes (its client has gone), or the
         * request is answered out of memory already. */
        buf_put(&w->bufs, s->res.data);
        s->res.data = NULL;
        return;
    }
    r->held += n;
    c->held += n;
}

void
creq_slot_done(struct worker *w, struct creq *r, uint32_t slot, struct result *res)
{
    struct slot *s = &r->slots[slot];

    s->res = *res;
    res->data = NULL;
    if (s->res.data != NULL)
        creq_hold(w, r, s);
    s->done = true;
    r->ndone++;
    if (r->ndone == r->nslots && r->client != NULL && r->client->head == r)
        client_mark(r->client);
}

static int
creq_slots(struct creq *r, uint32_t n)
{
    r->nslots = n;
    if (n <= 1) {       /* 0: flush_all through a policy with no server */
        r->slots = &r->one;
        return 0;
    }
    if (n > r->spare_cap && n <= SLOTS_KEPT_MAX) {
        struct slot *grown = realloc(r->spare, n * sizeof(*grown));

        if (grown != NULL) {
            r->spare = grown;
            r->spare_cap = n;
        }
    }
    if (n <= r->spare_cap) {
        r->slots = r->spare;
        memset(r->slots, 0, n * sizeof(*r->slots));
        return 0;
    }
    r->slots = calloc(n, sizeof(*r->slots));    /* a rare wide multi-get */
    return r->slots ? 0 : -1;
}

/*
 * The key a single-key request is routed by. A meta key sent in base64 ("b")
 * is routed by its decoded bytes, so it lands where the same key sent in
 * plain text does, and hashing, prefixes and hooks see the real key. The
 * decoded key is kept after the request bytes in the creq's own buffer.
 */
static void
creq_key_slot(struct creq *r)
{
    struct slot *s = &r->slots[0];

    if (r->req.meta && r->req.base64) {
        char key[KEY_MAX];
        uint32_t off = r->buf->len, n = proto_meta_key(r->buf->data, &r->req, key);

        buf_append(r->buf, key, n);
        s->key = r->buf->data + off;
        s->klen = n;
        return;
    }
    s->key = r->buf->data + r->req.key.off;
    s->klen = r->req.key.len;
}

void
creq_background(struct worker *w, struct wconfig *wcfg, const struct route *node,
                struct buf *buf)
{
    struct creq *r = creq_alloc(w);
    struct proto_error err;
    struct call *call;

    if (r == NULL) {
        buf_put(&w->bufs, buf);     /* out of memory: the copy is not made */
        return;
    }
    r->buf = buf;
    creq_bind(w, r, wcfg);
    if (proto_parse(buf->data, buf->len, UINT32_MAX, &r->req, &err) != PROTO_OK
        || r->req.nkeys != 1) {
        creq_release(w, r);
        return;
    }
    r->req.noreply = true;          /* nobody reads the reply */
    creq_slots(r, 1);
    creq_key_slot(r);
    call = call_new(w, r, node, 0, r->slots[0].key, r->slots[0].klen);
    if (call != NULL)
        route_start(w, call);
    creq_release(w, r);
}

bool
client_is_unix(const struct client *c)
{
    return c->is_unix;
}

static bool
creq_complete(const struct creq *r)
{
    return r->local != NULL || r->stats || r->ndone == r->nslots;
}

/*
 * Out of memory for the request that keeps a client's replies in order: the
 * client cannot be answered in order any more, so it is closed. The free
 * of the client waits for the flush, so the caller's loop may go on.
 */
static void
client_close_no_memory(struct client *c, const char *what)
{
    static const char key = 0;

    STAT_INC(c->w->stats.memory_closes);
    log_ratelimited(LOG_WARN, &key, "client: closed: out of memory %s", what);
    client_close(c);
}

/* A reply decided without any server (an error, version, ...). */
static void
client_local(struct client *c, const char *line, bool noreply, bool close_after)
{
    struct creq *r = creq_new(c->w, c);

    if (r == NULL) {
        client_close_no_memory(c, "queueing a reply");
        return;
    }
    r->local = line;
    r->req.noreply = noreply;   /* memcached keeps even errors quiet then */
    r->close_after = close_after;
    if (r == c->head)
        client_mark(c);
}

/* No call could be made for slot i: it is answered out of memory. */
static void
creq_slot_no_call(struct worker *w, struct creq *r, uint32_t i)
{
    struct result res = { .fail = FAIL_NOMEM };

    creq_slot_done(w, r, i, &res);
}

/*
 * Route every key of a request through the current config. All slots exist
 * before the first call starts, so a call that finishes at once (a server
 * marked down) cannot complete the request early.
 */
static void
client_route(struct client *c, struct creq *r)
{
    struct worker *w = c->w;
    const struct request *rq = &r->req;
    const char *base = r->buf->data;
    uint32_t i = 0, pos = rq->keys.off;
    struct span k;

    if (creq_slots(r, rq->nkeys) < 0) {
        r->nslots = 0;
        r->local = "SERVER_ERROR out of memory";
        return;
    }
    if (proto_cmd_is_retrieval(rq->cmd)) {
        while (proto_next_key(base, rq, &pos, &k)) {
            r->slots[i].key = base + k.off;
            r->slots[i].klen = k.len;
            i++;
        }
    } else {
        creq_key_slot(r);
    }
    for (i = 0; i < r->nslots; i++) {
        struct call *call = call_new(w, r, r->wcfg->config->root, i, r->slots[i].key,
                                     r->slots[i].klen);

        if (call != NULL)
            route_start(w, call);
        else
            creq_slot_no_call(w, r, i);
    }
}

/* flush_all goes to every server; OK only if all say OK. */
static void
client_broadcast(struct client *c, struct creq *r)
{
    struct worker *w = c->w;
    struct config *cfg = r->wcfg->config;
    int i;

    if (creq_slots(r, (uint32_t)cfg->nservers) < 0) {
        r->nslots = 0;
        r->local = "SERVER_ERROR out of memory";
        return;
    }
    for (i = 0; i < cfg->nservers; i++) {
        struct call *call = call_new(w, r, NULL, (uint32_t)i, NULL, 0);

        if (call != NULL)
            backend_submit(r->wcfg->backends[i], call, DEFAULT_TIMEOUT_MS);
        else
            creq_slot_no_call(w, r, (uint32_t)i);
    }
}

static void
client_proxy_command(struct client *c, struct creq *r)
{
    switch (r->req.cmd) {
    case CMD_VERSION:
        r->local = "VERSION " VERSION_TEXT;
        break;
    case CMD_VERBOSITY:
        r->local = "OK";
        break;
    case CMD_MN:
        /* Every earlier reply of this connection is written before this
         * one (the FIFO), which is all mn promises. */
        r->local = "MN";
        break;
    case CMD_QUIT:
        r->local = "";
        r->close_after = true;
        c->closing = true;
        break;
    case CMD_STATS: {
        enum stats_group group = stats_group_by_name(r->buf->data + r->req.args.off,
                                                     r->req.args.len);

        if (group == STATS_UNKNOWN) {
            r->local = "ERROR";     /* memcached's answer to a group it lacks */
            break;
        }
        r->stats = true;        /* rendered when its turn to be written comes */
        r->stats_group = (uint8_t)group;
        break;
    }
    case CMD_FLUSH_ALL:
        client_broadcast(c, r);
        break;
    default:
        r->local = "ERROR";
        break;
    }
}

/* A whole request (line and data block) is at the head of the read buffer. */
static void
client_request(struct client *c, const struct request *rq, const char *bytes, size_t len)
{
    struct worker *w = c->w;
    struct creq *r;

    if (proto_cmd_op(rq->cmd) != OP_PROXY && client_memory_refused(c)) {
        /* New requests wait for memory to drop; stats and the like still work. */
        client_local(c, "SERVER_ERROR out of memory", rq->noreply, false);
        return;
    }
    r = creq_new(w, c);
    if (r == NULL) {
        client_close_no_memory(c, "for a request");
        return;
    }
    r->req = *rq;
    creq_bind(w, r, w->current);
    STAT_ADD(w->stats.cmd[rq->cmd], rq->nkeys > 0 ? rq->nkeys : 1);
    /* Room for a meta key decoded from base64 too (creq_key_slot). */
    r->buf = buf_get(&w->bufs);
    if (r->buf == NULL || buf_reserve(r->buf, len + KEY_MAX) < 0) {
        STAT_INC(w->stats.out_of_memory);
        r->local = "SERVER_ERROR out of memory";
        if (r == c->head)
            client_mark(c);
        return;
    }
    buf_append(r->buf, bytes, len);
    r->held = r->buf->len;
    c->held += r->held;
    if (proto_cmd_op(rq->cmd) == OP_PROXY)
        client_proxy_command(c, r);
    else if (rq->nkeys == 0)
        r->local = "END";       /* "gat <exptime>" with no key */
    else
        client_route(c, r);
    if (r == c->head && creq_complete(r))
        client_mark(c);
}

/*
 * The ways in for a front end of another protocol (binclient.c). Its keyed
 * requests have one key each. Kept apart from client_request so that the
 * text path is compiled as it was.
 */
struct creq *
client_request_new(struct client *c)
{
    struct creq *r = creq_new(c->w, c);

    if (r == NULL) {
        client_close_no_memory(c, "for a request");
        return NULL;
    }
    creq_bind(c->w, r, c->w->current);
    return r;
}

bool
client_memory_refused(struct client *c)
{
    struct worker *w = c->w;

    if (!worker_memory_over(w))
        return false;
    STAT_INC(w->stats.out_of_memory);
    log_ratelimited(LOG_WARN, &w->stats.out_of_memory, "client: request refused: "
                    "buffers hold more than %llu bytes (max_memory)",
                    (unsigned long long)w->config->max_memory);
    return true;
}

void
client_request_ready(struct client *c, struct creq *r)
{
    if (r == c->head && creq_complete(r))
        client_mark(c);
}

void
client_request_start(struct client *c, struct creq *r)
{
    struct worker *w = c->w;

    STAT_INC(w->stats.cmd[r->req.cmd]);
    if (proto_cmd_op(r->req.cmd) == OP_PROXY) {
        client_proxy_command(c, r);
    } else {
        creq_slots(r, 1);
        creq_key_slot(r);
        route_start(w, call_new(w, r, r->wcfg->config->root, 0, r->slots[0].key,
                                r->slots[0].klen));
    }
    client_request_ready(c, r);
}

/*
 * A set (or ms) refused as too large still removes the key's old value, as
 * memcached does, so no reader sees a value the client meant to replace.
 * An ms key in base64 is deleted with "md <key> b", routed by the same bytes.
 */
static void
client_drop_stale(struct client *c, const struct request *rq, const char *line)
{
    struct worker *w = c->w;
    struct buf *req;

    if (rq->key.len == 0 || rq->key.len > KEY_MAX)
        return;
    req = buf_get(&w->bufs);
    if (req == NULL)
        return;             /* out of memory: the old value stays */
    buf_append_str(req, rq->meta ? "md " : "delete ");
    buf_append(req, line + rq->key.off, rq->key.len);
    if (rq->base64)
        buf_append(req, " b", 2);
    buf_append(req, "\r\n", 2);
    if (buf_failed(req)) {
        buf_put(&w->bufs, req);
        return;
    }
    creq_background(w, w->current, w->config->root, req);
}

/*
 * Binary protocol: take one request from the input. False when the client
 * must wait for more bytes (or was closed).
 */
static bool
client_parse_binary(struct client *c, struct buf *in)
{
    struct bin_take t;

    binclient_take(c, c->w, buf_head(in), buf_avail(in), &t);
    if (c->closed)
        return false;           /* out of memory for a request */
    if (t.need > 0) {
        buf_compact(in);
        if (buf_reserve(in, t.need - in->len) < 0)
            client_close(c);
        return false;
    }
    buf_consume(in, t.consume);
    c->swallow = t.swallow;
    if (t.close)
        c->closing = true;
    return true;
}

/* The first byte says which protocol the connection speaks. */
static enum client_proto
client_sniff(struct client *c, const struct buf *in)
{
    if (c->proto == CLIENT_PROTO_UNKNOWN) {
        c->proto = (uint8_t)*buf_head(in) == BIN_MAGIC_REQUEST ? CLIENT_PROTO_BINARY
                                                                : CLIENT_PROTO_TEXT;
        if (c->proto == CLIENT_PROTO_BINARY)
            log_debug("client: speaks the binary protocol");
    }
    return (enum client_proto)c->proto;
}

/* Parse and start as many requests as the buffer holds. */
static void
client_parse(struct client *c)
{
    struct buf *in = c->rbuf;

    while (!c->closing && buf_avail(in) > 0) {
        struct request rq;
        struct proto_error err;
        enum proto_status st;

        if (c->swallow > 0) {
            uint32_t n = c->swallow < buf_avail(in) ? c->swallow : buf_avail(in);

            buf_consume(in, n);
            c->swallow -= n;
            continue;
        }
        if (c->npending >= MAX_PENDING
            || (c->obuf != NULL && buf_avail(c->obuf) >= OUT_PAUSE)) {
            /* The client is not reading its replies fast enough: read no more
             * until they are out. */
            event_del(c->rev);
            c->read_paused = true;
            return;
        }
        if (client_bytes(c) >= client_limit(c->w)) {
            /* Its requests hold too much (data on its way to a slow server,
             * replies waiting for an earlier one): read no more until some
             * are answered. Backpressure, as a server that reads no more. */
            STAT_INC(c->w->stats.memory_pauses);
            event_del(c->rev);
            c->read_paused = true;
            return;
        }
        if (c->proto != CLIENT_PROTO_TEXT && client_sniff(c, in) == CLIENT_PROTO_BINARY) {
            if (!client_parse_binary(c, in))
                return;
            continue;
        }
        st = proto_parse(buf_head(in), buf_avail(in), c->w->config->item_max, &rq, &err);
        if (st == PROTO_NEED_MORE)
            return;
        if (st == PROTO_CLOSE) {
            STAT_INC(c->w->stats.client_errors);
            client_local(c, err.msg, rq.noreply, true);
            c->closing = true;
            return;
        }
        if (st == PROTO_ERROR) {
            STAT_INC(c->w->stats.client_errors);
            if (err.swallow && (rq.cmd == CMD_SET || rq.cmd == CMD_MS)
                && rq.data_len > c->w->config->item_max)
                client_drop_stale(c, &rq, buf_head(in));
            client_local(c, err.msg, rq.noreply, false);
            buf_consume(in, rq.line_len);
            if (err.swallow)
                c->swallow = rq.data_len + 2;
            continue;
        }
        if (proto_cmd_has_data(rq.cmd)) {
            size_t total = (size_t)rq.line_len + rq.data_len + 2;

            if (buf_avail(in) < total) {
                buf_compact(in);
                if (buf_reserve(in, total - in->len) < 0)
                    client_close_no_memory(c, "for a data block");
                return;
            }
            if (!proto_data_ok(buf_head(in) + rq.line_len, rq.data_len)) {
                STAT_INC(c->w->stats.client_errors);
                client_local(c, "CLIENT_ERROR bad data chunk", rq.noreply, false);
                buf_consume(in, total);
                continue;
            }
            client_request(c, &rq, buf_head(in), total);
            buf_consume(in, total);
            continue;
        }
        client_request(c, &rq, buf_head(in), rq.line_len);
        buf_consume(in, rq.line_len);
    }
}

/* A TLS read or write failed: say why (rate-limited), then the caller closes. */
static void
client_tls_failed(struct client *c, const char *what)
{
    static const char key = 0;      /* one log budget for every TLS client */

    log_ratelimited(LOG_WARN, &key, "client: TLS %s failed: %s",
                    tls_handshake_done(c->tls) ? what : "handshake", tls_error(c->tls));
}

/* Read and parse what has arrived; false when the client was closed. */
static bool
client_read(struct client *c)
{
    struct worker *w = c->w;
    struct buf *in;
    ssize_t n;

    if (c->rbuf == NULL) {
        c->rbuf = w->spare_rbuf ? w->spare_rbuf : buf_get(&w->bufs);
        w->spare_rbuf = NULL;
    }
    in = c->rbuf;
    if (in != NULL && in->pos > 0 && in->cap - in->len < READ_CHUNK)
        buf_compact(in);
    if (in == NULL || buf_reserve(in, READ_CHUNK) < 0) {
        client_close_no_memory(c, "for a read buffer");
        return false;
    }
    n = conn_read(c->fd, c->tls, in->data + in->len, in->cap - in->len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (c->tls != NULL && tls_wants_write(c->tls)) {
                c->read_wants_write = true;
                event_add(c->wev, NULL);
            }
            return true;
        }
        if (n < 0 && c->tls != NULL && errno == EPROTO)
            client_tls_failed(c, "read");
        client_close(c);
        return false;
    }
    in->len += (uint32_t)n;
    STAT_ADD(w->stats.bytes_read, (uint64_t)n);
    client_parse(c);
    if (c->closed)
        return false;
    if (c->closing)
        event_del(c->rev);
    if (c->rbuf != NULL && buf_avail(c->rbuf) == 0) {
        if (w->spare_rbuf == NULL)
            w->spare_rbuf = c->rbuf;
        else
            buf_put(&w->bufs, c->rbuf);
        c->rbuf = NULL;
    }
    return true;
}

static void
client_on_read(evutil_socket_t fd, short what, void *arg)
{
    client_read(arg);
}

/* After TLS I/O: end the handshake deadline, and read what OpenSSL holds. */
static void
client_tls_after_io(struct client *c)
{
    if (c->handshake_timer != NULL && tls_handshake_done(c->tls)) {
        event_free(c->handshake_timer);
        c->handshake_timer = NULL;
    }
    if (!c->closing && !c->read_paused && tls_pending(c->tls))
        event_active(c->rev, EV_READ, 0);
}

/*
 * A TLS connection opens with a handshake record (content type 22). A plain
 * memcached client that came to the TLS port by mistake is told so in its own
 * protocol, rather than dropped without a word. True when it was (and closed).
 */
static bool
client_tls_refuse_plain(struct client *c)
{
    static const char msg[] = "CLIENT_ERROR this port speaks TLS\r\n";
    static const char key = 0;
    unsigned char first;
    char sink[4096];
    int i;

    if (recv(c->fd, &first, 1, MSG_PEEK) != 1)
        return false;           /* nothing yet, or EOF/error: the read says */
    c->tls_sniffed = true;
    if (first == 22)
        return false;
    if (write(c->fd, msg, sizeof(msg) - 1) < 0) {
        /* It is being closed anyway. */
    }
    /* Take in what it sent (up to 64 KiB), so that the close is a FIN that
     * lets the line arrive, not a reset that may discard it. */
    for (i = 0; i < 16 && read(c->fd, sink, sizeof(sink)) > 0; i++)
        ;
    log_ratelimited(LOG_WARN, &key, "client: plain text on the TLS port: closed");
    client_close(c);
    return true;
}

static void
client_tls_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;

    if (!c->tls_sniffed && client_tls_refuse_plain(c))
        return;
    if (c->write_wants_read) {
        c->write_wants_read = false;
        if (!client_write(c))
            return;
        if (c->read_paused || c->closing) {
            if (!c->write_wants_read)
                event_del(c->rev);      /* armed only for the write */
            return;
        }
    }
    if (client_read(c))
        client_tls_after_io(c);
}

static void
client_tls_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    static const char key = 0;

    log_ratelimited(LOG_WARN, &key, "client: TLS handshake not finished after %d ms: closed",
                    tls_handshake_timeout_ms);
    client_close(c);
}

static void
append_line(struct buf *out, const char *line)
{
    buf_append_str(out, line);
    buf_append(out, "\r\n", 2);
}

/* A server's answer, or our error line when it could not be asked. */
static void
append_result(struct buf *out, const struct result *res)
{
    if (res->fail != FAIL_NONE)
        append_line(out, fail_reason_line(res->fail));
    else if (res->data != NULL)
        buf_append(out, res->data->data, res->data->len);
}

static bool
result_is_error(const struct result *res)
{
    return res->fail != FAIL_NONE || res->kind == REPLY_ERROR
        || res->kind == REPLY_CLIENT_ERROR || res->kind == REPLY_SERVER_ERROR;
}

/* VALUE lines in the order asked, then END. */
static void
write_retrieval(struct worker *w, struct buf *out, const struct creq *r)
{
    uint32_t i, hits = 0;

    if (r->nslots == 1 && result_is_error(&r->slots[0].res)) {
        /* One key, no answer: say why (a multi-get treats it as a miss). */
        append_result(out, &r->slots[0].res);
        STAT_INC(w->stats.server_errors);
        return;
    }
    for (i = 0; i < r->nslots; i++) {
        const struct slot *s = &r->slots[i];

        if (s->res.fail != FAIL_NONE || s->res.kind != REPLY_VALUE)
            continue;
        buf_append(out, "VALUE ", 6);
        buf_append(out, s->key, s->klen);
        buf_append(out, s->res.data->data, s->res.data->len);
        hits++;
    }
    buf_append(out, "END\r\n", 5);
    STAT_ADD(w->stats.get_hits, hits);
    STAT_ADD(w->stats.get_misses, r->nslots - hits);
}

/*
 * A meta reply that carries the key ("k<key>" among its flags, or the key of
 * "ME <key> ...") gets the client's key back, as VALUE lines do: the server
 * saw the key after any rewrite. The server marks a key it wrote in base64
 * with a "b" flag after it; the client's key is written in the same form.
 */
static void
append_key_form(struct buf *out, const struct slot *s, bool in_base64)
{
    char enc[BASE64_ENCODED_LEN(KEY_MAX)];

    if (!in_base64) {
        buf_append(out, s->key, s->klen);
        return;
    }
    buf_append(out, enc, base64_encode((const unsigned char *)s->key, s->klen, enc));
}

/* The token starting at p (no further than end): its end. */
static const char *
token_end(const char *p, const char *end)
{
    const char *sp = memchr(p, ' ', (size_t)(end - p));

    return sp != NULL ? sp : end;
}

static void
write_meta_key(struct buf *out, const struct creq *r, const struct result *res)
{
    const char *unit = res->data->data, *end, *p, *key = NULL, *key_end = NULL;
    bool in_base64 = false;

    end = memchr(unit, '\r', res->data->len);
    if (end == NULL) {                  /* cannot happen: units end in \r\n */
        buf_append(out, unit, res->data->len);
        return;
    }
    p = token_end(unit, end);           /* past the code */
    if (res->kind == REPLY_META_ME) {
        key = p + 1;                    /* "ME <key> exp=..." */
        key_end = token_end(key, end);
        in_base64 = res->key_base64;    /* no "b" flag here: see backend.c */
    } else {
        if (res->kind == REPLY_META_VA && p < end)
            p = token_end(p + 1, end);  /* past "VA <bytes>" */
        while (p < end && key == NULL) {
            const char *t = p + 1, *e = token_end(t, end);

            if (e > t && *t == 'k') {
                key = t + 1;
                key_end = e;
                in_base64 = end - e >= 2 && e[1] == 'b' && (e + 2 == end || e[2] == ' ');
            }
            p = e;
        }
    }
    if (key == NULL || key > end) {
        buf_append(out, unit, res->data->len);
        return;
    }
    buf_append(out, unit, (size_t)(key - unit));
    append_key_form(out, &r->slots[0], in_base64);
    buf_append(out, key_end, res->data->len - (size_t)(key_end - unit));
}

/* A meta reply: nothing when a quiet request's server said nothing (MN);
 * the key mapped back. */
static void
write_meta(struct worker *w, struct buf *out, const struct creq *r)
{
    const struct result *res = &r->slots[0].res;

    if (res->fail != FAIL_NONE) {
        STAT_INC(w->stats.server_errors);
        append_result(out, res);
        return;
    }
    if (res->kind == REPLY_META_MN)
        return;
    if (r->req.ret_key && res->data != NULL && REPLY_IS_META(res->kind))
        write_meta_key(out, r, res);
    else
        append_result(out, res);
}

static void
write_broadcast(struct buf *out, const struct creq *r)
{
    uint32_t i;

    for (i = 0; i < r->nslots; i++) {
        if (r->slots[i].res.fail != FAIL_NONE || r->slots[i].res.kind != REPLY_OK) {
            append_result(out, &r->slots[i].res);
            return;
        }
    }
    append_line(out, "OK");
}

static void
creq_write(struct worker *w, struct buf *out, const struct creq *r)
{
    if (r->binary) {
        binclient_write(w, out, r);
        return;
    }
    if (r->local != NULL) {
        if (r->local[0] != '\0' && !r->req.noreply)
            append_line(out, r->local);
        return;
    }
    if (r->stats) {
        stats_render(out, w->config, (enum stats_group)r->stats_group);
        return;
    }
    if (r->req.noreply)
        return;
    if (r->oom) {
        append_line(out, "SERVER_ERROR out of memory");
        return;
    }
    if (r->req.meta) {
        write_meta(w, out, r);
    } else if (proto_cmd_is_retrieval(r->req.cmd)) {
        write_retrieval(w, out, r);
    } else if (r->req.cmd == CMD_FLUSH_ALL) {
        write_broadcast(out, r);
    } else {
        if (r->slots[0].res.fail != FAIL_NONE)
            STAT_INC(w->stats.server_errors);
        append_result(out, &r->slots[0].res);
    }
}

/* Move finished replies from the head of the FIFO to the output buffer. */
static void
client_collect(struct client *c)
{
    struct worker *w = c->w;
    struct creq *r;

    while ((r = c->head) != NULL && creq_complete(r)) {
        if (c->obuf == NULL && (c->obuf = buf_get(&w->bufs)) == NULL) {
            client_close_no_memory(c, "for replies");
            return;
        }
        creq_write(w, c->obuf, r);
        if (buf_failed(c->obuf)) {
            /* Part of a reply is missing: the stream cannot go on. */
            client_close_no_memory(c, "writing a reply");
            return;
        }
        c->held -= r->held;
        r->held = 0;
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->npending--;
        r->client = NULL;
        r->next = NULL;
        if (r->close_after) {
            c->close_when_written = true;
            creq_release(w, r);
            break;
        }
        creq_release(w, r);
    }
}

/* Write what is ready; false when the client was closed. */
static bool
client_write(struct client *c)
{
    struct buf *out = c->obuf;

    while (out != NULL && buf_avail(out) > 0) {
        ssize_t n = conn_write(c->fd, c->tls, buf_head(out), buf_avail(out));

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (c->tls != NULL && !tls_wants_write(c->tls)) {
                    c->write_wants_read = true;
                    event_add(c->rev, NULL);
                } else {
                    event_add(c->wev, NULL);
                }
                return true;
            }
            if (c->tls != NULL && errno == EPROTO)
                client_tls_failed(c, "write");
            client_close(c);
            return false;
        }
        buf_consume(out, (size_t)n);
        STAT_ADD(c->w->stats.bytes_written, (uint64_t)n);
    }
    if (out != NULL) {
        buf_put(&c->w->bufs, out);
        c->obuf = NULL;
    }
    if (c->close_when_written || (c->close_when_idle && c->head == NULL)) {
        client_close(c);
        return false;
    }
    if (c->read_paused && c->npending < MAX_PENDING / 2
        && client_bytes(c) < client_limit(c->w) / 2) {
        c->read_paused = false;
        event_add(c->rev, NULL);
        if (c->tls != NULL && tls_pending(c->tls))
            event_active(c->rev, EV_READ, 0);     /* OpenSSL holds more input */
        if (c->rbuf != NULL && buf_avail(c->rbuf) > 0) {
            client_parse(c);
            if (c->closed)
                return false;
            client_mark(c);
        }
    }
    return true;
}

void
client_flush(struct worker *w, struct client *c)
{
    c->dirty = false;
    if (c->closed) {
        client_free(c);
        return;
    }
    client_collect(c);
    if (c->closed)
        return;             /* out of memory; freed by the next flush */
    if (c->obuf != NULL && buf_avail(c->obuf) > 2 * client_limit(w)) {
        /* Replies are admitted within client_max_memory; this many unread
         * bytes means a client that does not read at all. */
        STAT_INC(w->stats.memory_closes);
        log_ratelimited(LOG_WARN, &c->w->stats, "client: closed with %u bytes of replies "
                        "unread (limit: twice client_max_memory, %llu)", buf_avail(c->obuf),
                        (unsigned long long)(2 * client_limit(w)));
        client_close(c);
        return;
    }
    client_write(c);
}

static void
client_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;

    client_write(c);
}

static void
client_tls_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;

    if (c->read_wants_write) {
        c->read_wants_write = false;
        if (!client_read(c))
            return;
        client_tls_after_io(c);
    }
    client_write(c);
}
