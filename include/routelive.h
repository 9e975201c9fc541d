/*
 * routelive.h: live route introspection: where a request would go now.
 *
 * `stats route CMD KEY` on the memcached port (STAT lines) and
 * GET /route?cmd=CMD&key=KEY on the --metrics port (JSON) walk the request
 * through the serving generation's route tree (script_route_live, the walk
 * self-tests and --route use) under the servers marked down at this moment,
 * and name the route nodes it passes, the pool and server that answer, and
 * the live state words: "down", "failover" (and, per node type, more).
 * Nothing is sent to any server.
 */
#ifndef ROUTELIVE_H
#define ROUTELIVE_H

#include <stddef.h>

struct buf;
struct config;
struct creq;

/*
 * `stats route CMD KEY` (args: what follows "stats ", starting "route"), in
 * a worker: cfg is its generation, vm its Lua VM, listener and cn the asking
 * client's. Appends STAT lines and END, or a CLIENT_ERROR / SERVER_ERROR line.
 */
void routelive_stats(struct buf *out, const struct config *cfg, int vm, const char *args,
                     size_t len, const char *listener, const char *cn);

/*
 * For the request log (reqlog_where_fn): where r's first key is routed now,
 * in a worker (vm its Lua VM). Each of route, pool and server gets len bytes;
 * they are left as they are when the walk cannot be made.
 */
void routelive_where(const struct config *cfg, int vm, const struct creq *r,
                     const char *listener, const char *cn, char *route, char *pool,
                     char *server, size_t len);

/*
 * GET /route on the main thread (no hook can run there). The query's cmd
 * and key are URL-decoded already; listener and cn are optional (NULL).
 * Appends a JSON object; returns the HTTP status (200, 400, 409 when the
 * route passes a hook, 500).
 */
int routelive_json(struct buf *out, const char *cmd, const char *key, const char *listener,
                   const char *cn);

#endif
