/*
 * ttl.h: rewriting the exptime of requests on their way to a server
 * (lg.ttl, and lg.failover's gutter_ttl). Pure: no I/O, no clock of its own.
 *
 * A rule is one int32, so a call carries it in one field and a child call
 * copies it with one store:
 *   0       no rule: the exptime goes as the client wrote it
 *   S > 0   "max S": the item lives at most S seconds
 *   -S - 1  "set S": the exptime becomes S (S >= 0; 0 = never expires)
 *
 * memcached reads an exptime as: 0 never expires; up to 30 days, seconds
 * from now; above, a unix time; negative, already expired. Under "max S":
 * 0 becomes S, a relative time is capped at S, a unix time further than S
 * seconds away becomes S (one in the past is kept: it expires at once), and
 * a negative one is kept (it still means "expire at once").
 */
#ifndef TTL_H
#define TTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define TTL_RELATIVE_MAX 2592000        /* 30 days: larger exptimes are unix times */

static inline int32_t ttl_rule_set(int32_t seconds) { return -seconds - 1; }
static inline int32_t ttl_rule_max(int32_t seconds) { return seconds; }

/* The rule that does what `first` then `then` do (nodes met in that order). */
int32_t ttl_compose(int32_t first, int32_t then);

/* The exptime a server gets for `exptime` under rule (now: unix seconds). */
int64_t ttl_apply(int32_t rule, int64_t exptime, int64_t now);

/* Bytes ttl_rewrite_args may write for arguments of len bytes. */
#define TTL_ARGS_ROOM(len) ((size_t)(len) * 4 + 16)

/*
 * A request's arguments (struct request's args: "flags exptime bytes [cas]",
 * touch's and gat's exptime, a meta request's flags) with their exptime
 * rewritten by rule, into out (TTL_ARGS_ROOM(len) bytes). Returns the length
 * written. Meta requests: every T and N flag is rewritten, and a storage
 * request without T (exptime 0) gets one. Commands without an exptime, and
 * a token that is not a number, are copied as they are.
 */
size_t ttl_rewrite_args(int32_t rule, enum cmd cmd, bool meta, const char *args, size_t len,
                        char *out, int64_t now);

/* "max 10 s", "set 0 s" (for --check and --route); "" for no rule. */
void ttl_describe(int32_t rule, char *out, size_t len);

#endif
