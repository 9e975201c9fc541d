/*
 * config.c: configuration generations: the servers, pools and route nodes a
 * policy compiles into.
 *
 * IP-literal server addresses are set here; DNS names are resolved by
 * discover.c on the main loop, so neither the request path nor a load waits
 * on the resolver. Servers are shared by pools: two pools naming the same
 * host:port use one server (and so one set of connections per worker).
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luagent.h"
#include "tls.h"

struct config *
config_new(unsigned generation)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->generation = generation;
    cfg->item_max = ITEM_MAX_DEFAULT;
    cfg->max_memory = MAX_MEMORY_DEFAULT;
    cfg->client_max_memory = (uint64_t)CLIENT_MEMORY_ITEMS * ITEM_MAX_DEFAULT;
    cfg->decision_cache_size = 4096;
    cfg->log_level = -1;
    cfg->max_remap = -1;
    cfg->resolve_every_s = RESOLVE_EVERY_S_DEFAULT;
    cfg->hotkeys_sample = HOTKEYS_SAMPLE_DEFAULT;
    cfg->hotkeys_metrics_top = 10;
    cfg->hotkeys_metrics_key_bytes = 16;
    return cfg;
}

/* An IP literal's address; a name keeps addrlen 0 (see config_server). */
static void
server_literal_addr(struct server *srv)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&srv->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&srv->addr;

    if (inet_pton(AF_INET, srv->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)srv->port);
        srv->addrlen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, srv->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)srv->port);
        srv->addrlen = sizeof(*v6);
    }
}

int
config_server(struct config *cfg, const char *host, int port, char *err, size_t errlen)
{
    struct server *grown, *srv;
    int i;

    for (i = 0; i < cfg->nservers; i++)
        if (cfg->servers[i].port == port && strcmp(cfg->servers[i].host, host) == 0)
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
    srv->host = strdup(host);
    srv->port = port;
    srv->label = malloc(strlen(host) + 16);
    cfg->nservers++;
    if (srv->host == NULL || srv->label == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sprintf(srv->label, "%s:%d", host, port);
    srv->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    srv->failure_limit = DEFAULT_FAILURE_LIMIT;
    srv->retry_after_ms = DEFAULT_RETRY_AFTER_MS;
    srv->max_idle = DEFAULT_MAX_IDLE;
    server_literal_addr(srv);
    return srv->id;
}

int
config_add_pool(struct config *cfg, struct pool *pool)
{
    struct pool **grown = realloc(cfg->pools, sizeof(*grown) * (size_t)(cfg->npools + 1));

    if (grown == NULL)
        return -1;
    cfg->pools = grown;
    cfg->pools[cfg->npools++] = pool;
    return 0;
}

int
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

struct pool *
config_pool(const struct config *cfg, const char *name)
{
    int i;

    for (i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i]->name, name) == 0)
            return cfg->pools[i];
    return NULL;
}

/* A hash tag or a seed: kept out of line, so that the common path stays
 * small enough to be inlined where keys are placed. */
static uint32_t __attribute__((noinline))
pool_key_hash_steps(const struct pool *pool, const char *key, size_t len)
{
    uint32_t h;

    if (pool->hash_tag[0] != '\0')
        hash_tag_apply(pool->hash_tag, &key, &len);
    h = hash_key(pool->hash, key, len);
    return pool->seed != NULL ? hash_seeded(h, pool->seed_hash) : h;
}

uint32_t
pool_key_hash(const struct pool *pool, const char *key, size_t len)
{
    if (pool->key_steps)
        return pool_key_hash_steps(pool, key, len);
    return hash_key(pool->hash, key, len);     /* the common pool: no tag, no seed */
}

const struct route *
config_route_next_child(const struct route *r, int *at)
{
    for (;;) {
        int i = (*at)++;
        const struct route *child;

        if (i < r->nprefixes)
            child = r->prefixes[i].route;
        else if ((i -= r->nprefixes) < r->nclients)
            child = r->clients[i].route;
        else if ((i -= r->nclients) < CMD_COUNT)
            child = r->by_cmd[i];
        else if ((i -= CMD_COUNT) < OP_COUNT)
            child = r->by_op[i];
        else if ((i -= OP_COUNT) < r->nchildren)
            child = r->children[i];
        else if (i == r->nchildren)
            child = r->default_route;
        else
            return NULL;
        if (child != NULL)
            return child;
    }
}

const struct route *
config_by_client(const struct route *r, const char *listener, const char *cn)
{
    int i;

    for (i = 0; i < r->nclients; i++) {
        const struct client_entry *e = &r->clients[i];
        const char *have = e->cn ? cn : listener;

        if (have != NULL && strcmp(have, e->name) == 0)
            return e->route;
    }
    return r->default_route;
}

struct route *
config_route_new(enum route_type type, const char *name)
{
    struct route *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->type = type;
    r->name = strdup(name);
    if (r->name == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void
config_route_free(struct route *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->children);
    free(r->error_line);
    free(r->strip);
    free(r->add);
    for (int i = 0; i < r->nprefixes; i++)
        free(r->prefixes[i].prefix);
    free(r->prefixes);
    for (int i = 0; i < r->nclients; i++)
        free(r->clients[i].name);
    free(r->clients);
    free((void *)r->rate_shared);
    free(r);
}

void
config_free(struct config *cfg)
{
    int i;

    if (cfg == NULL)
        return;
    if (cfg->script_ops != NULL)
        cfg->script_ops->free(cfg);
    for (i = 0; i < cfg->nnodes; i++)
        config_route_free(cfg->nodes[i]);
    for (i = 0; i < cfg->npools; i++) {
        struct pool *p = cfg->pools[i];

        ring_free(p->ring);
        tls_client_free(p->tls);
        free(p->server_ids);
        free(p->name);
        free(p->seed);
        free(p);
    }
    for (i = 0; i < cfg->nservers; i++) {
        free(cfg->servers[i].host);
        free(cfg->servers[i].label);
    }
    free(cfg->nodes);
    free(cfg->pools);
    free(cfg->servers);
    free(cfg->source);
    free(cfg);
}
