/*
 * config.h: a configuration generation: the servers, pools and route tree
 * that requests are routed by.
 *
 * A config is immutable once built and shared by every worker; per-worker
 * state (connections, health) lives in struct backend, found by server id.
 * The route nodes are data here; route.c runs requests through them. The Lua
 * side of a policy (script.c, which builds configs) is reached only through
 * the script_ops it sets.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hash.h"
#include "ketama.h"
#include "proto.h"
#include "ratelimit.h"

struct hook_request;
struct settings;
struct route;
struct tls_client;
struct script_state;

struct server {
    int         id;                 /* index in config->servers */
    char       *host;
    int         port;
    char       *label;              /* "host:port", the name in logs and stats */
    struct sockaddr_storage addr;   /* resolved at build time */
    socklen_t   addrlen;
    /* Health parameters, from the first pool that names the server. */
    bool        configured;         /* set by that first pool */
    int         connect_timeout_ms;
    int         failure_limit;
    int         retry_after_ms;
    int         retry_max_ms;       /* mark-downs double up to this, and a
                                     * server up this long starts over */
    bool        rejoin_flush;       /* rejoin = "flush": flush_all first... */
    int         rejoin_after_ms;    /* ...after a run of failures this long */
    int         max_idle;
    struct tls_client *tls;         /* the first pool's tls table, or NULL: plain TCP */
};

struct pool {
    char           *name;
    struct ring    *ring;
    enum hash_kind  hash;
    char            hash_tag[3];    /* "" or two characters, e.g. "{}" */
    char           *seed;           /* NULL, or the salt mixed into key hashes */
    uint32_t        seed_hash;      /* hash_seed_of(seed) */
    bool            key_steps;      /* a hash tag or a seed: pool_key_hash's
                                     * slower path (one test for both) */
    int             nservers;
    int            *server_ids;     /* ring index -> config server id */
    int             timeout_ms;     /* request timeout */
    bool            eject;          /* keys of a down server move to the next live one */
    struct tls_client *tls;         /* owned: the pool's tls table, or NULL */
};

enum route_type {
    ROUTE_POOL,         /* hash the key onto one server of a pool */
    ROUTE_PREFIX,       /* pick a child by longest key prefix */
    ROUTE_BY_OP,        /* pick a child by operation class or command */
    ROUTE_FAILOVER,     /* try children in order on error/timeout (and miss) */
    ROUTE_ALL_SYNC,     /* send to all; answer with the worst reply */
    ROUTE_ALL_INITIAL,  /* send to all; answer with the first child's reply */
    ROUTE_ALL_FASTEST,  /* send to all; answer with the first good reply */
    ROUTE_ALL_ASYNC,    /* send to all; answer at once as if it succeeded */
    ROUTE_REWRITE,      /* change the key, then go on to the child */
    ROUTE_SHADOW,       /* main child answers; a copy goes to the shadow */
    ROUTE_WARMUP,       /* read cold, on a miss read warm and copy into cold */
    ROUTE_ERROR,        /* answer SERVER_ERROR <msg> */
    ROUTE_HOOK,         /* a Lua function picks the child */
    ROUTE_BY_CLIENT,    /* pick a child by the client's listener or certificate CN */
    ROUTE_BALANCE,      /* one child per request: random, by key, least busy */
    ROUTE_COALESCE,     /* identical gets in flight go to the child once */
    ROUTE_TTL,          /* rewrite the exptime of what passes, then go on to the child */
    ROUTE_RATELIMIT,    /* a token bucket in front of the child */
    ROUTE_PREVIEW,      /* not a policy's: a worker's live preview (route.h), put in
                         * front of the root while a candidate policy is previewed */
    ROUTE_NEARCACHE,    /* answer hot gets from this worker's copy; else the child */
    ROUTE_TYPE_COUNT
};

struct prefix_entry {
    char          *prefix;
    uint32_t       len;
    struct route  *route;
};

/* by_client: one entry, a listener name or (cn) a certificate's common name. */
struct client_entry {
    char          *name;
    bool           cn;
    struct route  *route;
};

enum balance_by {
    BALANCE_RANDOM,     /* any live child, at random */
    BALANCE_KEY,        /* the key's child (rendezvous hash), a live one */
    BALANCE_LEAST       /* the live child with the fewest calls in flight */
};

#define BALANCE_CHILDREN_MAX 64     /* a bit mask holds the children tried */

/* How metrics name hot keys (settings.hotkeys_metrics): privacy first. */
enum hotkeys_export {
    HOTKEYS_EXPORT_OFF,         /* no hot-key metrics (default) */
    HOTKEYS_EXPORT_HASH,        /* the key's hash in hex */
    HOTKEYS_EXPORT_TRUNCATE     /* the key's first bytes */
};

enum hook_cache {
    HOOK_CACHE_NONE,
    HOOK_CACHE_PREFIX,      /* one decision per key prefix */
    HOOK_CACHE_PREFIX_OP    /* one decision per key prefix and operation */
};

struct route {
    enum route_type  type;
    int              id;
    char            *name;              /* pool name or type name */
    struct route   **children;          /* failover/all_*: in order; rewrite: to;
                                         * shadow: main, shadow; warmup: cold, warm;
                                         * hook: the routes it may return;
                                         * coalesce: to */
    int              nchildren;
    struct route    *by_cmd[CMD_COUNT]; /* by_op: a command's route, else... */
    struct route    *by_op[OP_COUNT];   /* ...its class's route, else default */
    struct route    *default_route;     /* by_op, prefix, by_client: when nothing matches */
    struct client_entry *clients;       /* by_client: CN entries first, then listeners */
    int              nclients;
    struct prefix_entry *prefixes;      /* prefix: longest first */
    int              nprefixes;
    struct pool     *pool;              /* pool */
    char            *error_line;        /* error: "SERVER_ERROR <msg>\r\n" */
    char            *strip, *add;       /* rewrite: prefix removed / added */
    uint32_t         strip_len, add_len;
    uint32_t         fraction;          /* shadow: share of keys, of 2^32 - 1 */
    enum op          shadow_op;         /* shadow: OP_COUNT = all, else read/write */
    int              exptime;           /* warmup: for the copy into cold */
    bool             delete_warm;       /* warmup: deletes reach warm too */
    bool             reply_first;       /* all_sync: first child's reply */
    int              max_tries;         /* failover: children tried at most */
    int              hook_index;        /* hook: its function in each VM */
    enum hook_cache  hook_cache;
    char             delim;             /* hook cache: prefix delimiter */
    /* nearcache: */
    uint32_t         nc_ttl_ms;         /* a copy is served at most this long */
    uint32_t         nc_max_items;      /* per worker */
    uint64_t         nc_max_bytes;      /* per worker */
    double           nc_hot_qps;        /* reads a second that make a key hot */
    /* failover: */
    bool             on_error;          /* connection refused/reset/closed */
    bool             on_timeout;
    bool             on_server_error;   /* SERVER_ERROR from the server */
    bool             on_miss;           /* reads: a miss moves on */
    bool             failover_writes;   /* false: writes go to the first child only */
    int32_t          gutter_ttl;        /* failover: exptime rule (ttl.h) for calls
                                         * sent past the first child; 0: none */
    int32_t          ttl_rule;          /* ttl: the exptime rule (ttl.h) */
    int              wait_ms;           /* failover, all_fastest: a read not answered
                                         * in this long also goes to the next child */
    /* ratelimit: */
    struct rate_limit rate;             /* the bucket's parameters */
    double           rate_per_s;        /* as the policy gave them (descriptions) */
    unsigned         rate_burst;
    bool             rate_pass;         /* over = "pass": count, do not refuse */
    _Atomic uint64_t *rate_shared;      /* scope = "global": the bucket all workers
                                         * take from (owned); NULL: one per worker */
    enum balance_by  balance_by;        /* balance: how the child is chosen */
};

/* How many children a failover node tries at most. */
static inline int
route_failover_tries(const struct route *r)
{
    return r->max_tries > 0 && r->max_tries < r->nchildren ? r->max_tries : r->nchildren;
}

/* The ring index and hash of a key (the hash tag applied). */
uint32_t pool_key_hash(const struct pool *pool, const char *key, size_t len);

struct config {
    unsigned        generation;
    struct server  *servers;
    int             nservers;
    struct pool   **pools;
    int             npools;
    struct route   *root;
    struct route  **nodes;          /* every route node, by id */
    int             nnodes;
    int             nhooks;         /* lg.hook nodes (0: no Lua per request) */
    int             nnearcaches;    /* lg.nearcache nodes (0: no write stamps) */
    uint32_t        item_max;       /* largest value accepted */
    uint64_t        max_memory;     /* buffer bytes of all workers: past it, new
                                     * requests get SERVER_ERROR out of memory */
    uint64_t        client_max_memory; /* bytes one client's requests may hold */
    unsigned        decision_cache_size; /* hook decisions kept per worker */
    int             log_level;      /* settings.log_level (enum log_level), or -1 */
    uint64_t        log_slow_ns;    /* settings.log_slow_ms in ns: slower requests are
                                     * logged; 0: off */
    uint32_t        log_sample;     /* settings.log_sample as a share of 2^32 - 1; 0: off */
    bool            reqlog;         /* either of the two is on: requests may be timed */
    struct route   *fallback;       /* route for failed hooks, or NULL */
    char           *source;         /* policy file, or "(built-in default)" */
    uint32_t        checksum;       /* FNV-1a of the policy file's bytes */
    int64_t         load_time;      /* unix seconds when it was loaded */
    double          max_remap;      /* settings.max_remap: the largest share of a
                                     * pool's keys a reload may move; < 0: any */
    int             resolve_every_s; /* settings.resolve_every_s: server names
                                     * asked again this often; 0: never */
    char            resolver[64];   /* settings.resolver "ip:port", "": resolv.conf */
    bool            discover_pending; /* a server name has no answer yet: this
                                     * config is for checking, never served */
    unsigned        hotkeys_sample; /* settings.hotkeys_sample: one read in N counted */
    enum hotkeys_export hotkeys_metrics; /* settings.hotkeys_metrics */
    unsigned        hotkeys_metrics_top;  /* keys exported as metrics */
    unsigned        hotkeys_metrics_key_bytes; /* "truncate": bytes of the key shown */
    int             refs;           /* workers still using it (atomic) */
    struct script_state *script;    /* the Lua side (VMs), owned by script.c */
    const struct script_ops *script_ops; /* set by script.c with script, or NULL */
};

/* What the route engine and config_free ask of the Lua side (script.c). */
struct script_ops {
    /* Call hook node `hook` in VM number vm (script_hook_call); sets req->reads. */
    int  (*hook_call)(struct config *cfg, int vm, const struct route *hook,
                      struct hook_request *req, const struct route **route,
                      const char **newkey, uint32_t *newklen);
    /* Let go of cfg->script (its VMs). */
    void (*free)(struct config *cfg);
};

/* An empty config (generation set), to be filled by the policy compiler. */
struct config *config_new(unsigned generation);

/*
 * The id of host:port in the config, adding the server when it is new. An IP
 * literal gets its address here; a DNS name is left with addrlen 0 for the
 * caller to fill (script.c, from discover.c's answers: no lookup blocks a
 * load). Returns -1 with a message in err.
 */
int config_server(struct config *cfg, const char *host, int port, char *err, size_t errlen);

/* Register a pool / a route node with the config (which then owns it). */
int config_add_pool(struct config *cfg, struct pool *pool);
int config_add_node(struct config *cfg, struct route *r);

/* The pool of that name, or NULL. */
struct pool *config_pool(const struct config *cfg, const char *name);

/*
 * The children of route r one by one, for code that walks the tree: start
 * with *at = 0; each call gives the next child slot that is set, in the
 * tree's order (prefixes, by_client entries, by_cmd, by_op, children,
 * default), or NULL when none is left. A child named in two slots comes
 * twice.
 */
const struct route *config_route_next_child(const struct route *r, int *at);

/*
 * by_client node r: the child for a client that came through listener
 * (NULL: none) with certificate CN cn (NULL: none). A CN entry wins over
 * the listener's; with neither, the default.
 */
const struct route *config_by_client(const struct route *r, const char *listener,
                                     const char *cn);

/*
 * The server id a key maps to in a pool. Inline: the route engine's pool step
 * takes it for every key, and whether the compiler inlines an out-of-line
 * copy moves with every caller added elsewhere.
 */
static inline int
pool_server_for_key(const struct pool *pool, const char *key, size_t len)
{
    if (pool->nservers == 1)
        return pool->server_ids[0];
    return pool->server_ids[ring_lookup(pool->ring, pool_key_hash(pool, key, len))];
}

/* A route node of this type; the config owns it once added (config_add_node). */
struct route *config_route_new(enum route_type type, const char *name);
void config_route_free(struct route *r);

void config_free(struct config *config);

#endif
