/*
 * config.h: a configuration generation: the servers, pools and route tree
 * that requests are routed by.
 *
 * A config is immutable once built and shared by every worker; per-worker
 * state (connections, health) lives in struct backend, found by server id.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hash.h"
#include "ketama.h"

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
    int         max_idle;
    struct tls_client *tls;         /* the first pool's tls table, or NULL: plain TCP */
};

struct pool {
    char           *name;
    struct ring    *ring;
    enum hash_kind  hash;
    char            hash_tag[3];    /* "" or two characters, e.g. "{}" */
    int             nservers;
    int            *server_ids;     /* ring index -> config server id */
    int             timeout_ms;     /* request timeout */
    bool            eject;          /* keys of a down server move to the next live one */
    struct tls_client *tls;         /* owned: the pool's tls table, or NULL */
};

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
    uint32_t        item_max;       /* largest value accepted */
    uint64_t        max_memory;     /* buffer bytes of all workers: past it, new
                                     * requests get SERVER_ERROR out of memory */
    uint64_t        client_max_memory; /* bytes one client's requests may hold */
    unsigned        decision_cache_size; /* hook decisions kept per worker */
    int             log_level;      /* settings.log_level (enum log_level), or -1 */
    struct route   *fallback;       /* route for failed hooks, or NULL */
    char           *source;         /* policy file, or "(built-in default)" */
    uint32_t        checksum;       /* FNV-1a of the policy file's bytes */
    int64_t         load_time;      /* unix seconds: when the policy was loaded */
    int             refs;           /* workers still using it (atomic) */
    struct script_state *script;    /* the Lua side (VMs), owned by script.c */
};

/* An empty config (generation set), to be filled by the policy compiler. */
struct config *config_new(unsigned generation);

/*
 * The id of host:port in the config, adding (and resolving) the server when
 * it is new. Returns -1 with a message in err.
 */
int config_server(struct config *cfg, const char *host, int port, char *err, size_t errlen);

/* Register a pool / a route node with the config (which then owns it). */
int config_add_pool(struct config *cfg, struct pool *pool);
int config_add_node(struct config *cfg, struct route *r);

/* The pool of that name, or NULL. */
struct pool *config_pool(const struct config *cfg, const char *name);

/* The server id a key maps to in a pool. */
int pool_server_for_key(const struct pool *pool, const char *key, size_t len);

void config_free(struct config *config);

#endif
