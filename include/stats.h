/*
 * stats.h: the `stats` commands, rendered from a snapshot of the counters
 * (counters.h) summed over the workers.
 */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>

#include "counters.h"
#include "route.h"

struct buf;
struct config;

/* Append a `stats` reply (STAT lines and END); cfg is the caller's generation. */
void stats_render(struct buf *out, const struct config *cfg, enum stats_group group);

/* One "STAT name value" line, for other writers of STAT replies. */
void stats_line(struct buf *out, const char *name, const char *value);

/* Policy reloads that took effect / that were refused (main thread). */
extern uint64_t stats_reloads;
extern uint64_t stats_reload_failures;
/* Of the refused ones, those the remap guard refused (settings.max_remap). */
extern uint64_t stats_reload_refused_remap;
extern uint64_t stats_discover_changes;     /* server names that answered differently */
extern uint64_t stats_discover_failures;    /* DNS questions for them that failed */

/* Remember the start time (uptime is measured from here). */
void stats_init(void);

/* Seconds since stats_init. */
uint64_t stats_uptime(void);
#endif
