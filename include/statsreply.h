/*
 * statsreply.h: a memcached server's answer to `stats`, read for the few
 * figures luagent reports about its servers (pure: no I/O, no logging).
 *
 * The answer is "STAT <name> <value>" lines closed by "END". Only the fields
 * listed in enum server_stat are kept; a field the server did not send (or
 * sent with a value that is not a whole number) is marked absent, never
 * taken as 0.
 */
#ifndef STATSREPLY_H
#define STATSREPLY_H

#include <stddef.h>
#include <stdint.h>

/* The server figures luagent keeps, under memcached's own names. */
enum server_stat {
    SERVER_STAT_CURR_ITEMS,
    SERVER_STAT_TOTAL_ITEMS,
    SERVER_STAT_BYTES,
    SERVER_STAT_LIMIT_MAXBYTES,
    SERVER_STAT_EVICTIONS,
    SERVER_STAT_CURR_CONNECTIONS,
    SERVER_STAT_COUNT
};

struct server_figures {
    uint64_t v[SERVER_STAT_COUNT];
    uint32_t have;          /* bit (1 << stat) set: v[stat] was in the answer */
};

enum statsreply_status {
    STATSREPLY_DONE,        /* a whole answer, *used bytes long */
    STATSREPLY_NEED_MORE,   /* not complete yet */
    STATSREPLY_BAD          /* not an answer to `stats` (why says what came) */
};

/* memcached's name of a figure ("curr_items"). */
const char *statsreply_name(enum server_stat stat);

/*
 * Parse the answer at the start of buf[0..len). On DONE, *out holds the
 * figures and *used the answer's length. On BAD, why holds the first
 * offending line (cut to whylen).
 */
enum statsreply_status statsreply_parse(const char *buf, size_t len,
                                        struct server_figures *out, size_t *used,
                                        char *why, size_t whylen);

#endif
