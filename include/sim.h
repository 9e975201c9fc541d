/*
 * sim.h: one request run through the route engine (route.h) against
 * simulated servers: the self-tests, `--route`, `--diff --keys`, the live
 * preview and live introspection (stats route) ask the engine that serves traffic where a key goes, instead of a
 * second walker that could drift from it.
 *
 * A simulation has its own route state and its own view of a generation
 * whose server connections are simulated (backend_new_simulated). A call that
 * reaches a server waits in the simulation's queue; the queue is answered in
 * order from the assumed conditions (servers or pools down or timing out,
 * pools where the key is missing); otherwise a read hits and a write is
 * stored. Every call that reached a server is recorded, with what it got, so
 * the caller sees the whole path: the failover tried, the miss passed on, the
 * shadow copy, the warm-up's copy into cold.
 */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "luagent.h"
#include "proto.h"

struct config;
struct route;
struct sim;

#define SIM_NAMES_MAX   16      /* names in one condition list */
#define SIM_STEPS_MAX   32      /* server calls recorded per request */

/* What is assumed of the servers. A name is a pool's, "host:port" or "host". */
struct sim_conditions {
    const char *down[SIM_NAMES_MAX];      /* refuse connections (backend unavailable) */
    int         ndown;
    const char *timeout[SIM_NAMES_MAX];   /* never answer (backend timeout) */
    int         ntimeout;
    const char *miss[SIM_NAMES_MAX];      /* do not hold the key */
    int         nmiss;
    const char *listener;                 /* the client came in through this listener
                                           * (NULL: "tcp", the -p port's) */
    const char *cn;                       /* its certificate's common name (NULL: none) */
    const bool *down_ids;                 /* by config server id: also down (the
                                           * servers marked down now), or NULL */
};

enum sim_outcome {
    SIM_ANSWERED,       /* a hit, stored, deleted...: the server did the work */
    SIM_MISSED,         /* the key was not there (END, NOT_FOUND, EN, NF) */
    SIM_DOWN,           /* failed: backend unavailable */
    SIM_TIMED_OUT       /* failed: backend timeout */
};

/* One call that reached a server. */
struct sim_step {
    int               server;       /* config server id */
    int               pool;         /* index in config->pools */
    enum cmd          cmd;
    enum sim_outcome  outcome;
    bool              passed_on;    /* a miss the route moved past (failover, warmup) */
    bool              copy;         /* a shadow's copy: its reply is never used */
    bool              background;   /* the proxy's own request (warm-up's add) */
    char              key[KEY_MAX + 1];     /* as the server saw it */
};

struct sim_result {
    struct sim_step steps[SIM_STEPS_MAX];
    int             nsteps;
    bool            truncated;          /* more steps than SIM_STEPS_MAX */
    bool            error_node;         /* an lg.error node (or by_op's "no route") answered */
    bool            hook_failed;        /* a hook raised an error */
    int             chance[SIM_STEPS_MAX]; /* pools a balance by chance could have
                                         * picked as well (by config->pools index) */
    int             nchance;
    char            reply[128];         /* the first line the client would read */
};

/* A simulation over cfg, running hooks in VM number vm; NULL out of memory. */
struct sim *sim_new(struct config *cfg, int vm);
void sim_free(struct sim *sim);

/*
 * Run one keyed request through the engine: cmd with key (a test line's two
 * words), under cond (NULL: every server up, every key present). Returns 0,
 * or -1 with a reason in err (the request could not be formed).
 */
int sim_run(struct sim *sim, enum cmd cmd, const char *key, uint32_t klen,
            const struct sim_conditions *cond, struct sim_result *out,
            char *err, size_t errlen);

/*
 * The pools that took the request: those of its steps that were answered, or
 * missed without being passed on, leaving out shadow copies and background
 * requests; "error" when an error node answered. Sorted, no duplicates, as
 * "{a,b}". This is what a self-test's expected names are compared with.
 */
void sim_answered_by(const struct sim *sim, const struct sim_result *res, char *out,
                     size_t outlen);

/* Add name to names[0..n) unless there (or full); the new count. */
int sim_name_add(const char **names, int n, int max, const char *name);

/* names[0..n) sorted, as "{a,b}" (the form of test results). */
void sim_names_text(const char **names, int n, char *out, size_t outlen);

/*
 * The server ids of the steps that took the request (as sim_answered_by
 * counts them, with a balance's chances), in order, without duplicates;
 * returns how many (at most max).
 */
int sim_servers(const struct sim *sim, const struct sim_result *res, int *ids, int max);

/* Are two sorted lists of server labels the same? */
bool sim_same_labels(const char **a, int na, const char **b, int nb);

/* --route: the nodes the request passed, as a tree, each server call and its outcome. */
void sim_explain(const struct sim *sim, const struct sim_result *res, FILE *out);

/* Did the last run pass route node r? */
bool sim_visited(const struct sim *sim, const struct route *r);

/* Did this step take the request (as sim_answered_by counts it)? */
bool sim_step_took(const struct sim_step *st);

/* What --check and --route add to a node's type name into out ("" for most). */
void sim_node_detail(const struct route *r, char *out, size_t len);

/* Does a condition name (pool, "host:port" or "host") match a pool or server of cfg? */
bool sim_name_known(const struct config *cfg, const char *name);

#endif
