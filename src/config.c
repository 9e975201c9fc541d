/*
 * config.c: configuration generations.
 *
 * Builds the servers, pools and route tree a generation routes by. Server
 * addresses are resolved here, once, so the request path never calls the
 * resolver. Servers are shared by pools: two pools naming the same
 * host:port use one server (and so one set of connections per worker).
 */
#include "config.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luagent.h"
#include "route.h"
#include "settings.h"

static int
resolve(struct server *srv, char *err, size_t errlen)
{
    struct addrinfo hints, *res;
    char port[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", srv->port);
    rc = getaddrinfo(srv->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "server %s: %s", srv->label, gai_strerror(rc));
        return -1;
    }
    memcpy(&srv->addr, res->ai_addr, res->ai_addrlen);
    srv->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The id of host:port in config, adding the server when it is new. */
static int
server_intern(struct config *cfg, const struct server_spec *spec,
              char *err, size_t errlen)
{
    struct server *grown, *srv;
    int i;

    for (i = 0; i < cfg->nservers; i++)
        if (cfg->servers[i].port == spec->port && strcmp(cfg->servers[i].host, spec->host) == 0)
            return i;
    grown = realloc(cfg->servers, sizeof(*grown) * (size_t)(cfg->nservers + 1));
    if (grown == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cfg->servers = grown;
    srv = &cfg->servers[cfg->nservers];
    memset(srv, 0, sizeof(*srv));
    srv->id = cfg->nservers;
    srv->host = strdup(spec->host);
    srv->port = spec->port;
    srv->label = malloc(strlen(spec->host) + 16);
    if (srv->host == NULL || srv->label == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sprintf(srv->label, "%s:%d", spec->host, spec->port);
    srv->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    srv->failure_limit = DEFAULT_FAILURE_LIMIT;
    srv->retry_after_ms = DEFAULT_RETRY_AFTER_MS;
    srv->max_idle = DEFAULT_MAX_IDLE;
    cfg->nservers++;
    if (resolve(srv, err, errlen) < 0)
        return -1;
    return srv->id;
}

static int
config_add_node(struct config *cfg, struct route *r)
{
    struct route **grown = realloc(cfg->nodes, sizeof(*grown) * (size_t)(cfg->nnodes + 1));

    if (grown == NULL)
        return -1;
    cfg->nodes = grown;
    r->id = cfg->nnodes;
    cfg->nodes[cfg->nnodes++] = r;
    return 0;
}

static struct route *
config_node(struct config *cfg, enum route_type type, const char *name)
{
    struct route *r = route_new(type, name);

    if (r != NULL && config_add_node(cfg, r) < 0) {
        route_free(r);
        return NULL;
    }
    return r;
}

static struct route *
pool_route(struct config *cfg, const char *name, const struct server_spec *specs,
           int n, enum dist dist, int max_idle, char *err, size_t errlen)
{
    struct ring_server ring_servers[n];
    struct pool *pool, **grown;
    struct route *r;
    int i;

    pool = calloc(1, sizeof(*pool));
    grown = realloc(cfg->pools, sizeof(*grown) * (size_t)(cfg->npools + 1));
    if (pool == NULL || grown == NULL) {
        free(pool);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cfg->pools = grown;
    cfg->pools[cfg->npools++] = pool;
    pool->name = strdup(name);
    pool->hash = (dist == DIST_KETAMA) ? HASH_MD5 : HASH_DJB;
    pool->timeout_ms = DEFAULT_TIMEOUT_MS;
    pool->nservers = n;
    pool->server_ids = calloc((size_t)n, sizeof(int));
    if (pool->name == NULL || pool->server_ids == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        int id = server_intern(cfg, &specs[i], err, errlen);

        if (id < 0)
            return NULL;
        cfg->servers[id].max_idle = max_idle;
        pool->server_ids[i] = id;
        ring_servers[i].host = specs[i].host;
        ring_servers[i].port = specs[i].port;
        ring_servers[i].weight = specs[i].weight;
        ring_servers[i].name = specs[i].name;
    }
    pool->ring = ring_build(dist, ring_servers, n, err, errlen);
    if (pool->ring == NULL)
        return NULL;
    r = config_node(cfg, ROUTE_POOL, name);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->pool = pool;
    return r;
}

static int
set_children(struct route *r, struct route *a, struct route *b)
{
    r->children = calloc(2, sizeof(*r->children));
    if (r->children == NULL)
        return -1;
    r->children[0] = a;
    r->children[1] = b;
    r->nchildren = 2;
    return 0;
}

/* magent's -b: reads fail over to backup (also on a miss), writes reach both. */
static struct route *
backup_route(struct config *cfg, struct route *main_pool, struct route *backup)
{
    struct route *by_op = config_node(cfg, ROUTE_BY_OP, "by_op");
    struct route *reads = config_node(cfg, ROUTE_FAILOVER, "failover");
    struct route *writes = config_node(cfg, ROUTE_ALL_INITIAL, "all_initial");

    if (by_op == NULL || reads == NULL || writes == NULL
        || set_children(reads, main_pool, backup) < 0
        || set_children(writes, main_pool, backup) < 0)
        return NULL;
    reads->on_error = reads->on_timeout = reads->on_miss = true;
    by_op->by_op[OP_READ] = reads;
    by_op->by_op_default = writes;
    return by_op;
}

struct config *
config_from_settings(const struct settings *s, char *err, size_t errlen)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    enum dist dist = s->ketama ? DIST_KETAMA : DIST_MODULA;
    struct route *main_pool, *backup;

    if (cfg == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cfg->generation = 1;
    main_pool = pool_route(cfg, "main", s->servers, s->nservers, dist, s->max_idle,
                           err, errlen);
    if (main_pool == NULL)
        goto fail;
    cfg->root = main_pool;
    if (s->nbackups > 0) {
        backup = pool_route(cfg, "backup", s->backups, s->nbackups, dist, s->max_idle,
                            err, errlen);
        if (backup == NULL)
            goto fail;
        cfg->root = backup_route(cfg, main_pool, backup);
        if (cfg->root == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

int
pool_server_for_key(const struct pool *pool, const char *key, size_t len)
{
    if (pool->nservers == 1)
        return pool->server_ids[0];
    if (pool->hash_tag[0] != '\0')
        hash_tag_apply(pool->hash_tag, &key, &len);
    return pool->server_ids[ring_lookup(pool->ring, hash_key(pool->hash, key, len))];
}

void
config_free(struct config *cfg)
{
    int i;

    if (cfg == NULL)
        return;
    for (i = 0; i < cfg->nnodes; i++)
        route_free(cfg->nodes[i]);
    for (i = 0; i < cfg->npools; i++) {
        struct pool *p = cfg->pools[i];

        if (p == NULL)
            continue;
        ring_free(p->ring);
        free(p->server_ids);
        free(p->name);
        free(p);
    }
    for (i = 0; i < cfg->nservers; i++) {
        free(cfg->servers[i].host);
        free(cfg->servers[i].label);
    }
    free(cfg->nodes);
    free(cfg->pools);
    free(cfg->servers);
    free(cfg);
}
