/*
 * test_sim.c: unit tests for sim.c: requests run through the route engine
 * (route.c) against simulated servers (backend_new_simulated), with servers
 * assumed down, timing out or missing the key. Trees are built by hand, as
 * test_route.c builds them; no Lua, no sockets.
 */
#include "sim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "route.h"
#include "tree.h"
#include "unit.h"

#define SERVERS 3

static struct config *cfg;
static struct sim *sim_keep;        /* the last run's simulation */

static void
env_begin(void)
{
    char err[128];
    int i;

    cfg = config_new(1);
    for (i = 0; i < SERVERS; i++)
        CHECK_EQ(config_server(cfg, "127.0.0.1", 20000 + i, err, sizeof(err)), i);
}

static struct route *
node(enum route_type type, int nchildren, ...)
{
    struct route *r;
    va_list ap;

    va_start(ap, nchildren);
    r = tree_node_v(cfg, type, type == ROUTE_ERROR ? "error" : "node", nchildren, ap);
    va_end(ap);
    return r;
}

static struct route *
pool(int server)
{
    return tree_pool(cfg, server);
}

static struct route *
failover(struct route *a, struct route *b)
{
    struct route *f = node(ROUTE_FAILOVER, 2, a, b);

    f->on_error = f->on_timeout = true;
    return f;
}

/* Run "cmd key" from root under cond; the answering pools as text. */
static void
run(struct route *root, enum cmd cmd, const struct sim_conditions *cond,
    struct sim_result *res, char *names, size_t len)
{
    char err[128];

    cfg->root = root;
    sim_free(sim_keep);
    sim_keep = sim_new(cfg, 0);
    CHECK(sim_keep != NULL);
    CHECK_EQ(sim_run(sim_keep, cmd, "k", 1, cond, res, err, sizeof(err)), 0);
    sim_answered_by(sim_keep, res, names, len);
}

/* The simulation goes before the config it reads. */
static void
env_end(void)
{
    sim_free(sim_keep);
    sim_keep = NULL;
    config_free(cfg);
}

static void
test_failover_down_and_timeout(void)
{
    struct sim_conditions cond = { .down = { "s0" }, .ndown = 1 };
    struct sim_result res;
    char names[64];

    env_begin();
    run(failover(pool(0), pool(1)), CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{s1}");
    CHECK_EQ(res.nsteps, 2);
    CHECK_EQ(res.steps[0].outcome, SIM_DOWN);
    CHECK_EQ(res.steps[0].server, 0);
    CHECK_EQ(res.steps[1].outcome, SIM_ANSWERED);
    CHECK_STR(res.reply, "VALUE k (a hit)");
    env_end();

    /* a timeout at both: nothing took it, the client gets the last failure */
    env_begin();
    cond = (struct sim_conditions){ .timeout = { "127.0.0.1" }, .ntimeout = 1 };
    run(failover(pool(0), pool(1)), CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{}");
    CHECK_EQ(res.steps[1].outcome, SIM_TIMED_OUT);
    CHECK_STR(res.reply, "SERVER_ERROR backend timeout");
    env_end();
}

static void
test_miss_passed_on(void)
{
    struct sim_conditions cond = { .miss = { "s0" }, .nmiss = 1 };
    struct sim_result res;
    struct route *f;
    char names[64];

    env_begin();
    f = failover(pool(0), pool(1));
    f->on_miss = true;
    run(f, CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{s1}");
    CHECK(res.steps[0].outcome == SIM_MISSED && res.steps[0].passed_on);
    env_end();

    /* without miss = true the miss is the answer */
    env_begin();
    run(failover(pool(0), pool(1)), CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{s0}");
    CHECK(res.steps[0].outcome == SIM_MISSED && !res.steps[0].passed_on);
    CHECK_EQ(res.nsteps, 1);
    CHECK_STR(res.reply, "END (a miss)");
    env_end();
}

static void
test_warmup_copies_into_cold(void)
{
    struct sim_conditions cond = { .miss = { "s1" }, .nmiss = 1 };
    struct sim_result res;
    struct route *w;
    char names[64];

    env_begin();
    w = node(ROUTE_WARMUP, 2, pool(1), pool(0));   /* cold s1, warm s0 */
    w->exptime = 60;
    run(w, CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{s0}");
    CHECK_EQ(res.nsteps, 3);
    CHECK(res.steps[0].server == 1 && res.steps[0].passed_on);
    CHECK(res.steps[1].server == 0 && res.steps[1].outcome == SIM_ANSWERED);
    /* the hit in warm is added into cold by the proxy itself */
    CHECK(res.steps[2].server == 1 && res.steps[2].background);
    CHECK_EQ(res.steps[2].cmd, CMD_ADD);
    CHECK_STR(res.steps[2].key, "k");
    env_end();
}

static void
test_shadow_copy_and_fanout(void)
{
    struct sim_conditions cond = { .down = { "127.0.0.1:20001" }, .ndown = 1 };
    struct sim_result res;
    struct route *s;
    char names[64];
    int ids[4];

    env_begin();
    s = node(ROUTE_SHADOW, 2, pool(0), pool(1));
    s->fraction = UINT32_MAX;
    s->shadow_op = OP_COUNT;
    run(s, CMD_GET, NULL, &res, names, sizeof(names));
    CHECK_STR(names, "{s0}");
    CHECK_EQ(res.nsteps, 2);
    CHECK(!res.steps[0].copy && res.steps[1].copy);
    CHECK_EQ(sim_servers(sim_keep, &res, ids, 4), 1);
    CHECK_EQ(ids[0], 0);
    env_end();

    /* all_sync: the live child takes it, the worst reply is the answer */
    env_begin();
    run(node(ROUTE_ALL_SYNC, 2, pool(0), pool(1)), CMD_SET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{s0}");
    CHECK_STR(res.reply, "SERVER_ERROR backend unavailable");
    env_end();
}

static void
test_error_node(void)
{
    struct sim_conditions cond = { .down = { "s0" }, .ndown = 1 };
    struct sim_result res;
    struct route *e;
    char names[64];

    env_begin();
    e = node(ROUTE_ERROR, 0);
    e->error_line = strdup("SERVER_ERROR gone\r\n");
    run(failover(pool(0), e), CMD_GET, &cond, &res, names, sizeof(names));
    CHECK_STR(names, "{error}");
    CHECK(res.error_node);
    CHECK_STR(res.reply, "SERVER_ERROR gone");
    env_end();
}

static void
test_names(void)
{
    env_begin();
    pool(0);
    CHECK(sim_name_known(cfg, "s0"));
    CHECK(sim_name_known(cfg, "127.0.0.1:20002"));
    CHECK(sim_name_known(cfg, "127.0.0.1"));
    CHECK(!sim_name_known(cfg, "127.0.0.2"));
    CHECK(!sim_name_known(cfg, "127.0.0.1:2000"));
    CHECK(!sim_name_known(cfg, "s9"));
    env_end();
}

int
main(void)
{
    test_failover_down_and_timeout();
    test_miss_passed_on();
    test_warmup_copies_into_cold();
    test_shadow_copy_and_fanout();
    test_error_node();
    test_names();
    return UNIT_DONE();
}
