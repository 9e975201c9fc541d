/*
 * fleet.h: the servers' own figures (items, bytes, memory limit, evictions,
 * connections), asked with `stats` in the background, for `stats` and the
 * metrics endpoint.
 *
 * The poller lives on the main thread, with one connection of its own per
 * server: it never shares a worker's connection, so it cannot disturb the
 * FIFO reply matching, failure counts or mark-downs of the request path, and
 * nothing a request does waits for it. Each server is asked once per
 * interval; one that has not answered by the next tick is unanswered until
 * it answers again.
 */
#ifndef FLEET_H
#define FLEET_H

#include <stdbool.h>
#include <stdint.h>

#include "statsreply.h"

struct config;
struct event_base;

enum fleet_state {
    FLEET_WAITING,          /* not answered yet since start (or since it was added) */
    FLEET_ANSWERED,         /* the last poll was answered: figures below */
    FLEET_UNANSWERED        /* the last poll failed (refused, timed out, closed, refused `stats`) */
};

/* What the poller knows of one server at one moment. */
struct fleet_view {
    enum fleet_state      state;
    uint64_t              age_s;    /* FLEET_ANSWERED: seconds since the answer */
    struct server_figures fig;      /* FLEET_ANSWERED: the answer; else nothing (have 0) */
};

/*
 * Start polling cfg's servers every interval_s seconds on base (the main
 * thread's), asking each at once. interval_s 0 leaves the poller off.
 * Returns 0, or -1 out of memory.
 */
int fleet_start(struct event_base *base, int interval_s, const struct config *cfg);

/*
 * A new generation: poll its servers from now on, keeping the connection and
 * figures of every host:port it still names over the same transport, and
 * dropping the others. Call it on the main thread before the generation is
 * published to the workers: the poller then never holds a server of a
 * generation the workers may free.
 */
void fleet_set_config(const struct config *cfg);

/* Close every connection and free everything (main thread, at exit). */
void fleet_stop(void);

/* Is the poller on (interval above 0)? Any thread. */
bool fleet_enabled(void);

/* The poller's view of the server labelled host:port. Any thread. */
void fleet_view(const char *label, struct fleet_view *out);

/* "waiting", "answered", "unanswered". */
const char *fleet_state_name(enum fleet_state state);

#endif
