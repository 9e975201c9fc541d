/*
 * backend.c: one worker's connection to one memcached server.
 *
 * Invariants:
 * - Replies arrive in request order, so the first call of the FIFO still
 *   waiting for its reply owns the next reply unit. Keys of a multi-key get
 *   are consecutive FIFO entries marked in_batch; the last one is marked
 *   batch_end. The server answers a batch with a VALUE per hit, in the order
 *   asked, then one END: a VALUE that does not match the waiting key means
 *   that key missed.
 * - A batch's VALUE is held in its call, which stays at the head of the
 *   FIFO, until the next unit (the next VALUE or the END) has parsed: a
 *   VALUE that declares more bytes than it has swallows what follows, so a
 *   value is trusted only once the stream is seen to go on in step after
 *   it. The calls before it in the batch (its value, and the keys that
 *   missed) are then finished, so a multi-get's values go on to its client
 *   as they come, not all at the END, and at most one value of a batch is
 *   held here. When the stream fails part way (timeout, close, garbage),
 *   the untrusted value and the keys after it fail.
 * - A reply is not copied: its result takes a reference on the read buffer
 *   it lies in (buf_share). A shared read buffer is never written again; the
 *   next read goes to a fresh one, which takes over the unparsed bytes.
 *   Once a VALUE's line is in, its whole unit is read into one buffer of
 *   its size, not grown (and copied) read by read. A small reply in a large
 *   buffer is copied instead, so it does not pin the large one.
 * - The output is a queue of pieces (struct bufq): request lines in an owned
 *   piece, and a storage command's large data block by reference on the
 *   client's read buffer it was read into (creq_share_data), let go once
 *   written. backend_reserve makes room for every piece of a request before
 *   it is formatted, so none goes out half-written.
 * - A value whose data alone is larger than client_max_memory is refused
 *   on its line: its call fails for memory and its bytes are read and
 *   dropped as they come (skip), never buffered, so a server cannot make
 *   luagent hold what no client could be given.
 * - Reading stops while a client that a call was finished for has more
 *   than client_max_memory of output unwritten (it does not read): the
 *   server's bytes then wait in the kernel, not in luagent. The client
 *   resumes it once half of that is written, or when it goes; the calls'
 *   deadlines move by the time spent paused. A client that reads nothing
 *   for the server's timeout meanwhile is closed.
 * - The connection's deadline is the earliest deadline of its calls, which
 *   need not be the head's: pools with different timeouts (and flush_all)
 *   share a server's connection. One timer per connection suffices. It is
 *   lazy: it is not moved on every reply, and when it fires with nothing
 *   overdue it re-arms for the earliest deadline left. A call past its
 *   deadline fails the connection with every call on it, even while calls
 *   ahead of it are still within theirs: replies come in order, so its
 *   reply cannot be told apart from theirs or skipped.
 * - A call past its deadline times the connection out only once the server
 *   has also sent nothing for a timeout: replies come in order, so calls
 *   queued behind a long stream of values (a wide get over large values)
 *   wait for it, not for a stuck server. Bytes alone do not keep it alive:
 *   past UNIT_WAIT_TIMEOUTS timeouts without a whole reply unit, it times
 *   out too (a server that trickles a value a byte at a time).
 * - On error, timeout, EOF or garbage every queued call fails at once and the
 *   connection is closed; the next call opens a new one.
 * - Round-trip time costs two clock reads per batch, not per call: calls
 *   queued in one loop pass are stamped with one reading when they are flushed
 *   (or written before that, by the writable callback), and replies parsed
 *   from one read share one reading. The stamp also marks a call as sent: a
 *   reply for a call without one is out of step.
 * - A TLS server (the pool's tls table) is the same connection with one more
 *   state: after the TCP connect comes the handshake, bounded by the same
 *   connect deadline; writes wait until it is done. A failed handshake is a
 *   failed connect (backend unavailable). Its events have their own
 *   callbacks, so the plain path pays only conn_read/conn_write's branch.
 * - Health: a healthy server costs backend_submit one flag test. The flag
 *   (unsettled) is set while the server is marked down, while its rejoin
 *   flush_all is out, and for retry_max_ms after a mark-down ends (its
 *   probation); only then does a call take the slower gate, which also
 *   notices when the probation has passed, so the flap backoff is reset by
 *   the clock and not by a per-reply check. A run of failures starts at a
 *   mark-down and ends when a probation passes without one.
 * - Over TLS, a storage command's data block ends a TLS record. memcached
 *   (1.6 with -Z) reads a value larger than its read buffer with reads of
 *   exactly the remaining length, then waits for the socket: a command that
 *   followed in the same record would sit unread inside its OpenSSL until
 *   the next packet, and time out.
 */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base64.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "luagent.h"
#include "rejoin.h"
#include "reply.h"
#include "request.h"
#include "timer.h"
#include "tls.h"
#include "ttl.h"

#define BATCH_KEYS_MAX  100         /* keys in one get line to a server */
#define READ_CHUNK      16384
#define READ_ROUNDS_MAX 4           /* reads of one server per readable event */
#define SKIP_CHUNK      (4 * READ_CHUNK) /* reads of a refused value's bytes */
#define WRITE_PIECES    64          /* pieces of output per writev */
#define UNIT_WAIT_TIMEOUTS 2        /* timeouts an overdue connection may wait
                                     * for one reply unit while bytes come */
#define SHARE_CAP_MAX   (2 * READ_CHUNK) /* a reply in a buffer up to this size is
                                         * shared whatever its length; past it, only
                                         * one that is a quarter of the buffer or more */

enum backend_state {
    BACKEND_CLOSED,         /* no socket */
    BACKEND_CONNECTING,     /* connect in progress; writes wait */
    BACKEND_HANDSHAKE,      /* TLS handshake in progress; writes wait */
    BACKEND_UP              /* connected */
};

struct backend {
    struct backend_ctx      *bx;            /* the thread's */
    const struct server     *server;
    enum backend_state       state;
    int                      fd;
    struct tls_conn         *tls;           /* TLS state, or NULL for plain TCP */
    bool                     read_wants_write; /* TLS: a read waits for writability */
    bool                     write_wants_read; /* TLS: a write waits for readability */
    struct event            *rev;           /* readable (persistent) */
    struct event            *wev;           /* writable / connected */
    struct timer            *timer;         /* earliest call's deadline */
    bool                     timer_armed;
    uint64_t                 timer_at_ms;   /* when the armed timer fires */
    uint64_t                 connect_deadline_ms;
    struct bufq              out;           /* bytes not yet written: owned pieces,
                                             * and data blocks by reference */
    struct buf              *in;            /* bytes not yet parsed */
    struct call             *head, *tail;   /* calls awaiting replies */
    struct call             *unstamped;     /* first call not yet given a send time:
                                             * its request has not gone to the socket */
    struct call             *waiting;       /* first call without its reply unit;
                                             * those before it (one batch) hold
                                             * theirs until the batch's END */
    uint64_t                 read_ns;       /* clock at the read being parsed */
    uint64_t                 unit_ns;       /* clock at the last whole reply unit,
                                             * or when calls came to an idle
                                             * connection */
    struct call             *batch;         /* open get batch: first call */
    struct call             *batch_last;
    int                      batch_keys;
    enum reply_kind          due;           /* the unit that must come next: END
                                             * after a batch's last key hit, MN
                                             * after a quiet call's answer; else
                                             * REPLY_KIND_COUNT */
    uint64_t                *cuts;          /* TLS: where a record ends, as a count
                                             * of bytes queued (out_done's scale) */
    uint32_t                 ncuts, cut_next, cap_cuts;
    uint64_t                 out_done;      /* bytes written since connected */
    bool                     dirty;         /* on the worker's flush list */
    int                      failures;      /* connection failures since a
                                             * request last got its reply */
    uint64_t                 down_until_ms; /* marked down until then */
    uint32_t                 need;          /* bytes of the unit being read, once known */
    uint64_t                 skip;          /* bytes of a refused value still to drop
                                             * (backend_too_large) */
    struct read_pause        pause;         /* reading waits for a client */
    uint64_t                 paused_at_ms;
    int                      stall_ms;      /* how long a client may keep it paused */
    bool                     resumed;       /* parse what is buffered before reading */
    bool                     unsettled;     /* down, rejoining or on probation:
                                             * calls go through backend_gate */
    bool                     rejoining;     /* the rejoin flush_all is out */
    bool                     rejoin_due;    /* a flush must come first; another
                                             * worker's is out, or was */
    uint64_t                 backoff_ms;    /* the last mark-down's length (0: not
                                             * in a run of failures) */
    uint64_t                 run_since_ms;  /* the run's first mark-down (0: none) */
    unsigned                 marked_epoch;  /* rejoin_epoch at the latest mark-down */
    uint64_t                 stable_at_ms;  /* probation: up until then ends the run */
    struct creq_owner        rejoin_owner;  /* owner of the flush_all request: leads
                                             * its completion back here */
    struct rejoin           *rejoin;        /* the server's rejoin, shared by workers */
    struct backend_stats     stats;
    const struct backend_sim *sim;          /* a simulated server, or NULL */
};

static void backend_resume(struct read_pause *p);
static void backend_pause(struct backend *be, struct creq_owner *o);

static void backend_on_read(evutil_socket_t fd, short what, void *arg);
static void backend_on_write(evutil_socket_t fd, short what, void *arg);
static void backend_on_timer(void *arg);
static void backend_tls_on_read(evutil_socket_t fd, short what, void *arg);
static void backend_tls_on_write(evutil_socket_t fd, short what, void *arg);

struct backend *
backend_new(struct backend_ctx *bx, const struct server *server)
{
    struct backend *be = calloc(1, sizeof(*be));

    if (be == NULL)
        return NULL;
    be->bx = bx;
    be->server = server;
    be->out.cache = &bx->rq->bufs;
    be->fd = -1;
    be->due = REPLY_KIND_COUNT;
    be->pause.resume = backend_resume;
    be->timer = timer_new(bx->timers, backend_on_timer, be);
    be->rejoin = rejoin_get(server->label);
    if (be->timer == NULL || be->rejoin == NULL) {
        if (be->timer != NULL)
            timer_free(be->timer);
        rejoin_put(be->rejoin);
        free(be);
        return NULL;
    }
    return be;
}

/*
 * A simulated server never connects. It is unsettled and marked down for
 * ever, so the one test backend_submit makes on every call (unsettled) is
 * also what sends its calls to the simulator (backend_gate): real servers
 * pay nothing for it.
 */
struct backend *
backend_new_simulated(const struct server *server, const struct backend_sim *sim)
{
    struct backend *be = calloc(1, sizeof(*be));

    if (be == NULL)
        return NULL;
    be->server = server;
    be->fd = -1;
    be->due = REPLY_KIND_COUNT;
    be->down_until_ms = UINT64_MAX;
    be->unsettled = true;
    be->sim = sim;
    return be;
}

const struct backend_stats *
backend_stats(const struct backend *be)
{
    return &be->stats;
}

const struct server *
backend_server(const struct backend *be)
{
    return be->server;
}

void
backend_set_server(struct backend *be, const struct server *server)
{
    be->server = server;
}

bool
backend_is_down(const struct backend *be)
{
    if (be->rejoining || be->rejoin_due || (be->rejoin != NULL && rejoin_held(be->rejoin)))
        return true;
    if (be->down_until_ms == 0)
        return false;
    if (be->sim != NULL)
        return be->sim->is_down(be->sim->arg, be->server);
    return clock_ms() < be->down_until_ms;
}

static void
backend_close_socket(struct backend *be)
{
    if (be->rev != NULL) {
        event_free(be->rev);
        event_free(be->wev);
        be->rev = be->wev = NULL;
    }
    if (be->state == BACKEND_UP)
        STAT_DEC(be->stats.curr_connections);
    tls_conn_free(be->tls);
    be->tls = NULL;
    be->read_wants_write = be->write_wants_read = false;
    if (be->fd >= 0)
        close(be->fd);
    be->fd = -1;
    be->state = BACKEND_CLOSED;
    bufq_clear(&be->out);
    buf_put(&be->bx->rq->bufs, be->in);
    be->in = NULL;
    be->skip = 0;
    be->ncuts = be->cut_next = 0;
    be->out_done = 0;
    be->batch = be->batch_last = NULL;
    be->batch_keys = 0;
    be->due = REPLY_KIND_COUNT;
    be->need = 0;
    be->resumed = false;
    read_pause_cancel(&be->pause);
    timer_del(be->timer);
    be->timer_armed = false;
}

/*
 * How long a new mark-down lasts: retry_after_ms at the start of a run of
 * failures, then twice the last one, up to retry_max_ms. True when it grew.
 */
static bool
backend_backoff(struct backend *be)
{
    uint64_t base = (uint64_t)be->server->retry_after_ms;
    uint64_t max = (uint64_t)be->server->retry_max_ms, last = be->backoff_ms;

    if (max < base)
        max = base;
    if (last == 0) {
        be->backoff_ms = base;
        return false;
    }
    be->backoff_ms = last * 2 < max ? last * 2 : max;
    if (be->backoff_ms < base)
        be->backoff_ms = base;      /* the settings changed on a reload */
    return be->backoff_ms > last;
}

/* Mark the server down (or keep it down: calls queued before it failed too). */
static void
backend_mark_down(struct backend *be, const char *detail)
{
    uint64_t now = clock_ms();

    be->unsettled = true;
    if (be->down_until_ms != 0 && now < be->down_until_ms) {
        be->down_until_ms = now + be->backoff_ms;
        return;
    }
    if (be->run_since_ms == 0)
        be->run_since_ms = now;
    if (be->rejoin != NULL)
        be->marked_epoch = rejoin_epoch(be->rejoin);
    STAT_INC(be->stats.markdowns);
    if (backend_backoff(be)) {
        STAT_INC(be->stats.backoffs);
        log_ratelimited(LOG_WARN, &be->backoff_ms, "backend %s: marked down for %llu ms "
                        "after %d failures (%s): still failing, so twice as long as the last "
                        "time (retry_max_ms %d)", be->server->label,
                        (unsigned long long)be->backoff_ms, be->failures, detail,
                        be->server->retry_max_ms);
    } else {
        /* its own limit: the failure lines just before must not hide it */
        log_ratelimited(LOG_WARN, &be->down_until_ms, "backend %s: marked down for %llu ms "
                        "after %d failures (%s)", be->server->label,
                        (unsigned long long)be->backoff_ms, be->failures, detail);
    }
    be->down_until_ms = now + be->backoff_ms;
}

/* Fail the calls from c on, taken off the connection's FIFO, and count them. */
static void
backend_fail_calls(struct backend *be, struct call *c, enum fail_reason why)
{
    uint64_t n = 0;

    while (c != NULL) {
        struct call *next = c->next;

        c->next = NULL;
        n++;
        call_fail(be->bx->rq, c, why);
        c = next;
    }
    if (why == FAIL_TIMEOUT)
        STAT_ADD(be->stats.timeouts, n);
    else
        STAT_ADD(be->stats.errors, n);
}

/* Take every call off the connection and close it; returns the calls. */
static struct call *
backend_take_calls(struct backend *be)
{
    struct call *c = be->head;

    be->head = be->tail = be->unstamped = be->waiting = NULL;
    backend_close_socket(be);
    return c;
}

/* Fail everything queued and close: the stream can no longer be trusted. */
static void
backend_fail(struct backend *be, enum fail_reason why, const char *detail)
{
    struct call *c = backend_take_calls(be);

    if (c == NULL && why == FAIL_CLOSED) {
        /* An idle connection went away (server restart, idle timeout):
         * nothing was lost and the next call reconnects. */
        log_info("backend %s: idle connection closed", be->server->label);
        return;
    }
    be->failures++;
    if (be->failures >= be->server->failure_limit)
        backend_mark_down(be, detail);
    else
        log_ratelimited(LOG_WARN, be, "backend %s: %s", be->server->label, detail);
    backend_fail_calls(be, c, why);
}

/*
 * A connect failed with errno err. For want of a descriptor or memory in
 * luagent, that says nothing about the server: its calls fail but it is not
 * counted a failure (a mark-down would go on failing its keys, or failing
 * them over, then flushing the server on rejoin, after the descriptors are
 * back). Anything else is the server's.
 */
static void
backend_connect_failed(struct backend *be, int err)
{
    bool memory = err == ENOMEM || err == ENOBUFS;

    if (!memory && err != EMFILE && err != ENFILE) {
        backend_fail(be, FAIL_UNAVAILABLE, strerror(err));
        return;
    }
    log_ratelimited(LOG_WARN, be, "backend %s: cannot connect: luagent is out of %s (%s)",
                    be->server->label, memory ? "memory" : "descriptors", strerror(err));
    backend_fail_calls(be, backend_take_calls(be), FAIL_UNAVAILABLE);
}

/* Put the connection on its thread's list for the end-of-pass flush (-1: out of memory). */
static int
backend_mark(struct backend *be)
{
    struct backend_ctx *bx = be->bx;

    if (bx->ndirty == bx->cap_dirty) {
        int cap = bx->cap_dirty ? bx->cap_dirty * 2 : 64;
        struct backend **grown = realloc(bx->dirty, sizeof(*grown) * (size_t)cap);

        if (grown == NULL) {
            log_ratelimited(LOG_ERROR, bx, "backend: out of memory for the flush list");
            return -1;
        }
        bx->dirty = grown;
        bx->cap_dirty = cap;
    }
    bx->dirty[bx->ndirty++] = be;
    return 0;
}

/* Arm the timer for a call's deadline at, or the connect deadline if sooner. */
static void
backend_arm_timer(struct backend *be, uint64_t at)
{
    if ((be->state == BACKEND_CONNECTING || be->state == BACKEND_HANDSHAKE)
        && be->connect_deadline_ms < at)
        at = be->connect_deadline_ms;
    timer_set(be->timer, at);
    be->timer_armed = true;
    be->timer_at_ms = at;
}

/* The earliest deadline of the calls queued (a walk: only when the timer fires). */
static uint64_t
backend_earliest_deadline(const struct backend *be)
{
    uint64_t at = UINT64_MAX;
    const struct call *c;

    for (c = be->head; c != NULL; c = c->next)
        if (c->deadline_ms < at)
            at = c->deadline_ms;
    return at;
}

/*
 * Paused for a client: its calls wait for it, not for the server. Past the
 * server's timeout without the client reading, the client is closed (and
 * resumes the connection as it goes).
 */
static void
backend_check_stall(struct backend *be, uint64_t now)
{
    uint64_t until = be->paused_at_ms + (uint64_t)be->stall_ms;
    struct creq_owner *o = be->pause.owner;

    if (now < until) {
        backend_arm_timer(be, until);
        return;
    }
    o->stalled(o);
}

static void
backend_on_timer(void *arg)
{
    struct backend *be = arg;
    uint64_t now = clock_ms(), at;

    be->timer_armed = false;
    if (be->head == NULL)
        return;
    if (be->pause.owner != NULL) {
        backend_check_stall(be, now);
        return;
    }
    if (be->state == BACKEND_CONNECTING && now >= be->connect_deadline_ms) {
        backend_fail(be, FAIL_UNAVAILABLE, "connect timeout");
        return;
    }
    if (be->state == BACKEND_HANDSHAKE && now >= be->connect_deadline_ms) {
        backend_fail(be, FAIL_UNAVAILABLE, "TLS handshake timeout");
        return;
    }
    at = backend_earliest_deadline(be);
    if (now >= at) {
        /* Replies come in order: while the server is still sending (a wide
         * get over large values takes longer than one timeout to pass), the
         * calls behind are not stuck. Overdue is overdue and quiet, or
         * overdue with no whole unit for UNIT_WAIT_TIMEOUTS timeouts. */
        uint64_t quiet_at = be->read_ns / 1000000 + (uint64_t)be->stall_ms;
        uint64_t stuck_at = be->unit_ns / 1000000 + UNIT_WAIT_TIMEOUTS * (uint64_t)be->stall_ms;

        if (be->state == BACKEND_UP && now < quiet_at && now < stuck_at) {
            backend_arm_timer(be, quiet_at < stuck_at ? quiet_at : stuck_at);
            return;
        }
        backend_fail(be, FAIL_TIMEOUT, now < quiet_at ? "request timeout: no whole reply "
                     "for twice the timeout while bytes kept coming" : "request timeout");
        return;
    }
    backend_arm_timer(be, at);
}

static void
backend_established(struct backend *be)
{
    be->state = BACKEND_UP;
    STAT_INC(be->stats.connects);
    STAT_INC(be->stats.curr_connections);
}

static int
backend_connect(struct backend *be)
{
    const struct server *srv = be->server;
    int fd, rc, one = 1;

    fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    be->fd = fd;
    be->rev = event_new(be->bx->base, fd, EV_READ | EV_PERSIST,
                        srv->tls ? backend_tls_on_read : backend_on_read, be);
    be->wev = event_new(be->bx->base, fd, EV_WRITE,
                        srv->tls ? backend_tls_on_write : backend_on_write, be);
    if (be->rev == NULL || be->wev == NULL)
        return -1;
    rc = connect(fd, (const struct sockaddr *)&srv->addr, srv->addrlen);
    if (rc < 0 && errno != EINPROGRESS)
        return -1;
    if (rc == 0 && srv->tls == NULL) {
        backend_established(be);
    } else {
        /* TLS starts from the writable callback, connected at once or not. */
        be->state = BACKEND_CONNECTING;
        be->connect_deadline_ms = clock_ms() + (uint64_t)srv->connect_timeout_ms;
        event_add(be->wev, NULL);
    }
    event_add(be->rev, NULL);
    return 0;
}

static void
backend_close_batch(struct backend *be)
{
    if (be->batch == NULL)
        return;
    /* The batch's keys went into the open piece, and no write came since
     * (backend_write closes the batch first): it is still open. */
    buf_append(bufq_tail(&be->out), "\r\n", 2);
    be->batch_last->batch_end = true;
    be->batch = be->batch_last = NULL;
    be->batch_keys = 0;
}

/* Can call c join the open batch (same command and, for gat, exptime)? */
static bool
backend_batch_fits(const struct backend *be, const struct call *c)
{
    const struct request *a = &be->batch->creq->req, *b = &c->creq->req;

    if (be->batch_keys >= BATCH_KEYS_MAX || a->cmd != b->cmd)
        return false;
    if (a->args.len == 0)
        return true;
    return be->batch->ttl == c->ttl && a->args.len == b->args.len
        && memcmp(be->batch->creq->buf->data + a->args.off,
                  c->creq->buf->data + b->args.off, a->args.len) == 0;
}

/* TLS: what is in the output so far goes out in records of its own. */
static void
backend_cut_record(struct backend *be)
{
    if (be->ncuts == be->cap_cuts) {
        uint32_t cap = be->cap_cuts ? be->cap_cuts * 2 : 16;
        uint64_t *grown = realloc(be->cuts, sizeof(*grown) * cap);

        /* Out of memory, the record simply goes on into the next request:
         * a server may then wait for more (a timeout), never misread. */
        if (grown == NULL)
            return;
        be->cuts = grown;
        be->cap_cuts = cap;
    }
    be->cuts[be->ncuts++] = be->out_done + bufq_bytes(&be->out);
}

/*
 * Some output was written: drop the record ends now behind us. Invariant:
 * while ncuts != 0, cuts[cut_next] is the next record end ahead of out_done;
 * when none is left ahead, the list is cleared and the rest goes out without
 * a cut. New cuts are only ever added at the end of the output and pieces
 * only grow, so a write retried after "would block" is never shorter than
 * the first try (OpenSSL requires that).
 */
static void
backend_cuts_passed(struct backend *be)
{
    while (be->cut_next < be->ncuts && be->cuts[be->cut_next] <= be->out_done)
        be->cut_next++;
    if (be->cut_next == be->ncuts)
        be->ncuts = be->cut_next = 0;   /* none ahead: write to the end */
}

/* The request's arguments, their exptime rewritten when the call has a rule. */
static void
backend_append_args(struct buf *out, const struct call *c)
{
    const struct request *rq = &c->creq->req;
    const char *args = c->creq->buf->data + rq->args.off;

    /* backend_reserve made room for the arguments as they are; a rewrite
     * that finds no memory for more sends them so (out of memory, a wrong
     * exptime is better than a broken line) */
    if (c->ttl == 0 || buf_reserve(out, TTL_ARGS_ROOM(rq->args.len)) < 0)
        buf_append(out, args, rq->args.len);
    else
        out->len += ttl_rewrite_args(c->ttl, rq->cmd, rq->meta, args, rq->args.len,
                                     out->data + out->len, (int64_t)time(NULL));
}

/*
 * Constant bytes after what is queued: into the open piece, or after a data
 * block sent by reference, as a piece of their own (room was reserved).
 */
static void
backend_put_const(struct backend *be, const char *s, uint32_t len)
{
    if (be->out.open)
        buf_append(bufq_tail(&be->out), s, len);
    else
        bufq_const(&be->out, s, len);
}

/*
 * A storage request's data block and its "\r\n": by reference when the
 * request holds it so (creq_share_data), the same bytes for every server it
 * goes to; else copied. Over TLS it ends a record.
 */
static void
backend_put_data(struct backend *be, const struct creq *r)
{
    const struct request *rq = &r->req;

    if (r->data != NULL) {
        bufq_share(&be->out, r->data, r->data_at, rq->data_len + (r->data_crlf ? 2 : 0));
        if (!r->data_crlf)
            bufq_const(&be->out, "\r\n", 2);
    } else {
        buf_append(bufq_tail(&be->out), r->buf->data + rq->line_len, (size_t)rq->data_len + 2);
    }
    if (be->server->tls != NULL)
        backend_cut_record(be);
}

/*
 * A meta request: "<cmd> <key> <args>" (+ the data block for ms), the key
 * being the call's own (rewritten, and base64 again when the client sent
 * "b"). Flags go as the client wrote them, "q" included, so what a quiet
 * request leaves out is the server's own choice, exactly: memcached's rules
 * depend on the outcome, not only on the reply's code (an "ma ... N q" that
 * creates its item still answers HD, one that increments does not). A quiet
 * request is followed by "mn": the server then answers either nothing or one
 * reply, and MN after it, so the FIFO always knows where a quiet call's
 * answer ends, whichever server each request of a client went to. A
 * classic command made meta (a binary request) goes as its meta equivalent.
 */
static void
backend_format_meta(struct backend *be, const struct call *c, struct buf *out)
{
    const struct request *rq = &c->creq->req;

    buf_append_str(out, proto_meta_name(rq->cmd));
    buf_append(out, " ", 1);
    if (rq->base64) {
        char enc[BASE64_ENCODED_LEN(KEY_MAX)];

        buf_append(out, enc, base64_encode((const unsigned char *)c->key, c->klen, enc));
    } else {
        buf_append(out, c->key, c->klen);
    }
    if (rq->args.len > 0) {
        buf_append(out, " ", 1);
        backend_append_args(out, c);
    }
    buf_append(out, "\r\n", 2);
    if (proto_cmd_has_data(rq->cmd))
        backend_put_data(be, c->creq);
    if (rq->quiet)
        backend_put_const(be, "mn\r\n", 4);
}

/*
 * The command's name and a space, with one fixed-size copy of its padded
 * name (proto.h): backend_reserve left more room than that beyond the
 * request's own bytes.
 */
static void
backend_put_name(struct buf *out, enum cmd cmd)
{
    uint32_t n = proto_cmd_name_len(cmd);

    memcpy(out->data + out->len, proto_cmd_name(cmd), PROTO_NAME_ROOM);
    out->data[out->len + n] = ' ';
    out->len += n + 1;
}

/*
 * A request that can go out as the client wrote it: the call's key is the
 * client's own (no rewrite), no exptime rule applies, and the line has the
 * plain shape backend_format writes, "<name> <key>[ <args>]\r\n" (so no
 * "noreply": luagent reads every reply), the name name_len bytes long. A
 * request's buffer starts with its line as proto_parse read it (or as
 * binclient.c wrote it), so a key right after the name and one space means
 * the name is at the start. Inlined in both its callers: the classic
 * request's path pays no call for it.
 */
static inline __attribute__((always_inline)) bool
backend_line_as_is(const struct call *c, uint32_t name_len)
{
    const struct creq *r = c->creq;
    const struct request *rq = &r->req;
    uint32_t key_end = rq->key.off + rq->key.len;
    uint32_t end = rq->args.len > 0 ? rq->args.off + rq->args.len : key_end;

    return c->ttl == 0 && c->klen > 0 && c->klen == rq->key.len
        && c->key == r->buf->data + rq->key.off
        && rq->key.off == name_len + 1
        && (rq->args.len == 0 || rq->args.off == key_end + 1)
        && rq->line_len == end + 2 && r->buf->data[end] == '\r';
}

/*
 * The line as the client wrote it, and with it a storage request's data
 * block when that follows in the same buffer (not sent by reference).
 */
static inline __attribute__((always_inline)) void
backend_put_line(struct backend *be, const struct creq *r, struct buf *out)
{
    const struct request *rq = &r->req;
    bool data = proto_cmd_op(rq->cmd) == OP_WRITE;

    if (data && r->data == NULL) {
        buf_append(out, r->buf->data, (size_t)rq->line_len + rq->data_len + 2);
        if (be->server->tls != NULL)
            backend_cut_record(be);
        return;
    }
    buf_append(out, r->buf->data, rq->line_len);
    if (data)
        backend_put_data(be, r);
}

/* Append the request for call c to the output's open piece out, in the server's protocol. */
static void
backend_format(struct backend *be, struct call *c, struct buf *out)
{
    const struct request *rq = &c->creq->req;

    if (rq->meta) {
        backend_close_batch(be);
        /* A line that starts with its meta name (a meta client's, or the
         * one binclient.c writes for a binary request) and needs no
         * rewrite goes as it is. */
        if (backend_line_as_is(c, 2)
            && memcmp(c->creq->buf->data, proto_meta_name(rq->cmd), 2) == 0) {
            backend_put_line(be, c->creq, out);
            if (rq->quiet)
                backend_put_const(be, "mn\r\n", 4);
        } else {
            backend_format_meta(be, c, out);
        }
        return;
    }
    if (proto_cmd_is_retrieval(rq->cmd)) {
        c->in_batch = true;
        if (be->batch != NULL && backend_batch_fits(be, c)) {
            buf_append(out, " ", 1);
        } else {
            backend_close_batch(be);
            backend_put_name(out, rq->cmd);
            if (rq->args.len > 0) {     /* gat/gats: exptime comes first */
                backend_append_args(out, c);
                buf_append(out, " ", 1);
            }
            be->batch = c;
        }
        buf_append(out, c->key, c->klen);
        be->batch_last = c;
        be->batch_keys++;
        return;
    }
    backend_close_batch(be);
    if (backend_line_as_is(c, proto_cmd_name_len(rq->cmd))) {
        backend_put_line(be, c->creq, out);
        return;
    }
    if (c->klen > 0) {          /* flush_all has no key */
        backend_put_name(out, rq->cmd);
        buf_append(out, c->key, c->klen);
    } else {
        buf_append_str(out, proto_cmd_name(rq->cmd));
    }
    if (rq->args.len > 0) {
        buf_append(out, " ", 1);
        backend_append_args(out, c);
    }
    buf_append(out, "\r\n", 2);
    if (proto_cmd_op(rq->cmd) == OP_WRITE)
        backend_put_data(be, c->creq);
}

/*
 * Room in the output for call c's request, so formatting it never fails
 * half-way: the client's own request bounds it (its line alone when its data
 * block goes by reference), plus a key that a rewrite may have made longer
 * (in base64 for a binary meta key) and the separators; and, for a block by
 * reference, the pieces it takes (the block, its "\r\n", a quiet "mn").
 * Returns the open piece to format into, or NULL (out of memory).
 */
static struct buf *
backend_reserve(struct backend *be, const struct call *c)
{
    size_t need = (size_t)c->creq->buf->len + BASE64_ENCODED_LEN(c->klen) + 32;
    struct buf *tail = bufq_tail(&be->out);

    if (tail == NULL || buf_reserve(tail, need) < 0
        || (c->creq->data != NULL && bufq_reserve(&be->out, 3) < 0))
        return NULL;
    return tail;
}

/* The server has been up for its probation: the run of failures is over. */
static void
backend_settle(struct backend *be)
{
    if (be->backoff_ms > (uint64_t)be->server->retry_after_ms)
        log_warn("backend %s: up for %d ms since its last mark-down: the next one lasts "
                 "retry_after_ms (%d ms) again", be->server->label, be->server->retry_max_ms,
                 be->server->retry_after_ms);
    be->backoff_ms = 0;
    be->run_since_ms = 0;
    be->unsettled = false;
}

/* The rejoin flush_all ended: OK lets the server serve again. */
static void
backend_rejoin_done(struct request_cache *rq, struct call *c)
{
    struct backend *be = (struct backend *)((char *)c->creq->owner
                                            - offsetof(struct backend, rejoin_owner));
    uint64_t down_ms = clock_ms() - be->run_since_ms;
    bool ok = c->res.fail == FAIL_NONE && c->res.kind == REPLY_OK;

    be->rejoining = false;
    rejoin_release(be->rejoin, ok);
    if (ok) {
        STAT_INC(be->stats.rejoins);
        log_warn("backend %s: flush_all answered OK: serving again after %llu ms down",
                 be->server->label, (unsigned long long)down_ms);
        be->run_since_ms = 0;       /* what it missed is gone: nothing stale is left */
        return;
    }
    /* A connection that failed has marked it down already. */
    if (be->down_until_ms == 0)
        backend_mark_down(be, "flush_all before rejoining not answered OK");
    (void)rq;
}

/*
 * Another worker's rejoin flush_all was answered OK after this worker's
 * latest mark-down began: what this worker kept from the server since is
 * gone too, so the server serves here as well, without a flush of its own.
 */
static void
backend_rejoined_elsewhere(struct backend *be, uint64_t now)
{
    log_info("backend %s: serving again after %llu ms down: another worker's rejoin "
             "flush_all was answered OK", be->server->label,
             (unsigned long long)(now - be->run_since_ms));
    be->run_since_ms = 0;           /* as after its own flush */
    be->rejoin_due = false;
    if (be->down_until_ms != 0) {
        be->down_until_ms = 0;
        be->stable_at_ms = now + (uint64_t)be->server->retry_max_ms;
    }
}

/*
 * Send flush_all ahead of everything else, as a request of the proxy's own
 * whose owner is this backend; the server stays out (backend_is_down) in
 * every worker until it answers. When another worker's flush is out, the
 * rejoin stays due and this worker waits for that answer (backend_gate).
 * False out of memory (then the server is simply still down).
 */
static bool
backend_rejoin(struct backend *be, uint64_t now)
{
    struct request_cache *rq = be->bx->rq;
    struct creq *r;
    struct proto_error err;
    struct call *c = NULL;

    if (!rejoin_claim(be->rejoin))
        return true;
    be->rejoin_due = false;
    if ((r = creq_alloc(rq)) == NULL) {
        rejoin_release(be->rejoin, false);
        return false;
    }
    r->owner = &be->rejoin_owner;
    r->buf = buf_get(&rq->bufs);
    if (r->buf != NULL)
        buf_append_str(r->buf, "flush_all\r\n");
    if (r->buf != NULL && !buf_failed(r->buf) && creq_slots(r, 1) == 0
        && proto_parse(r->buf->data, r->buf->len, UINT32_MAX, &r->req, &err) == PROTO_OK)
        c = call_new(rq, r, NULL, 0, backend_rejoin_done);
    creq_release(rq, r);
    if (c == NULL) {
        rejoin_release(be->rejoin, false);
        return false;
    }
    STAT_INC(be->stats.rejoin_flushes);
    log_warn("backend %s: down for %llu ms (rejoin_after_ms %d): sending flush_all before "
             "it serves again", be->server->label,
             (unsigned long long)(now - be->run_since_ms), be->server->rejoin_after_ms);
    be->rejoining = true;
    backend_submit(be, c, DEFAULT_TIMEOUT_MS);     /* the gate lets this one call pass */
    return true;
}

/*
 * A call to a server that is not known healthy (be->unsettled), or while a
 * rejoin flush_all of it is out (in any worker). True when the call was
 * failed here: the server is down, or a rejoin flush_all has not answered
 * yet. When a mark-down has just ended, the call is the probe, unless the
 * server was down long enough to need a flush first: then one flush_all for
 * the whole process, sent by the first worker to get there.
 */
static bool __attribute__((noinline))
backend_gate(struct backend *be, struct call *c)
{
    uint64_t now;

    if (be->sim != NULL) {
        be->sim->submit(be->sim->arg, be->server, c);
        return true;
    }
    if (c->creq->owner == &be->rejoin_owner)
        return false;               /* the rejoin flush_all itself */
    now = clock_ms();
    if ((be->down_until_ms != 0 || be->rejoin_due) && be->server->rejoin_flush
        && rejoin_flushed_since(be->rejoin, be->marked_epoch))
        backend_rejoined_elsewhere(be, now);
    if (be->down_until_ms != 0 && now >= be->down_until_ms) {
        be->down_until_ms = 0;      /* retry: this call probes the server */
        be->stable_at_ms = now + (uint64_t)be->server->retry_max_ms;
        STAT_INC(be->stats.retries);
        be->rejoin_due = be->server->rejoin_flush && be->run_since_ms != 0
                         && now - be->run_since_ms >= (uint64_t)be->server->rejoin_after_ms;
    }
    if (be->rejoin_due && !rejoin_held(be->rejoin) && !backend_rejoin(be, now))
        be->down_until_ms = now + be->backoff_ms;   /* out of memory: later */
    if (be->rejoin_due || be->rejoining || be->down_until_ms != 0
        || rejoin_held(be->rejoin)) {
        STAT_INC(be->stats.errors);
        call_fail(be->bx->rq, c, FAIL_UNAVAILABLE);
        return true;
    }
    if (be->unsettled && now >= be->stable_at_ms)
        backend_settle(be);
    return false;
}

/* The coarse clock once a pass: a 10-key get read it ten times. */
static uint64_t
backend_pass_ms(struct backend_ctx *bx)
{
    if (bx->pass_ms == 0)
        bx->pass_ms = clock_ms();
    return bx->pass_ms;
}

void
backend_submit(struct backend *be, struct call *c, int timeout_ms)
{
    struct buf *out;

    if ((be->unsettled || rejoin_held(be->rejoin)) && backend_gate(be, c))
        return;
    if ((out = backend_reserve(be, c)) == NULL) {
        call_fail(be->bx->rq, c, FAIL_NOMEM);
        return;
    }
    STAT_INC(be->stats.requests);
    c->next = NULL;
    c->deadline_ms = backend_pass_ms(be->bx) + (uint64_t)timeout_ms;
    be->stall_ms = timeout_ms;
    if (be->tail != NULL) {
        be->tail->next = c;
    } else {
        be->head = c;
        be->unit_ns = backend_pass_ms(be->bx) * 1000000;   /* the wait starts */
    }
    be->tail = c;
    if (be->unstamped == NULL)
        be->unstamped = c;
    if (be->waiting == NULL)
        be->waiting = c;
    backend_format(be, c, out);
    if (be->state == BACKEND_CLOSED) {
        if (backend_connect(be) < 0) {
            backend_connect_failed(be, errno);
            return;
        }
        be->timer_armed = false;    /* re-arm: the connect deadline may be sooner */
    }
    if (!be->timer_armed || c->deadline_ms < be->timer_at_ms)
        backend_arm_timer(be, c->deadline_ms);
    /* Out of memory for the list, the timer still ends these calls. */
    if (!be->dirty && backend_mark(be) == 0)
        be->dirty = true;
}

/*
 * Calls queued since the last stamp leave now: one clock read for them all.
 * An open batch's calls wait for its line end (keys may still join it), so
 * no reply can be theirs yet.
 */
static void
backend_stamp(struct backend *be)
{
    uint64_t now = clock_ns();
    struct call *c;

    for (c = be->unstamped; c != NULL && c != be->batch; c = c->next)
        c->sent_ns = now;
    be->unstamped = c;
}

/*
 * A write failed: true to try again at once (EINTR); else it waits for the
 * socket (EAGAIN) or the connection has failed.
 */
static bool
backend_write_again(struct backend *be)
{
    if (errno == EINTR)
        return true;
    if (errno == EAGAIN) {
        if (be->tls != NULL && !tls_wants_write(be->tls))
            be->write_wants_read = true;    /* the read event is persistent */
        else
            event_add(be->wev, NULL);
        return false;
    }
    backend_fail(be, FAIL_CLOSED, conn_error(be->tls));
    return false;
}

/*
 * Write some pieces: a writev (data blocks by reference among them) or,
 * over TLS, one piece up to the next record end.
 */
static ssize_t
backend_send(const struct backend *be)
{
    const struct bufq *q = &be->out;
    struct iovec iov[WRITE_PIECES];
    int n;

    iov[0].iov_len = 0;     /* the queue is not empty: bufq_iov fills it */
    n = bufq_iov(q, iov, be->tls != NULL ? 1 : WRITE_PIECES);
    if (be->ncuts != 0 && be->cuts[be->cut_next] - be->out_done < iov[0].iov_len)
        iov[0].iov_len = be->cuts[be->cut_next] - be->out_done;     /* TLS */
    if (n == 1)
        return conn_write(be->fd, be->tls, iov[0].iov_base, iov[0].iov_len);
    return conn_writev(be->fd, iov, n);
}

/* backend_write's general case: pieces written with writev, or over TLS up
 * to each record end; pieces let go (a block by reference) once written. */
static void
backend_write_pieces(struct backend *be)
{
    struct bufq *out = &be->out;
    ssize_t n;

    /* A written open piece is let go too: an open batch must not lose its
     * piece to that, so it is complete before it goes (and its calls are
     * then sent). */
    backend_close_batch(be);
    if (be->unstamped != NULL)
        backend_stamp(be);
    while (bufq_bytes(out) > 0) {
        n = backend_send(be);
        if (n < 0 && backend_write_again(be))
            continue;
        if (n < 0)
            return;
        bufq_consume(out, (uint64_t)n);
        be->out_done += (uint64_t)n;
        if (be->ncuts != 0)
            backend_cuts_passed(be);
    }
}

/*
 * Write as much output as the socket takes; wait for writability for the
 * rest. The common case, requests without a block by reference and no TLS
 * record end ahead, is one owned piece, written as a plain buffer and kept
 * for the next requests (an open batch goes on appending to it). out_done
 * need not count those writes: it only matters against record ends, and
 * none is queued then.
 */
static inline void
backend_write(struct backend *be)
{
    struct bufq *out = &be->out;
    struct buf *b;
    ssize_t n;

    /* The writable callback also sends requests queued in this loop pass,
     * before their flush: a fast server's replies to them may be read later
     * in the same pass, and must find them sent. */
    if (be->unstamped != NULL)
        backend_stamp(be);
    if (!out->open || out->n - out->first != 1 || be->ncuts != 0) {
        backend_write_pieces(be);
        return;
    }
    b = out->pieces[out->first].b;
    while (buf_avail(b) > 0) {
        n = conn_write(be->fd, be->tls, buf_head(b), buf_avail(b));
        if (n < 0 && backend_write_again(be))
            continue;
        if (n < 0)
            return;
        buf_consume(b, (size_t)n);
    }
    if (b->cap > BUF_KEEP_MAX && be->batch == NULL)
        bufq_clear(out);    /* a buffer grown for large values is not kept */
}

static void
backend_flush(struct backend *be)
{
    be->dirty = false;
    backend_close_batch(be);
    if (be->unstamped != NULL)
        backend_stamp(be);
    if (be->state == BACKEND_UP)
        backend_write(be);
}

void
backend_flush_marked(struct backend_ctx *bx)
{
    int i;

    /* An index loop: a flush that fails its calls may mark more. */
    for (i = 0; i < bx->ndirty; i++)
        backend_flush(bx->dirty[i]);
    bx->ndirty = 0;
}

/* The connect finished: 0, or -1 after failing the connection. */
static int
backend_connected(struct backend *be)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(be->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        backend_fail(be, FAIL_UNAVAILABLE, strerror(err));
        return -1;
    }
    log_debug("backend %s: connected", be->server->label);
    return 0;
}

static void
backend_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct backend *be = arg;

    if (be->state == BACKEND_CONNECTING) {
        if (backend_connected(be) < 0)
            return;
        backend_established(be);
    }
    backend_write(be);
}

/* Drive the TLS handshake; once done, send what waited for it. */
static void
backend_handshake(struct backend *be)
{
    char detail[ERR_LEN];

    switch (tls_handshake(be->tls)) {
    case 1:
        backend_established(be);
        log_debug("backend %s: TLS handshake done", be->server->label);
        backend_write(be);
        return;
    case 0:
        if (tls_wants_write(be->tls))
            event_add(be->wev, NULL);
        return;
    default:
        snprintf(detail, sizeof(detail), "TLS handshake: %s", tls_error(be->tls));
        backend_fail(be, FAIL_UNAVAILABLE, detail);
        return;
    }
}

/* TCP is up: start TLS (the connect deadline also bounds the handshake). */
static void
backend_start_tls(struct backend *be)
{
    char err[ERR_LEN];

    be->tls = tls_conn_connect(be->server->tls, be->fd, be->server->host, err, sizeof(err));
    if (be->tls == NULL) {
        backend_fail(be, FAIL_UNAVAILABLE, err);
        return;
    }
    be->state = BACKEND_HANDSHAKE;
    backend_handshake(be);
}

/*
 * "ME <key> ...": the server writes the key as is, or in base64 for an item
 * stored with "b", and says nothing of which. The call knows the key the
 * server saw, so the client's key can later be written back in that form.
 */
static bool
me_key_in_base64(const struct call *c, const char *line, size_t len)
{
    const char *key = line + 3, *end = memchr(key, ' ', len - 3);
    size_t n = end != NULL ? (size_t)(end - key) : 0;

    return !(n == c->klen && memcmp(key, c->key, n) == 0);
}

/*
 * A result's bytes (len at bytes, inside the read buffer): shared, unless a
 * small reply would pin a large buffer. 0, or -1 out of memory.
 */
static int
backend_lend(struct backend *be, struct result *res, const char *bytes, size_t len)
{
    struct buf *in = be->in, *b;

    if (in->cap <= SHARE_CAP_MAX || len >= in->cap / 4) {
        res->data = buf_share(in);
        res->bytes = bytes;
        res->len = (uint32_t)len;
        return 0;
    }
    b = buf_get(&be->bx->rq->bufs);
    if (b == NULL || buf_reserve(b, len) < 0) {
        buf_put(&be->bx->rq->bufs, b);
        return -1;
    }
    buf_append(b, bytes, len);
    result_set_buf(res, b);
    return 0;
}

/* Give call c its result; it is finished later, from the head of the FIFO. */
static void
backend_set_result(struct backend *be, struct call *c, enum reply_kind kind,
                   const char *bytes, size_t len)
{
    if (c->sent_ns != 0 && be->read_ns >= c->sent_ns)
        histogram_record(&be->stats.latency, be->read_ns - c->sent_ns);
    c->res.kind = kind;
    c->res.fail = FAIL_NONE;
    if (kind == REPLY_META_ME)
        c->res.key_base64 = me_key_in_base64(c, bytes, len);
    if (len > 0 && !c->creq->req.noreply) {
        /* A value is held here until the next unit (at most one per
         * batch); whether its client may keep it is asked when it is
         * finished. One that no client could hold is let go now. */
        if ((kind == REPLY_VALUE || kind == REPLY_META_VA)
            && !creq_may_hold(be->bx->rq, c->creq, len)) {
            c->res.fail = FAIL_NOMEM;
            return;
        }
        if (backend_lend(be, &c->res, bytes, len) < 0)
            c->res.fail = FAIL_NOMEM;   /* the unit is consumed all the same */
    }
}

/* Take the head call off the FIFO and finish it with the result it holds. */
static void
backend_finish_head(struct backend *be)
{
    struct call *c = be->head;
    struct creq_owner *o;

    be->head = c->next;
    if (be->head == NULL)
        be->tail = NULL;
    if (be->waiting == c)
        be->waiting = be->head;
    c->next = NULL;
    /* Only a reply that fits a request shows the server is fine: bytes
     * alone may be garbage, or a reply cut short before a stall. */
    be->failures = 0;
    o = c->creq->owner;             /* alive this pass: clients are freed at its end */
    call_finish(be->bx->rq, c);
    if (o != NULL && creq_owner_over(be->bx->rq, o) && be->pause.owner == NULL)
        backend_pause(be, o);
}

/* The waiting call got its whole reply; it is the head, since only the
 * head batch holds results. */
static void
backend_answer(struct backend *be, struct call *c, enum reply_kind kind,
               const char *bytes, size_t len)
{
    backend_set_result(be, c, kind, bytes, len);
    backend_finish_head(be);
}

/*
 * The head batch's reply is over: END, or an error line in its place. Its
 * calls are finished in order; those a VALUE answered hold their result, the
 * ones not reached get this unit (END: a miss). A callback may queue new
 * calls meanwhile: the loop stops at the batch's last key.
 */
static void
backend_end_batch(struct backend *be, enum reply_kind kind, const char *line, size_t len)
{
    struct call *c;
    bool last = false;

    while (!last && (c = be->head) != NULL && c->in_batch) {
        last = c->batch_end;
        if (c == be->waiting)
            backend_set_result(be, c, kind, kind == REPLY_END ? NULL : line,
                               kind == REPLY_END ? 0 : len);
        backend_finish_head(be);
    }
}

/*
 * A VALUE unit for a key of the waiting batch: it shows that the units
 * before it were in step, so the calls holding them are finished; the keys
 * between those and the one it names missed, and are finished with it, at
 * the next unit (see the invariants).
 */
static bool
backend_hold_value(struct backend *be, const char *unit, const struct reply *r)
{
    struct call *hit, *c;

    for (hit = be->waiting; hit != NULL && hit->in_batch; hit = hit->next) {
        if (hit == be->waiting && r->key_expected)
            break;          /* compared by the parse (backend_parse) */
        if (hit->klen == r->key_len && memcmp(hit->key, unit + r->key_off, r->key_len) == 0)
            break;
        if (hit->batch_end)
            return false;   /* a key nobody asked for */
    }
    if (hit == NULL || !hit->in_batch)
        return false;
    while (be->head != be->waiting)
        backend_finish_head(be);
    while ((c = be->waiting) != hit) {
        be->waiting = c->next;
        backend_set_result(be, c, REPLY_END, NULL, 0);
    }
    be->waiting = hit->next;
    if (hit->batch_end)
        be->due = REPLY_END;
    backend_set_result(be, hit, REPLY_VALUE, unit + r->rest_off, r->len - r->rest_off);
    return true;
}

static bool
reply_is_error(enum reply_kind kind)
{
    return kind == REPLY_ERROR || kind == REPLY_CLIENT_ERROR || kind == REPLY_SERVER_ERROR;
}

/*
 * A unit for the meta call c at the head: a meta reply or an error line. For
 * a quiet call, MN first means the server left the reply out (the client gets
 * nothing); any other reply is the answer, and the MN of our "mn" follows.
 */
static bool
backend_take_meta(struct backend *be, struct call *c, const char *unit,
                  const struct reply *r)
{
    if (!REPLY_IS_META(r->kind) && !reply_is_error(r->kind))
        return false;
    if (r->kind == REPLY_META_MN) {
        if (!c->creq->req.quiet)
            return false;   /* we sent no mn */
        backend_answer(be, c, REPLY_META_MN, unit, 0);
        return true;
    }
    if (c->creq->req.quiet)
        be->due = REPLY_META_MN;
    backend_answer(be, c, r->kind, unit, r->len);
    return true;
}

/* Match one reply unit to the waiting call; false if it cannot belong. */
static bool
backend_take_unit(struct backend *be, const char *unit, const struct reply *r)
{
    struct call *c = be->waiting;

    if (be->due != REPLY_KIND_COUNT) {
        enum reply_kind due = be->due;

        be->due = REPLY_KIND_COUNT;
        if (r->kind != due)
            return false;
        if (due == REPLY_END)
            backend_end_batch(be, REPLY_END, NULL, 0);
        return true;
    }
    /* A reply for a call not written yet (queued in this loop pass and not
     * flushed or sent by the writable callback) is out of step; matching it
     * would also end a batch that is still open. */
    if (c == NULL || c == be->unstamped)
        return false;
    if (c->in_batch) {
        switch (r->kind) {
        case REPLY_VALUE:
            return backend_hold_value(be, unit, r);
        case REPLY_END:
        case REPLY_ERROR:
        case REPLY_CLIENT_ERROR:
        case REPLY_SERVER_ERROR:
            backend_end_batch(be, r->kind, unit, r->line_len);
            return true;
        default:
            return false;
        }
    }
    if (r->kind == REPLY_VALUE || r->kind == REPLY_END)
        return false;
    if (c->creq->req.meta)
        return backend_take_meta(be, c, unit, r);
    if (REPLY_IS_META(r->kind))
        return false;       /* a meta reply to a classic request: out of step */
    backend_answer(be, c, r->kind, unit, r->line_len);
    return true;
}

/*
 * The key the next VALUE should carry, when reply_parse_expect may rely on
 * it: the waiting call's, when that is a key of a get batch as the client
 * wrote it, inside the request's own bytes, where proto_parse let nothing
 * but key bytes through. A key made by a rewrite is not given: the parse
 * then scans the VALUE line's key as for any other. NULL, *klen 0, when
 * there is none.
 */
static const char *
backend_expected_key(const struct backend *be, uint32_t *klen)
{
    const struct call *c = be->waiting;
    uintptr_t key, start;

    *klen = 0;
    if (c == NULL || !c->in_batch)
        return NULL;
    key = (uintptr_t)c->key;
    start = (uintptr_t)c->creq->buf->data;
    if (key < start || key - start + c->klen > c->creq->buf->len)
        return NULL;
    *klen = c->klen;
    return c->key;
}

/*
 * Is r (a unit whose line is in, its data not) a value no client may hold,
 * larger than client_max_memory by its data alone? It is then refused on its
 * line: its call is given it as usual, and fails for memory there
 * (backend_set_result asks creq_may_hold, which says no and logs why), while
 * its bytes are read and dropped as they come (be->skip), never buffered: a
 * broken or hostile server could declare up to 4 GiB and send it.
 */
static bool
backend_too_large(const struct backend *be, const struct reply *r)
{
    return (r->kind == REPLY_VALUE || r->kind == REPLY_META_VA)
           && r->data_len > be->bx->rq->client_max_memory;
}

/* Drop what is read of a refused value's bytes; true while some are still to come. */
static bool
backend_skipping(struct backend *be, struct buf *in)
{
    uint32_t n = be->skip < buf_avail(in) ? (uint32_t)be->skip : buf_avail(in);

    buf_consume(in, n);
    be->skip -= n;
    return be->skip > 0;
}

static void
backend_parse(struct backend *be)
{
    struct buf *in = be->in;
    const char *key;
    uint32_t klen;

    be->need = 0;
    while (in != NULL && buf_avail(in) > 0) {
        struct reply r;
        enum reply_status st;

        if (be->skip > 0) {
            if (backend_skipping(be, in))
                return;
            if (buf_avail(in) == 0)
                break;
        }

        r.len = 0;
        klen = 0;           /* only a VALUE unit (a 'V' first) uses the key */
        key = buf_head(in)[0] == 'V' ? backend_expected_key(be, &klen) : NULL;
        st = reply_parse_expect(buf_head(in), buf_avail(in), UINT32_MAX - 2, key, klen, &r);
        if (st == REPLY_NEED_MORE && (r.len == 0 || !backend_too_large(be, &r))) {
            be->need = r.len;       /* a large unit: read it into one buffer */
            break;
        }
        /* A whole unit, or a value refused on its line (NEED_MORE here). */
        if (st == REPLY_BAD || !backend_take_unit(be, buf_head(in), &r)) {
            backend_fail(be, FAIL_PROTOCOL, "unexpected reply");
            return;
        }
        in = be->in;        /* a callback may not free it, but stay honest */
        if (__builtin_expect(st == REPLY_NEED_MORE, 0)) {
            be->skip = r.len - buf_avail(in);
            buf_consume(in, buf_avail(in));
        } else {
            if (be->read_ns > be->unit_ns)
                be->unit_ns = be->read_ns;  /* not back: a resume moved it past
                                             * a read from before the pause */
            buf_consume(in, r.len);
        }
        if (be->pause.owner != NULL)
            return;         /* the rest waits for the client to read */
    }
    if (be->head == NULL && be->due == REPLY_KIND_COUNT && be->server->max_idle == 0)
        backend_close_socket(be);
}

/*
 * The read buffer, with room for the next read (NULL: out of memory). One
 * whose bytes are shared is not written again: its unparsed rest goes to a
 * new one. A large unit whose size is known gets a buffer of that size.
 */
static struct buf *
backend_read_buffer(struct backend *be)
{
    uint32_t have = be->in != NULL ? buf_avail(be->in) : 0;
    size_t want = be->need > have ? be->need - have
                  : be->skip > READ_CHUNK ? SKIP_CHUNK : READ_CHUNK;
    struct buf *in = buf_read_room(&be->bx->rq->bufs, be->in, want, be->need != 0);

    if (in != NULL)
        be->in = in;
    return in;
}

static void
backend_read(struct backend *be)
{
    struct buf *in;
    size_t room;
    ssize_t n;
    int rounds;

    if (be->pause.owner != NULL)
        return;             /* an event from before the pause */
    if (be->resumed) {
        be->resumed = false;
        backend_parse(be);  /* what was read before the pause first */
        if (be->state != BACKEND_UP || be->pause.owner != NULL)
            return;
    }
    for (rounds = 0; rounds < READ_ROUNDS_MAX; rounds++) {
        in = backend_read_buffer(be);
        if (in == NULL) {
            backend_fail(be, FAIL_CLOSED, "out of memory");
            return;
        }
        room = in->cap - in->len;
        n = conn_read(be->fd, be->tls, in->data + in->len, room);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (be->tls != NULL && tls_wants_write(be->tls)) {
                    be->read_wants_write = true;
                    event_add(be->wev, NULL);
                }
                break;
            }
            /* Readable before connected means the connect itself failed. */
            backend_fail(be, be->state == BACKEND_CONNECTING ? FAIL_UNAVAILABLE : FAIL_CLOSED,
                         n == 0 ? "connection closed by server" : conn_error(be->tls));
            return;
        }
        in->len += (uint32_t)n;
        be->read_ns = clock_ns();
        backend_parse(be);
        /* A read that filled its room may have left more in the socket: a
         * large value's rest, the units after it. Reading it now, rather
         * than a loop pass later, keeps a busy server's replies from waiting
         * a pass of every other connection's work per read. */
        if ((size_t)n < room || be->state != BACKEND_UP || be->pause.owner != NULL
            || be->head == NULL)
            break;
    }
    if (be->in != NULL && buf_avail(be->in) == 0 && be->head == NULL) {
        buf_put(&be->bx->rq->bufs, be->in);      /* idle: hold no buffer */
        be->in = NULL;
    }
}

/* A client's output passed its bound: read nothing more until it drains. */
static void
backend_pause(struct backend *be, struct creq_owner *o)
{
    if (be->head == NULL || be->rev == NULL)
        return;             /* nothing more to read for anyone */
    read_pause_start(&be->pause, o);
    be->paused_at_ms = clock_ms();
    event_del(be->rev);
    backend_arm_timer(be, be->paused_at_ms + (uint64_t)be->stall_ms);
}

/* The client read (or went): go on, later in this loop pass, from what is buffered. */
static void
backend_resume(struct read_pause *p)
{
    struct backend *be = (struct backend *)((char *)p - offsetof(struct backend, pause));
    uint64_t waited = clock_ms() - be->paused_at_ms;
    struct call *c;

    for (c = be->head; c != NULL; c = c->next)
        c->deadline_ms += waited;
    be->unit_ns += waited * 1000000;
    if (be->rev == NULL)
        return;
    be->resumed = true;
    event_add(be->rev, NULL);
    event_active(be->rev, EV_READ, 0);
    be->timer_armed = false;
    if (be->head != NULL)
        backend_arm_timer(be, backend_earliest_deadline(be));
}

static void
backend_on_read(evutil_socket_t fd, short what, void *arg)
{
    backend_read(arg);
}

static void
backend_tls_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct backend *be = arg;

    if (be->state == BACKEND_HANDSHAKE) {
        backend_handshake(be);
        return;
    }
    if (be->write_wants_read) {
        be->write_wants_read = false;
        backend_write(be);
        if (be->state != BACKEND_UP)
            return;             /* the write failed the connection */
    }
    backend_read(be);
    /* A reply larger than the read buffer may wait inside OpenSSL (read on
     * resuming, when paused for a client: waking now would spin). */
    if (be->tls != NULL && be->pause.owner == NULL && tls_pending(be->tls))
        event_active(be->rev, EV_READ, 0);
}

static void
backend_tls_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct backend *be = arg;

    switch (be->state) {
    case BACKEND_CONNECTING:
        if (backend_connected(be) == 0)
            backend_start_tls(be);
        return;
    case BACKEND_HANDSHAKE:
        backend_handshake(be);
        return;
    case BACKEND_UP:
        if (be->read_wants_write) {
            be->read_wants_write = false;
            backend_read(be);
            if (be->state != BACKEND_UP)
                return;
        }
        backend_write(be);
        return;
    case BACKEND_CLOSED:
        return;
    }
}

void
backend_free(struct backend *be)
{
    if (be == NULL)
        return;
    if (be->sim != NULL) {
        free(be);           /* it never held a call, a socket or a timer */
        return;
    }
    backend_fail(be, FAIL_CLOSED, "shutting down");     /* ends a rejoin flush_all */
    rejoin_put(be->rejoin);
    timer_free(be->timer);
    free(be->cuts);
    free(be);
}
