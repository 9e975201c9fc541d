/*
 * client.c: client connections: read, parse, route, wait, write.
 *
 * Invariants:
 * - Requests are kept in a FIFO in arrival order and replies are written only
 *   from its head, so pipelined requests are answered in order even when
 *   their servers answer out of order. Errors found while parsing go through
 *   the same FIFO.
 * - A connection holds a read buffer only while it has unparsed bytes; an
 *   idle connection holds none. A large storage block is not copied out of
 *   it: its request holds the buffer (creq_share_data), which is then never
 *   written again; the next read goes to a fresh one (buf_read_room).
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
#include "binclient.h"
#include "binproto.h"
#include "buf.h"
#include "coalesce.h"
#include "config.h"
#include "counters.h"
#include "listener.h"
#include "log.h"
#include "luagent.h"
#include "request.h"
#include "respond.h"
#include "route.h"
#include "timer.h"
#include "tls.h"

#define READ_CHUNK          16384
#define READ_ROUNDS_MAX     4       /* reads of one client per readable event */
#define MAX_PENDING         1024            /* requests in flight per client */
#define OUT_PAUSE           (4u << 20)      /* unwritten output that stops reading */
#define WRITE_PIECES        64              /* pieces of output per writev */

struct client {
    struct creq_owner own;          /* first: its requests' owner (request.h) */
    struct client_ctx *cx;          /* the thread's */
    int              fd;
    struct tls_conn *tls;           /* TLS state, or NULL for plain TCP / unix */
    struct event    *rev;
    struct event    *wev;
    struct timer    *handshake_timer; /* TLS: until the handshake is done */
    struct buf      *rbuf;          /* unparsed input, borrowed while non-empty */
    struct bufq      out;           /* output not yet written */
    struct creq     *head, *tail;   /* requests in arrival order */
    uint32_t         npending;
    uint32_t         swallow;       /* bytes of a refused data block still to drop */
    uint32_t         need;          /* bytes the request at the input's head needs
                                     * (a data block that has not all arrived), or 0 */
    bool             closing;       /* read no more requests */
    bool             close_when_written; /* a closing reply is in out */
    bool             closed;        /* socket closed; struct freed by flush */
    bool             dirty;         /* on the worker's flush list */
    bool             read_paused;   /* too many requests in flight, or bytes held */
    bool             close_when_idle; /* shutting down: close once all is answered */
    bool             read_wants_write; /* TLS: a read waits for writability */
    bool             write_wants_read; /* TLS: a write waits for readability */
    bool             tls_sniffed;   /* TLS: the first byte was looked at */
    bool             refetch_wait;  /* the head's next key, let go, is asked
                                     * again once the client has read */
    uint8_t          proto;         /* enum client_proto: chosen by the first byte */
    struct client   *prev, *next;   /* the thread's clients */
};

/* The client a request answers to (NULL once it has gone). */
static inline struct client *
owner_client(struct creq_owner *o)
{
    return (struct client *)o;      /* own is the first member */
}

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
static void client_tls_on_timeout(void *arg);
static bool client_write(struct client *c);
static inline void client_mark(struct client *c);
static void client_stalled(struct creq_owner *o);

static int tls_handshake_timeout_ms = DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;
static client_stats_fn *stats_writer;
static client_route_fn *route_writer;

void
client_set_tls_handshake_timeout(int ms)
{
    tls_handshake_timeout_ms = ms;
}

void
client_set_stats_writer(client_stats_fn *fn)
{
    stats_writer = fn;
}

void
client_set_route_writer(client_route_fn *fn)
{
    route_writer = fn;
}

/*
 * A client struct is made (+1) or freed (-1). The flush list keeps room for
 * every client struct, so marking a client never fails: a closed client must
 * always reach the flush that frees it. Returns -1 when that room cannot be
 * had (the new client is then refused).
 */
static int
client_structs(struct client_ctx *cx, int delta)
{
    int want = cx->nstructs + delta;

    if (want > cx->cap_dirty) {
        int ncap = cx->cap_dirty ? cx->cap_dirty * 2 : 64;
        struct client **grown = realloc(cx->dirty, sizeof(*grown) * (size_t)ncap);

        if (grown == NULL)
            return -1;
        cx->dirty = grown;
        cx->cap_dirty = ncap;
    }
    cx->nstructs = want;
    return 0;
}

static void
client_free(struct client *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    timer_free(c->handshake_timer);
    client_structs(c->cx, -1);
    free(c->own.cn);
    free(c);
}

/* Events (and for TLS the handshake deadline) for a new connection. */
static int
client_events(struct client *c)
{
    struct event_base *base = c->cx->base;

    if (c->tls == NULL) {
        c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_on_read, c);
        c->wev = event_new(base, c->fd, EV_WRITE, client_on_write, c);
        return c->rev && c->wev ? event_add(c->rev, NULL) : -1;
    }
    c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_tls_on_read, c);
    c->wev = event_new(base, c->fd, EV_WRITE, client_tls_on_write, c);
    c->handshake_timer = timer_new(c->cx->timers, client_tls_on_timeout, c);
    if (c->rev == NULL || c->wev == NULL || c->handshake_timer == NULL)
        return -1;
    timer_set_in(c->handshake_timer, (uint64_t)tls_handshake_timeout_ms);
    return event_add(c->rev, NULL);
}

void
client_accept(struct client_ctx *cx, int fd, bool is_unix, struct tls_conn *tls,
              const char *listener)
{
    struct client *c = NULL;

    if (client_structs(cx, +1) == 0 && (c = calloc(1, sizeof(*c))) == NULL)
        client_structs(cx, -1);
    if (c != NULL) {
        c->cx = cx;
        c->fd = fd;
        c->own.is_unix = is_unix;
        c->own.listener = listener;
        c->own.tls = tls;
        c->own.stalled = client_stalled;
        c->out.cache = &cx->rt.rq.bufs;
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
    STAT_INC(cx->rt.rq.stats.curr_connections);
    STAT_INC(cx->rt.rq.stats.total_connections);
    c->next = cx->clients;
    if (cx->clients != NULL)
        cx->clients->prev = c;
    cx->clients = c;
}

/*
 * On the flush list. It has room for every client struct (client_structs),
 * so a client closed and not yet freed is always taken; only a client
 * marked again during the flush, after its first entry was handled, may
 * need the list to grow.
 */
static bool __attribute__((noinline))
client_mark_grow(struct client_ctx *cx)
{
    int cap = cx->cap_dirty * 2;
    struct client **grown = realloc(cx->dirty, sizeof(*grown) * (size_t)cap);

    if (grown == NULL) {
        log_ratelimited(LOG_ERROR, cx, "client: out of memory for the flush list");
        return false;
    }
    cx->dirty = grown;
    cx->cap_dirty = cap;
    return true;
}

/* Inline: once per reply, where the common case is a test and two stores. */
static inline void
client_mark(struct client *c)
{
    struct client_ctx *cx = c->cx;

    if (c->dirty)
        return;
    if (__builtin_expect(cx->ndirty == cx->cap_dirty, 0) && !client_mark_grow(cx))
        return;
    cx->dirty[cx->ndirty++] = c;
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
    struct client_ctx *cx = c->cx;
    struct creq *r = c->head;

    if (c->closed)
        return;
    c->closed = true;
    event_del(c->rev);
    event_del(c->wev);
    if (c->tls != NULL) {
        if (c->handshake_timer != NULL)
            timer_del(c->handshake_timer);
        tls_conn_free(c->tls);
        c->tls = NULL;
        c->own.tls = NULL;
    }
    close(c->fd);
    c->fd = -1;
    while (r != NULL) {
        struct creq *next = r->next;

        r->owner = NULL;
        r->next = NULL;
        creq_release(&cx->rt.rq, r);
        r = next;
    }
    c->head = c->tail = NULL;
    buf_put(&cx->rt.rq.bufs, c->rbuf);
    c->rbuf = NULL;
    bufq_clear(&c->out);
    c->own.unsent = 0;
    creq_owner_resume(&c->own);     /* no server connection waits for it any more */
    STAT_DEC(cx->rt.rq.stats.curr_connections);
    listener_conn_closed();
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        cx->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    /* Freed by the flush at the end of this pass, never under a caller that
     * may still look at c->closed (a parse that closed from inside a read).
     * The flush list has room for every client struct (client_accept). */
    client_mark(c);
    if (cx->clients == NULL && cx->stopping)
        cx->all_closed(cx);
}

void
client_shutdown_all(struct client_ctx *cx)
{
    struct client *c = cx->clients, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        c->closing = true;
        c->close_when_idle = true;
        event_del(c->rev);
        if (c->head == NULL && bufq_bytes(&c->out) == 0)
            client_close(c);
    }
}

/*
 * A server connection has waited for this client to read its replies for
 * the server's whole timeout (creq_owner.stalled): it is closed, which lets
 * that connection go on for its other clients.
 */
static void
client_stalled(struct creq_owner *o)
{
    struct client *c = owner_client(o);
    static const char key = 0;

    STAT_INC(c->cx->rt.rq.stats.memory_closes);
    log_ratelimited(LOG_WARN, &key, "client: closed: it read none of its %llu bytes of "
                    "replies while a server connection waited for it",
                    (unsigned long long)bufq_bytes(&c->out));
    client_close(c);
}

static struct creq *
creq_new(struct client_ctx *cx, struct client *c)
{
    struct creq *r = creq_alloc(&cx->rt.rq);

    if (r == NULL)
        return NULL;
    r->owner = &c->own;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
    return r;
}

/* Bytes a client holds: its queued requests' copies and replies, and the
 * output it has not read yet. */
static uint64_t
client_bytes(const struct client *c)
{
    return c->own.held + bufq_bytes(&c->out);
}

/* The bound on client_bytes: past it, reading stops and replies are refused. */
static uint64_t
client_limit(const struct client_ctx *cx)
{
    return cx->rt.rq.client_max_memory;
}

/*
 * Is s the slot its client waits for: of the head request, and the first
 * not done of those not written yet (the ones between are written with it)?
 */
static bool
creq_slot_is_next(const struct creq *r, const struct slot *s)
{
    const struct slot *first = &r->slots[r->nwritten];

    if (owner_client(r->owner)->head != r)
        return false;
    while (first < s && first->done)
        first++;
    return first == s;
}

/*
 * A value would take what its client holds (its requests' values and
 * copies, its unwritten output) past the client's bound; true when it is
 * let go. A value of a get is let go, and its key asked again when its turn
 * comes (client_refetch): no server connection stops for a value that only
 * waits, since the one behind it may be the value another client waits for.
 * The value the client waits for is taken while its request and the
 * client's output are within the bound, or nothing is unwritten (and asked
 * again once the client has read, if not), so every request goes on and the
 * client holds one value past the bound at most. It is written at the end
 * of this loop pass; counting it as unsent now makes the server connections
 * that finish a call for this client stop reading until it has read
 * (backend_pause).
 */
static bool
creq_past_bound(struct request_cache *rq, struct creq *r, struct slot *s, uint64_t n)
{
    struct creq_owner *o = r->owner;
    bool again = !r->req.meta && proto_cmd_is_retrieval(r->req.cmd);
    bool next = creq_slot_is_next(r, s);

    if (next && (!again || o->unsent == 0 || r->held + o->unsent <= rq->client_max_memory)) {
        o->unsent += r->held + n;
        return false;
    }
    if (!again)
        return false;       /* asking again could change what it did: kept */
    result_clear(rq, &s->res);
    s->refetch_len = (uint32_t)n;
    r->nrefetch++;
    if (next)
        owner_client(o)->refetch_wait = true;   /* asked once it has read (client_wrote) */
    return true;
}

/*
 * A reply arrived: its bytes are held until written; false when a value
 * was let go instead, to be asked again (creq_past_bound). A value that no
 * client may hold (larger than the client's bound, or all buffers past the
 * total one) is let go at once and the whole request is answered
 * SERVER_ERROR out of memory. A line (STORED, an error) is at most a few
 * KiB per request, and refusing it would hide what the server did: it is
 * always held.
 */
static bool
creq_hold(struct request_cache *rq, struct creq *r, struct slot *s)
{
    struct creq_owner *o = r->owner;
    uint64_t n = result_len(&s->res);

    if (o != NULL && !r->oom
        && (s->res.kind == REPLY_VALUE || s->res.kind == REPLY_META_VA)
        && creq_may_hold(rq, r, n)  /* answers it out of memory when not */
        && o->held + o->unsent + n > rq->client_max_memory
        && creq_past_bound(rq, r, s, n))
        return false;
    if (o == NULL || r->oom) {
        /* Nobody will read these bytes (its client has gone), or the
         * request is answered out of memory already. */
        result_clear(rq, &s->res);
        return true;
    }
    r->held += n;
    o->held += n;
    return true;
}

/* A slot has its result: once the head request is complete, its client is
 * flushed. Inline into client_slot_done: once per key. */
static inline __attribute__((always_inline)) void
creq_slot_set(struct request_cache *rq, struct creq *r, uint32_t slot, struct result *res)
{
    struct slot *s = &r->slots[slot];

    s->res = *res;
    res->data = NULL;
    res->bytes = NULL;
    res->len = 0;
    if (s->res.data != NULL && !creq_hold(rq, r, s))
        return;             /* asked again when its turn comes */
    s->done = true;
    r->ndone++;
    /* Complete, or the next slot of a multi-get to write as it streams. */
    if ((r->ndone == r->nslots || slot == r->nwritten) && r->owner != NULL
        && owner_client(r->owner)->head == r)
        client_mark(owner_client(r->owner));
}

/* A call made for one key of a client's request ended (call_done_fn). */
static void
client_slot_done(struct request_cache *rq, struct call *c)
{
    route_count_result(c);
    creq_slot_set(rq, c->creq, c->slot, &c->res);
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

    STAT_INC(c->cx->rt.rq.stats.memory_closes);
    log_ratelimited(LOG_WARN, &key, "client: closed: out of memory %s", what);
    client_close(c);
}

/* A reply decided without any server (an error, version, ...). */
static void
client_local(struct client *c, const char *line, bool noreply, bool close_after)
{
    struct creq *r = creq_new(c->cx, c);

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
creq_slot_no_call(struct client_ctx *cx, struct creq *r, uint32_t i)
{
    struct result res = { .fail = FAIL_NOMEM };

    creq_slot_set(&cx->rt.rq, r, i, &res);
}

/*
 * Route every key of a request through the current config. All slots exist
 * before the first call starts, so a call that finishes at once (a server
 * marked down) cannot complete the request early.
 */
static void
client_route(struct client *c, struct creq *r)
{
    struct client_ctx *cx = c->cx;
    const struct request *rq = &r->req;
    const char *base = r->buf->data;
    uint32_t i, pos;
    struct span k;

    if (creq_slots(r, rq->nkeys) < 0) {
        r->nslots = 0;
        r->local = "SERVER_ERROR out of memory";
        return;
    }
    /* The parser found the first key already (the only one, but for a
     * multi-get): only the keys after it are looked for. */
    creq_key_slot(r);
    if (rq->nkeys > 1) {
        pos = rq->key.off + rq->key.len;
        for (i = 1; i < r->nslots && proto_next_key(base, rq, &pos, &k); i++) {
            r->slots[i].key = base + k.off;
            r->slots[i].klen = k.len;
        }
    }
    for (i = 0; i < r->nslots; i++) {
        struct call *call = call_new(&cx->rt.rq, r, r->wcfg->root, i,
                                     client_slot_done);

        if (call != NULL)
            route_start(&cx->rt, call);
        else
            creq_slot_no_call(cx, r, i);
    }
}

/* flush_all goes to every server; OK only if all say OK. */
static void
client_broadcast(struct client *c, struct creq *r)
{
    struct client_ctx *cx = c->cx;
    struct config *cfg = r->wcfg->config;
    int i;

    /* Every key changes: no get in flight may answer a later one. */
    coalesce_close_all(&cx->rt.coalesce);
    if (creq_slots(r, (uint32_t)cfg->nservers) < 0) {
        r->nslots = 0;
        r->local = "SERVER_ERROR out of memory";
        return;
    }
    for (i = 0; i < cfg->nservers; i++) {
        struct call *call = call_new(&cx->rt.rq, r, NULL, (uint32_t)i, client_slot_done);

        if (call != NULL && cfg->nnearcaches > 0) {
            /* Near copies read before the flush must not outlive it. */
            call->nc_bump = NC_BUMP_ALL;
            route_nearcache_changed(call);
        }
        if (call != NULL)
            backend_submit(r->wcfg->backends[i], call, DEFAULT_TIMEOUT_MS);
        else
            creq_slot_no_call(cx, r, (uint32_t)i);
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

/* A new request is refused (buffers past max_memory): count and log it. */
static bool
client_refuse(struct client_ctx *cx)
{
    STAT_INC(cx->rt.rq.stats.out_of_memory);
    log_ratelimited(LOG_WARN, &cx->rt.rq.stats.out_of_memory, "client: request refused: "
                    "buffers hold more than %llu bytes (max_memory)",
                    (unsigned long long)cx->rt.current->config->max_memory);
    return true;
}

/* Are new requests refused now? Inline: the check is a compare in the common case. */
static inline bool
client_memory_refused(struct client *c)
{
    return request_memory_over(&c->cx->rt.rq) && client_refuse(c->cx);
}

/* A whole request (line and data block) is at the head of the read buffer. */
static void
client_request(struct client *c, const struct request *rq, const char *bytes, size_t len)
{
    struct client_ctx *cx = c->cx;
    struct creq *r;

    if (proto_cmd_op(rq->cmd) != OP_PROXY && client_memory_refused(c)) {
        /* New requests wait for memory to drop; stats and the like still work. */
        client_local(c, "SERVER_ERROR out of memory", rq->noreply, false);
        return;
    }
    r = creq_new(cx, c);
    if (r == NULL) {
        client_close_no_memory(c, "for a request");
        return;
    }
    r->req = *rq;
    creq_bind(r, cx->rt.current);
    if (__builtin_expect(r->wcfg->reqlog, 0) && rq->nkeys > 0)
        reqlog_begin(&cx->reqlog, r, r->wcfg->config);
    STAT_ADD(cx->rt.rq.stats.cmd[rq->cmd], rq->nkeys > 0 ? rq->nkeys : 1);
    /* A large data block stays where it was read (its bytes still count). */
    if (rq->data_len >= CREQ_SHARE_MIN && proto_cmd_has_data(rq->cmd)
        && creq_share_data(r, c->rbuf, bytes + rq->line_len, true))
        len = rq->line_len;
    /* Room for a meta key decoded from base64 too (creq_key_slot). */
    r->buf = buf_get(&cx->rt.rq.bufs);
    if (r->buf == NULL || buf_reserve(r->buf, len + KEY_MAX) < 0) {
        STAT_INC(cx->rt.rq.stats.out_of_memory);
        r->local = "SERVER_ERROR out of memory";
        if (r == c->head)
            client_mark(c);
        return;
    }
    buf_append(r->buf, bytes, len);
    r->held = r->buf->len + (r->data != NULL ? r->req.data_len + 2 : 0);
    c->own.held += r->held;
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
 * The ways in for a front end of another protocol (binclient.c, through
 * bin_ops). Its keyed requests have one key each. Kept apart from
 * client_request so that the text path is compiled as it was.
 */
static struct creq *
client_request_new(struct client *c)
{
    struct creq *r = creq_new(c->cx, c);

    if (r == NULL) {
        client_close_no_memory(c, "for a request");
        return NULL;
    }
    creq_bind(r, c->cx->rt.current);
    return r;
}


static void
client_request_ready(struct client *c, struct creq *r)
{
    if (r == c->head && creq_complete(r))
        client_mark(c);
}

static void
client_request_start(struct client *c, struct creq *r)
{
    struct client_ctx *cx = c->cx;

    STAT_INC(cx->rt.rq.stats.cmd[r->req.cmd]);
    /* Its bytes count against the client, as a text request's do. */
    r->held = r->buf->len + (r->data != NULL ? r->req.data_len : 0);
    c->own.held += r->held;
    if (proto_cmd_op(r->req.cmd) == OP_PROXY) {
        client_proxy_command(c, r);
    } else {
        struct call *call;

        if (__builtin_expect(r->wcfg->reqlog, 0))
            reqlog_begin(&cx->reqlog, r, r->wcfg->config);
        creq_slots(r, 1);
        creq_key_slot(r);
        call = call_new(&cx->rt.rq, r, r->wcfg->root, 0, client_slot_done);
        if (call != NULL)
            route_start(&cx->rt, call);
        else
            creq_slot_no_call(cx, r, 0);    /* out of memory: answered so */
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
    struct client_ctx *cx = c->cx;
    struct buf *req;

    if (rq->key.len == 0 || rq->key.len > KEY_MAX)
        return;
    req = buf_get(&cx->rt.rq.bufs);
    if (req == NULL)
        return;             /* out of memory: the old value stays */
    buf_append_str(req, rq->meta ? "md " : "delete ");
    buf_append(req, line + rq->key.off, rq->key.len);
    if (rq->base64)
        buf_append(req, " b", 2);
    buf_append(req, "\r\n", 2);
    if (buf_failed(req)) {
        buf_put(&cx->rt.rq.bufs, req);
        return;
    }
    route_background(&cx->rt, cx->rt.current, cx->rt.current->config->root, req);
}

static const struct bin_conn_ops bin_ops = {
    .request_new    = client_request_new,
    .request_start  = client_request_start,
    .request_ready  = client_request_ready,
    .memory_refused = client_memory_refused,
};

/*
 * Binary protocol: take one request from the input. False when the client
 * must wait for more bytes (or was closed).
 */
static bool
client_parse_binary(struct client *c, struct buf *in)
{
    struct bin_conn bc = { c, &c->cx->rt, &bin_ops, in };
    struct bin_take t;

    binclient_take(&bc, buf_head(in), buf_avail(in), &t);
    if (c->closed)
        return false;           /* out of memory for a request */
    if (t.need > 0) {
        c->need = t.need;       /* the next read makes room for it */
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

    c->need = 0;
    while (!c->closing && buf_avail(in) > 0) {
        struct request rq;
        struct proto_error err;
        enum proto_status st;
        uint64_t out;

        if (c->swallow > 0) {
            uint32_t n = c->swallow < buf_avail(in) ? c->swallow : buf_avail(in);

            buf_consume(in, n);
            c->swallow -= n;
            continue;
        }
        out = bufq_bytes(&c->out);
        if (c->npending >= MAX_PENDING || out >= OUT_PAUSE) {
            /* The client is not reading its replies fast enough: read no more
             * until they are out. */
            event_del(c->rev);
            c->read_paused = true;
            return;
        }
        if (c->own.held + out >= client_limit(c->cx)) {     /* client_bytes */
            /* Its requests hold too much (data on its way to a slow server,
             * replies waiting for an earlier one): read no more until some
             * are answered. Backpressure, as a server that reads no more. */
            STAT_INC(c->cx->rt.rq.stats.memory_pauses);
            event_del(c->rev);
            c->read_paused = true;
            return;
        }
        if (c->proto != CLIENT_PROTO_TEXT && client_sniff(c, in) == CLIENT_PROTO_BINARY) {
            if (!client_parse_binary(c, in))
                return;
            continue;
        }
        st = proto_parse(buf_head(in), buf_avail(in), c->cx->rt.current->config->item_max, &rq, &err);
        if (st == PROTO_NEED_MORE)
            return;
        if (st == PROTO_CLOSE) {
            STAT_INC(c->cx->rt.rq.stats.client_errors);
            client_local(c, err.msg, rq.noreply, true);
            c->closing = true;
            return;
        }
        if (st == PROTO_ERROR) {
            STAT_INC(c->cx->rt.rq.stats.client_errors);
            if (err.swallow && (rq.cmd == CMD_SET || rq.cmd == CMD_MS)
                && rq.data_len > c->cx->rt.current->config->item_max)
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
                c->need = (uint32_t)total;  /* the next read makes room for it */
                return;
            }
            if (!proto_data_ok(buf_head(in) + rq.line_len, rq.data_len)) {
                STAT_INC(c->cx->rt.rq.stats.client_errors);
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

/*
 * One read into the client's buffer, and the parse of what it holds. false
 * when the client was closed; *full when the read filled the room it had
 * (the socket may hold more).
 */
static bool
client_read_once(struct client *c, bool *full)
{
    struct client_ctx *cx = c->cx;
    struct buf *in;
    uint32_t have;
    size_t room;
    ssize_t n;

    *full = false;
    if (c->rbuf == NULL) {
        c->rbuf = cx->spare_rbuf;
        cx->spare_rbuf = NULL;
    }
    /* A data block whose size is known is read into one buffer of its size;
     * a buffer that holds one on its way to a server is not read into again. */
    have = c->rbuf != NULL ? buf_avail(c->rbuf) : 0;
    in = buf_read_room(&cx->rt.rq.bufs, c->rbuf, c->need > have ? c->need - have : READ_CHUNK,
                       c->need > have);
    if (in == NULL) {
        client_close_no_memory(c, c->need > have ? "for a data block" : "for a read buffer");
        return false;
    }
    c->rbuf = in;
    room = in->cap - in->len;
    n = conn_read(c->fd, c->tls, in->data + in->len, room);
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
    *full = (size_t)n == room;
    STAT_ADD(cx->rt.rq.stats.bytes_read, (uint64_t)n);
    client_parse(c);
    if (c->closed)
        return false;
    if (c->closing)
        event_del(c->rev);
    if (c->rbuf != NULL && buf_avail(c->rbuf) == 0) {
        if (cx->spare_rbuf == NULL && !buf_shared(c->rbuf))
            cx->spare_rbuf = c->rbuf;
        else
            buf_put(&cx->rt.rq.bufs, c->rbuf);
        c->rbuf = NULL;
    }
    return true;
}

/*
 * Read and parse what has arrived; false when the client was closed. A read
 * that filled its room is followed by another, up to READ_ROUNDS_MAX, so a
 * large data block does not wait a pass of the loop per read.
 */
static bool
client_read(struct client *c)
{
    bool full = true;
    int rounds;

    for (rounds = 0; rounds < READ_ROUNDS_MAX && full; rounds++) {
        if (!client_read_once(c, &full))
            return false;
        if (c->closing || c->read_paused)
            break;
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
        timer_free(c->handshake_timer);
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
client_tls_on_timeout(void *arg)
{
    struct client *c = arg;
    static const char key = 0;

    log_ratelimited(LOG_WARN, &key, "client: TLS handshake not finished after %d ms: closed",
                    tls_handshake_timeout_ms);
    client_close(c);
}

/* A `stats` reply's STAT lines, from the writer of its group. */
static void
client_stats_text(struct client_ctx *cx, struct buf *out, const struct creq *r,
                  const struct config *cfg)
{
    if (r->stats_group == STATS_ROUTE) {
        /* r->owner is still set: it is cleared once the reply is written. */
        route_writer(out, cfg, cx->rt.vm, r->buf->data + r->req.args.off, r->req.args.len,
                     r->owner ? r->owner->listener : NULL, route_client_cn(r->owner));
        return;
    }
    stats_writer(out, cfg, (enum stats_group)r->stats_group);
}

/* A `stats` reply: rendered by the stats writer, wrapped for a binary client. */
static void
client_write_stats(struct client_ctx *cx, struct buf *out, const struct creq *r)
{
    const struct config *cfg = cx->rt.current->config;
    struct buf *text;

    if (!r->binary) {
        client_stats_text(cx, out, r, cfg);
        return;
    }
    text = buf_get(&cx->rt.rq.bufs);
    if (text != NULL)
        client_stats_text(cx, text, r, cfg);
    respond_binary_stats(out, r, text);
    buf_put(&cx->rt.rq.bufs, text);
}

static void
creq_write(struct client_ctx *cx, struct bufq *q, const struct creq *r)
{
    struct buf *out;

    if (!r->stats && !r->binary) {
        respond_text(q, r, &cx->rt.rq.stats);
        return;
    }
    if ((out = bufq_tail(q)) == NULL)
        return;
    if (r->stats)
        client_write_stats(cx, out, r);
    else
        respond_binary(out, r, &cx->rt.rq.stats);
}

/* Is r a text multi-get, whose values are written as they come in? */
static bool
creq_streams(const struct creq *r)
{
    return r->nslots > 1 && !r->binary && !r->req.meta && r->local == NULL && !r->oom
        && proto_cmd_is_retrieval(r->req.cmd);
}

/*
 * The head request is a multi-get still waiting for some keys: write the
 * values of the keys in order that are in, and let go of them, so a wide
 * get over large values never holds more than its client reads.
 */
static void
client_stream(struct client *c, struct creq *r)
{
    struct request_cache *rq = &c->cx->rt.rq;
    uint32_t i, to = respond_text_values(&c->out, r, r->nwritten, &rq->stats);

    for (i = r->nwritten; i < to; i++) {
        uint32_t n = result_len(&r->slots[i].res);

        result_clear(rq, &r->slots[i].res);
        r->held -= n;
        c->own.held -= n;
    }
    r->nwritten = to;
}

/*
 * May the head request r ask again for the key it waits for? Once it is
 * within its client's bound, or the client has read all its output: then
 * the value is taken when it comes (creq_past_bound), so a key is not asked
 * over and over while the client reads slowly.
 */
static bool
client_may_refetch(const struct client *c, const struct creq *r)
{
    uint64_t unsent = bufq_bytes(&c->out);

    return unsent == 0 || r->held + unsent <= client_limit(c->cx);
}

/*
 * The head request waits for a key whose value was let go (creq_past_bound):
 * ask for it again, and for the keys let go after it whose values fit in
 * the client's bound with it, as they did when they came.
 */
static void
client_refetch(struct client *c, struct creq *r)
{
    struct client_ctx *cx = c->cx;
    uint64_t room = client_limit(cx), used = c->own.held + bufq_bytes(&c->out);
    uint32_t i = r->nwritten;
    bool first = true;

    c->refetch_wait = false;
    while (i < r->nslots && r->slots[i].done)
        i++;
    if (i == r->nslots || r->slots[i].refetch_len == 0)
        return;             /* the next key's value is still on its way */
    if (!client_may_refetch(c, r)) {
        c->refetch_wait = true;     /* asked once the client has read (client_wrote) */
        return;
    }
    for (; i < r->nslots && r->nrefetch > 0; i++) {
        struct slot *s = &r->slots[i];
        struct call *call;

        if (s->refetch_len == 0)
            continue;
        if (!first && used + s->refetch_len > room)
            break;
        used += s->refetch_len;
        first = false;
        s->refetch_len = 0;
        r->nrefetch--;
        STAT_INC(cx->rt.rq.stats.refetched_values);
        /* Its answer may come at once (a near cache, a server marked down). */
        call = call_new(&cx->rt.rq, r, r->wcfg->root, i, client_slot_done);
        if (call != NULL)
            route_start(&cx->rt, call);
        else
            creq_slot_no_call(cx, r, i);
    }
}

/* Move finished replies (and what a multi-get at the head has) to the output. */
static void
client_collect(struct client *c)
{
    struct client_ctx *cx = c->cx;
    struct creq *r;

    while ((r = c->head) != NULL) {
        if (!creq_complete(r)) {
            if (creq_streams(r))
                client_stream(c, r);
            if (r->nrefetch > 0)
                client_refetch(c, r);
            break;
        }
        creq_write(cx, &c->out, r);
        if (bufq_failed(&c->out))
            break;
        if (__builtin_expect(r->log_start_ns != 0, 0))
            reqlog_end(&cx->reqlog, &cx->rt.rq.stats, r, cx->rt.vm, r->owner->listener,
                       route_client_cn(r->owner));
        c->own.held -= r->held;
        r->held = 0;
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->npending--;
        r->owner = NULL;
        r->next = NULL;
        if (r->close_after) {
            c->close_when_written = true;
            creq_release(&cx->rt.rq, r);
            break;
        }
        creq_release(&cx->rt.rq, r);
    }
    if (bufq_failed(&c->out)) {
        /* Part of a reply is missing: the stream cannot go on. */
        client_close_no_memory(c, "writing a reply");
        return;
    }
    c->own.unsent = bufq_bytes(&c->out);
}

/*
 * Output was written (some or all): server connections paused for this
 * client go on once half its bound is left, and a key let go that its head
 * request waits for is asked again once the request is within the bound.
 */
static void
client_wrote(struct client *c, uint64_t unsent)
{
    c->own.unsent = unsent;     /* bufq_bytes(&c->out) */
    if (c->own.waiting != NULL && c->own.unsent <= client_limit(c->cx) / 2)
        creq_owner_resume(&c->own);
    if (__builtin_expect(c->refetch_wait, 0) && c->head != NULL
        && client_may_refetch(c, c->head)) {
        c->refetch_wait = false;
        client_mark(c);     /* its collect asks for the key again */
    }
}

/* Write some output: writev of its pieces, or one piece alone (the common
 * case of small replies, and every write through TLS). */
static ssize_t
client_send(struct client *c)
{
    const struct bufq *q = &c->out;
    struct iovec iov[WRITE_PIECES];
    int n;

    if (q->n - q->first == 1 && q->pieces[q->first].p == NULL) {
        const struct buf *b = q->pieces[q->first].b;

        return conn_write(c->fd, c->tls, buf_head(b), buf_avail(b));
    }
    n = bufq_iov(q, iov, c->tls != NULL ? 1 : WRITE_PIECES);
    if (n == 1)
        return conn_write(c->fd, c->tls, iov[0].iov_base, iov[0].iov_len);
    return conn_writev(c->fd, iov, n);
}

/* Write what is ready; false when the client was closed. */
static bool
client_write(struct client *c)
{
    uint64_t left = bufq_bytes(&c->out);    /* counted down, not asked again */

    while (left > 0) {
        ssize_t n = client_send(c);

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
                client_wrote(c, left);
                return true;
            }
            if (c->tls != NULL && errno == EPROTO)
                client_tls_failed(c, "write");
            client_close(c);
            return false;
        }
        bufq_consume(&c->out, (uint64_t)n);
        left -= (uint64_t)n;
        STAT_ADD(c->cx->rt.rq.stats.bytes_written, (uint64_t)n);
    }
    client_wrote(c, 0);
    if (c->close_when_written || (c->close_when_idle && c->head == NULL)) {
        client_close(c);
        return false;
    }
    if (c->read_paused && c->npending < MAX_PENDING / 2
        && client_bytes(c) < client_limit(c->cx) / 2) {
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

static void
client_flush(struct client_ctx *cx, struct client *c)
{
    c->dirty = false;
    if (c->closed) {
        client_free(c);
        return;
    }
    client_collect(c);
    if (c->closed)
        return;             /* out of memory; freed by the next flush */
    if (c->own.unsent > 2 * client_limit(cx)) {     /* collect set it: bufq_bytes */
        /* Replies are admitted within client_max_memory; this many unread
         * bytes means a client that does not read at all. */
        STAT_INC(cx->rt.rq.stats.memory_closes);
        log_ratelimited(LOG_WARN, &c->cx->rt.rq.stats, "client: closed with %llu bytes of replies "
                        "unread (limit: twice client_max_memory, %llu)",
                        (unsigned long long)bufq_bytes(&c->out),
                        (unsigned long long)(2 * client_limit(cx)));
        client_close(c);
        return;
    }
    client_write(c);
}

void
client_flush_marked(struct client_ctx *cx)
{
    int i;

    /* An index loop: a flush that resumes parsing may mark more clients. */
    for (i = 0; i < cx->ndirty; i++)
        client_flush(cx, cx->dirty[i]);
    cx->ndirty = 0;
}

void
client_trim(struct client_ctx *cx)
{
    if (cx->spare_rbuf != NULL && cx->spare_rbuf->cap > BUF_KEEP_MAX) {
        buf_put(&cx->rt.rq.bufs, cx->spare_rbuf);
        cx->spare_rbuf = NULL;
    }
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
