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

struct server {
    int         id;                 /* index in config->servers */
    char       *host;
    int         port;
    char       *label;              /* "host:port", the name in logs and stats */
    struct sockaddr_storage addr;   /* resolved at build time */
    socklen_t   addrlen;
    /* Health parameters, from the first pool that names the server. */
    int         connect_timeout_ms;
    int         failure_limit;
    int         retry_after_ms;
    int         max_idle;
};

struct pool {
    char           *name;
    struct ring    *ring;
    enum hash_kind  hash;
    char            hash_tag[3];    /* "" or two characters, e.g. "{}" */
    int             nservers;
    int            *server_ids;     /* ring index -> config server id */
    int             timeout_ms;     /* request timeout */
};

struct config {
    unsigned        generation;
    struct server  *servers;
    int             nservers;
    struct pool   **pools;
    int             npools;
    struct route   *root;
    struct route  **nodes;          /* every route node, for freeing */
    int             nnodes;
};

/*
 * Build the magent-style config from the command line: one pool "main" over
 * -s (ketama with -k, else modula), and with -b a "backup" pool: writes go to
 * both (main's reply answers), reads fail over to backup on error, timeout or
 * miss. Returns NULL with a message in err.
 */
struct config *config_from_settings(const struct settings *s, char *err, size_t errlen);

/* The server id a key maps to in a pool. */
int pool_server_for_key(const struct pool *pool, const char *key, size_t len);

void config_free(struct config *config);

#endif
