/*
 * script.h: the Lua policy bridge (the only module that includes LuaJIT).
 *
 * A policy script builds a route tree out of lg.* objects; script_load runs it
 * in a fresh VM (memory cap, JIT off, instruction cap), compiles the tree
 * into C route nodes, runs the policy's self-tests and returns a config. Only
 * lg.hook nodes call back into Lua at request time, each worker in its own VM.
 */
#ifndef SCRIPT_H
#define SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto.h"

struct config;
struct sim_conditions;
struct route;
struct settings;

#define SCRIPT_MEM_LIMIT    (64u * 1024 * 1024)     /* bytes per load VM */
#define SCRIPT_INSTR_LIMIT  10000000L               /* VM instructions per load */

/*
 * Load a policy (path NULL: the built-in default policy, fed by -s/-b/-k)
 * and compile it into a config for nworkers workers. Returns NULL with
 * "<file>:<line>: <why>" in err.
 */
struct config *script_load(const char *path, const struct settings *s, int nworkers,
                           char *err, size_t errlen);

/*
 * --route: run "cmd key" through the route engine against simulated servers
 * under cond (NULL: all up, every key present; see sim.h) and print the
 * nodes it passed, each server call and its outcome, and the pools that took
 * it. Returns 0, or -1 with a reason in err.
 */
int script_explain(struct config *config, const char *line, const struct sim_conditions *cond,
                   FILE *out, char *err, size_t errlen);

/*
 * The servers a request reaches on its answering path, as --route shows it:
 * line is "cmd key", or a bare key (taken as "get key"). Fills ids with
 * config server ids in the order reached (at most max) and returns their
 * number, or -1 with a reason in err.
 */
int script_reach_servers(struct config *config, const char *line, int *ids, int max,
                         char *err, size_t errlen);

/* ---- live route introspection (stats route, GET /route) ---- */

#define ROUTE_LIVE_MAX  16      /* nodes and servers a walk records */

/* A route node the request passes, with its live state. */
struct route_live_step {
    const struct route *node;
    char        state[32];      /* "", "failover" (the primary is down: the request
                                 * moves on) or "tokens N" (a global rate limit's
                                 * bucket now) */
};

/* A server the request is sent to. */
struct route_live_target {
    const struct pool *pool;
    int         server;         /* config server id */
    bool        down;           /* marked down now (in any worker) */
    bool        answers;        /* false: passed over by a failover in effect */
};

struct route_live {
    struct route_live_step   steps[ROUTE_LIVE_MAX];
    int                      nsteps;
    struct route_live_target targets[ROUTE_LIVE_MAX];
    int                      ntargets;
};

enum route_live_result {
    ROUTE_LIVE_OK,
    ROUTE_LIVE_BAD,         /* not a keyed command, or not a key: err says why */
    ROUTE_LIVE_NO_VM,       /* the route passes a hook and vm is -1 */
    ROUTE_LIVE_FAILED       /* a hook failed: err says why */
};

/*
 * Walk "cmd key" (key: any 1-KEY_MAX bytes, as a meta key in base64 decodes
 * to; callers taking keys from users check them) through cfg's tree as the
 * engine would route it now: down
 * (by config server id) says which servers are marked down; vm is the
 * calling worker's Lua VM for hooks, or -1 (no hook can run: outside a
 * worker); listener and cn are the client's (NULL: "tcp", none). Nothing is
 * sent anywhere. The request runs through the route engine against simulated
 * servers (sim.h), as self-tests and --route do, with the servers marked down
 * now assumed down.
 */
enum route_live_result script_route_live(struct config *cfg, int vm, const char *cmd,
                                         size_t cmdlen, const char *key, size_t klen,
                                         const char *listener, const char *cn,
                                         const bool *down, struct route_live *out,
                                         char *err, size_t errlen);

/* FNV-1a of a policy file's bytes (NULL: the built-in policy), 0 if unreadable. */
uint32_t script_checksum(const char *path);

/* Describe a config's pools and routes (for --check). */
void script_describe(const struct config *config, FILE *out);

#endif
