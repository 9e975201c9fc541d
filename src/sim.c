/*
 * sim.c: requests run through the route engine against simulated servers.
 *
 * The engine (route.c) is the one that serves traffic; only the server
 * connections are simulated (backend_new_simulated). A call that reaches a
 * server is queued, and the queue is answered in order once the engine has
 * done what it can, as replies would arrive: so a failover tries its next
 * child only after the first one's answer, exactly as it does live.
 *
 * The simulation owns a route_ctx (its own request cache, counters and an
 * empty hook decision cache: every test line calls its hook) and a wconfig
 * over the caller's config. Route counters are cleared before each request,
 * so after it they tell which nodes the request passed.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base64.h"
#include "buf.h"
#include "coalesce.h"
#include "config.h"
#include "dcache.h"
#include "hedge.h"
#include "hotkeys.h"
#include "listener.h"
#include "request.h"
#include "respond.h"
#include "route.h"
#include "timer.h"
#include "ttl.h"

#define SIM_QUEUE_MAX   64      /* calls waiting for their simulated reply */

struct sim {
    struct route_ctx             rt;
    struct wconfig               wc;
    struct config               *cfg;
    struct backend_sim           ops;
    struct timers               *timers;    /* only for the hedge timer: never driven, since
                                             * simulated servers answer before any wait ends */
    const struct sim_conditions *cond;      /* of the request being run */
    struct sim_result           *res;       /* where its steps go */
    struct creq                 *creq;      /* the request being run */
    struct creq_owner            client;    /* its client, when the conditions name
                                             * a listener or a CN (else no owner) */
    struct call                 *queue[SIM_QUEUE_MAX];
    int                          nqueue, next;
    bool                         overflow;
};

static bool
never_over(uint64_t limit)
{
    return false;
}

/* ---- conditions ---- */

/* Does name (a pool, "host:port" or "host") cover this server of this pool? */
static bool
name_covers(const char *name, const struct server *srv, const struct pool *pool)
{
    size_t hostlen = strlen(srv->host);

    if (pool != NULL && strcmp(name, pool->name) == 0)
        return true;
    if (strcmp(name, srv->label) == 0)
        return true;
    return strncmp(name, srv->host, hostlen) == 0 && name[hostlen] == '\0';
}

static bool
listed(const char *const *names, int n, const struct server *srv, const struct pool *pool)
{
    int i;

    for (i = 0; i < n; i++)
        if (name_covers(names[i], srv, pool))
            return true;
    return false;
}

/*
 * Is the server itself named (as host:port, host, or a pool it serves in)?
 * A pool assumed down or silent means its servers are, for every pool that
 * shares them, and for the health checks (eject, balance) as well.
 */
static bool
server_listed(const struct config *cfg, const char *const *names, int n,
              const struct server *srv)
{
    int i, j;

    if (listed(names, n, srv, NULL))
        return true;
    for (i = 0; i < cfg->npools; i++)
        for (j = 0; j < cfg->pools[i]->nservers; j++)
            if (cfg->pools[i]->server_ids[j] == srv->id && listed(names, n, srv, cfg->pools[i]))
                return true;
    return false;
}

bool
sim_name_known(const struct config *cfg, const char *name)
{
    int i;

    for (i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i]->name, name) == 0)
            return true;
    for (i = 0; i < cfg->nservers; i++)
        if (name_covers(name, &cfg->servers[i], NULL))
            return true;
    return false;
}

/* ---- the simulated servers ---- */

/* Is this a call the proxy made on its own (not part of the request run)? */
static bool
is_background(const struct sim *sim, const struct call *c)
{
    return c->creq != sim->creq;
}

/* Is the call (or one of its ancestors) a shadow node's copy? */
static bool
is_shadow_copy(const struct call *c)
{
    for (; c->parent != NULL; c = c->parent)
        if (c->parent->node->type == ROUTE_SHADOW && c->index == 1)
            return true;
    return false;
}

static int
pool_index(const struct config *cfg, const struct pool *pool)
{
    int i;

    for (i = 0; i < cfg->npools; i++)
        if (cfg->pools[i] == pool)
            return i;
    return -1;
}

static void
sim_submit(void *arg, const struct server *srv, struct call *c)
{
    struct sim *sim = arg;
    struct sim_result *res = sim->res;
    struct sim_step *st;

    if (sim->nqueue == SIM_QUEUE_MAX || res->nsteps == SIM_STEPS_MAX) {
        res->truncated = true;
        call_fail(&sim->rt.rq, c, FAIL_NOMEM);
        return;
    }
    st = &res->steps[res->nsteps++];
    st->outcome = SIM_ANSWERED;
    st->passed_on = false;
    st->server = srv->id;
    st->pool = pool_index(sim->cfg, c->node->pool);
    st->cmd = c->creq->req.cmd;
    st->copy = is_shadow_copy(c);
    st->background = is_background(sim, c);
    memcpy(st->key, c->key, c->klen);
    st->key[c->klen] = '\0';
    sim->queue[sim->nqueue++] = c;
}

/* Is srv assumed down: named in the down list, or marked in down_ids? */
static bool
assumed_down(const struct sim *sim, const struct server *srv)
{
    const struct sim_conditions *cond = sim->cond;

    return cond != NULL && ((cond->down_ids != NULL && cond->down_ids[srv->id])
                            || server_listed(sim->cfg, cond->down, cond->ndown, srv));
}

static bool
sim_is_down(void *arg, const struct server *srv)
{
    /* eject and balance skip a server assumed down (not one only slow) */
    return assumed_down(arg, srv);
}

/* The reply a server gives cmd, with the key present or not. */
static enum reply_kind
reply_for(enum cmd cmd, bool present, const char **line)
{
    switch (cmd) {
    case CMD_GET: case CMD_GAT:
        *line = present ? " 0 1\r\nx\r\n" : NULL;
        return present ? REPLY_VALUE : REPLY_END;
    case CMD_GETS: case CMD_GATS:
        *line = present ? " 0 1 1\r\nx\r\n" : NULL;
        return present ? REPLY_VALUE : REPLY_END;
    case CMD_SET: case CMD_ADD:
        *line = "STORED\r\n";
        return REPLY_STORED;
    case CMD_REPLACE: case CMD_APPEND: case CMD_PREPEND:
        *line = present ? "STORED\r\n" : "NOT_STORED\r\n";
        return present ? REPLY_STORED : REPLY_NOT_STORED;
    case CMD_CAS:
        *line = present ? "STORED\r\n" : "NOT_FOUND\r\n";
        return present ? REPLY_STORED : REPLY_NOT_FOUND;
    case CMD_DELETE:
        *line = present ? "DELETED\r\n" : "NOT_FOUND\r\n";
        return present ? REPLY_DELETED : REPLY_NOT_FOUND;
    case CMD_INCR: case CMD_DECR:
        *line = present ? "2\r\n" : "NOT_FOUND\r\n";
        return present ? REPLY_NUMBER : REPLY_NOT_FOUND;
    case CMD_TOUCH:
        *line = present ? "TOUCHED\r\n" : "NOT_FOUND\r\n";
        return present ? REPLY_TOUCHED : REPLY_NOT_FOUND;
    case CMD_MG: case CMD_ME:
        *line = present ? "HD\r\n" : "EN\r\n";
        return present ? REPLY_META_HD : REPLY_META_EN;
    case CMD_MS:
        *line = "HD\r\n";
        return REPLY_META_HD;
    default:            /* md, ma */
        *line = present ? "HD\r\n" : "NF\r\n";
        return present ? REPLY_META_HD : REPLY_META_NF;
    }
}

/* Hits and stores, all route counters' requests: what moved in the tree. */
static uint64_t
requests_routed(const struct sim *sim)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < sim->cfg->nnodes; i++)
        n += sim->wc.routes[i]->stats.requests;
    return n;
}

/* Answer the call of step st as the conditions say. */
static void
sim_answer(struct sim *sim, struct call *c, struct sim_step *st)
{
    const struct sim_conditions *cond = sim->cond;
    const struct server *srv = &sim->cfg->servers[st->server];
    const struct pool *pool = c->node->pool;
    struct request_cache *rq = &sim->rt.rq;
    bool present = true;
    const char *line;
    enum reply_kind kind;
    uint64_t before;

    if (assumed_down(sim, srv)) {
        st->outcome = SIM_DOWN;
        call_fail(rq, c, FAIL_UNAVAILABLE);
        return;
    }
    if (cond != NULL && server_listed(sim->cfg, cond->timeout, cond->ntimeout, srv)) {
        st->outcome = SIM_TIMED_OUT;
        call_fail(rq, c, FAIL_TIMEOUT);
        return;
    }
    if (cond != NULL && listed(cond->miss, cond->nmiss, srv, pool))
        present = false;
    kind = reply_for(st->cmd, present, &line);
    st->outcome = present ? SIM_ANSWERED : SIM_MISSED;
    c->res.kind = kind;
    c->res.fail = FAIL_NONE;
    if (line != NULL && !c->creq->req.noreply) {
        struct buf *b = buf_get(&rq->bufs);

        if (b != NULL)
            buf_append_str(b, line);
        if (b == NULL || buf_failed(b)) {
            buf_put(&rq->bufs, b);
            call_fail(rq, c, FAIL_NOMEM);
            return;
        }
        result_set_buf(&c->res, b);
    }
    /* A miss that makes the tree route anew was passed on (failover with
     * miss = true, warmup's cold): the answer comes from elsewhere. */
    before = present ? 0 : requests_routed(sim);
    call_finish(rq, c);
    if (!present && requests_routed(sim) > before)
        st->passed_on = true;
}

/*
 * lg.balance by random or least_outstanding picks by chance or load: the
 * engine took one child, but any other could answer the same request. Its
 * other children that are pools not assumed down count as taking it too.
 * (A child that is not itself a pool is left to the child the run took.)
 */
static void
balance_chances(struct sim *sim, struct sim_result *out)
{
    const struct sim_conditions *cond = sim->cond;
    int i, j, k;

    for (i = 0; i < sim->cfg->nnodes; i++) {
        const struct route *r = sim->cfg->nodes[i];

        if (r->type != ROUTE_BALANCE || r->balance_by == BALANCE_KEY
            || sim->wc.routes[i]->stats.requests == 0)
            continue;
        for (j = 0; j < r->nchildren; j++) {
            const struct pool *p = r->children[j]->pool;
            bool live = false;

            if (r->children[j]->type != ROUTE_POOL || out->nchance == SIM_STEPS_MAX)
                continue;
            for (k = 0; k < p->nservers && !live; k++) {
                const struct server *srv = &sim->cfg->servers[p->server_ids[k]];

                live = cond == NULL
                       || (!server_listed(sim->cfg, cond->down, cond->ndown, srv)
                           && !server_listed(sim->cfg, cond->timeout, cond->ntimeout, srv));
            }
            if (live)
                out->chance[out->nchance++] = pool_index(sim->cfg, p);
        }
    }
}

void
sim_node_detail(const struct route *r, char *out, size_t len)
{
    static const char *const balance_by[] = {
        [BALANCE_RANDOM] = " (by random: any child)",
        [BALANCE_KEY]    = " (by key: the key's child)",
        [BALANCE_LEAST]  = " (by least_outstanding: any child)",
    };
    char ttl[32];
    int n = 0;

    out[0] = '\0';
    switch (r->type) {
    case ROUTE_BALANCE:
        snprintf(out, len, "%s", balance_by[r->balance_by]);
        return;
    case ROUTE_COALESCE:
        snprintf(out, len, " (get and gets coalesced; any other command closes the key's gets in flight)");
        return;
    case ROUTE_TTL:
        ttl_describe(r->ttl_rule, ttl, sizeof(ttl));
        snprintf(out, len, " (%s)", ttl);
        return;
    case ROUTE_NEARCACHE:
        snprintf(out, len, " (ttl %u ms, hot_qps %g, per worker at most %u items and %llu bytes)",
                 r->nc_ttl_ms, r->nc_hot_qps, r->nc_max_items, (unsigned long long)r->nc_max_bytes);
        return;
    case ROUTE_RATELIMIT:
        snprintf(out, len, " (%g/s, burst %u, %s, %s)", r->rate_per_s, r->rate_burst,
                 r->rate_shared ? "global" : "worker", r->rate_pass ? "pass" : "error");
        return;
    case ROUTE_FAILOVER:
    case ROUTE_ALL_FASTEST:
        if (r->wait_ms > 0)
            n = snprintf(out, len, " (wait %d ms", r->wait_ms);
        if (r->gutter_ttl != 0)
            n += snprintf(out + n, len - (size_t)n, "%sgutter_ttl %d s", n ? ", " : " (",
                          r->gutter_ttl);
        if (n > 0)
            snprintf(out + n, len - (size_t)n, ")");
        return;
    default:
        return;
    }
}

/* ---- a simulation ---- */

struct sim *
sim_new(struct config *cfg, int vm)
{
    struct sim *sim = calloc(1, sizeof(*sim));
    int i;

    if (sim == NULL)
        return NULL;
    sim->cfg = cfg;
    sim->ops = (struct backend_sim){ sim_submit, sim_is_down, sim };
    sim->rt.rq.nthreads = 1;
    sim->rt.rq.max_memory = UINT64_MAX;
    sim->rt.rq.client_max_memory = UINT64_MAX;
    sim->rt.rq.memory_over_all = never_over;
    sim->rt.vm = vm;
    sim->rt.simulated = true;
    sim->rt.current = &sim->wc;
    sim->rt.dcache = dcache_new(0);
    sim->wc.config = cfg;
    sim->wc.backends = calloc((size_t)cfg->nservers + 1, sizeof(*sim->wc.backends));
    sim->wc.routes = calloc((size_t)cfg->nnodes + 1, sizeof(*sim->wc.routes));
    sim->timers = timers_new(NULL);
    /* The pools count reads into a sketch; a simulation's is its own and
     * barely samples, so tests and previews never touch a worker's. */
    sim->rt.hotkeys = hotkeys_new(16, 1000000, 0);
    if (sim->rt.hotkeys == NULL || sim->rt.dcache == NULL || sim->wc.backends == NULL || sim->wc.routes == NULL
        || sim->timers == NULL || route_hedges_init(&sim->rt, sim->timers) < 0
        || route_counters_bind(&sim->rt, cfg, sim->wc.routes) < 0) {
        free(sim->wc.routes);
        sim->wc.routes = NULL;
        sim_free(sim);
        return NULL;
    }
    for (i = 0; i < cfg->nservers; i++) {
        sim->wc.backends[i] = backend_new_simulated(&cfg->servers[i], &sim->ops);
        if (sim->wc.backends[i] == NULL) {
            sim_free(sim);
            return NULL;
        }
    }
    return sim;
}

void
sim_free(struct sim *sim)
{
    int i;

    if (sim == NULL)
        return;
    if (sim->wc.backends != NULL)
        for (i = 0; i < sim->cfg->nservers; i++)
            backend_free(sim->wc.backends[i]);
    if (sim->wc.routes != NULL)
        route_counters_release(&sim->rt, sim->wc.routes, sim->cfg->nnodes);
    free(sim->rt.counters);
    free(sim->wc.backends);
    free(sim->wc.routes);
    dcache_free(sim->rt.dcache);
    request_cache_trim(&sim->rt.rq);
    request_cache_trim(&sim->rt.rq);    /* the second frees what the first kept */
    hedge_queue_free(&sim->rt.hedges);
    coalesce_table_free(&sim->rt.coalesce);     /* a test's coalesce node made it */
    hotkeys_free(sim->rt.hotkeys);
    timers_free(sim->timers);
    free(sim);
}

/*
 * A meta key a text line cannot carry (a space, a control byte: its client
 * sent it in base64) goes in base64 with the "b" flag, as the client's did.
 */
static bool
key_needs_base64(enum cmd cmd, const char *key, uint32_t klen)
{
    uint32_t i;

    if (cmd < CMD_MG || cmd > CMD_ME || klen > KEY_MAX)
        return false;
    for (i = 0; i < klen && key_byte_ok((unsigned char)key[i]); i++)
        ;
    return i < klen;
}

/* A whole request for cmd and key, as a client would send it. */
static int
request_text(struct buf *b, enum cmd cmd, const char *key, uint32_t klen)
{
    const char *name = proto_cmd_name(cmd);
    bool b64 = key_needs_base64(cmd, key, klen);

    buf_append_str(b, name);
    if (cmd == CMD_GAT || cmd == CMD_GATS)
        buf_append_str(b, " 0");
    buf_append(b, " ", 1);
    if (b64) {
        char text[BASE64_ENCODED_LEN(KEY_MAX) + 1];

        buf_append(b, text, base64_encode((const unsigned char *)key, klen, text));
    } else {
        buf_append(b, key, klen);
    }
    switch (cmd) {
    case CMD_SET: case CMD_ADD: case CMD_REPLACE: case CMD_APPEND: case CMD_PREPEND:
        buf_append_str(b, " 0 0 1\r\nx");
        break;
    case CMD_CAS:
        buf_append_str(b, " 0 0 1 1\r\nx");
        break;
    case CMD_MS:
        buf_append_str(b, b64 ? " 1 b\r\nx" : " 1\r\nx");
        break;
    case CMD_INCR: case CMD_DECR:
        buf_append_str(b, " 1");
        break;
    case CMD_TOUCH:
        buf_append_str(b, " 0");
        break;
    default:
        if (b64)
            buf_append_str(b, " b");
        break;
    }
    buf_append(b, "\r\n", 2);
    return buf_failed(b) ? -1 : 0;
}

/* Append len bytes to the reply text, as far as it has room. */
static size_t
reply_add(struct sim_result *out, size_t at, const char *s, size_t len)
{
    size_t room = sizeof(out->reply) - 1 - at;

    if (len > room)
        len = room;
    memcpy(out->reply + at, s, len);
    out->reply[at + len] = '\0';
    return at + len;
}

/*
 * The request's call ended: what the client would read first. (Built with
 * plain copies: the live preview runs this for every key.)
 */
static void
sim_done(struct request_cache *rq, struct call *c)
{
    struct sim *sim = (struct sim *)((char *)route_ctx_of(rq) - offsetof(struct sim, rt));
    struct sim_result *out = sim->res;
    const struct result *res = &c->res;
    const char *line;
    size_t n;

    route_count_result(c);
    if (res->fail != FAIL_NONE) {
        line = fail_reason_line(res->fail);
        reply_add(out, 0, line, strlen(line));
    } else if (res->kind == REPLY_VALUE) {
        n = reply_add(out, 0, "VALUE ", 6);
        n = reply_add(out, n, c->creq->slots[0].key, c->creq->slots[0].klen);
        reply_add(out, n, " (a hit)", 8);
    } else if (res->kind == REPLY_END) {
        reply_add(out, 0, "END (a miss)", 12);
    } else if (res->data != NULL) {
        const char *eol = memchr(res->bytes, '\r', res->len);

        reply_add(out, 0, res->bytes, eol != NULL ? (size_t)(eol - res->bytes) : res->len);
    }
}

/* Answer queued calls until none is left. */
static void
sim_drain(struct sim *sim)
{
    /* Queue and steps grow together: call i is step i. Answering one may
     * queue more (a failover's next child). */
    while (sim->next < sim->nqueue) {
        int i = sim->next++;

        sim_answer(sim, sim->queue[i], &sim->res->steps[i]);
    }
}

/*
 * The client the request comes from, for lg.by_client and hooks: none (as
 * the proxy's own requests) unless the conditions name its listener or CN.
 */
static void
sim_client(struct sim *sim, struct creq *r, const struct sim_conditions *cond)
{
    if (cond == NULL || (cond->listener == NULL && cond->cn == NULL))
        return;
    memset(&sim->client, 0, sizeof(sim->client));
    sim->client.listener = cond->listener != NULL ? cond->listener : LISTEN_NAME_TCP;
    sim->client.is_unix = strcmp(sim->client.listener, LISTEN_NAME_UNIX) == 0;
    sim->client.cn = (char *)cond->cn;      /* never freed: the client is not real */
    sim->client.cn_known = true;
    r->owner = &sim->client;
}

int
sim_run(struct sim *sim, enum cmd cmd, const char *key, uint32_t klen,
        const struct sim_conditions *cond, struct sim_result *out, char *err, size_t errlen)
{
    struct request_cache *rq = &sim->rt.rq;
    struct creq *r = creq_alloc(rq);
    uint64_t hook_errors = rq->stats.hook_errors;
    struct proto_error perr;
    struct call *c;
    int i;

    /* Each step is filled when a call reaches its server: only the
     * header is cleared (the preview runs this for every key). */
    out->nsteps = 0;
    out->truncated = out->error_node = out->hook_failed = false;
    out->nchance = 0;
    out->reply[0] = '\0';
    if (r == NULL || (r->buf = buf_get(&rq->bufs)) == NULL
        || buf_reserve(r->buf, 64 + 2 * (size_t)klen) < 0
        || request_text(r->buf, cmd, key, klen) < 0) {
        snprintf(err, errlen, "out of memory");
        if (r != NULL)
            creq_release(rq, r);
        return -1;
    }
    if (proto_parse(r->buf->data, r->buf->len, UINT32_MAX, &r->req, &perr) != PROTO_OK
        || r->req.nkeys != 1 || proto_cmd_op(r->req.cmd) == OP_PROXY) {
        snprintf(err, errlen, "not a keyed request line");
        creq_release(rq, r);
        return -1;
    }
    creq_bind(r, &sim->wc);
    creq_slots(r, 1);
    creq_key_slot(r);
    for (i = 0; i < sim->cfg->nnodes; i++)
        memset(&sim->wc.routes[i]->stats, 0, sizeof(sim->wc.routes[i]->stats));
    sim_client(sim, r, cond);
    sim->cond = cond;
    sim->res = out;
    sim->creq = r;
    sim->nqueue = sim->next = 0;
    c = call_new(rq, r, sim->cfg->root, 0, sim_done);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        creq_release(rq, r);
        return -1;
    }
    route_start(&sim->rt, c);
    sim_drain(sim);
    for (i = 0; i < sim->cfg->nnodes; i++)
        if (sim->cfg->nodes[i]->type == ROUTE_ERROR && sim->wc.routes[i]->stats.requests > 0)
            out->error_node = true;
    out->hook_failed = rq->stats.hook_errors != hook_errors;
    balance_chances(sim, out);
    creq_release(rq, r);
    sim->cond = NULL;
    sim->res = NULL;
    sim->creq = NULL;
    return 0;
}

/* ---- what the run says ---- */

bool
sim_step_took(const struct sim_step *st)
{
    if (st->copy || st->background || st->passed_on)
        return false;
    return st->outcome == SIM_ANSWERED || st->outcome == SIM_MISSED;
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
sim_name_add(const char **names, int n, int max, const char *name)
{
    int i;

    for (i = 0; i < n && strcmp(names[i], name) != 0; i++)
        ;
    if (i == n && n < max)
        names[n++] = name;
    return n;
}

void
sim_names_text(const char **names, int n, char *out, size_t outlen)
{
    size_t len = 0;
    int i;

    qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
    len += (size_t)snprintf(out, outlen, "{");
    for (i = 0; i < n && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "", names[i]);
    if (len < outlen)
        snprintf(out + len, outlen - len, "}");
}

void
sim_answered_by(const struct sim *sim, const struct sim_result *res, char *out, size_t outlen)
{
    const char *names[SIM_STEPS_MAX + 1];
    int n = 0, i;

    for (i = 0; i < res->nsteps; i++)
        if (sim_step_took(&res->steps[i]) && res->steps[i].pool >= 0)
            n = sim_name_add(names, n, SIM_STEPS_MAX, sim->cfg->pools[res->steps[i].pool]->name);
    for (i = 0; i < res->nchance; i++)
        n = sim_name_add(names, n, SIM_STEPS_MAX, sim->cfg->pools[res->chance[i]]->name);
    if (res->error_node)
        n = sim_name_add(names, n, SIM_STEPS_MAX + 1, "error");
    sim_names_text(names, n, out, outlen);
}

bool
sim_same_labels(const char **a, int na, const char **b, int nb)
{
    int i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static int
id_add(int *ids, int n, int max, int id)
{
    int i;

    for (i = 0; i < n && ids[i] != id; i++)
        ;
    if (i == n && n < max)
        ids[n++] = id;
    return n;
}

int
sim_servers(const struct sim *sim, const struct sim_result *res, int *ids, int max)
{
    const char *key = NULL;
    int n = 0, i;

    for (i = 0; i < res->nsteps; i++) {
        if (!sim_step_took(&res->steps[i]))
            continue;
        n = id_add(ids, n, max, res->steps[i].server);
        if (key == NULL)
            key = res->steps[i].key;
    }
    /* a balance's other children, placing the key the chosen one saw */
    for (i = 0; key != NULL && i < res->nchance; i++)
        n = id_add(ids, n, max, pool_server_for_key(sim->cfg->pools[res->chance[i]], key,
                                                    strlen(key)));
    return n;
}

/* ---- --route ---- */

static const char *
outcome_text(const struct sim_step *st)
{
    if (st->background)
        return " [the proxy's own copy]";
    if (st->copy)
        return st->outcome == SIM_DOWN ? " [shadow copy; down]"
             : st->outcome == SIM_TIMED_OUT ? " [shadow copy; timeout]" : " [shadow copy]";
    switch (st->outcome) {
    case SIM_DOWN:      return " [down: backend unavailable]";
    case SIM_TIMED_OUT: return " [timeout]";
    case SIM_MISSED:    return st->passed_on ? " [miss: passed on]" : " [miss]";
    default:            return "";
    }
}

bool
sim_visited(const struct sim *sim, const struct route *r)
{
    return r != NULL && sim->wc.routes[r->id]->stats.requests > 0;
}

/*
 * What one --route explanation prints to, and the nodes it has listed: the
 * visit marks are per node, not per path, so a node reached through two
 * parents is listed in full under the first and referred to under the others.
 */
struct explain {
    const struct sim        *sim;
    const struct sim_result *res;
    FILE                    *out;
    bool                    *shown;     /* by route id */
};

static void explain_node(struct explain *ex, const struct route *r, int depth);

#define CHILDREN_MAX    (CMD_COUNT + OP_COUNT + 256)

static int
add_child(const struct route **list, int n, const struct route *r)
{
    int i;

    for (i = 0; i < n && list[i] != r; i++)
        ;
    if (r != NULL && i == n && n < CHILDREN_MAX)
        list[n++] = r;
    return n;
}

/* The children of r the request went through, each once, in the tree's order. */
static void
explain_children(struct explain *ex, const struct route *r, int depth)
{
    const struct route *list[CHILDREN_MAX], *child;
    int n = 0, at = 0, i;

    while ((child = config_route_next_child(r, &at)) != NULL)
        n = add_child(list, n, child);
    for (i = 0; i < n; i++)
        explain_node(ex, list[i], depth);
}

static void
explain_node(struct explain *ex, const struct route *r, int depth)
{
    const struct sim *sim = ex->sim;
    int i;

    if (!sim_visited(sim, r) || depth > ROUTE_HOPS_MAX)
        return;
    if (ex->shown[r->id]) {
        fprintf(ex->out, "%*s%s%s (shown above)\n", 2 * depth, "",
                r->type == ROUTE_POOL ? "pool " : "", r->name);
        return;
    }
    ex->shown[r->id] = true;
    if (r->type != ROUTE_POOL) {
        char detail[128];

        sim_node_detail(r, detail, sizeof(detail));
        fprintf(ex->out, "%*s%s%s\n", 2 * depth, "", r->name, detail);
        explain_children(ex, r, depth + 1);
        return;
    }
    /* Every call the request made to the pool, whichever parent made it. */
    for (i = 0; i < ex->res->nsteps; i++) {
        const struct sim_step *st = &ex->res->steps[i];

        if (st->pool < 0 || sim->cfg->pools[st->pool] != r->pool)
            continue;
        fprintf(ex->out, "%*spool %s -> server %s (%skey \"%s\")%s\n", 2 * depth, "",
                r->pool->name, sim->cfg->servers[st->server].label,
                st->background ? "add, " : "", st->key, outcome_text(st));
    }
}

void
sim_explain(const struct sim *sim, const struct sim_result *res, FILE *out)
{
    bool plain = !res->truncated && !res->hook_failed;
    char names[512];
    int i;
    struct explain ex = { .sim = sim, .res = res, .out = out,
                          .shown = calloc((size_t)sim->cfg->nnodes, sizeof(bool)) };

    if (ex.shown == NULL) {
        fprintf(out, "  (out of memory: the route is not shown)\n");
    } else {
        explain_node(&ex, sim->cfg->root, 1);
        free(ex.shown);
    }
    if (res->truncated)
        fprintf(out, "  (more server calls than %d: the rest are not shown)\n", SIM_STEPS_MAX);
    if (res->hook_failed)
        fprintf(out, "  a hook failed (see the log line above)\n");
    for (i = 0; i < res->nsteps; i++)
        plain = plain && res->steps[i].outcome == SIM_ANSWERED && !res->steps[i].background;
    /* The reply is worth a line when something did not simply work. */
    if (!plain || strncmp(res->reply, "SERVER_ERROR", 12) == 0
        || strncmp(res->reply, "CLIENT_ERROR", 12) == 0)
        fprintf(out, "client gets: %s\n", res->reply);
    sim_answered_by(sim, res, names, sizeof(names));
    fprintf(out, "answered by: %s\n", names);
}
