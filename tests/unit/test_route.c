/*
 * test_route.c: unit tests for the route engine (src/route.c), without
 * sockets.
 *
 * The server connections are faked at link time: this file defines
 * backend_submit and backend_is_down, so a call that reaches a pool waits in
 * the fake server's queue until the test answers it (answer, fail), as a
 * connection would when a reply or a failure arrives. The test is the
 * client: it makes the top-level call with its own completion callback,
 * which stores the result in the request's slot as client.c does, and
 * reply assembly (respond.c) turns the request into the client's bytes.
 */
#include "route.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/uio.h>

#include <event2/event.h>

#include "backend.h"
#include "balance.h"
#include "buf.h"
#include "coalesce.h"
#include "config.h"
#include "dcache.h"
#include "hotkeys.h"
#include "luagent.h"
#include "request.h"
#include "respond.h"
#include "timer.h"
#include "ttl.h"
#include "tree.h"
#include "unit.h"

/* ---- fake server connections ---- */

#define SERVERS     6
#define QUEUE_MAX   16

struct backend {
    bool         down;
    struct call *queue[QUEUE_MAX];  /* calls submitted, in order */
    int          n, next;           /* submitted; answered */
};

static struct backend servers[SERVERS];
static int submitted;               /* calls submitted to any server */

bool
backend_is_down(const struct backend *be)
{
    return be->down;
}

void
backend_submit(struct backend *be, struct call *c, int timeout_ms)
{
    UNIT_REPORT(be->n < QUEUE_MAX, "server queue full");
    if (be->n < QUEUE_MAX)
        be->queue[be->n++] = c;
    submitted++;
}

/* Calls waiting at server i. */
static int
waiting(int i)
{
    return servers[i].n - servers[i].next;
}

/* The oldest call waiting at server i, taken off its queue. */
static struct call *
take(int i)
{
    UNIT_REPORT(waiting(i) > 0, "a call waits at server %d", i);
    return waiting(i) > 0 ? servers[i].queue[servers[i].next++] : NULL;
}

/* The oldest call waiting at server i, left there. */
static struct call *
peek(int i)
{
    return waiting(i) > 0 ? servers[i].queue[servers[i].next] : NULL;
}

/* ---- the thread's state and one generation ---- */

static struct route_ctx rt;
static struct event_base *base;     /* drives the hedge timers */
static struct timers *timers;
static struct config *cfg;
static struct wconfig wc;
static struct backend *backends[SERVERS];

static bool
never_over(uint64_t limit)
{
    return false;
}

static void
env_begin(void)
{
    char err[128];
    int i;

    memset(&rt, 0, sizeof(rt));
    memset(&wc, 0, sizeof(wc));
    memset(servers, 0, sizeof(servers));
    submitted = 0;
    rt.rq.nthreads = 1;
    rt.rq.max_memory = UINT64_MAX;
    rt.rq.client_max_memory = UINT64_MAX;
    rt.rq.memory_over_all = never_over;
    rt.dcache = dcache_new(64);
    CHECK_EQ(route_hedges_init(&rt, timers), 0);
    rt.hotkeys = hotkeys_new(16, 1, 0);
    cfg = config_new(1);
    for (i = 0; i < SERVERS; i++) {
        CHECK_EQ(config_server(cfg, "127.0.0.1", 20000 + i, err, sizeof(err)), i);
        backends[i] = &servers[i];
    }
}

/* The tree is built: bind this thread's counters to it. */
static void
env_ready(struct route *root)
{
    cfg->root = root;
    wc.config = cfg;
    wc.backends = backends;
    wc.routes = calloc((size_t)cfg->nnodes, sizeof(*wc.routes));
    CHECK_EQ(route_counters_bind(&rt, cfg, wc.routes), 0);
    rt.current = &wc;
}

/* Everything made for the test's requests is let go: nothing leaks. */
static void
env_end(void)
{
    int i;

    for (i = 0; i < SERVERS; i++)
        CHECK_EQ(waiting(i), 0);
    CHECK_U64(wc.inflight, 0);
    CHECK_U64(rt.rq.bufs.used, 0);
    route_counters_release(&rt, wc.routes, cfg->nnodes);
    CHECK_EQ(rt.ncounters, 0);
    CHECK_EQ(rt.coalesce.nentries, 0);
    CHECK_EQ(rt.coalesce.nopen, 0);
    coalesce_table_free(&rt.coalesce);
    free(rt.counters);
    free(wc.routes);
    config_free(cfg);
    dcache_free(rt.dcache);
    CHECK(rt.hedges.head == NULL);
    hedge_queue_free(&rt.hedges);
    hotkeys_free(rt.hotkeys);
    request_cache_trim(&rt.rq);
    request_cache_trim(&rt.rq);     /* the second frees what the first left */
}

static struct route *
node(enum route_type type, int nchildren, ...)
{
    struct route *r;
    va_list ap;

    va_start(ap, nchildren);
    r = tree_node_v(cfg, type, "node", nchildren, ap);
    va_end(ap);
    return r;
}

static struct route *
pool(int server)
{
    return tree_pool(cfg, server);
}

/* ---- the client's side ---- */

static int done_count;          /* top-level calls ended */

/* The top-level call ended: into the slot, as client.c does. */
static void
test_done(struct request_cache *rq, struct call *c)
{
    struct slot *s = &c->creq->slots[c->slot];

    route_count_result(c);
    result_move(rq, &s->res, &c->res);
    s->done = true;
    c->creq->ndone++;
    done_count++;
}

/* Route the one-key request line from the root; the test holds a reference. */
static struct creq *
send_line(const char *line)
{
    struct creq *r = creq_alloc(&rt.rq);
    struct proto_error err;
    struct call *c;

    r->buf = buf_get(&rt.rq.bufs);
    CHECK_EQ(buf_reserve(r->buf, strlen(line) + KEY_MAX), 0);
    buf_append(r->buf, line, strlen(line));
    CHECK_EQ(proto_parse(r->buf->data, r->buf->len, 1 << 20, &r->req, &err), PROTO_OK);
    creq_bind(r, &wc);
    CHECK_EQ(creq_slots(r, 1), 0);
    creq_key_slot(r);
    done_count = 0;
    c = call_new(&rt.rq, r, cfg->root, 0, test_done);
    route_start(&rt, c);
    return r;
}

/* Server i answers its oldest call with a reply unit (NULL: END, a miss). */
static void
answer(int i, enum reply_kind kind, const char *unit)
{
    struct call *c = take(i);

    if (c == NULL)
        return;
    c->res.kind = kind;
    c->res.fail = FAIL_NONE;
    if (unit != NULL && !c->creq->req.noreply) {
        struct buf *b = buf_get(&rt.rq.bufs);

        buf_append(b, unit, strlen(unit));
        result_set_buf(&c->res, b);
    }
    call_finish(&rt.rq, c);
}

/* Server i fails its oldest call. */
static void
fail(int i, enum fail_reason why)
{
    struct call *c = take(i);

    if (c != NULL)
        call_fail(&rt.rq, c, why);
}

/* The request's reply as the client reads it; the request is let go. */
static void
check_reply(struct creq *r, const char *want)
{
    struct buf *out = buf_get(&rt.rq.bufs);
    struct bufq q = { .cache = &rt.rq.bufs };
    struct stats st = { 0 };
    struct iovec iov[16];
    int i, n;

    CHECK_EQ(r->ndone, r->nslots);
    if (r->ndone == r->nslots)
        respond_text(&q, r, &st);
    n = bufq_iov(&q, iov, 16);
    for (i = 0; i < n; i++)
        buf_append(out, iov[i].iov_base, iov[i].iov_len);
    bufq_clear(&q);
    CHECK_MEM(out->data, out->len, want, strlen(want));
    if (out->len != strlen(want))
        printf("# got: %.*s", (int)out->len, out->data);
    buf_put(&rt.rq.bufs, out);
    creq_release(&rt.rq, r);
}

static const struct route_stats *
counted(const struct route *r)
{
    return &wc.routes[r->id]->stats;
}

/* ---- failover ---- */

static struct route *
failover3(struct route **a, struct route **b, struct route **c)
{
    struct route *f;

    *a = pool(0);
    *b = pool(1);
    *c = pool(2);
    f = node(ROUTE_FAILOVER, 3, *a, *b, *c);
    f->on_error = f->on_timeout = true;
    f->failover_writes = true;
    return f;
}

/* Error, then timeout: each moves on to the next child, in order. */
static void
test_failover_order(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    env_ready(f);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(0), 1);
    CHECK_EQ(waiting(1) + waiting(2), 0);
    fail(0, FAIL_UNAVAILABLE);
    CHECK_EQ(waiting(1), 1);
    CHECK_EQ(waiting(2), 0);
    fail(1, FAIL_TIMEOUT);
    CHECK_EQ(waiting(2), 1);
    CHECK_EQ(done_count, 0);
    answer(2, REPLY_VALUE, " 0 1\r\nv\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "VALUE k 0 1\r\nv\r\nEND\r\n");
    /* each node counts the call; errors where the calls ended */
    CHECK_U64(counted(f)->requests, 1);
    CHECK_U64(counted(a)->requests, 1);
    CHECK_U64(counted(c)->requests, 1);
    CHECK_U64(counted(a)->errors, 1);
    CHECK_U64(counted(b)->errors, 1);
    CHECK_U64(counted(c)->errors, 0);
    CHECK_U64(counted(f)->errors, 0);
    env_end();
}

/* All children failed: the last failure is the answer. */
static void
test_failover_exhausted(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    f->max_tries = 2;
    env_ready(f);
    r = send_line("get k\r\n");
    fail(0, FAIL_CLOSED);
    fail(1, FAIL_TIMEOUT);
    CHECK_EQ(waiting(2), 0);        /* max_tries: C is never asked */
    check_reply(r, "SERVER_ERROR backend timeout\r\n");
    CHECK_U64(counted(f)->errors, 1);
    env_end();
}

/* A miss moves on only with on_miss, and only for reads. */
static void
test_failover_miss(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    env_ready(f);
    r = send_line("get k\r\n");
    answer(0, REPLY_END, NULL);
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "END\r\n");
    env_end();

    env_begin();
    f = failover3(&a, &b, &c);
    f->on_miss = true;
    env_ready(f);
    r = send_line("get k\r\n");
    answer(0, REPLY_END, NULL);
    CHECK_EQ(waiting(1), 1);
    answer(1, REPLY_VALUE, " 7 2\r\nhi\r\n");
    CHECK_EQ(waiting(2), 0);
    check_reply(r, "VALUE k 7 2\r\nhi\r\nEND\r\n");
    CHECK_U64(counted(a)->errors, 0);   /* a miss is no error */
    env_end();

    /* a write's NOT_FOUND is no miss */
    env_begin();
    f = failover3(&a, &b, &c);
    f->on_miss = true;
    env_ready(f);
    r = send_line("delete k\r\n");
    answer(0, REPLY_NOT_FOUND, "NOT_FOUND\r\n");
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "NOT_FOUND\r\n");
    env_end();
}

/* What does not move on: a timeout without on_timeout, a server's error
 * without on_server_error, and writes under writes = "primary". */
static void
test_failover_stays(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    f->on_timeout = false;
    env_ready(f);
    r = send_line("get k\r\n");
    fail(0, FAIL_TIMEOUT);
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "SERVER_ERROR backend timeout\r\n");
    env_end();

    env_begin();
    f = failover3(&a, &b, &c);
    env_ready(f);
    r = send_line("get k\r\n");
    answer(0, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "SERVER_ERROR busy\r\n");
    env_end();

    env_begin();
    f = failover3(&a, &b, &c);
    f->on_server_error = true;
    env_ready(f);
    r = send_line("get k\r\n");
    answer(0, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    answer(1, REPLY_VALUE, " 0 1\r\nv\r\n");
    check_reply(r, "VALUE k 0 1\r\nv\r\nEND\r\n");
    env_end();

    env_begin();
    f = failover3(&a, &b, &c);
    f->failover_writes = false;
    env_ready(f);
    r = send_line("set k 0 0 1\r\nv\r\n");
    CHECK_EQ(waiting(0), 1);
    fail(0, FAIL_UNAVAILABLE);
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "SERVER_ERROR backend unavailable\r\n");
    CHECK_U64(counted(f)->requests, 1);
    env_end();
}

/* ---- fan-out ---- */

static struct route *
fanout3(enum route_type type)
{
    return node(type, 3, pool(0), pool(1), pool(2));
}

/* A fresh environment whose root is fanout3(type), with line sent to it. */
static struct creq *
fanout3_send(enum route_type type, const char *line)
{
    env_begin();
    env_ready(fanout3(type));
    return send_line(line);
}

/* all_sync: every child answers first, then the worst reply wins. */
static void
test_all_sync(void)
{
    struct creq *r;
    struct route *all;

    r = fanout3_send(ROUTE_ALL_SYNC, "set k 0 0 1\r\nv\r\n");
    CHECK_EQ(waiting(0) + waiting(1) + waiting(2), 3);
    answer(0, REPLY_STORED, "STORED\r\n");
    answer(2, REPLY_NOT_STORED, "NOT_STORED\r\n");
    CHECK_EQ(done_count, 0);
    answer(1, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "NOT_STORED\r\n");
    env_end();

    /* a failure is worse than any reply; the first of equals stays */
    r = fanout3_send(ROUTE_ALL_SYNC, "delete k\r\n");
    answer(0, REPLY_DELETED, "DELETED\r\n");
    fail(1, FAIL_CLOSED);
    answer(2, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    check_reply(r, "SERVER_ERROR backend closed connection\r\n");
    env_end();

    /* reply_first: the first child's reply, once all have answered */
    env_begin();
    all = fanout3(ROUTE_ALL_SYNC);
    all->reply_first = true;
    env_ready(all);
    r = send_line("set k 0 0 1\r\nv\r\n");
    answer(1, REPLY_NOT_STORED, "NOT_STORED\r\n");
    answer(0, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 0);
    fail(2, FAIL_TIMEOUT);
    check_reply(r, "STORED\r\n");
    env_end();
}

/* all_initial: the first child's reply, as soon as it comes. */
static void
test_all_initial(void)
{
    struct creq *r;

    r = fanout3_send(ROUTE_ALL_INITIAL, "set k 0 0 1\r\nv\r\n");
    answer(1, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 0);
    answer(0, REPLY_NOT_STORED, "NOT_STORED\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "NOT_STORED\r\n");
    /* the third finishes in the background, after the reply is gone */
    answer(2, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 1);
    env_end();
}

/* all_fastest: the first good reply; all bad: the last. */
static void
test_all_fastest(void)
{
    struct creq *r;

    r = fanout3_send(ROUTE_ALL_FASTEST, "get k\r\n");
    answer(1, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    CHECK_EQ(done_count, 0);
    answer(2, REPLY_VALUE, " 0 1\r\nc\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "VALUE k 0 1\r\nc\r\nEND\r\n");
    answer(0, REPLY_VALUE, " 0 1\r\na\r\n");
    CHECK_EQ(done_count, 1);
    env_end();

    r = fanout3_send(ROUTE_ALL_FASTEST, "get k\r\n");
    fail(0, FAIL_TIMEOUT);
    fail(2, FAIL_CLOSED);
    CHECK_EQ(done_count, 0);
    answer(1, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    check_reply(r, "SERVER_ERROR busy\r\n");
    env_end();
}

/* all_async: a write is answered at once; the children go on alone. */
static void
test_all_async(void)
{
    struct creq *r;

    r = fanout3_send(ROUTE_ALL_ASYNC, "set k 0 0 1\r\nv\r\n");
    CHECK_EQ(done_count, 1);
    CHECK_EQ(waiting(0) + waiting(1) + waiting(2), 3);
    check_reply(r, "STORED\r\n");
    fail(0, FAIL_TIMEOUT);
    answer(1, REPLY_NOT_STORED, "NOT_STORED\r\n");
    answer(2, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 1);
    env_end();

    /* a read waits for the first child */
    r = fanout3_send(ROUTE_ALL_ASYNC, "get k\r\n");
    CHECK_EQ(done_count, 0);
    answer(2, REPLY_END, NULL);
    CHECK_EQ(done_count, 0);
    answer(0, REPLY_VALUE, " 0 1\r\nv\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "VALUE k 0 1\r\nv\r\nEND\r\n");
    answer(1, REPLY_END, NULL);
    env_end();
}

/* ---- shadow ---- */

static void
test_shadow(void)
{
    struct route *s;
    struct creq *r;

    env_begin();
    s = node(ROUTE_SHADOW, 2, pool(0), pool(1));
    s->fraction = UINT32_MAX;
    s->shadow_op = OP_COUNT;
    env_ready(s);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(0), 1);
    CHECK_EQ(waiting(1), 1);
    answer(1, REPLY_VALUE, " 0 6\r\nshadow\r\n");
    CHECK_EQ(done_count, 0);        /* the shadow never answers the client */
    answer(0, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    env_end();

    /* reads only: a write goes to the main child alone */
    env_begin();
    s = node(ROUTE_SHADOW, 2, pool(0), pool(1));
    s->fraction = UINT32_MAX;
    s->shadow_op = OP_READ;
    env_ready(s);
    r = send_line("set k 0 0 1\r\nv\r\n");
    CHECK_EQ(waiting(1), 0);
    answer(0, REPLY_STORED, "STORED\r\n");
    check_reply(r, "STORED\r\n");
    env_end();

    /* a share of none: the key is not shadowed */
    env_begin();
    s = node(ROUTE_SHADOW, 2, pool(0), pool(1));
    s->fraction = 0;
    s->shadow_op = OP_COUNT;
    env_ready(s);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(1), 0);
    answer(0, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    env_end();
}

/* ---- warmup ---- */

static void
test_warmup(void)
{
    static const char copy[] = "add k 5 300 3\r\nabc\r\n";
    struct route *w;
    struct creq *r;
    struct call *c;

    /* miss in cold -> warm -> hit, copied into cold with add */
    env_begin();
    w = node(ROUTE_WARMUP, 2, pool(0), pool(1));
    w->exptime = 300;
    env_ready(w);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(0), 1);
    CHECK_EQ(waiting(1), 0);
    answer(0, REPLY_END, NULL);
    CHECK_EQ(waiting(1), 1);
    answer(1, REPLY_VALUE, " 5 3\r\nabc\r\n");
    check_reply(r, "VALUE k 5 3\r\nabc\r\nEND\r\n");
    c = peek(0);                    /* the copy, a request of the proxy's own */
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_EQ(c->creq->req.cmd, CMD_ADD);
        CHECK(c->creq->owner == NULL);
        CHECK_MEM(c->creq->buf->data, c->creq->buf->len, copy, sizeof(copy) - 1);
        CHECK_MEM(c->key, c->klen, "k", 1);
    }
    answer(0, REPLY_STORED, "STORED\r\n");
    CHECK_EQ(done_count, 1);
    env_end();

    /* a hit in cold: warm is never asked */
    env_begin();
    w = node(ROUTE_WARMUP, 2, pool(0), pool(1));
    env_ready(w);
    r = send_line("get k\r\n");
    answer(0, REPLY_VALUE, " 0 1\r\nc\r\n");
    CHECK_EQ(waiting(1), 0);
    check_reply(r, "VALUE k 0 1\r\nc\r\nEND\r\n");
    env_end();

    /* a miss in both: a miss, and nothing copied */
    env_begin();
    w = node(ROUTE_WARMUP, 2, pool(0), pool(1));
    env_ready(w);
    r = send_line("get k\r\n");
    answer(0, REPLY_END, NULL);
    answer(1, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    CHECK_EQ(waiting(0), 0);
    env_end();

    /* deletes reach warm too with delete_warm: the worst reply wins */
    env_begin();
    w = node(ROUTE_WARMUP, 2, pool(0), pool(1));
    w->delete_warm = true;
    env_ready(w);
    r = send_line("delete k\r\n");
    CHECK_EQ(waiting(0) + waiting(1), 2);
    answer(0, REPLY_DELETED, "DELETED\r\n");
    answer(1, REPLY_NOT_FOUND, "NOT_FOUND\r\n");
    check_reply(r, "NOT_FOUND\r\n");
    env_end();
}

/* ---- rewrite ---- */

static void
test_rewrite(void)
{
    struct route *rw;
    struct creq *r;
    struct call *c;

    env_begin();
    rw = node(ROUTE_REWRITE, 1, pool(0));
    rw->strip = strdup("app:");
    rw->strip_len = 4;
    rw->add = strdup("v2:");
    rw->add_len = 3;
    env_ready(rw);
    r = send_line("get app:foo\r\n");
    c = peek(0);
    CHECK(c != NULL);
    if (c != NULL)
        CHECK_MEM(c->key, c->klen, "v2:foo", 6);    /* what the server sees */
    answer(0, REPLY_VALUE, " 0 1\r\nv\r\n");
    check_reply(r, "VALUE app:foo 0 1\r\nv\r\nEND\r\n");  /* the client's key back */
    env_end();

    /* a key that would pass KEY_MAX never reaches a server */
    env_begin();
    rw = node(ROUTE_REWRITE, 1, pool(0));
    rw->add = calloc(1, KEY_MAX + 1);
    memset(rw->add, 'x', KEY_MAX);
    rw->add_len = KEY_MAX;
    env_ready(rw);
    r = send_line("get k\r\n");
    CHECK_EQ(submitted, 0);
    check_reply(r, "CLIENT_ERROR key too long after rewrite\r\n");
    env_end();
}

/* ---- error, prefix, by_op ---- */

static void
test_error_node(void)
{
    struct route *e;
    struct creq *r;

    env_begin();
    e = node(ROUTE_ERROR, 0);
    e->error_line = strdup("SERVER_ERROR maintenance\r\n");
    env_ready(e);
    r = send_line("get k\r\n");
    CHECK_EQ(submitted, 0);
    check_reply(r, "SERVER_ERROR maintenance\r\n");
    CHECK_U64(counted(e)->requests, 1);
    CHECK_U64(counted(e)->errors, 1);
    env_end();
}

static void
test_prefix_and_by_op(void)
{
    struct route *p, *b;
    struct creq *r;

    env_begin();
    p = node(ROUTE_PREFIX, 0);
    p->nprefixes = 2;
    p->prefixes = calloc(2, sizeof(*p->prefixes));
    p->prefixes[0] = (struct prefix_entry){ strdup("ab:"), 3, pool(1) };  /* longest first */
    p->prefixes[1] = (struct prefix_entry){ strdup("a"), 1, pool(2) };
    p->default_route = pool(0);
    env_ready(p);
    r = send_line("get ab:1\r\n");
    CHECK_EQ(waiting(1), 1);
    answer(1, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    r = send_line("get ax\r\n");
    CHECK_EQ(waiting(2), 1);
    answer(2, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    r = send_line("get zz\r\n");
    CHECK_EQ(waiting(0), 1);
    answer(0, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    env_end();

    env_begin();
    b = node(ROUTE_BY_OP, 0);
    b->by_op[OP_READ] = pool(1);
    b->by_cmd[CMD_DELETE] = pool(2);
    b->default_route = pool(0);
    env_ready(b);
    r = send_line("get k\r\n");
    answer(1, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    r = send_line("delete k\r\n");
    answer(2, REPLY_DELETED, "DELETED\r\n");
    check_reply(r, "DELETED\r\n");
    r = send_line("set k 0 0 1\r\nv\r\n");
    answer(0, REPLY_STORED, "STORED\r\n");
    check_reply(r, "STORED\r\n");
    env_end();
}

/* ---- hooks (the Lua side faked through script_ops) ---- */

static int hook_calls;

/* "b..." -> the second child, "new..." -> the first with a new key,
 * "loop" -> the hook itself, "x..." -> fails, else the first. */
static int
fake_hook(struct config *c, int vm, const struct route *hook, struct hook_request *req,
          const struct route **next, const char **newkey, uint32_t *newklen)
{
    hook_calls++;
    *newkey = NULL;
    if (req->klen >= 1 && req->key[0] == 'x')
        return -1;
    if (req->klen == 4 && memcmp(req->key, "loop", 4) == 0) {
        *next = hook;
        return 0;
    }
    if (req->klen >= 3 && memcmp(req->key, "new", 3) == 0) {
        *newkey = "renamed";
        *newklen = 7;
    }
    *next = hook->children[req->klen >= 1 && req->key[0] == 'b' ? 1 : 0];
    return 0;
}

static void
no_free(struct config *c)
{
}

static const struct script_ops fake_ops = { .hook_call = fake_hook, .free = no_free };

static void
test_hook(void)
{
    struct route *h;
    struct creq *r;
    struct call *c;

    env_begin();
    cfg->script_ops = &fake_ops;
    h = node(ROUTE_HOOK, 2, pool(0), pool(1));
    env_ready(h);
    hook_calls = 0;
    r = send_line("get b1\r\n");
    CHECK_EQ(waiting(1), 1);
    answer(1, REPLY_END, NULL);
    check_reply(r, "END\r\n");
    r = send_line("get newkey\r\n");
    c = peek(0);
    CHECK(c != NULL);
    if (c != NULL)
        CHECK_MEM(c->key, c->klen, "renamed", 7);
    answer(0, REPLY_VALUE, " 0 1\r\nv\r\n");
    check_reply(r, "VALUE newkey 0 1\r\nv\r\nEND\r\n");
    r = send_line("get x\r\n");
    check_reply(r, "SERVER_ERROR luagent: route hook failed\r\n");
    CHECK_EQ(rt.rq.stats.hook_errors, 1);
    r = send_line("get loop\r\n");
    check_reply(r, "SERVER_ERROR luagent: route loop\r\n");
    CHECK_EQ(submitted, 2);
    CHECK_EQ(hook_calls, 3 + ROUTE_HOPS_MAX);
    env_end();
}

/* ---- coalesce ---- */

/* A fresh generation whose root coalesces over server 0. */
static struct route *
coalesce_env(void)
{
    struct route *co;

    env_begin();
    co = node(ROUTE_COALESCE, 1, pool(0));
    env_ready(co);
    return co;
}

/* Identical gets in flight go once; every one gets the reply. */
static void
test_coalesce_shares(void)
{
    struct route *co;
    struct creq *a, *b, *c, *other, *gets;

    co = coalesce_env();
    a = send_line("get k\r\n");
    b = send_line("get k\r\n");
    c = send_line("get k\r\n");
    other = send_line("get j\r\n");       /* another key: its own */
    gets = send_line("gets k\r\n");       /* another command: its own */
    CHECK_EQ(submitted, 3);
    CHECK_U64(counted(co)->leaders, 3);
    CHECK_U64(counted(co)->coalesced, 2);
    answer(0, REPLY_VALUE, " 5 3\r\nabc\r\n");
    CHECK_EQ(done_count, 3);                /* the leader and both waiters */
    check_reply(a, "VALUE k 5 3\r\nabc\r\nEND\r\n");
    check_reply(b, "VALUE k 5 3\r\nabc\r\nEND\r\n");
    check_reply(c, "VALUE k 5 3\r\nabc\r\nEND\r\n");
    answer(0, REPLY_END, NULL);
    check_reply(other, "END\r\n");
    answer(0, REPLY_VALUE, " 0 1 77\r\nv\r\n");
    check_reply(gets, "VALUE k 0 1 77\r\nv\r\nEND\r\n");
    /* the entry is gone with its reply: the next get goes to the server */
    a = send_line("get k\r\n");
    CHECK_EQ(submitted, 4);
    answer(0, REPLY_END, NULL);
    check_reply(a, "END\r\n");
    env_end();
}

/*
 * A write closes the key's entry: gets that arrived before it still share
 * the reply in flight, gets after it go to the server after the write.
 * Writes close it whatever path they take to a pool.
 */
static void
test_coalesce_write_closes(void)
{
    struct route *co, *b;
    struct creq *before, *set, *after, *after2;

    co = coalesce_env();
    before = send_line("get k\r\n");
    set = send_line("set k 0 0 3\r\nnew\r\n");
    after = send_line("get k\r\n");
    after2 = send_line("get k\r\n");
    CHECK_EQ(submitted, 3);                 /* get, set, get: the last get waits */
    CHECK_U64(counted(co)->coalesced, 1);
    answer(0, REPLY_VALUE, " 0 3\r\nold\r\n");
    check_reply(before, "VALUE k 0 3\r\nold\r\nEND\r\n");
    CHECK_EQ(after->ndone, 0);
    answer(0, REPLY_STORED, "STORED\r\n");
    check_reply(set, "STORED\r\n");
    answer(0, REPLY_VALUE, " 0 3\r\nnew\r\n");
    check_reply(after, "VALUE k 0 3\r\nnew\r\nEND\r\n");
    check_reply(after2, "VALUE k 0 3\r\nnew\r\nEND\r\n");
    env_end();

    /* reads through the coalesce node, writes straight to the pool */
    env_begin();
    b = node(ROUTE_BY_OP, 0);
    b->by_op[OP_READ] = co = node(ROUTE_COALESCE, 1, pool(0));
    b->default_route = co->children[0];
    env_ready(b);
    before = send_line("get k\r\n");
    set = send_line("delete k\r\n");
    after = send_line("get k\r\n");
    CHECK_EQ(submitted, 3);
    CHECK_U64(counted(co)->coalesced, 0);
    answer(0, REPLY_VALUE, " 0 3\r\nold\r\n");
    answer(0, REPLY_DELETED, "DELETED\r\n");
    answer(0, REPLY_END, NULL);
    check_reply(before, "VALUE k 0 3\r\nold\r\nEND\r\n");
    check_reply(set, "DELETED\r\n");
    check_reply(after, "END\r\n");
    env_end();
}

/* The leader's failure is every waiter's; a waiter past its bound is refused alone. */
static void
test_coalesce_failure_and_bounds(void)
{
    struct creq_owner small = { 0 };
    struct route *co;
    struct creq *a, *b, *c;

    co = coalesce_env();
    a = send_line("get k\r\n");
    b = send_line("get k\r\n");
    fail(0, FAIL_TIMEOUT);
    check_reply(a, "SERVER_ERROR backend timeout\r\n");
    check_reply(b, "SERVER_ERROR backend timeout\r\n");
    CHECK_U64(counted(co)->errors, 2);
    env_end();

    co = coalesce_env();
    rt.rq.client_max_memory = 8;
    a = send_line("get k\r\n");
    b = send_line("get k\r\n");
    c = send_line("get k\r\n");
    b->owner = &small;                      /* a client with room for 8 bytes */
    answer(0, REPLY_VALUE, " 0 10\r\n0123456789\r\n");
    check_reply(a, "VALUE k 0 10\r\n0123456789\r\nEND\r\n");
    b->owner = NULL;
    check_reply(b, "SERVER_ERROR out of memory\r\n");
    check_reply(c, "VALUE k 0 10\r\n0123456789\r\nEND\r\n");
    env_end();
}

/* Writes and flush-like closes leave no entry open; a closed entry still drains. */
static void
test_coalesce_close_all(void)
{
    struct route *co;
    struct creq *a, *b;

    co = coalesce_env();
    a = send_line("get k\r\n");
    CHECK_EQ(rt.coalesce.nopen, 1);
    coalesce_close_all(&rt.coalesce);
    CHECK_EQ(rt.coalesce.nopen, 0);
    CHECK_EQ(rt.coalesce.nentries, 1);
    b = send_line("get k\r\n");
    CHECK_EQ(submitted, 2);
    CHECK_U64(counted(co)->leaders, 2);
    answer(0, REPLY_END, NULL);
    answer(0, REPLY_END, NULL);
    check_reply(a, "END\r\n");
    check_reply(b, "END\r\n");
    env_end();
}

/* A request's calls and buffers all go back: a failover over a fan-out. */
static void
test_nested_lifetimes(void)
{
    struct route *inner, *f;
    struct creq *r;

    env_begin();
    inner = node(ROUTE_ALL_INITIAL, 2, pool(0), pool(1));
    f = node(ROUTE_FAILOVER, 2, inner, pool(2));
    f->on_error = true;
    env_ready(f);
    r = send_line("get k\r\n");
    fail(0, FAIL_CLOSED);           /* the initial child fails: so does all_initial */
    CHECK_EQ(waiting(2), 1);        /* failover moves on while server 1 still works */
    answer(2, REPLY_VALUE, " 0 1\r\nv\r\n");
    check_reply(r, "VALUE k 0 1\r\nv\r\nEND\r\n");
    CHECK_U64(wc.inflight, 1);      /* server 1's call still holds the request */
    answer(1, REPLY_VALUE, " 0 1\r\nw\r\n");
    CHECK_EQ(done_count, 1);
    env_end();
}

/* ---- ttl, gutter_ttl, ratelimit ---- */

/* lg.ttl gives the call its rule; nested nodes compose, the outer first. */
static void
test_ttl_node(void)
{
    struct route *a, *inner, *outer;
    struct creq *r;

    env_begin();
    a = pool(0);
    inner = node(ROUTE_TTL, 1, a);
    inner->ttl_rule = ttl_rule_max(10);
    outer = node(ROUTE_TTL, 1, inner);
    outer->ttl_rule = ttl_rule_set(100);
    env_ready(outer);
    r = send_line("set k 0 0 1\r\nv\r\n");
    CHECK_EQ(peek(0)->ttl, ttl_rule_set(10));
    answer(0, REPLY_STORED, "STORED\r\n");
    check_reply(r, "STORED\r\n");
    env_end();
}

/* gutter_ttl: calls past the first child carry a cap; the first does not. */
static void
test_gutter_ttl(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    f->gutter_ttl = ttl_rule_max(10);
    env_ready(f);
    r = send_line("set k 0 0 1\r\nv\r\n");
    CHECK_EQ(peek(0)->ttl, 0);
    fail(0, FAIL_UNAVAILABLE);
    CHECK_EQ(peek(1)->ttl, ttl_rule_max(10));
    answer(1, REPLY_STORED, "STORED\r\n");
    check_reply(r, "STORED\r\n");
    CHECK_U64(counted(f)->gutter_capped, 1);
    env_end();
}

/* Two tokens, no refill to speak of: the third request is refused or counted. */
static void
test_ratelimit_node(void)
{
    struct route *a, *rl;
    struct creq *r;
    int pass, i;

    for (pass = 0; pass < 2; pass++) {
        env_begin();
        a = pool(0);
        rl = node(ROUTE_RATELIMIT, 1, a);
        rl->rate = rate_limit_make(0.001, 2);
        rl->rate_pass = pass;
        env_ready(rl);
        for (i = 0; i < 2; i++) {
            r = send_line("get k\r\n");
            answer(0, REPLY_END, NULL);
            check_reply(r, "END\r\n");
        }
        r = send_line("get k\r\n");
        if (pass) {
            answer(0, REPLY_END, NULL);
            check_reply(r, "END\r\n");
        } else {
            CHECK_EQ(waiting(0), 0);
            check_reply(r, "SERVER_ERROR rate limited\r\n");
        }
        CHECK_U64(counted(rl)->rate_over, 1);
        CHECK_U64(counted(rl)->rate_limited, pass ? 0 : 1);
        env_end();
    }
}

/* ---- hedging (wait_ms) ---- */

/*
 * Let the event loop run until a hedge timer has fired and asked a server.
 * A pass can end with nothing due: the timers go by the coarse clock, which
 * may not have reached the deadline when the timerfd fires.
 */
static void
wait_hedge(void)
{
    int before = submitted, passes;

    for (passes = 0; passes < 1000 && submitted == before; passes++)
        event_base_loop(base, EVLOOP_ONCE);
}

/* A slow first child: the second is asked too, answers, and the late reply is dropped. */
static void
test_hedge_failover(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    f->wait_ms = 1;
    env_ready(f);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(0), 1);
    CHECK_EQ(waiting(1), 0);
    wait_hedge();
    CHECK_EQ(waiting(0), 1);        /* still out */
    CHECK_EQ(waiting(1), 1);        /* and the next child asked */
    CHECK_U64(counted(f)->hedges, 1);
    answer(1, REPLY_VALUE, " 0 1\r\nb\r\n");
    CHECK_EQ(done_count, 1);
    CHECK(rt.hedges.head == NULL);  /* answered: no third child */
    answer(0, REPLY_VALUE, " 0 1\r\na\r\n");    /* late: dropped */
    CHECK_EQ(done_count, 1);
    check_reply(r, "VALUE k 0 1\r\nb\r\nEND\r\n");
    CHECK_EQ(waiting(2), 0);
    env_end();

    /* The first child answers in time: nobody else is asked. */
    env_begin();
    f = failover3(&a, &b, &c);
    f->wait_ms = 1000;
    env_ready(f);
    r = send_line("get k\r\n");
    answer(0, REPLY_END, NULL);
    CHECK_EQ(done_count, 1);
    CHECK(rt.hedges.head == NULL);
    check_reply(r, "END\r\n");
    CHECK_EQ(waiting(1), 0);
    env_end();

    /* Writes never hedge. */
    env_begin();
    f = failover3(&a, &b, &c);
    f->wait_ms = 1;
    env_ready(f);
    r = send_line("set k 0 0 1\r\nv\r\n");
    CHECK(rt.hedges.head == NULL);
    answer(0, REPLY_STORED, "STORED\r\n");
    check_reply(r, "STORED\r\n");
    env_end();
}

/* The hedged child fails while the first is still out: the first may still answer. */
static void
test_hedge_failover_fallback(void)
{
    struct route *a, *b, *c, *f;
    struct creq *r;

    env_begin();
    f = failover3(&a, &b, &c);
    f->wait_ms = 1;
    f->max_tries = 2;
    env_ready(f);
    r = send_line("get k\r\n");
    wait_hedge();
    CHECK_EQ(waiting(1), 1);
    fail(1, FAIL_UNAVAILABLE);
    CHECK_EQ(done_count, 0);        /* the first is still out */
    answer(0, REPLY_VALUE, " 0 1\r\na\r\n");
    CHECK_EQ(done_count, 1);
    check_reply(r, "VALUE k 0 1\r\na\r\nEND\r\n");
    env_end();

    /* Both fail: the last failure answers. */
    env_begin();
    f = failover3(&a, &b, &c);
    f->wait_ms = 1;
    f->max_tries = 2;
    env_ready(f);
    r = send_line("get k\r\n");
    wait_hedge();
    fail(1, FAIL_UNAVAILABLE);
    fail(0, FAIL_TIMEOUT);
    check_reply(r, "SERVER_ERROR backend timeout\r\n");
    env_end();
}

/* all_fastest with wait_ms: one child at a time, the next on a wait or an error. */
static void
test_hedge_all_fastest(void)
{
    struct route *f;
    struct creq *r;

    env_begin();
    f = node(ROUTE_ALL_FASTEST, 3, pool(0), pool(1), pool(2));
    f->wait_ms = 1;
    env_ready(f);
    r = send_line("get k\r\n");
    CHECK_EQ(waiting(0) + waiting(1) + waiting(2), 1);
    answer(0, REPLY_SERVER_ERROR, "SERVER_ERROR busy\r\n");
    CHECK_EQ(waiting(1), 1);        /* at once, not after the wait */
    wait_hedge();
    CHECK_EQ(waiting(2), 1);
    answer(2, REPLY_VALUE, " 0 1\r\nc\r\n");
    check_reply(r, "VALUE k 0 1\r\nc\r\nEND\r\n");
    answer(1, REPLY_VALUE, " 0 1\r\nb\r\n");    /* late: dropped */
    env_end();
}

/* ---- balance ---- */

static struct route *
balance3(enum balance_by by)
{
    struct route *b = node(ROUTE_BALANCE, 3, pool(0), pool(1), pool(2));

    b->balance_by = by;
    return b;
}

/* The server (0..2) holding a call, or -1; answered queues start over. */
static int
holder(void)
{
    int i, at = -1;

    for (i = 0; i < 3; i++) {
        if (waiting(i) == 0)
            servers[i].n = servers[i].next = 0;
        else if (at < 0)
            at = i;
    }
    return at;
}

/* by key: a key keeps its child; while it is down, one other child, counted. */
static void
test_balance_key(void)
{
    char line[64];
    struct route *b;
    struct creq *r;
    int i, j, first, other, seen[3] = { 0 };

    env_begin();
    b = balance3(BALANCE_KEY);
    env_ready(b);
    for (i = 0; i < 30; i++) {
        snprintf(line, sizeof(line), "get key:%d\r\n", i);
        r = send_line(line);
        first = holder();
        CHECK_EQ(first, balance_key_child(b, line + 4, (uint32_t)strlen(line + 4) - 2));
        answer(first, REPLY_END, NULL);
        check_reply(r, "END\r\n");
        seen[first]++;
        servers[first].down = true;
        for (j = 0, other = -1; j < 3; j++) {
            r = send_line(line);
            CHECK(holder() != first && holder() >= 0);
            CHECK(other < 0 || holder() == other);
            other = holder();
            answer(other, REPLY_END, NULL);
            check_reply(r, "END\r\n");
        }
        servers[first].down = false;
    }
    CHECK(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    CHECK_U64(counted(b)->skipped_down, 90);
    CHECK_U64(counted(b)->requests, 120);
    env_end();
}

/* A coalesce child is down when its pool's server is: balance looks through it. */
static void
test_balance_over_coalesce(void)
{
    struct route *b;
    struct creq *r;

    env_begin();
    b = node(ROUTE_BALANCE, 2, node(ROUTE_COALESCE, 1, pool(0)), pool(1));
    b->balance_by = BALANCE_RANDOM;
    env_ready(b);
    servers[0].down = true;
    for (int i = 0; i < 8; i++) {
        r = send_line("get k\r\n");
        CHECK_EQ(waiting(0), 0);
        answer(1, REPLY_END, NULL);
        check_reply(r, "END\r\n");
    }
    env_end();
}

/* least_outstanding: a child with a call in flight is passed over. */
static void
test_balance_least(void)
{
    struct creq *r[3];
    struct route *b;
    int i, busy[3] = { 0 };

    env_begin();
    b = balance3(BALANCE_LEAST);
    env_ready(b);
    for (i = 0; i < 3; i++) {
        r[i] = send_line("get k\r\n");
        CHECK_EQ(waiting(0) + waiting(1) + waiting(2), i + 1);
    }
    for (i = 0; i < 3; i++)
        busy[i] = waiting(i);
    CHECK(busy[0] == 1 && busy[1] == 1 && busy[2] == 1);
    for (i = 0; i < 3; i++)
        CHECK_EQ(wc.routes[b->children[i]->id]->outstanding, 1);
    for (i = 0; i < 3; i++) {
        answer(i, REPLY_END, NULL);
        CHECK_EQ(wc.routes[b->children[i]->id]->outstanding, 0);
    }
    for (i = 0; i < 3; i++)
        check_reply(r[i], "END\r\n");
    /* Down: never chosen, even though idle; its failure is not waited for. */
    servers[1].down = true;
    for (i = 0; i < 12; i++) {
        struct creq *q = send_line("get k\r\n");

        CHECK_EQ(waiting(1), 0);
        answer(holder(), REPLY_END, NULL);
        check_reply(q, "END\r\n");
    }
    env_end();
}

int
main(void)
{
    base = event_base_new();
    timers = timers_new(base);
    test_failover_order();
    test_failover_exhausted();
    test_failover_miss();
    test_failover_stays();
    test_all_sync();
    test_all_initial();
    test_all_fastest();
    test_all_async();
    test_shadow();
    test_warmup();
    test_rewrite();
    test_error_node();
    test_prefix_and_by_op();
    test_hook();
    test_nested_lifetimes();
    test_ttl_node();
    test_gutter_ttl();
    test_ratelimit_node();
    test_hedge_failover();
    test_hedge_failover_fallback();
    test_hedge_all_fastest();
    test_balance_key();
    test_balance_least();
    test_balance_over_coalesce();
    test_coalesce_shares();
    test_coalesce_write_closes();
    test_coalesce_failure_and_bounds();
    test_coalesce_close_all();
    timers_free(timers);
    event_base_free(base);
    return UNIT_DONE();
}
