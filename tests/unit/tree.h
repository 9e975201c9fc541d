/*
 * tree.h: route trees built by hand for the unit tests of the route engine
 * (test_route.c) and of the simulation over it (test_sim.c): nodes and
 * one-server pools added to a config, as the policy compiler would add them.
 */
#ifndef TREE_H
#define TREE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unit.h"

/* A node of this type with nchildren children (from ap), added to cfg. */
static struct route *
tree_node_v(struct config *cfg, enum route_type type, const char *name, int nchildren,
            va_list ap)
{
    struct route *r = config_route_new(type, name);
    int i;

    r->nchildren = nchildren;
    r->children = calloc((size_t)nchildren + 1, sizeof(*r->children));
    for (i = 0; i < nchildren; i++)
        r->children[i] = va_arg(ap, struct route *);
    CHECK_EQ(config_add_node(cfg, r), 0);
    return r;
}

/* A pool of one server, named after it ("s0"...: counters go by name). */
static struct route *
tree_pool(struct config *cfg, int server)
{
    struct pool *p = calloc(1, sizeof(*p));
    char name[16];
    struct route *r;

    snprintf(name, sizeof(name), "s%d", server);
    p->name = strdup(name);
    p->nservers = 1;
    p->server_ids = malloc(sizeof(int));
    p->server_ids[0] = server;
    p->timeout_ms = 1000;
    CHECK_EQ(config_add_pool(cfg, p), 0);
    r = config_route_new(ROUTE_POOL, name);
    r->pool = p;
    CHECK_EQ(config_add_node(cfg, r), 0);
    return r;
}

#endif
