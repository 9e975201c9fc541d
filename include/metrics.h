/*
 * metrics.h: the Prometheus endpoint (--metrics ADDR:PORT).
 *
 * An HTTP server (libevent's evhttp) on the main thread's event base answers
 * GET /metrics with every counter of `stats` in Prometheus' text format
 * 0.0.4, and GET / with the status page (statuspage.h); any other path gets
 * 404. It reads the workers' counters the way
 * `stats` does (relaxed atomic loads), so a scrape never holds a worker up.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

struct event_base;

#define METRICS_HOST_MAX 256

/*
 * Split "ADDR:PORT" (or "[IPv6]:PORT") into host and port. Returns 0, or -1
 * with a one-line reason in err.
 */
int metrics_parse_addr(const char *text, char *host, size_t hostlen, int *port,
                       char *err, size_t errlen);

/* Resolve and bind the address (before daemonizing). 0, or -1 with err. */
int metrics_bind(const char *addr, char *err, size_t errlen);

/* Serve on base with the socket metrics_bind made. 0, or -1 with err. */
int metrics_start(struct event_base *base, char *err, size_t errlen);

/*
 * What answers GET /route (routelive.c, which sits beside this module; set
 * before serving): append the JSON body for the URL-decoded query, return
 * the HTTP status.
 */
struct buf;
typedef int metrics_route_fn(struct buf *out, const char *cmd, const char *key,
                             const char *listener, const char *cn);
void metrics_set_route(metrics_route_fn *fn);

/* Stop serving and close the socket (nothing when not started). */
void metrics_stop(void);

#endif
