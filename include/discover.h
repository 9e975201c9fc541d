/*
 * discover.h: server names resolved through DNS, and kept resolved.
 *
 * A policy's servers may be DNS names ("cache1.example:11211": one server
 * whose address is looked up) or SRV names ("srv:_memcache._tcp.example":
 * one server per SRV record). Names are resolved on the main thread's event
 * loop, never on the request path and never with a blocking call: A/AAAA
 * through libevent's evdns, SRV with our own UDP question (dnsmsg.c), since
 * evdns has no SRV query. The answers are cached here; the policy compiler
 * (script.c) reads the cache, and a name it does not find yet is marked
 * wanted and the config it built is "pending" (struct config.discover_pending):
 * it is never served. The caller resolves the wanted names, then loads again.
 *
 * While serving, every name in use is asked again every resolve_every_s
 * seconds. A changed answer calls the change callback, which reloads the
 * policy as SIGHUP does (a new generation, the same guard); a failed answer
 * keeps the last good one.
 *
 * Main thread only.
 */
#ifndef DISCOVER_H
#define DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;

#define DISCOVER_SRV_PREFIX     "srv:"
#define DISCOVER_TIMEOUT_S      2       /* one DNS question's wait (evdns's too) */
#define DISCOVER_ATTEMPTS       2       /* questions sent before a name fails */
#define DISCOVER_TARGETS_MAX    64      /* SRV records read from one answer */
#define DISCOVER_SETTLE_S       10      /* start-up's wait for the first answers */

enum discover_state {
    DISCOVER_PENDING,       /* asked for, no answer yet: the config waits */
    DISCOVER_OK,            /* answered (the last good answer) */
    DISCOVER_FAILED         /* never answered: the config fails to load */
};

struct discover_target {
    char *host;             /* an SRV record's target (a name or an IP literal) */
    int   port;
};

/* A load begins that should ask again the names that never answered. */
void discover_retry_failed(void);

/* A policy compile begins: the names it looks up are the ones in use. */
void discover_compile_begin(void);

/*
 * The address of host name `name` with port set to `port`. PENDING leaves
 * addr alone; FAILED fills err with why.
 */
enum discover_state discover_host(const char *name, int port, struct sockaddr_storage *addr,
                                  socklen_t *addrlen, char *err, size_t errlen);

/* The servers of SRV name `name`, sorted; valid until the next event-loop pass. */
enum discover_state discover_srv(const char *name, const struct discover_target **targets,
                                 int *ntargets, char *err, size_t errlen);

/*
 * Before serving: resolve every wanted name on a private event loop, through
 * `resolver` ("ip:port"; NULL or "" = /etc/resolv.conf), waiting at most
 * timeout_s. 0, or -1 with the reason in err (no resolver could be set up).
 * A name that got no answer is then FAILED, and the next load says so.
 */
int discover_settle(const char *resolver, int timeout_s, char *err, size_t errlen);

/* While serving: the loop to resolve on, and what to call when an answer changes. */
typedef void (*discover_change_fn)(void *arg);
void discover_start(struct event_base *base, discover_change_fn on_change, void *arg);

/*
 * A config (its settings.resolver and settings.resolve_every_s) is serving:
 * forget the names the last compile did not look up, and ask the others
 * again every every_s seconds (0: never). -1 with err when the resolver
 * cannot be set up (the names are then not asked again).
 */
int discover_serving(const char *resolver, int every_s, char *err, size_t errlen);

/*
 * A reload failed or was refused: forget the names only it used, so that
 * they are not asked again (the serving config's names stay).
 */
void discover_load_failed(void);

/*
 * Resolve the wanted names on the serving loop through `resolver` (as for
 * discover_settle), then call done(arg) (from the loop, never from inside
 * this call), joining a refresh under way. -1 with err when that cannot start.
 */
int discover_resolve_wanted(const char *resolver, void (*done)(void *arg), void *arg,
                            char *err, size_t errlen);

void discover_stop(void);

#endif
